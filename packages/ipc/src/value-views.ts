import type { Link } from './link/link.js';
import type { MessageCodec } from './message-codec.js';

/**
 * The `views` mode of a receiver (Channel, BusClient): the binary values of a large message
 * read in place are views of the shared memory it lies in, not copies, and that memory is
 * held (the sender's window that much smaller) until the value is released. Small messages,
 * and messages that were not read in place, decode as they do without views. @internal
 */
export class ValueViews {
  readonly #link: Link;
  readonly #codec: MessageCodec;
  /** Messages from this size on are large: read in place by the port, so handed out as views. */
  readonly #inPlaceMin: number;
  /** What gives back the memory each value views, by the value. */
  readonly #leases = new WeakMap<object, () => void>();

  constructor(link: Link, codec: MessageCodec, inPlaceMin: number | undefined) {
    this.#link = link;
    this.#codec = codec;
    this.#inPlaceMin = inPlaceMin ?? Number.POSITIVE_INFINITY;
  }

  /**
   * Decodes the body `data[start, end)` during the link's message callback. When it lies in
   * shared memory, its binary values are views of it, held until {@link ValueViews.release}
   * is called with what `holder` picks out of the decoded body (the body itself by default:
   * an envelope names the value inside it that the application gets). A holder that is no
   * object holds no view (the decoder copied every binary value out of the envelope's
   * other parts): the memory goes back at once. A holder that throws (a malformed
   * envelope) gives the memory back too.
   */
  decode(
    data: Uint8Array,
    start: number,
    end: number,
    owned: boolean,
    holder: (decoded: unknown) => unknown = itself,
  ): unknown {
    // Only a large message is handed out as views: small ones share their frame with many
    // others, and are copies (nobody releases them).
    const lease = !owned && end - start >= this.#inPlaceMin ? this.#link.retainFrame() : undefined;
    if (!lease) return this.#codec.decode(data, start, end, owned);
    try {
      // Decoded as a buffer of its own would be: binary values stay views of it.
      const decoded = this.#codec.decode(data, start, end, true);
      const held = holder(decoded);
      if (typeof held === 'object' && held !== null) this.#leases.set(held, lease);
      else lease();
      return decoded;
    } catch (error) {
      lease();
      throw error;
    }
  }

  /**
   * Gives back the shared memory `value` is a view of. Does nothing for a value that holds
   * none (a small message, one already released, anything else).
   */
  release(value: unknown): void {
    if (typeof value !== 'object' || value === null) return;
    const lease = this.#leases.get(value);
    if (!lease) return;
    this.#leases.delete(value);
    lease();
  }
}

const itself = (decoded: unknown): unknown => decoded;
