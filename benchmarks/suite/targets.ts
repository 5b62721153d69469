// The product's targets (the raw rings', @vring/ipc's, and the RPC, pub/sub and
// large-message figures against a socket and against NATS), checked against a run: where each figure
// stands. Only reported, never enforced (CI runs the suite as a smoke test, without
// thresholds).
import type { Table } from './report.js';
import type { CaseResult } from './summary.js';

interface Target {
  name: string;
  /** The figure and whether it meets the target, or undefined when the run lacks the cases. */
  check(find: Finder): { figure: string; met: boolean } | undefined;
}

/**
 * The case of a run, at concurrency 1 (RPC runs at 1 and 64) and a fan-out to 3 subscribers
 * unless told.
 */
type Finder = (
  scenario: string,
  size: number,
  transport: string,
  dimensions?: { concurrency?: number; subscribers?: number },
) => CaseResult | undefined;

const x = (v: number) => `${v.toFixed(2)}×`;
const us = (v: number) => `${v.toFixed(2)} µs`;

type Dimensions = Parameters<Finder>[3];

/** The best of several transports for one figure (e.g. the fastest vring mode). */
function best(
  find: Finder,
  scenario: string,
  size: number,
  transports: string[],
  read: (r: CaseResult) => number | undefined,
  lowerIsBetter = false,
  dimensions?: Dimensions,
): { transport: string; value: number } | undefined {
  let winner: { transport: string; value: number } | undefined;
  for (const t of transports) {
    const r = find(scenario, size, t, dimensions);
    const value = r ? read(r) : undefined;
    if (value === undefined) continue;
    if (!winner || (lowerIsBetter ? value < winner.value : value > winner.value)) {
      winner = { transport: t, value };
    }
  }
  return winner;
}

/**
 * The best of `transports` against `other` on one 64 B figure of the same case, as a
 * multiple of the other's: for a latency (`lowerIsBetter`), ours over theirs.
 */
function against(
  find: Finder,
  scenario: string,
  dimensions: Dimensions,
  transports: string[],
  other: string,
  key: string,
  lowerIsBetter = false,
): { transport: string; ratio: number } | undefined {
  const theirs = find(scenario, 64, other, dimensions)?.figures[key]?.median;
  const read = (r: CaseResult) => r.figures[key]?.median;
  const ours = best(find, scenario, 64, transports, read, lowerIsBetter, dimensions);
  if (!theirs || !ours) return undefined;
  return { transport: ours.transport, ratio: ours.value / theirs };
}

/** "6.10× NATS (bus-standalone-event)", met at `min` times or more. */
function atLeast(
  r: { transport: string; ratio: number } | undefined,
  min: number,
  whose: string,
): { figure: string; met: boolean } | undefined {
  return r && { figure: `${x(r.ratio)} ${whose} (${r.transport})`, met: r.ratio >= min };
}

const standalone = [
  'bus-standalone-event',
  'bus-standalone-adaptive',
  'bus-standalone-poll',
  'bus-relayed-event',
  'bus-relayed-adaptive',
];

/** The RPC and pub/sub targets against a socket and against NATS. */
const brokerTargets: Target[] = [
  {
    name: 'standalone Bus RPC 64 B, concurrency 1: p50 ≤ 0.5× the socket RPC',
    check: (find) => {
      const r = against(find, 'rpc', {}, standalone, 'net-msgpack', 'p50', true);
      return r && { figure: `${x(r.ratio)} net's p50 (${r.transport})`, met: r.ratio <= 0.5 };
    },
  },
  {
    name: 'standalone Bus RPC 64 B, concurrency 1: ≥ 5× NATS req/s',
    check: (find) => atLeast(against(find, 'rpc', {}, standalone, 'nats', 'rps'), 5, 'NATS'),
  },
  {
    name: 'standalone Bus RPC 64 B, concurrency 64: ≥ 2× the socket RPC req/s',
    check: (find) =>
      atLeast(
        against(find, 'rpc', { concurrency: 64 }, standalone, 'net-msgpack', 'rps'),
        2,
        'net',
      ),
  },
  {
    name: 'standalone Bus RPC 64 B, concurrency 64: ≥ 5× NATS req/s',
    check: (find) =>
      atLeast(against(find, 'rpc', { concurrency: 64 }, standalone, 'nats', 'rps'), 5, 'NATS'),
  },
  {
    name: 'standalone Bus fan-out 1 → 3, 64 B: ≥ 3× the socket fan-out',
    check: (find) =>
      atLeast(against(find, 'fanout', {}, standalone, 'net-msgpack', 'delivered'), 3, 'net'),
  },
  ...[3, 10, 30].map(
    (n): Target => ({
      name: `standalone Bus fan-out 1 → ${n}, 64 B: ≥ 3× NATS`,
      check: (find) =>
        atLeast(
          against(find, 'fanout', { subscribers: n }, standalone, 'nats', 'delivered'),
          3,
          'NATS',
        ),
    }),
  ),
];

const channels = ['channel-event', 'channel-adaptive', 'channel-poll'];
const rawRings = ['vring-event', 'vring-adaptive', 'vring-poll'];
const buses = ['bus-event', 'bus-adaptive'];

/** The Channel's event-mode round trip p50 against net's, met at or under `limit` times it. */
function eventModeVsNet(find: Finder, limit: number): { figure: string; met: boolean } | undefined {
  const ours = find('pingpong', 64, 'channel-event')?.figures.p50?.median;
  const net = find('pingpong', 64, 'net-msgpack')?.figures.p50?.median;
  if (!ours || !net) return undefined;
  return { figure: `${x(ours / net)} of net's p50`, met: ours / net <= limit };
}

const targets: Target[] = [
  {
    name: '64 B one-way msgpack: vring ≥ 4× net',
    check: (find) => {
      const b = best(find, 'oneway', 64, channels, (r) => r.ratios.msgs);
      return b && { figure: `${x(b.value)} (${b.transport})`, met: b.value >= 4 };
    },
  },
  {
    name: '64 B one-way msgpack: vring ≥ 75 % of a pack-only loop',
    check: (find) => {
      const b = best(find, 'oneway', 64, channels, (r) => r.figures.msgs?.median);
      const pack = find('oneway', 64, 'codec-pack')?.figures.msgs?.median;
      if (!b || !pack) return undefined;
      const share = b.value / pack;
      return { figure: `${(share * 100).toFixed(0)} % (${b.transport})`, met: share >= 0.75 };
    },
  },
  {
    name: '64 B one-way raw Buffers: vring ≥ 10× net',
    check: (find) => {
      const b = best(find, 'oneway', 64, rawRings, (r) => r.ratios.msgs);
      return b && { figure: `${x(b.value)} (${b.transport})`, met: b.value >= 10 };
    },
  },
  {
    name: 'round trip 64 B msgpack, poll/adaptive: p50 ≤ 3 µs',
    check: (find) => {
      const b = best(find, 'pingpong', 64, channels.slice(1), (r) => r.figures.p50?.median, true);
      return b && { figure: `${us(b.value)} (${b.transport})`, met: b.value <= 3 };
    },
  },
  {
    name: 'round trip 64 B msgpack, poll/adaptive: p99 ≤ 20 µs',
    check: (find) => {
      const b = best(find, 'pingpong', 64, channels.slice(1), (r) => r.figures.p99?.median, true);
      return b && { figure: `${us(b.value)} (${b.transport})`, met: b.value <= 20 };
    },
  },
  {
    name: 'round trip 64 B raw: p50 ≤ 1 µs',
    check: (find) => {
      const b = best(find, 'pingpong', 64, rawRings, (r) => r.figures.p50?.median, true);
      return b && { figure: `${us(b.value)} (${b.transport})`, met: b.value <= 1 };
    },
  },
  {
    name: 'round trip 64 B msgpack, event mode: p50 ≤ 0.9× net',
    check: (find) => eventModeVsNet(find, 0.9),
  },
  {
    name: '1 MiB one-way msgpack: vring ≥ 3× net MB/s',
    check: (find) => {
      const b = best(find, 'oneway', 1024 * 1024, channels, (r) => r.ratios.mbs);
      return b && { figure: `${x(b.value)} (${b.transport})`, met: b.value >= 3 };
    },
  },
  {
    name: '1 MiB one-way raw: vring ≥ 3× net MB/s',
    check: (find) => {
      const b = best(find, 'oneway', 1024 * 1024, rawRings, (r) => r.ratios.mbs);
      return b && { figure: `${x(b.value)} (${b.transport})`, met: b.value >= 3 };
    },
  },
  {
    name: 'ipc: Bus fan-out 1 → 3, 64 B: ≥ 3× the same fan-out over Unix sockets',
    check: (find) => {
      const b = best(find, 'fanout', 64, buses, (r) => r.ratios.delivered);
      return b && { figure: `${x(b.value)} (${b.transport})`, met: b.value >= 3 };
    },
  },
  {
    name: 'Bus fan-out 1 → 3, 1 MiB: ≥ 5× the same fan-out over Unix sockets',
    check: (find) => {
      const all = [
        ...buses,
        'bus-zerocopy-event',
        'bus-standalone-event',
        'bus-standalone-adaptive',
        'bus-standalone-zerocopy-event',
      ];
      const b = best(find, 'fanout', 1024 * 1024, all, (r) => r.ratios.delivered);
      return b && { figure: `${x(b.value)} (${b.transport})`, met: b.value >= 5 };
    },
  },
  {
    name: 'ipc: RPC round trip 64 B, poll/adaptive: p50 ≤ 5 µs',
    check: (find) => {
      const transports = ['channel-rpc-adaptive', 'channel-rpc-poll', 'bus-adaptive', 'bus-poll'];
      const b = best(find, 'rpc', 64, transports, (r) => r.figures.p50?.median, true);
      return b && { figure: `${us(b.value)} (${b.transport})`, met: b.value <= 5 };
    },
  },
  {
    name: 'ipc: event mode no slower than Unix sockets (Channel round trip p50)',
    check: (find) => eventModeVsNet(find, 1),
  },
  {
    name: 'idle: 0 % CPU (vring event and adaptive, every side and the bus; poll spins by design)',
    check: (find) => {
      const all = [...rawRings, ...channels, ...buses, ...standalone]
        .filter((t) => !t.endsWith('-poll'))
        .map((t) => ({ t, v: find('idle', 0, t)?.figures.cpu?.median }))
        .filter((e): e is { t: string; v: number } => e.v !== undefined);
      if (all.length === 0) return undefined;
      const worst = all.reduce((a, b) => (b.v > a.v ? b : a));
      const net = find('idle', 0, 'net')?.figures.cpu?.median;
      const reference = net === undefined ? '' : `; net ${net.toFixed(2)} %`;
      // Node itself wakes now and then; under 1 % of a core for both sides is "nothing".
      return {
        figure: `at most ${worst.v.toFixed(2)} % (${worst.t})${reference}`,
        met: worst.v < 1,
      };
    },
  },
];

/** The targets this run can speak to; undefined when it has the cases of none of them. */
export function targetTable(results: CaseResult[]): Table | undefined {
  const find: Finder = (scenario, size, transport, dimensions = {}) =>
    results.find(
      (r) =>
        r.case.scenario === scenario &&
        r.case.size === size &&
        r.case.transport === transport &&
        r.case.concurrency === (dimensions.concurrency ?? 1) &&
        r.case.subscribers === (scenario === 'fanout' ? (dimensions.subscribers ?? 3) : 0) &&
        !r.error &&
        !r.unavailable,
    );
  const rows = [...targets, ...brokerTargets].map((t) => {
    const outcome = t.check(find);
    if (!outcome) return [t.name, 'not in this run', '–'];
    return [t.name, outcome.figure, outcome.met ? 'met' : 'missed'];
  });
  if (rows.every((r) => r[2] === '–')) return undefined;
  return {
    title: 'the product targets, against sockets and NATS (reported, not enforced)',
    header: ['target', 'this run', 'status'],
    rows,
  };
}
