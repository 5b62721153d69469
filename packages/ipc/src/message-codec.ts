import { Packr, Unpackr } from 'msgpackr';

/**
 * MessagePack as the wire format specifies it: plain msgpack (no record extension), so a C
 * or Rust peer reads it with any msgpack library. Binary values are copied on decode, so a
 * decoded value never aliases the ring buffers the frames came in.
 */
export class MessageCodec {
  readonly #packr = new Packr({ useRecords: false });
  readonly #unpackr = new Unpackr({ useRecords: false, copyBuffers: true });

  /**
   * Encodes `value`. The result stays valid: msgpackr packs each value after the previous one
   * in its buffer and starts a fresh buffer when that one is full, never overwriting a result
   * (pack.js, `this.pack`), so a queued message needs no copy.
   */
  encode(value: unknown): Buffer {
    return this.#packr.pack(value);
  }

  /** Decodes one value; the result shares no memory with `body`. */
  decode(body: Uint8Array): unknown {
    return this.#unpackr.unpack(body);
  }
}
