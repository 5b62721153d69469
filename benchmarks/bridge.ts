// What the NATS bridge costs: two buses ("host A" and "host B", each `vring bus --nats`, a
// process of its own) bridged through one nats-server on loopback, against NATS alone
// (two `nats` clients through the same server) and a bus alone (both clients on one bus).
//
// - pub/sub throughput: a client of A publishes N values on a topic that A exports and B
//   imports; a client of B counts them. Messages per second from the first publish to the
//   last arrival.
// - RPC latency: a client of B requests a name served by a client of A, one request at a
//   time; round trips in µs (median, p99). What the bridge adds is the bridged round trip
//   less NATS's own.
//
// Usage: pnpm bench:bridge [--messages=N] [--requests=N] [--size=BYTES]
// Needs `pnpm build` (the buses run the built `vring` command) and nats-server.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type BusClient, connectBus } from '@vring/ipc';
import { Packr } from 'msgpackr';
import { connect } from 'nats';
import {
  NATS_SERVER_MISSING,
  natsServerPath,
  startNatsServer,
} from '../test-support/nats-server.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '100000' },
    requests: { type: 'string', default: '5000' },
    size: { type: 'string', default: '64' },
  },
});
const messages = Number(values.messages);
const requests = Number(values.requests);
const size = Number(values.size);
const payload = { id: 0, data: Buffer.alloc(size, 7) };
const msgpack = new Packr({ useRecords: false });
const vring = new URL('../packages/ipc/bin/vring.js', import.meta.url).pathname;

/** A bus process bridged to `nats`, importing `imports`; resolves once its bridge is up. */
async function startHost(path: string, nats: string, imports: string): Promise<ChildProcess> {
  const args = ['bus', '--socket', path, '--nats', nats, '--export', 'bench.>'];
  args.push('--import', imports);
  const child = spawn(process.execPath, [vring, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      seen += text;
      if (seen.includes('bridged to NATS')) resolve();
    });
    child.once('exit', () => reject(new Error(`vring bus exited: ${seen}`)));
  });
  return child;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Round trips of `request` one at a time, in µs: [median, p99]. */
async function latency(request: () => Promise<unknown>): Promise<[number, number]> {
  for (let i = 0; i < Math.min(500, requests); i++) await request();
  const times: number[] = [];
  for (let i = 0; i < requests; i++) {
    const start = process.hrtime.bigint();
    await request();
    times.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  times.sort((a, b) => a - b);
  return [percentile(times, 50), percentile(times, 99)];
}

/** Publishes `messages` values with `publish` until `received()` counts them all: msg/s. */
async function throughput(
  publish: (i: number) => Promise<void> | void,
  arrived: Promise<void>,
): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < messages; i++) await publish(i);
  await arrived;
  return messages / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** Resolves once `count` values have come through `subscription`. */
async function counted(subscription: AsyncIterable<unknown>, count: number): Promise<void> {
  let n = 0;
  for await (const _ of subscription) if (++n === count) return;
}

async function main(): Promise<void> {
  if (!natsServerPath()) {
    console.log(`bridge benchmark skipped: ${NATS_SERVER_MISSING}`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'vring-bridge-bench-'));
  const server = await startNatsServer();
  const hosts: ChildProcess[] = [];
  const clients: BusClient[] = [];
  try {
    hosts.push(await startHost(join(dir, 'a.sock'), server.url, 'bench.>'));
    // B asks for bench.echo: an RPC name is imported by name.
    hosts.push(await startHost(join(dir, 'b.sock'), server.url, 'bench.>,bench.echo'));
    const a = await connectBus(join(dir, 'a.sock'));
    const b = await connectBus(join(dir, 'b.sock'));
    const b2 = await connectBus(join(dir, 'b.sock'));
    clients.push(a, b, b2);

    // NATS alone: the floor under the bridge.
    const pub = await connect({ servers: server.url });
    const sub = await connect({ servers: server.url });
    const natsSub = sub.subscribe('floor.data');
    sub.subscribe('floor.echo', { callback: (_, m) => m.respond(m.data) });
    await sub.flush();
    const natsRate = await throughput(
      (i) => {
        payload.id = i;
        pub.publish('floor.data', msgpack.pack(payload));
        // A yield now and then, as a bus client's awaited publish gives.
        return i % 256 === 0 ? pub.flush() : undefined;
      },
      counted(natsSub, messages),
    );
    const natsRtt = await latency(async () =>
      msgpack.unpack((await pub.request('floor.echo', msgpack.pack(payload))).data),
    );

    // A bus alone: two clients of B.
    const local = b2.subscribe('local.data');
    b2.serve('local.echo', (v) => v);
    await b2.flush();
    const busRate = await throughput(
      (i) => {
        payload.id = i;
        return b.publish('local.data', payload);
      },
      counted(local, messages),
    );
    const busRtt = await latency(() => b.request('local.echo', payload));

    // Bridged: A's client publishes, B's counts; B's client requests, A's serves.
    const across = b.subscribe('bench.data');
    a.serve('bench.echo', (v) => v);
    await Promise.all([a.flush(), b.flush()]);
    await new Promise((resolve) => setTimeout(resolve, 200)); // NATS interest settles
    const bridgeRate = await throughput(
      (i) => {
        payload.id = i;
        return a.publish('bench.data', payload);
      },
      counted(across, messages),
    );
    const bridgeRtt = await latency(() => b.request('bench.echo', payload));
    const report = await b.busReport();

    const cell = (text: string, width: number) => text.padStart(width);
    const row = (name: string, rate: number, [p50, p99]: [number, number]) =>
      `| ${name.padEnd(34)} | ${cell(Math.round(rate).toLocaleString('en'), 9)} | ` +
      `${cell(p50.toFixed(0), 10)} | ${cell(p99.toFixed(0), 10)} |`;
    console.log(`\nNATS bridge, ${size}-byte values, ${messages} messages, ${requests} requests`);
    console.log(`| ${'path'.padEnd(34)} |     msg/s | RTT p50 µs | RTT p99 µs |`);
    console.log(`| ${'-'.repeat(34)} | --------: | ---------: | ---------: |`);
    console.log(row('bus alone (two clients of B)', busRate, busRtt));
    console.log(row('NATS alone (two nats clients)', natsRate, natsRtt));
    console.log(row('bridged (A → nats-server → B)', bridgeRate, bridgeRtt));
    console.log(
      `\nthe bridge adds ${(bridgeRtt[0] - natsRtt[0]).toFixed(0)} µs to NATS's median round ` +
        `trip; B's bridge: imported ${report.nats?.imported}, dropped ${report.nats?.dropped}`,
    );
    await pub.close();
    await sub.close();
  } finally {
    for (const c of clients) c.close();
    for (const h of hosts) {
      h.kill('SIGTERM');
      await once(h, 'exit');
    }
    await server.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
