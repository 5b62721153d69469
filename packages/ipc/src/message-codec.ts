import { pooledCopy, VringError } from '@vring/core';
import { Packr, RESERVE_START_SPACE, REUSE_BUFFER_MODE, Unpackr } from 'msgpackr';

/** Bodies shorter than this are decoded from a copy at offset 0 (see {@link MessageCodec.decode}). */
const SMALL_BODY = 140;

/**
 * Bodies in ring memory from this size on are copied whole into a buffer of their own
 * before they are decoded (see {@link MessageCodec.decode}).
 */
const LARGE_BODY = 8 * 1024;

/**
 * msgpackr starts a new buffer (the size of the current one) rather than pack within this
 * many bytes of its end: {@link MessageCodec.encodeInto} never lets it, since the "current
 * buffer" would be a whole send batch.
 */
const PACKR_MIN_ROOM = 0x800 + 16;

/**
 * msgpackr's output buffer and position are shared by every Packr of the module (it keeps
 * them in module variables). After packing into a batch, the module is pointed here,
 * at the very end: the next pack of anyone starts a buffer of its own (of this size, 8 KiB
 * like msgpackr's first), so nobody else's result ever lands in a batch about to be reused,
 * and nobody's earlier result is overwritten (msgpackr never goes back to a buffer it left).
 */
const PARKED = Buffer.allocUnsafeSlow(8192);

/**
 * MessagePack as the wire format specifies it: plain msgpack (no record extension), so a C
 * or Rust peer reads it with any msgpack library. A decoded value never aliases the ring
 * buffers the frames came in (unless a receiver in `views` mode asks it to, by calling
 * {@link MessageCodec.decode} with `owned`).
 */
export class MessageCodec {
  readonly #packr = new Packr({ useRecords: false });
  readonly #copying = new Unpackr({ useRecords: false, copyBuffers: true });
  readonly #viewing = new Unpackr({ useRecords: false });
  readonly #range = { start: 0, end: 0 };
  readonly #small = Buffer.allocUnsafe(SMALL_BODY);

  /**
   * Encodes `value`. The result stays valid: msgpackr packs each value after the previous one
   * in its buffer and starts a fresh buffer when that one is full, never overwriting a result,
   * so a queued message needs no copy.
   */
  encode(value: unknown): Buffer {
    return this.#packr.pack(value);
  }

  /**
   * The encoding of the last value {@link MessageCodec.encodeInto} could not put in place: a
   * buffer of its own, which the caller may keep.
   */
  overflow: Buffer | undefined;

  /**
   * Encodes `value` straight into `data` at `at` (a send batch: no buffer of msgpackr's, no
   * view and no copy per message) and returns where it ends. Returns -1 when the encoding
   * would not fit before the end of `data`; it is then in {@link MessageCodec.overflow}.
   * Bytes of `data` past the returned end may have been written.
   */
  encodeInto(value: unknown, data: Buffer, at: number): number {
    const packr = this.#packr;
    if (data.length - at < PACKR_MIN_ROOM) {
      this.overflow = packr.pack(value);
      return -1;
    }
    packr.useBuffer(data);
    try {
      // msgpackr starts each pack at an 8-byte boundary; the reserved bytes make up the rest.
      const aligned = at & ~7;
      packr.position = aligned;
      const target = packr.pack(value, REUSE_BUFFER_MODE | RESERVE_START_SPACE | (at - aligned));
      // REUSE_BUFFER_MODE returns msgpackr's buffer with the packed range on it, no view.
      const range = target as unknown as Buffer & { start: number; end: number };
      if (target === data && range.start === aligned) return range.end;
      // It outgrew `data` and moved to a buffer of its own, reserved bytes included.
      this.overflow = target.subarray(range.start + (at - aligned), range.end);
      return -1;
    } finally {
      packr.useBuffer(PARKED);
      packr.position = PARKED.length;
    }
  }

  /**
   * Decodes the value in `data[start, end)`. A body in ring memory (`owned` false) is decoded
   * so that nothing aliases the ring: a small one with its binary values copied out, a large
   * one (8 KiB and more) from one copy of the whole body, whose binary values are then views
   * of that copy (a single memcpy, into pooled memory whose pages are already mapped; copying
   * each binary value out makes a zero-filled buffer per value and fills it twice). A
   * reassembled body is the message's own buffer, so its binary values may stay views of it
   * (no second copy of a large payload). Reading in place spares a view per message, and
   * msgpackr caches its DataView on `data`: a batch read again and again is set up once, not
   * once per message.
   */
  decode(data: Uint8Array, start = 0, end = data.byteLength, owned = false): unknown {
    const range = this.#range;
    const length = end - start;
    if (!owned && length < SMALL_BODY) {
      // msgpackr reads the strings (map keys included) of a source that ends before byte
      // 140 in JavaScript, with its key cache, and any other through a native extraction
      // call: a small body read in place in a large batch would take the slow path.
      this.#small.set(new Uint8Array(data.buffer, data.byteOffset + start, length));
      range.start = 0;
      range.end = length;
      return this.#copying.unpack(this.#small, range);
    }
    if (!owned && length >= LARGE_BODY) {
      const copy = pooledCopy(data, start, end);
      range.start = 0;
      range.end = length;
      return this.#viewing.unpack(copy, range);
    }
    range.start = start;
    range.end = end;
    return (owned ? this.#viewing : this.#copying).unpack(data, range);
  }
}

/** What a send gets for a value msgpack cannot encode. @internal */
export function unencodable(error: unknown): VringError {
  return new VringError('ERR_VRING_INVALID_ARGUMENT', 'value cannot be encoded as msgpack', {
    cause: error,
  });
}

/**
 * `value` encoded by `codec` into a buffer of its own.
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a value msgpack cannot encode.
 * @internal
 */
export function encodeOrFail(codec: MessageCodec, value: unknown): Buffer {
  try {
    return codec.encode(value);
  } catch (error) {
    throw unencodable(error);
  }
}
