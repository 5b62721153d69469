/**
 * Byte-level mutations in the manner of libFuzzer's: flips, interesting values at any width and
 * either byte order, inserts, erases, copies within the input and crossover with another
 * corpus entry, plus the target's dictionary of tokens (magic numbers, flags, headers).
 */

/** A small seeded PRNG (xorshift32): a run is reproduced by its seed. */
export class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0 || 1;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state % n;
  }

  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
}

const INTERESTING = [
  0, 1, 2, 3, 4, 7, 8, 12, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 0x3ff, 0x400, 0x7fff, 0x8000,
  0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff,
];

/** Produces new inputs from corpus entries. */
export class Mutator {
  readonly #random: Random;
  readonly #dictionary: readonly Uint8Array[];
  readonly #maxLength: number;

  constructor(random: Random, dictionary: readonly Uint8Array[], maxLength: number) {
    this.#random = random;
    this.#dictionary = dictionary;
    this.#maxLength = maxLength;
  }

  /** `input` changed by one to eight stacked mutations; `other` is a crossover partner. */
  mutate(input: Uint8Array, other: Uint8Array): Uint8Array {
    let out: Uint8Array = Uint8Array.from(input);
    const rounds = 1 + this.#random.below(8);
    for (let i = 0; i < rounds; i++) out = this.#once(out, other);
    return out.byteLength > this.#maxLength ? out.subarray(0, this.#maxLength) : out;
  }

  #once(data: Uint8Array, other: Uint8Array): Uint8Array {
    const r = this.#random;
    const at = data.byteLength === 0 ? 0 : r.below(data.byteLength);
    switch (r.below(data.byteLength === 0 ? 2 : 9)) {
      case 0:
        return this.#insert(data, at, this.#randomBytes(1 + r.below(8)));
      case 1:
        return this.#dictionary.length > 0
          ? this.#overwrite(data, at, r.pick(this.#dictionary), true)
          : this.#insert(data, at, this.#randomBytes(1));
      case 2:
        data[at] = data[at]! ^ (1 << r.below(8));
        return data;
      case 3:
        data[at] = r.below(256);
        return data;
      case 4:
        return this.#overwrite(data, at, this.#interesting(), false);
      case 5: {
        const n = 1 + r.below(Math.min(16, data.byteLength - at));
        const out = new Uint8Array(data.byteLength - n);
        out.set(data.subarray(0, at), 0);
        out.set(data.subarray(at + n), at);
        return out;
      }
      case 6: {
        // Copy a piece of the input elsewhere in it (repeats a record or a descriptor).
        const from = r.below(data.byteLength);
        const n = 1 + r.below(Math.min(64, data.byteLength - from));
        return this.#overwrite(data, at, data.slice(from, from + n), r.below(2) === 0);
      }
      case 7: {
        if (other.byteLength === 0) return data;
        const from = r.below(other.byteLength);
        const n = 1 + r.below(Math.min(256, other.byteLength - from));
        return this.#overwrite(data, at, other.subarray(from, from + n), r.below(2) === 0);
      }
      default: {
        // Add or subtract a little at some width: lengths and indices off by a few.
        const width = r.pick([1, 2, 4]);
        if (at + width > data.byteLength) return data;
        const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
        const delta = r.below(35) - 17;
        if (width === 1) view.setUint8(at, (view.getUint8(at) + delta) & 0xff);
        else if (width === 2) view.setUint16(at, (view.getUint16(at, true) + delta) & 0xffff, true);
        else view.setUint32(at, (view.getUint32(at, true) + delta) >>> 0, true);
        return data;
      }
    }
  }

  #interesting(): Uint8Array {
    const r = this.#random;
    const value = r.pick(INTERESTING);
    const width = r.pick([1, 2, 4, 8]);
    const bytes = new Uint8Array(width);
    const view = new DataView(bytes.buffer);
    const littleEndian = r.below(2) === 0;
    if (width === 1) view.setUint8(0, value & 0xff);
    else if (width === 2) view.setUint16(0, value & 0xffff, littleEndian);
    else if (width === 4) view.setUint32(0, value >>> 0, littleEndian);
    else view.setBigUint64(0, BigInt(value) + (r.below(4) === 0 ? 1n << 63n : 0n), littleEndian);
    return bytes;
  }

  #randomBytes(n: number): Uint8Array {
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) bytes[i] = this.#random.below(256);
    return bytes;
  }

  #insert(data: Uint8Array, at: number, piece: Uint8Array): Uint8Array {
    const out = new Uint8Array(data.byteLength + piece.byteLength);
    out.set(data.subarray(0, at), 0);
    out.set(piece, at);
    out.set(data.subarray(at), at + piece.byteLength);
    return out;
  }

  /** Writes `piece` at `at` (or inserts it there), growing the input as needed. */
  #overwrite(data: Uint8Array, at: number, piece: Uint8Array, insert: boolean): Uint8Array {
    if (insert) return this.#insert(data, at, piece);
    if (at + piece.byteLength <= data.byteLength) {
      data.set(piece, at);
      return data;
    }
    const out = new Uint8Array(at + piece.byteLength);
    out.set(data.subarray(0, at), 0);
    out.set(piece, at);
    return out;
  }
}
