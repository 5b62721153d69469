import { Packr, Unpackr } from 'msgpackr';

/**
 * MessagePack as the wire format specifies it: plain msgpack (no record extension), so a C
 * or Rust peer reads it with any msgpack library. A decoded value never aliases the ring
 * buffers the frames came in.
 */
export class MessageCodec {
  readonly #packr = new Packr({ useRecords: false });
  readonly #copying = new Unpackr({ useRecords: false, copyBuffers: true });
  readonly #viewing = new Unpackr({ useRecords: false });

  /**
   * Encodes `value`. The result stays valid: msgpackr packs each value after the previous one
   * in its buffer and starts a fresh buffer when that one is full, never overwriting a result
   * (pack.js, `this.pack`), so a queued message needs no copy.
   */
  encode(value: unknown): Buffer {
    return this.#packr.pack(value);
  }

  /**
   * Decodes one value. A body that is a view of ring memory (`owned` false) is decoded with
   * binary values copied out, so nothing aliases the ring; a reassembled body is the
   * message's own buffer, so its binary values may stay views of it (no second copy of a
   * large payload).
   */
  decode(body: Uint8Array, owned = false): unknown {
    return (owned ? this.#viewing : this.#copying).unpack(body);
  }
}
