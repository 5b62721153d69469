// The fan-out's suite logic, without running a fan-out: the subscriber-count dimension of
// the case table, the acknowledgement rounds, merging the subscribers' latency histograms,
// and the table entry that folds many subscribers into one. No figure of any transport is
// asserted here: figures are reported, never enforced.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildCases } from '../suite/cases.js';
import { parseOptions } from '../suite/options.js';
import { tables } from '../suite/report.js';
import { summarize } from '../suite/summary.js';
import { Acks } from '../transports/fanout-rpc.js';
import { LatencyRecorder, mergedLatency } from '../transports/measure.js';
import type { Transport } from '../transports/transport.js';

const transport = (name: string): Transport => ({
  name,
  label: name,
  payload: 'msgpack',
  layout: { processes: 'pair' },
  scenarios: ['fanout'],
  run: async () => {},
});
const transports = [transport('net-msgpack'), transport('bus-event')];
const fanoutCases = (argv: string[]) =>
  buildCases(transports, parseOptions(['--scenario=fanout', ...argv]));

test('a full run fans out to 3, 10 and 30 at 64 B and to 3 at the larger sizes', () => {
  const cases = fanoutCases([]).filter((c) => c.transport === 'bus-event');
  const at = (size: number) => cases.filter((c) => c.size === size).map((c) => c.subscribers);
  assert.equal(at(64), [3, 10, 30]);
  assert.equal(at(1024), [3]);
  assert.equal(at(1024 * 1024), [3]);
  for (const c of cases) assert.is(c.peers, c.subscribers + 1);
  assert.ok(cases.some((c) => c.name === 'fanout 64 B n10 bus-event'));
});

test('--quick keeps N = 3; --subscribers picks any counts, with the baseline of each', () => {
  assert.equal(
    fanoutCases(['--quick']).map((c) => c.subscribers),
    [3, 3],
  );
  const picked = fanoutCases(['--subscribers=5,30', '--transport=bus-event', '--size=64']);
  assert.equal(
    picked.map((c) => `${c.transport} ${c.subscribers}`),
    ['net-msgpack 5', 'bus-event 5', 'net-msgpack 30', 'bus-event 30'],
  );
  // Both named: large messages to many subscribers too.
  const large = fanoutCases(['--subscribers=10', '--size=1m', '--transport=bus-event']);
  assert.equal(
    large.map((c) => c.subscribers),
    [10, 10],
  );
});

test('an acknowledgement round completes when every subscriber has answered', async () => {
  const acks = new Acks(3);
  let done = 0;
  const first = acks.next().then(() => done++);
  acks.add();
  acks.add();
  await Promise.resolve();
  assert.is(done, 0);
  acks.add();
  await first;
  assert.is(done, 1);
  // Acknowledgements that came before the wait count for the next round.
  for (let i = 0; i < 3; i++) acks.add();
  await acks.next();
});

test('delivery percentiles are those of every subscriber’s samples together', () => {
  const fast = new LatencyRecorder();
  const slow = new LatencyRecorder();
  for (let i = 0; i < 98; i++) fast.record(10_000); // 10 µs
  for (let i = 0; i < 2; i++) slow.record(1_000_000); // 1 ms
  const merged = mergedLatency([fast.encode(), slow.encode()]);
  assert.is(merged.count, 100);
  assert.ok(Math.abs(merged.p50 - 10) < 0.1, `p50 ${merged.p50}`);
  // 2 % of the deliveries took 1 ms: the p99 is one of them, whoever delivered it.
  assert.ok(Math.abs(merged.p99 - 1000) < 1, `p99 ${merged.p99}`);
});

test('past three subscribers the CPU column sums them and the GC column keeps the highest', () => {
  const [c] = fanoutCases(['--subscribers=10', '--transport=bus-event']).filter(
    (x) => x.transport === 'bus-event',
  );
  const cpu: Record<string, number> = { publisher: 100 };
  const gc: Record<string, { share: number }> = {};
  for (let i = 1; i <= 10; i++) {
    cpu[`s${i}`] = 10;
    gc[`s${i}`] = { share: i / 1000 };
  }
  const result = summarize(c!, [
    { delivered: { s1: 100 }, seconds: 1, cpu, gc, delivery: { p50: 1, p99: 2 } },
  ]);
  const [table] = tables([result]);
  const row = table!.rows[0]!;
  assert.is(row.at(-1), 'publisher 1.00, s1–s10 Σ 1.00');
  assert.is(row.at(-2), 's1–s10 max 1.00');
  assert.ok(table!.title.endsWith('64 B, 1 → 10'), table!.title);
});

test.run();
