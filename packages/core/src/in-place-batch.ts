import { VringError } from './errors.js';

/** Sizing of an {@link InPlaceBatch}. @public */
export interface InPlaceBatchOptions {
  /** Bytes for the frames that are copied (default 256 KiB; at least the port's `maxMessage`). */
  scratchBytes?: number;
  /** Frames per batch (default 1024). */
  frames?: number;
}

/**
 * Frames taken by {@link FrameLending.tryReceiveInPlace}: each lies either in shared memory,
 * where the peer wrote it (a large frame that was contiguous there), or in this batch's
 * scratch buffer (a small frame, or one that was not contiguous). Frame `i` is
 * `dataOf(i)[startOf(i), endOf(i))`.
 *
 * Frames in shared memory are *held*: the peer cannot reuse that memory until they are
 * released ({@link FrameLending.release}), so read them and release them promptly. A
 * misbehaving peer can still write to memory it sent, so decode each frame once, and never
 * trust two reads of the same bytes to agree.
 *
 * @public
 */
export class InPlaceBatch {
  /** Where the copied frames are. */
  readonly scratch: Buffer;
  /** Per frame three numbers: the area (-1: scratch), the byte offset, the length. */
  readonly locations: Float64Array;
  /** The areas frames may lie in (set by the port that fills the batch). */
  areas: readonly Buffer[] = [];
  #count = 0;
  #held = 0;

  constructor(options: InPlaceBatchOptions = {}) {
    const bytes = options.scratchBytes ?? 256 * 1024;
    const frames = options.frames ?? 1024;
    if (!Number.isSafeInteger(bytes) || bytes < 0 || !Number.isSafeInteger(frames) || frames < 1) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'batch sizes must be positive integers');
    }
    this.scratch = Buffer.allocUnsafe(bytes);
    this.locations = new Float64Array(3 * frames);
  }

  /** Frames in the batch. */
  get count(): number {
    return this.#count;
  }

  /** Of those, the frames that lie in shared memory and must be released. */
  get held(): number {
    return this.#held;
  }

  /** The buffer frame `i` lies in. */
  dataOf(i: number): Buffer {
    const area = this.locations[3 * i]!;
    return area < 0 ? this.scratch : this.areas[area]!;
  }

  /** Where frame `i` starts in {@link InPlaceBatch.dataOf}(i). */
  startOf(i: number): number {
    return this.locations[3 * i + 1]!;
  }

  /** Where frame `i` ends (exclusive) in {@link InPlaceBatch.dataOf}(i). */
  endOf(i: number): number {
    return this.locations[3 * i + 1]! + this.locations[3 * i + 2]!;
  }

  /** @internal The port filled `count` frames. */
  filled(count: number, areas: readonly Buffer[]): void {
    this.#count = count;
    this.areas = areas;
    let held = 0;
    const locations = this.locations;
    for (let i = 0; i < count; i++) if (locations[3 * i]! >= 0) held++;
    this.#held = held;
  }
}
