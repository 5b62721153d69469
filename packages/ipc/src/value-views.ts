import type { Link } from './link/link.js';
import { StagingBuffers } from './link/staging-buffers.js';
import type { MessageCodec } from './message-codec.js';

/**
 * Frames that could not be read in place, held in buffers of ours at once: as many as a ring
 * of four frames has in flight.
 */
const SPARE_FRAMES = 4;

/**
 * The `views` mode of a receiver (Channel, BusClient): the binary values of a large message
 * read in place are views of the shared memory it lies in, not copies, and that memory is
 * held (the sender's window that much smaller) until the value is released. A large frame
 * that could not be read in place (it wrapped around the end of the ring) is copied into a
 * spare buffer of ours, held the same way, so that it costs no allocation either. Small
 * messages decode as they do without views. @internal
 */
export class ValueViews {
  readonly #link: Link;
  readonly #codec: MessageCodec;
  /** Messages from this size on are large: read in place by the port, so handed out as views. */
  readonly #inPlaceMin: number;
  /** What gives back the memory each value views, by the value. */
  readonly #leases = new WeakMap<object, () => void>();
  /** Where a large frame that was not read in place is copied (made on first use). */
  #spares: StagingBuffers | undefined;

  constructor(link: Link, codec: MessageCodec, inPlaceMin: number | undefined) {
    this.#link = link;
    this.#codec = codec;
    this.#inPlaceMin = inPlaceMin ?? Number.POSITIVE_INFINITY;
  }

  /**
   * Decodes the body `data[start, end)` during the link's message callback. When it is large
   * and lies in shared memory, its binary values are views of it (or of a spare buffer of
   * ours it was copied into, when it did not lie contiguously), held until {@link ValueViews.release}
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
    if (owned || end - start < this.#inPlaceMin) {
      return this.#codec.decode(data, start, end, owned);
    }
    let source = data;
    let from = start;
    let to = end;
    let lease = this.#link.retainFrame();
    if (!lease) {
      // Not in place (it wrapped around the end of the ring, and the reader copied it out):
      // copied into a buffer of ours, used again once released, where a buffer of its own
      // would cost an allocation, page faults and garbage collection per message. A spare is
      // as large as the largest frame: only a frame of about that size takes one.
      const largest = this.#link.transport.maxMessage;
      const spares =
        end - start <= largest && 4 * (end - start) >= largest
          ? this.#sparesOf(largest)
          : undefined;
      const spare = spares?.take();
      if (!spares || !spare) return this.#codec.decode(data, start, end, false);
      spare.set(new Uint8Array(data.buffer, data.byteOffset + start, end - start));
      source = spare;
      from = 0;
      to = end - start;
      lease = () => spares.give(spare);
    }
    try {
      // Decoded as a buffer of its own would be: binary values stay views of it.
      const decoded = this.#codec.decode(source, from, to, true);
      const held = holder(decoded);
      if (typeof held === 'object' && held !== null) this.#leases.set(held, lease);
      else lease();
      return decoded;
    } catch (error) {
      lease();
      throw error;
    }
  }

  #sparesOf(largest: number): StagingBuffers {
    this.#spares ??= new StagingBuffers(largest, SPARE_FRAMES);
    return this.#spares;
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
