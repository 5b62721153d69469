// Hand-run A/B of the bus's two publish orderings (docs/bus.md, "Ordering"): what
// `ordering: 'publisher'` costs against the default `topic`.
//
//   node --import tsx benchmarks/ordering.ts [--rounds=N]
//
// Per ordering, a publisher process sends to a subscriber through a bus (both in this
// process):
//   small: 100,000 messages of 64 B round robin on five topics; messages per second.
//   mixed: rounds of one 1 MiB message then 100 of 64 B on five other topics, published
//          together; latency of the small ones (publish call to receipt), and MB/s.
// Uses the built @vring/ipc (run `pnpm build` first). One machine, one run: compare the two
// orderings with each other, not with other machines.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectBus, createBus } from '@vring/ipc';

type Ordering = 'topic' | 'publisher';
interface Sample {
  seq: number;
  at: number;
  pad?: Uint8Array;
}

const SMALL_COUNT = 100_000;
const SMALL_PER_ROUND = 100;
const LARGE = 1024 * 1024;
const rounds = Number(process.argv.find((a) => a.startsWith('--rounds='))?.slice(9) ?? 100);

/** Milliseconds on a clock that processes of one machine share. */
const now = () => performance.timeOrigin + performance.now();

if (process.argv[2] === 'publish') await publisher(process.argv[3]!, process.argv[4] as Ordering);
else await main();

async function publisher(path: string, ordering: Ordering): Promise<void> {
  const client = await connectBus(path, { ordering });
  const pad = new Uint8Array(40);
  const sent: Array<Promise<void>> = [];
  for (let seq = 0; seq < SMALL_COUNT; seq++) {
    sent.push(client.publish(`small.${seq % 5}`, { seq, at: 0, pad }));
    if (sent.length === 1000) await Promise.all(sent.splice(0));
  }
  await Promise.all(sent.splice(0));
  await client.flush();
  const large = new Uint8Array(LARGE);
  for (let round = 0; round < rounds; round++) {
    sent.push(client.publish('mixed.large', { seq: -1, at: now(), pad: large }));
    for (let i = 0; i < SMALL_PER_ROUND; i++) {
      sent.push(client.publish(`mixed.${i % 5}`, { seq: i, at: now(), pad }));
    }
    await Promise.all(sent.splice(0));
  }
  await client.drain();
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vring-ordering-'));
  try {
    console.log(`ordering A/B: ${rounds} mixed rounds of 1 MiB + ${SMALL_PER_ROUND} × 64 B`);
    for (const ordering of ['topic', 'publisher', 'topic', 'publisher'] as const) {
      console.log(`${ordering.padEnd(9)} ${await measure(join(dir, 'bus.sock'), ordering)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(path: string, ordering: Ordering): Promise<string> {
  const bus = createBus(path);
  const subscriber = await connectBus(path);
  const small = subscriber.subscribe<Sample>('small.>', { highWaterMark: 4096 });
  const mixed = subscriber.subscribe<Sample>('mixed.>', { highWaterMark: 4096 });
  await subscriber.flush();
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      'publish',
      path,
      ordering,
      `--rounds=${rounds}`,
    ],
    { stdio: 'inherit' },
  );
  let first = 0;
  for (let i = 0; i < SMALL_COUNT; i++) {
    await small.next();
    if (i === 0) first = now();
  }
  const smallRate = (SMALL_COUNT - 1) / ((now() - first) / 1000);
  const latencies: number[] = [];
  let bytes = 0;
  let start = 0;
  for (let i = 0; i < rounds * (SMALL_PER_ROUND + 1); i++) {
    const { value } = await mixed.next();
    const sample = value!.value;
    if (i === 0) start = now();
    if (sample.seq >= 0) latencies.push(now() - sample.at);
    bytes += sample.pad?.byteLength ?? 0;
  }
  const seconds = (now() - start) / 1000;
  await new Promise((resolve) => child.once('exit', resolve));
  subscriber.close();
  bus.close();
  await bus.closed;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.floor(q * (latencies.length - 1))]!.toFixed(2);
  return (
    `small: ${(smallRate / 1000).toFixed(0)} k msg/s   ` +
    `mixed: 64 B latency p50 ${at(0.5)} ms, p99 ${at(0.99)} ms; ${(bytes / seconds / 1e6).toFixed(0)} MB/s`
  );
}
