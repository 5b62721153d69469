import { VringError } from './errors.js';

/** Sizing of a {@link MessageBatch}. @public */
export interface MessageBatchOptions {
  /** Capacity in bytes (default 256 KiB). For receiving it must be at least the queue's `maxMessage`. */
  bytes?: number;
  /** Capacity in messages (default 1024). */
  messages?: number;
}

function capacity(value: number | undefined, fallback: number, name: string, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `${name} must be an integer in [0, ${max}]`);
  }
  return value;
}

/**
 * Many messages packed back to back in one buffer, with their lengths alongside: the unit
 * the data path moves in one call into native code. Reuse one batch per loop to move
 * messages with no allocation per message.
 *
 * Views returned by iteration alias the batch: they are valid until the batch is filled
 * again. Copy (`Buffer.from(view)`) what must outlive that.
 *
 * @public
 */
export class MessageBatch implements Iterable<Buffer> {
  /** Packed message bytes. */
  readonly data: Buffer;
  /** `lengths[i]` is the byte length of message `i`. */
  readonly lengths: Uint32Array;
  #count = 0;
  #bytes = 0;

  constructor(options: MessageBatchOptions = {}) {
    this.data = Buffer.allocUnsafe(capacity(options.bytes, 256 * 1024, 'bytes', 2 ** 31));
    this.lengths = new Uint32Array(capacity(options.messages, 1024, 'messages', 2 ** 24));
  }

  /** Messages in the batch. */
  get count(): number {
    return this.#count;
  }

  /** Bytes used by the messages. */
  get byteLength(): number {
    return this.#bytes;
  }

  /** Appends a copy of `message`; false (and nothing changes) when it does not fit. */
  push(message: Uint8Array): boolean {
    if (
      this.#count === this.lengths.length ||
      message.byteLength > this.data.length - this.#bytes
    ) {
      return false;
    }
    this.data.set(message, this.#bytes);
    this.lengths[this.#count++] = message.byteLength;
    this.#bytes += message.byteLength;
    return true;
  }

  /**
   * Appends a message of `length` bytes to be written in place (encode straight into the
   * batch, no intermediate buffer). Returns the view to fill, or `undefined` (and nothing
   * changes) when it does not fit.
   */
  append(length: number): Buffer | undefined {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'length must be a non-negative integer');
    }
    if (this.#count === this.lengths.length || length > this.data.length - this.#bytes) {
      return undefined;
    }
    const view = this.data.subarray(this.#bytes, this.#bytes + length);
    this.lengths[this.#count++] = length;
    this.#bytes += length;
    return view;
  }

  /**
   * Like {@link MessageBatch.append}, but returns where the message starts in `data` (or -1
   * when it does not fit) instead of a view: no Buffer object per message on hot paths that
   * write many small ones.
   */
  appendAt(length: number): number {
    if (this.#count === this.lengths.length || !(length <= this.data.length - this.#bytes)) {
      return -1;
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'length must be a non-negative integer');
    }
    const at = this.#bytes;
    this.lengths[this.#count++] = length;
    this.#bytes += length;
    return at;
  }

  /**
   * Grows the last message by `length` bytes, to be written in place after its current end
   * (a frame that takes one more record). Returns where they start in `data`, or -1 (and
   * nothing changes) when the batch is empty or they do not fit.
   */
  extendLast(length: number): number {
    if (this.#count === 0 || !(length <= this.data.length - this.#bytes)) return -1;
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'length must be a non-negative integer');
    }
    const at = this.#bytes;
    this.lengths[this.#count - 1]! += length;
    this.#bytes += length;
    return at;
  }

  /** Empties the batch (keeps its memory). */
  clear(): void {
    this.#count = 0;
    this.#bytes = 0;
  }

  /**
   * Records that `count` messages were written into `data` and `lengths` by a receive.
   * @internal
   */
  filled(count: number): void {
    let bytes = 0;
    for (let i = 0; i < count; i++) bytes += this.lengths[i]!;
    this.#count = count;
    this.#bytes = bytes;
  }

  /** Views of the messages, in order. */
  *[Symbol.iterator](): IterableIterator<Buffer> {
    let offset = 0;
    for (let i = 0; i < this.#count; i++) {
      const length = this.lengths[i]!;
      yield this.data.subarray(offset, offset + length);
      offset += length;
    }
  }
}
