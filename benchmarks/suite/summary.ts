// From several runs of a case to the figures the tables and the chart show: the median of
// the runs with their spread (min–max), CPU per message per side, and ratios to the case's
// baseline from the same run.
import { type Case, sameDimensions } from './cases.js';
import { type Result, scenario } from './scenarios.js';

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface CaseResult {
  case: Case;
  runs: Result[];
  /** Set when the transport cannot run here, or a run failed. */
  unavailable?: string;
  error?: string;
  /** Metric key → median of the runs and their range. */
  figures: Record<string, Spread>;
  /** Side → CPU µs per message (or round trip), median and range. */
  cpuPerMessage: Record<string, Spread>;
  /**
   * Side → share of the measured stretch's wall time that side spent in GC pauses (0..1),
   * median and range: each peer's `gc.<side>.share`.
   */
  gcShare: Record<string, Spread>;
  /** Metric key → times better than the baseline (higher throughput or lower latency). */
  ratios: Record<string, number>;
}

function spread(values: number[]): Spread | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

export function summarize(c: Case, runs: Result[]): CaseResult {
  const spec = scenario(c.scenario);
  const figures: Record<string, Spread> = {};
  for (const metric of spec.metrics) {
    const s = spread(runs.map(metric.read).filter((v): v is number => v !== undefined));
    if (s) figures[metric.key] = s;
  }
  const cpuPerMessage: Record<string, Spread> = {};
  const sides = new Set(runs.flatMap((r) => Object.keys((r.cpu ?? {}) as object)));
  for (const side of sides) {
    const values = runs.flatMap((r) => {
      const micros = (r.cpu as Record<string, number> | undefined)?.[side];
      const n = spec.perMessage(r);
      return micros !== undefined && n ? [micros / n] : [];
    });
    const s = spread(values);
    if (s) cpuPerMessage[side] = s;
  }
  const gcShare: Record<string, Spread> = {};
  const gcSides = new Set(runs.flatMap((r) => Object.keys((r.gc ?? {}) as object)));
  for (const side of gcSides) {
    const s = spread(
      runs.flatMap((r) => {
        const share = (r.gc as Record<string, { share?: number }> | undefined)?.[side]?.share;
        return share === undefined ? [] : [share];
      }),
    );
    if (s) gcShare[side] = s;
  }
  return { case: c, runs, figures, cpuPerMessage, gcShare, ratios: {} };
}

/** Fills in every result's ratios to its baseline's medians. */
export function addRatios(results: CaseResult[]): void {
  for (const r of results) {
    const c = r.case;
    const base = results.find((b) => b.case.transport === c.baseline && sameDimensions(b.case, c));
    if (!base) continue;
    for (const metric of scenario(c.scenario).metrics) {
      const ours = r.figures[metric.key]?.median;
      const theirs = base.figures[metric.key]?.median;
      if (ours === undefined || theirs === undefined || ours <= 0 || theirs <= 0) continue;
      r.ratios[metric.key] = metric.better === 'higher' ? ours / theirs : theirs / ours;
    }
  }
}
