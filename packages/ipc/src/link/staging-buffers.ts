/**
 * Buffers of the largest frame's size, used again once done with: a fresh buffer per large
 * message costs page faults and garbage collection on every message. A send queue encodes
 * large values that wait for room in the ring into them (a value that has to wait is encoded
 * when it is sent: the sender may change it after), and a receiver in `views` mode copies
 * into them a large frame that could not be read in place (see ValueViews). At most `max`
 * exist; past that the user makes a buffer of its own as before. @internal
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

  /** Whether `body` lies in one of these buffers. */
  holds(body: Uint8Array): boolean {
    return this.#ours.has(body.buffer);
  }

  /** Takes back the buffer under `body` if it is one of ours (`body` is no longer read). */
  give(body: Uint8Array): void {
    const buffer = body.buffer;
    if (this.#ours.has(buffer)) this.#free.push(Buffer.from(buffer, 0, this.#bytes));
  }
}
