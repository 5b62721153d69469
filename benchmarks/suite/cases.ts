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

function caseName(spec: ScenarioSpec, size: number, concurrency: number, transport: string) {
  const parts: string[] = [spec.name];
  if (spec.name !== 'idle') parts.push(sizeLabel(size));
  if (spec.concurrency.length > 1) parts.push(`c${concurrency}`);
  parts.push(transport);
  return parts.join(' ');
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
    for (const size of sizes) {
      for (const concurrency of spec.concurrency) {
        for (const t of transports) {
          if (!t.scenarios.includes(spec.name)) continue;
          if (options.quick && spec.quickTransports && !spec.quickTransports.includes(t.name)) {
            continue;
          }
          const baseline = byName.get(baselineOf(t))?.scenarios.includes(spec.name)
            ? baselineOf(t)
            : undefined;
          all.push({
            name: caseName(spec, size, concurrency, t.name),
            scenario: spec.name,
            size,
            concurrency,
            transport: t.name,
            label: t.label,
            payload: t.payload,
            layout: t.layout,
            peers: spec.peers,
            baseline: baseline === t.name ? undefined : baseline,
          });
        }
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
    const base = all.find(
      (b) =>
        b.transport === c.baseline &&
        b.scenario === c.scenario &&
        b.size === c.size &&
        b.concurrency === c.concurrency,
    );
    if (base) keep.add(base);
  }
  return all.filter((c) => keep.has(c));
}
