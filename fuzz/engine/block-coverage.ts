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

/** The blocks and features seen by one input. */
export interface InputCoverage {
  /** `url:start:end` of every block that ran. */
  readonly blocks: readonly string[];
  /** `url:start:end:bucket` of every block that ran. */
  readonly features: readonly string[];
}

/** Block coverage of the scripts whose URL `covers` accepts, reset by every {@link take}. */
export class BlockCoverage {
  readonly #session = new Session();
  readonly #covers: (url: string) => boolean;

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
      for (const fn of script.functions) {
        for (const r of fn.ranges) {
          if (r.count === 0) continue;
          const block = `${script.url}:${r.startOffset}:${r.endOffset}`;
          blocks.push(block);
          features.push(`${block}:${bucket(r.count)}`);
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
