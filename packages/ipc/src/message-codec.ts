import { Packr, Unpackr } from 'msgpackr';

/** Bodies shorter than this are decoded from a copy at offset 0 (see {@link MessageCodec.decode}). */
const SMALL_BODY = 140;

/**
 * MessagePack as the wire format specifies it: plain msgpack (no record extension), so a C
 * or Rust peer reads it with any msgpack library. A decoded value never aliases the ring
 * buffers the frames came in.
 */
export class MessageCodec {
  readonly #packr = new Packr({ useRecords: false });
  readonly #copying = new Unpackr({ useRecords: false, copyBuffers: true });
  readonly #viewing = new Unpackr({ useRecords: false });
  readonly #range = { start: 0, end: 0 };
  readonly #small = Buffer.allocUnsafe(SMALL_BODY);

  /**
   * Encodes `value`. The result stays valid: msgpackr packs each value after the previous one
   * in its buffer and starts a fresh buffer when that one is full, never overwriting a result
   * (pack.js, `this.pack`), so a queued message needs no copy.
   */
  encode(value: unknown): Buffer {
    return this.#packr.pack(value);
  }

  /**
   * Decodes the value in `data[start, end)`. A body in ring memory (`owned` false) is decoded
   * with binary values copied out, so nothing aliases the ring; a reassembled body is the
   * message's own buffer, so its binary values may stay views of it (no second copy of a
   * large payload). Reading in place spares a view per message, and msgpackr caches its
   * DataView on `data`: a batch read again and again is set up once, not once per message.
   */
  decode(data: Uint8Array, start = 0, end = data.byteLength, owned = false): unknown {
    const range = this.#range;
    if (!owned && end - start < SMALL_BODY) {
      // msgpackr reads the strings (map keys included) of a source that ends before byte
      // 140 in JavaScript, with its key cache, and any other through a native extraction
      // call: a small body read in place in a large batch would take the slow path.
      this.#small.set(new Uint8Array(data.buffer, data.byteOffset + start, end - start));
      range.start = 0;
      range.end = end - start;
      return this.#copying.unpack(this.#small, range);
    }
    range.start = start;
    range.end = end;
    return (owned ? this.#viewing : this.#copying).unpack(data, range);
  }
}
