// A bus with five processes publishing, subscribing and calling each other (`pnpm start`).
//
// This process hosts the bus and starts:
//   pub-north, pub-south   publish sensor readings on sensors.<site>.temp / .humidity
//   sub-all                subscribes to sensors.>       (block: sees every reading)
//   sub-temp               subscribes to sensors.*.temp  (drop: never holds publishers back)
//   alerts                 an RPC server; both subscribers call alerts.raise for hot readings
// Every process publishes its counters on demo.stats.<name>; this process subscribes to
// them and prints one status line per second. After a few seconds it stops the publishers,
// then the subscribers, then the server, and checks that sub-all got every reading.
//
//   pnpm start          # or, after pnpm build: node --import tsx examples/bus-demo.ts [seconds]
import { fileURLToPath } from 'node:url';
import { type BusClient, connectBus, createBus } from '@vring/ipc';
import {
  type Child,
  say,
  sleep,
  socketDir,
  startChild,
  until,
  watchdog,
} from './support/processes.js';

/** What each process publishes on demo.stats.<name>. */
interface Stats {
  name: string;
  /** Readings published (publishers), received (subscribers) or calls answered (server). */
  count: number;
  /** RPC calls made (subscribers). */
  calls: number;
  /** Messages dropped for this process's subscription. */
  dropped: number;
  /** When the counters were read (ms since the epoch). */
  at: number;
  final?: boolean;
}

interface Reading {
  site: string;
  value: number;
  seq: number;
}

/** Readings per publisher per 10 ms tick: 5,000 per second each. */
const BURST = 50;

/** Publishes `stats()` every 250 ms until `stop()`, then once more marked final. */
function reportStats(client: BusClient, name: string, stats: () => Omit<Stats, 'name' | 'at'>) {
  const send = (final: boolean) =>
    client.publish(`demo.stats.${name}`, { name, ...stats(), at: Date.now(), final });
  void send(false);
  const timer = setInterval(() => void send(false), 250);
  return async () => {
    clearInterval(timer);
    await send(true);
  };
}

/** Resolves on SIGTERM: the parent's way of saying "finish up". */
const terminated = () => new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));

async function publisher(socket: string, name: string, site: string): Promise<void> {
  const client = await connectBus(socket);
  let published = 0;
  const stopStats = reportStats(client, name, () => ({ count: published, calls: 0, dropped: 0 }));
  let running = true;
  void terminated().then(() => {
    running = false;
  });
  while (running) {
    const sends: Array<Promise<void>> = [];
    for (let i = 0; i < BURST; i++) {
      const kind = i % 2 === 0 ? 'temp' : 'humidity';
      const value = kind === 'temp' ? 15 + Math.random() * 20 : 30 + Math.random() * 50;
      sends.push(client.publish(`sensors.${site}.${kind}`, { site, value, seq: ++published }));
    }
    // Sends of one tick share a batch: one crossing into the ring for all of them.
    await Promise.all(sends);
    await sleep(10);
  }
  await stopStats();
  await client.drain();
}

async function subscriber(socket: string, name: string, pattern: string): Promise<void> {
  const client = await connectBus(socket);
  const policy = pattern.endsWith('.temp') ? 'drop' : 'block';
  const readings = client.subscribe<Reading>(pattern, { policy });
  let received = 0;
  let calls = 0;
  const stopStats = reportStats(client, name, () => ({
    count: received,
    calls,
    dropped: readings.dropped,
  }));
  void terminated().then(() => readings.unsubscribe());
  for await (const { topic, value } of readings) {
    received++;
    // Only hot temperatures are worth a call; not awaited, so reading goes on meanwhile.
    if (topic.endsWith('.temp') && value.value > 34) {
      calls++;
      client
        .request('alerts.raise', { from: name, site: value.site, value: value.value })
        .catch((error: unknown) => console.error(`alerts.raise failed: ${String(error)}`));
    }
  }
  await stopStats();
  await client.drain();
}

async function alertServer(socket: string, name: string): Promise<void> {
  const client = await connectBus(socket);
  let answered = 0;
  client.serve<{ site: string; value: number }, number>('alerts.raise', () => ++answered);
  const stopStats = reportStats(client, name, () => ({ count: answered, calls: 0, dropped: 0 }));
  await terminated();
  await stopStats();
  await client.drain();
}

function rate(now: Stats | undefined, before: Stats | undefined): string {
  if (!now || !before || now.at === before.at) return '-';
  const perSecond = ((now.count - before.count) * 1000) / (now.at - before.at);
  return `${(perSecond / 1000).toFixed(1)}k`;
}

async function main(seconds: number): Promise<void> {
  const { socket, remove } = socketDir('demo');
  const bus = createBus(socket);
  const children: Child[] = [];
  watchdog((seconds + 20) * 1000, () => children, remove);
  say('bus', `listening on ${socket}`);

  // This process is a client of its own bus too (in memory, no rings): it watches everyone's
  // counters.
  const monitor = await bus.connect();
  const latest = new Map<string, Stats>();
  const watching = monitor.subscribe<Stats>('demo.stats.>');
  void (async () => {
    for await (const { value } of watching) latest.set(value.name, value);
  })();

  const file = fileURLToPath(import.meta.url);
  const start = (name: string, ...args: string[]) => {
    const child = startChild(name, file, [args[0]!, socket, name, ...args.slice(1)]);
    children.push(child);
    return child;
  };
  // Subscribers and the server first; the publishers once everyone listens.
  const listeners = [
    start('alerts', 'server'),
    start('sub-all', 'subscriber', 'sensors.>'),
    start('sub-temp', 'subscriber', 'sensors.*.temp'),
  ];
  await until(() => listeners.every((c) => latest.has(c.name)), children);
  const publishers = [
    start('pub-north', 'publisher', 'north'),
    start('pub-south', 'publisher', 'south'),
  ];
  await until(() => publishers.every((c) => latest.has(c.name)), children);
  say('bus', `5 processes attached; running for ${seconds} s`);

  const names = ['pub-north', 'pub-south', 'sub-all', 'sub-temp', 'alerts'];
  let previous = new Map(latest);
  for (let t = 1; t <= seconds; t++) {
    await sleep(1000);
    const s = bus.stats;
    const per = (n: string) => `${n} ${rate(latest.get(n), previous.get(n))}`;
    say(
      'status',
      `t=${t}s │ msg/s ${['pub-north', 'pub-south', 'sub-all', 'sub-temp'].map(per).join(' ')} │ ` +
        `calls/s ${rate(latest.get('alerts'), previous.get('alerts'))} │ bus: ` +
        `${s.published} published, ${s.delivered} delivered, ${s.dropped} dropped, ` +
        `${s.requests} requests`,
    );
    previous = new Map(latest);
  }

  // Stop in dependency order: nothing in flight is lost.
  for (const group of [publishers, listeners.slice(1), listeners.slice(0, 1)]) {
    for (const c of group) c.process.kill('SIGTERM');
    const codes = await Promise.all(group.map((c) => c.exited));
    if (codes.some((code) => code !== 0)) process.exitCode = 1;
    if (group === publishers) await sleep(100); // the last readings reach the subscribers
  }
  // The final counters were published before each process left; wait for the last ones.
  await until(() => names.every((n) => latest.get(n)?.final));
  monitor.close();
  for (const n of names) {
    const s = latest.get(n)!;
    const what = n.startsWith('pub') ? 'published' : n === 'alerts' ? 'answered' : 'received';
    const extra = n.startsWith('sub')
      ? `, called alerts.raise ${s.calls}, dropped ${s.dropped}`
      : '';
    say('summary', `${n.padEnd(9)} ${what} ${s.count}${extra}`);
  }
  const published = latest.get('pub-north')!.count + latest.get('pub-south')!.count;
  const all = latest.get('sub-all')!.count;
  say(
    'summary',
    `sub-all got ${all} of ${published} readings${all === published ? ': none lost' : ''}`,
  );
  const s = bus.stats;
  say(
    'summary',
    `bus: published ${s.published}, delivered ${s.delivered}, dropped ${s.dropped}, requests ${s.requests}`,
  );
  await bus[Symbol.asyncDispose]();
  remove();
}

const [role, socket, name, arg] = process.argv.slice(2);
if (role === 'publisher') await publisher(socket!, name!, arg!);
else if (role === 'subscriber') await subscriber(socket!, name!, arg!);
else if (role === 'server') await alertServer(socket!, name!);
else await main(Number(role ?? 5));
