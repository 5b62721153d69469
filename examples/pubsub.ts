// Publish/subscribe among three processes through a bus.
//
// The parent hosts the bus and starts three processes that connect to it: a publisher of
// stock prices on `prices.<symbol>`, a subscriber to `prices.>` (every symbol; `block`
// policy, so it gets every message), and a slow subscriber to `prices.AAPL` alone with the
// `drop` policy and room for one message: what arrives while it is busy is dropped and
// counted. The publisher then says `feed.closed`, and everyone leaves.
//
//   pnpm example:pubsub          # or: node --import tsx examples/pubsub.ts
import { fileURLToPath } from 'node:url';
import { type BackpressurePolicy, connectBus, createBus } from '@vring/ipc';
import {
  type Child,
  say,
  sleep,
  socketDir,
  startChild,
  until,
  watchdog,
} from './support/processes.js';

interface Tick {
  symbol: string;
  price: number;
  seq: number;
}

const SYMBOLS = ['AAPL', 'MSFT', 'GOOG'];
const ROUNDS = 6;

async function publisher(socket: string): Promise<void> {
  const client = await connectBus(socket);
  const prices: Record<string, number> = { AAPL: 189.5, MSFT: 411.2, GOOG: 141.8 };
  for (let seq = 1; seq <= ROUNDS; seq++) {
    for (const symbol of SYMBOLS) {
      prices[symbol] = Math.round((prices[symbol]! + (Math.random() - 0.5) * 2) * 100) / 100;
      await client.publish(`prices.${symbol}`, { symbol, price: prices[symbol]!, seq });
    }
    await sleep(20);
  }
  await client.publish('feed.closed', { rounds: ROUNDS });
  console.log(`published ${ROUNDS * SYMBOLS.length} ticks and feed.closed`);
  // Leaves once everything published is in the ring.
  await client.drain();
}

async function subscriber(socket: string, pattern: string, policy: BackpressurePolicy) {
  const client = await connectBus(socket);
  const slow = policy === 'drop';
  const prices = client.subscribe<Tick>(pattern, { policy, ...(slow && { highWaterMark: 1 }) });
  // Ending the price subscription ends the loop below once what is queued has been read.
  const closed = client.subscribe('feed.closed');
  void closed.next().then(() => prices.unsubscribe());
  console.log(`subscribed to ${pattern} (${policy})`);
  let received = 0;
  for await (const { topic, value } of prices) {
    received++;
    console.log(`${topic.padEnd(11)} #${value.seq} ${value.price.toFixed(2)}`);
    if (slow) await sleep(100); // a consumer that cannot keep up
  }
  console.log(`done: received ${received}, dropped ${prices.dropped}`);
  client.close();
}

async function main(): Promise<void> {
  const { socket, remove } = socketDir('pubsub');
  const bus = createBus(socket);
  const children: Child[] = [];
  watchdog(20_000, () => children, remove);
  say('bus', `listening on ${socket}`);
  const file = fileURLToPath(import.meta.url);
  children.push(
    startChild('all', file, ['subscriber', socket, 'prices.>', 'block']),
    startChild('aapl', file, ['subscriber', socket, 'prices.AAPL', 'drop']),
  );
  // Both subscribers hold two subscriptions each: publish only once the bus has all four.
  await until(() => bus.stats.subscriptions === 4, children);
  children.push(startChild('publisher', file, ['publisher', socket]));
  const codes = await Promise.all(children.map((c) => c.exited));
  const s = bus.stats;
  say(
    'bus',
    `published ${s.published}, delivered ${s.delivered}, dropped at the bus ${s.dropped}; ` +
      `exit codes ${codes.join(' ')}`,
  );
  await bus[Symbol.asyncDispose]();
  remove();
  process.exitCode = codes.every((c) => c === 0) ? 0 : 1;
}

const [role, socket, pattern, policy] = process.argv.slice(2);
if (role === 'publisher') await publisher(socket!);
else if (role === 'subscriber') await subscriber(socket!, pattern!, policy as BackpressurePolicy);
else await main();
