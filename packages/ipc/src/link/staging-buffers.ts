/**
 * Buffers a send queue encodes large values into while they wait for room in the ring, used
 * again once the value has gone: a value that has to wait is encoded when it is sent (the
 * sender may change it after), and a fresh buffer per large value costs page faults and
 * garbage collection on every message. At most `max` exist; past that a value is encoded into
 * a buffer of its own as before. @internal
 */
export class StagingBuffers {
  readonly #bytes: number;
  readonly #max: number;
  readonly #free: Buffer[] = [];
  readonly #ours = new WeakSet<ArrayBufferLike>();
  #made = 0;

  /** Buffers of `bytes` bytes (the largest frame), at most `max` of them. */
  constructor(bytes: number, max: number) {
    this.#bytes = bytes;
    this.#max = max;
  }

  /** A free buffer, or undefined when `max` are in use. */
  take(): Buffer | undefined {
    const free = this.#free.pop();
    if (free) return free;
    if (this.#made === this.#max) return undefined;
    this.#made++;
    const buffer = Buffer.allocUnsafeSlow(this.#bytes);
    this.#ours.add(buffer.buffer);
    return buffer;
  }

  /** Takes back the buffer under `body` if it is one of ours (`body` is no longer read). */
  give(body: Uint8Array): void {
    const buffer = body.buffer;
    if (this.#ours.has(buffer)) this.#free.push(Buffer.from(buffer, 0, this.#bytes));
  }
}
