// The case table: every (scenario, size, concurrency, transport) the run will measure, in
// the order the tables print them.
import type { Scenario, Transport } from '../transports/transport.js';
import type { Options } from './options.js';
import { type ScenarioSpec, scenarios } from './scenarios.js';

export interface Case {
  /** "oneway 64 B vring-event": what --only matches and the progress line shows. */
  name: string;
  scenario: Scenario;
  size: number;
  concurrency: number;
  /** Fan-out: the N of 1 → N (`peers` is N + 1); 0 in other scenarios. */
  subscribers: number;
  transport: string;
  label: string;
  payload: Transport['payload'];
  layout: Transport['layout'];
  /** Processes of a two-sided case (listener included). */
  peers: number;
  /** The transport this case's ratios are taken against (same payload, same run). */
  baseline: string | undefined;
}

export function sizeLabel(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / 1024 / 1024} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

/** Raw Buffers are compared with raw `net`, msgpack values with `net` carrying msgpack. */
export function baselineOf(t: Pick<Transport, 'payload'>): string {
  return t.payload === 'raw' ? 'net' : 'net-msgpack';
}

function caseName(
  spec: ScenarioSpec,
  size: number,
  concurrency: number,
  subscribers: number,
  transport: string,
) {
  const parts: string[] = [spec.name];
  if (spec.name !== 'idle') parts.push(sizeLabel(size));
  if (spec.concurrency.length > 1) parts.push(`c${concurrency}`);
  if (spec.subscribers) parts.push(`n${subscribers}`);
  parts.push(transport);
  return parts.join(' ');
}

/** The fan-out's subscriber counts at `size` (0 alone for the other scenarios). */
function subscriberCounts(spec: ScenarioSpec, size: number, options: Options): number[] {
  const s = spec.subscribers;
  if (!s) return [0];
  const counts = options.subscribers ?? (options.quick ? s.quick : s.counts);
  // Large messages to many subscribers only when asked for by size and count both.
  if (size <= s.allCountsUpTo || (options.sizes && options.subscribers)) return counts;
  return counts.slice(0, 1);
}

/** Whether two cases differ only in their transport (a case and its baseline). */
export function sameDimensions(a: Case, b: Case): boolean {
  return (
    a.scenario === b.scenario &&
    a.size === b.size &&
    a.concurrency === b.concurrency &&
    a.subscribers === b.subscribers
  );
}

export function buildCases(transports: readonly Transport[], options: Options): Case[] {
  const byName = new Map(transports.map((t) => [t.name, t]));
  const all: Case[] = [];
  for (const spec of scenarios) {
    if (options.scenarios && !options.scenarios.includes(spec.name)) continue;
    // --size picks among the scenario's own sizes (ping-pong has no 1 MiB case, say).
    const sizes =
      spec.name === 'idle'
        ? [0]
        : options.sizes
          ? spec.sizes.filter((size) => options.sizes!.includes(size))
          : options.quick
            ? spec.quickSizes
            : spec.sizes;
    const combinations = sizes.flatMap((size) =>
      spec.concurrency.flatMap((concurrency) =>
        subscriberCounts(spec, size, options).map((subscribers) => ({
          size,
          concurrency,
          subscribers,
        })),
      ),
    );
    for (const { size, concurrency, subscribers } of combinations) {
      for (const t of transports) {
        if (!t.scenarios.includes(spec.name)) continue;
        if (options.quick && spec.quickTransports && !spec.quickTransports.includes(t.name)) {
          continue;
        }
        const baseline = byName.get(baselineOf(t))?.scenarios.includes(spec.name)
          ? baselineOf(t)
          : undefined;
        all.push({
          name: caseName(spec, size, concurrency, subscribers, t.name),
          scenario: spec.name,
          size,
          concurrency,
          subscribers,
          transport: t.name,
          label: t.label,
          payload: t.payload,
          layout: t.layout,
          peers: spec.subscribers ? subscribers + 1 : spec.peers,
          baseline: baseline === t.name ? undefined : baseline,
        });
      }
    }
  }
  const wanted = (c: Case) =>
    (!options.transports || options.transports.includes(c.transport)) &&
    c.name.includes(options.only);
  // A selected case keeps its baseline, so its ratio is still taken in the same run.
  const keep = new Set<Case>();
  for (const c of all.filter(wanted)) {
    keep.add(c);
    const base = all.find((b) => b.transport === c.baseline && sameDimensions(b, c));
    if (base) keep.add(base);
  }
  return all.filter((c) => keep.has(c));
}
