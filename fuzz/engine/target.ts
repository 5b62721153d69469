/** What a JavaScript fuzz target (fuzz/targets/<name>.ts) exports as `target`. */
export interface FuzzTarget {
  /**
   * Feeds one input to the code under test. Returns normally for any input that code handles
   * as documented (including a typed rejection); throws only on a finding: a crash, an error
   * other than the documented ones, or a broken invariant.
   */
  run(data: Uint8Array): void;
  /** Substrings of the module URLs whose block coverage guides the search. */
  readonly covers: readonly string[];
  /** Longest input the mutator builds. */
  readonly maxLength: number;
  /** Tokens the mutator splices in: magic numbers, request ids, headers. */
  readonly dictionary?: readonly Uint8Array[];
}

/** A finding: thrown by a target when the code under test broke a promise it makes. */
export class InvariantViolation extends Error {
  override readonly name = 'InvariantViolation';
}

/** Throws an {@link InvariantViolation} with `message` unless `condition` holds. */
export function expect(condition: boolean, message: string): asserts condition {
  if (!condition) throw new InvariantViolation(message);
}
