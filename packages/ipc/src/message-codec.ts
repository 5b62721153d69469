import { Packr, Unpackr } from 'msgpackr';

/**
 * MessagePack as the wire format specifies it: plain msgpack (no record extension), so a C
 * or Rust peer reads it with any msgpack library. Binary values are copied on decode, so a
 * decoded value never aliases the ring buffers the frames came in.
 */
export class MessageCodec {
  readonly #packr = new Packr({ useRecords: false });
  readonly #unpackr = new Unpackr({ useRecords: false, copyBuffers: true });

  /** Encodes `value`. The result is valid until the next call (msgpackr reuses its buffer). */
  encode(value: unknown): Buffer {
    return this.#packr.pack(value);
  }

  /** Decodes one value; the result shares no memory with `body`. */
  decode(body: Uint8Array): unknown {
    return this.#unpackr.unpack(body);
  }
}
