/**
 * The last string decoded from one source, kept with its bytes. A publisher usually sends on
 * the topic it sent on last (a requester calls the name it called last): comparing a few bytes
 * costs less than decoding them again, and handing back the same string object spares the
 * route lookup hashing a new one.
 */
export class RepeatedString {
  /** Strings longer than this are decoded every time: topics and names are short. */
  static readonly MAX_BYTES = 64;
  #bytes: Buffer | undefined;
  #length = -1;
  #value = '';

  /** `length` bytes of `from` at `start` as UTF-8 (already bounds-checked by the caller). */
  decode(from: Uint8Array, start: number, length: number): string {
    const kept = this.#bytes;
    if (length === this.#length && kept) {
      let i = 0;
      while (i < length && kept[i] === from[start + i]) i++;
      if (i === length) return this.#value;
    }
    const value = utf8(from, start, length);
    if (length <= RepeatedString.MAX_BYTES) {
      this.#bytes ??= Buffer.allocUnsafe(RepeatedString.MAX_BYTES);
      const bytes = this.#bytes;
      for (let i = 0; i < length; i++) bytes[i] = from[start + i]!;
      this.#length = length;
      this.#value = value;
    }
    return value;
  }
}

/** UTF-8 text of `length` bytes of `from` at `start`. */
export function utf8(from: Uint8Array, start: number, length: number): string {
  // A Buffer decodes a range of itself; a view of it per string costs as much as the decode.
  return from instanceof Buffer
    ? from.toString('utf8', start, start + length)
    : Buffer.from(from.buffer, from.byteOffset + start, length).toString('utf8');
}
