// The scenarios of the suite: what each measures, at which sizes, for how long, and how its
// figures are read from the peers' results. A scenario with no transport yet (fan-out, RPC)
// produces no case until a transport lists it.
import { mergedLatency } from '../transports/measure.js';
import type { Scenario } from '../transports/transport.js';

/** What the peers reported for one run, merged (see runner.ts). */
export type Result = Record<string, unknown>;

export interface Metric {
  key: string;
  label: string;
  unit: string;
  /** Which way is better: ratios to the baseline are "times better" either way. */
  better: 'higher' | 'lower';
  read(r: Result): number | undefined;
}

export interface ScenarioSpec {
  name: Scenario;
  title: string;
  sizes: number[];
  quickSizes: number[];
  /** Processes in a two-sided case: the listener, then `peers - 1` connecting peers. */
  peers: number;
  /**
   * Fan-out: the N of 1 → N, one case per count (their processes are N + 1, not `peers`).
   * Sizes above `allCountsUpTo` run at the first count only, unless both `--size` and
   * `--subscribers` name them: every further size at 10 and 30 subscribers adds minutes to
   * a full run (thirty-odd processes start for each run), and 1 MiB to 30 subscribers is
   * 30 MiB a message on two cores.
   */
  subscribers?: { counts: number[]; quick: number[]; allCountsUpTo: number };
  /** Calls in flight; one case per value. */
  concurrency: number[];
  seconds: { full: number; quick: number };
  warmupSeconds: { full: number; quick: number };
  /** In a quick run, only these transports (the rest would not fit in a minute). */
  quickTransports?: string[];
  /** The first metric is the headline (chart, progress line). */
  metrics: Metric[];
  /** What CPU time is divided by for "µs per message": messages, round trips, requests. */
  perMessage(r: Result): number | undefined;
  /**
   * Throughput scenarios: the sides (as they name themselves in `cpu.<side>`) that receive
   * the messages counted, whose GC share the tables show beside the throughput.
   */
  receivers?(side: string): boolean;
  /**
   * Turns what the peers of one run reported into what the result keeps, before anything
   * reads it (a fan-out's per-subscriber histograms into the percentiles of all deliveries).
   */
  reduce?(r: Result): void;
}

/** Every side but the one that only sends. */
const allBut =
  (sender: string) =>
  (side: string): boolean =>
    side !== sender;

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
const sum = (v: unknown): number | undefined =>
  v && typeof v === 'object'
    ? Object.values(v as Record<string, unknown>).reduce<number>((a, x) => a + (num(x) ?? 0), 0)
    : undefined;
const rate = (field: string) => (r: Result) => {
  const n = num(r[field]);
  const s = num(r.seconds);
  return n !== undefined && s ? n / s : undefined;
};

const throughput: Metric[] = [
  { key: 'msgs', label: 'msg/s', unit: 'msg/s', better: 'higher', read: rate('messages') },
  {
    key: 'mbs',
    label: 'MB/s',
    unit: 'MB/s',
    better: 'higher',
    read: (r) => {
      const b = rate('bytes')(r);
      return b === undefined ? undefined : b / 1e6;
    },
  },
];

const latency = (['p50', 'p99', 'p999'] as const).map(
  (key): Metric => ({
    key,
    label: key === 'p999' ? 'p99.9' : key,
    unit: 'µs',
    better: 'lower',
    read: (r) => num(r[key]),
  }),
);

export const scenarios: ScenarioSpec[] = [
  {
    name: 'oneway',
    title: 'one-way throughput',
    sizes: [64, 1024, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024],
    quickSizes: [64, 64 * 1024],
    peers: 2,
    concurrency: [1],
    seconds: { full: 1.5, quick: 0.2 },
    warmupSeconds: { full: 0.5, quick: 0.05 },
    metrics: throughput,
    perMessage: (r) => num(r.messages),
    // The receiver (a codec loop is its own receiver).
    receivers: allBut('sender'),
  },
  {
    name: 'pingpong',
    title: 'ping-pong round trip',
    sizes: [64, 1024],
    quickSizes: [64],
    peers: 2,
    concurrency: [1],
    seconds: { full: 1.5, quick: 0.2 },
    warmupSeconds: { full: 0.5, quick: 0.05 },
    metrics: latency,
    perMessage: (r) => num(r.count),
  },
  {
    name: 'fanout',
    title:
      'pub/sub fan-out (messages delivered per second, all subscribers; latency from publish to delivery)',
    sizes: [64, 1024, 64 * 1024, 1024 * 1024],
    quickSizes: [64],
    peers: 4,
    subscribers: { counts: [3, 10, 30], quick: [3], allCountsUpTo: 64 },
    concurrency: [1],
    seconds: { full: 1.5, quick: 0.2 },
    warmupSeconds: { full: 0.5, quick: 0.05 },
    metrics: [
      {
        key: 'delivered',
        label: 'msg/s',
        unit: 'msg/s',
        better: 'higher',
        // Each subscriber reports { delivered: { <its name>: n } }.
        read: (r) => {
          const n = sum(r.delivered);
          const s = num(r.seconds);
          return n !== undefined && s ? n / s : undefined;
        },
      },
      // Every delivery's latency, publish call to the subscriber's handler, all subscribers
      // together: the publisher runs flat out, so it includes the time spent queued.
      ...(['p50', 'p99'] as const).map(
        (key): Metric => ({
          key,
          label: key,
          unit: 'µs',
          better: 'lower',
          read: (r) => num((r.delivery as Record<string, unknown> | undefined)?.[key]),
        }),
      ),
    ],
    // Each subscriber reports { delivery: { <its name>: <encoded histogram> } }: kept are
    // the percentiles of all of them together (a p99 over every delivery).
    reduce: (r) => {
      if (r.delivery && typeof r.delivery === 'object') {
        r.delivery = mergedLatency(Object.values(r.delivery as Record<string, string>));
      }
    },
    perMessage: (r) => sum(r.delivered),
    // The subscribers.
    receivers: allBut('publisher'),
  },
  {
    name: 'rpc',
    title: 'RPC requests per second',
    sizes: [64],
    quickSizes: [64],
    peers: 2,
    concurrency: [1, 64],
    seconds: { full: 1.5, quick: 0.2 },
    warmupSeconds: { full: 0.5, quick: 0.05 },
    metrics: [
      { key: 'rps', label: 'req/s', unit: 'req/s', better: 'higher', read: rate('requests') },
      // Each request's latency, from the call to its reply (at concurrency 64, queueing included).
      ...latency.slice(0, 2),
    ],
    perMessage: (r) => num(r.requests),
    // Both sides receive: the server requests, the client replies.
    receivers: () => true,
  },
  {
    name: 'echo',
    title: 'echo throughput (frames returned per second), VirtioUser → VhostUserBackend',
    sizes: [64, 1024],
    quickSizes: [64],
    peers: 2,
    concurrency: [1],
    seconds: { full: 1.5, quick: 0.2 },
    warmupSeconds: { full: 0.5, quick: 0.05 },
    metrics: throughput,
    perMessage: (r) => num(r.messages),
    // Both sides receive: the server frames, the client their echoes.
    receivers: () => true,
  },
  {
    name: 'idle',
    title: 'idle, connection open, nothing moving (CPU % of one core, both sides)',
    sizes: [0],
    quickSizes: [0],
    peers: 2,
    concurrency: [1],
    seconds: { full: 2, quick: 0.3 },
    warmupSeconds: { full: 0, quick: 0 },
    quickTransports: [
      'net',
      'vring-event',
      'vring-adaptive',
      'channel-adaptive',
      'bus-adaptive',
      'bus-standalone-adaptive',
    ],
    metrics: [{ key: 'cpu', label: 'CPU', unit: '%', better: 'lower', read: (r) => sum(r.idle) }],
    perMessage: () => undefined,
  },
];

export function scenario(name: Scenario): ScenarioSpec {
  const spec = scenarios.find((s) => s.name === name);
  if (!spec) throw new Error(`unknown scenario ${name}`);
  return spec;
}
