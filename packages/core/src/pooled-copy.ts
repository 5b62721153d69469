import { native } from './native.js';

const copyToPooled = native.copyToPooled as (
  source: Uint8Array,
  start: number,
  length: number,
) => Buffer;
const trimCopyPool = native.trimCopyPool as () => void;

/** A pool nobody took from for this long gives its memory back to the system. */
const IDLE_TRIM_MS = 2000;

/**
 * Copied bytes after which a reader that has kept the event loop busy should give it a turn
 * (see {@link pooledCopyWantsTurn}).
 */
const TURN_BYTES = 16 * 1024 * 1024;

let copiesSinceCheck = 0;
let trimTimer: NodeJS.Timeout | undefined;
/** Bytes copied since the event loop last reached its check phase (where blocks come back). */
let copiedSinceTurn = 0;

const turnCame = (): void => {
  copiedSinceTurn = 0;
};

const checkIdle = (): void => {
  if (copiesSinceCheck > 0) {
    copiesSinceCheck = 0;
    trimTimer!.refresh();
    return;
  }
  trimTimer = undefined;
  trimCopyPool();
};

/**
 * A copy of `source[start, end)` in a Buffer of its own, made in one native call into memory
 * that is used again once the Buffer is garbage-collected. A receiver copies each large
 * message out of shared memory this way: a fresh Buffer of a megabyte faults in its pages
 * one by one, which costs many times the copy itself, on every message. The Buffer is
 * ordinary to its user (it may be kept as long as wanted); its memory returns to the pool
 * only once it, and every view of it, is unreachable. Memory the pool holds goes back to
 * the system after a couple of seconds without copies.
 * @internal
 */
export function pooledCopy(source: Uint8Array, start: number, end: number): Buffer {
  const copy = copyToPooled(source, start, end - start);
  copiesSinceCheck++;
  if (copiedSinceTurn === 0) setImmediate(turnCame);
  copiedSinceTurn += end - start;
  if (!trimTimer) {
    trimTimer = setTimeout(checkIdle, IDLE_TRIM_MS);
    trimTimer.unref();
  }
  return copy;
}

/**
 * Whether the event loop should have a turn before more is copied: the blocks of collected
 * copies go back to the pool in the loop's check phase (setImmediate's), which a reader that
 * always finds frames waiting never lets it reach; its copies would then all go into fresh
 * memory. True after 16 MiB copied without a turn.
 * @internal
 */
export function pooledCopyWantsTurn(): boolean {
  return copiedSinceTurn >= TURN_BYTES;
}
