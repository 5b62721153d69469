/**
 * V8's block coverage of the code under test, read after each input as fuzzing feedback: the
 * same signal libFuzzer takes from its compiler instrumentation (which blocks ran, and about
 * how often), taken here from V8's own counters through the inspector, so no source has to be
 * rewritten and no native addon is needed.
 */
import { Session } from 'node:inspector';

interface CoverageRange {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface ScriptCoverage {
  url: string;
  functions: { ranges: CoverageRange[] }[];
}

/** libFuzzer's hit-count buckets: a block run 1, 2, 3, 4-7, ... times is a different feature. */
function bucket(count: number): number {
  if (count < 4) return count;
  if (count < 8) return 4;
  if (count < 16) return 5;
  if (count < 32) return 6;
  if (count < 128) return 7;
  return 8;
}

/** The count of the innermost range of `reported` that holds `range` (0 if none does). */
function innermostCount(reported: readonly CoverageRange[], range: CoverageRange): number {
  let count = 0;
  let length = Number.POSITIVE_INFINITY;
  for (const r of reported) {
    const holds = r.startOffset <= range.startOffset && range.endOffset <= r.endOffset;
    if (holds && r.endOffset - r.startOffset < length) {
      length = r.endOffset - r.startOffset;
      count = r.count;
    }
  }
  return count;
}

/** The blocks and features seen by one input. */
export interface InputCoverage {
  /** `url:start:end` of every block that ran. */
  readonly blocks: readonly string[];
  /** `url:start:end:bucket` of every block that ran. */
  readonly features: readonly string[];
}

/**
 * Block coverage of the scripts whose URL `covers` accepts, reset by every {@link take}.
 *
 * V8 reports a block only where its count differs from the block around it: a branch taken as
 * often as its function ran is merged into the function's range. So a branch taken for the
 * first time by a parser called once per input would never show up as such. Every range V8
 * ever reported (a branch shows up with count 0 while it is not taken) is remembered, and its
 * count read each time as that of the innermost range reported around it.
 */
export class BlockCoverage {
  readonly #session = new Session();
  readonly #covers: (url: string) => boolean;
  /** Ranges ever reported, by script URL and function start: `start:end` keys. */
  readonly #known = new Map<string, Map<number, Map<string, CoverageRange>>>();

  constructor(covers: (url: string) => boolean) {
    this.#covers = covers;
    this.#session.connect();
    this.#post('Profiler.enable');
    // callCount + detailed: per-block counts, reset each time they are taken.
    this.#post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  /** What ran since the previous call. */
  take(): InputCoverage {
    const { result } = this.#post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    const blocks: string[] = [];
    const features: string[] = [];
    for (const script of result) {
      if (!this.#covers(script.url)) continue;
      let functions = this.#known.get(script.url);
      if (!functions) {
        functions = new Map();
        this.#known.set(script.url, functions);
      }
      for (const fn of script.functions) {
        const reported = fn.ranges;
        const start = reported[0]?.startOffset ?? 0;
        let known = functions.get(start);
        if (!known) {
          known = new Map();
          functions.set(start, known);
        }
        for (const r of reported) known.set(`${r.startOffset}:${r.endOffset}`, r);
        for (const [key, range] of known) {
          const count = innermostCount(reported, range);
          if (count === 0) continue;
          const block = `${script.url}:${key}`;
          blocks.push(block);
          features.push(`${block}:${bucket(count)}`);
        }
      }
    }
    return { blocks, features };
  }

  /** Stops collecting and disconnects from the inspector. */
  close(): void {
    this.#post('Profiler.stopPreciseCoverage');
    this.#session.disconnect();
  }

  // The in-process inspector answers synchronously: the callback has run when post returns.
  #post(method: string, params?: object): unknown {
    let answer: unknown;
    let failure: Error | null = null;
    this.#session.post(method, params ?? {}, (error, result) => {
      failure = error;
      answer = result;
    });
    if (failure) throw failure;
    return answer;
  }
}
