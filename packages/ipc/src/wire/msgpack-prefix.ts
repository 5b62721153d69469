import { VringError } from '@vring/core';
import { type RepeatedString, utf8 } from './repeated-string.js';

/**
 * Reads and writes the leading fields of a msgpack array without decoding the rest. The bus
 * routes on the first elements of a message (topic, request id) and forwards the payload
 * that follows as raw bytes, so a message crosses the bus without being unpacked or packed
 * again. Only the formats those fields use are handled: arrays, unsigned integers, strings.
 */

function malformed(what: string): VringError {
  return new VringError('ERR_VRING_PROTOCOL', `malformed message: ${what}`, {
    reason: 'bad-envelope',
  });
}

/** Whether `b` starts a string, a number, a boolean or nil. */
function isScalar(b: number): boolean {
  return (
    b <= 0x7f || // positive fixint
    b >= 0xe0 || // negative fixint
    (b >= 0xa0 && b <= 0xbf) || // fixstr
    b === 0xc0 || // nil
    b === 0xc2 ||
    b === 0xc3 || // false, true
    (b >= 0xca && b <= 0xd3) || // float 32/64, uint 8-64, int 8-64
    (b >= 0xd9 && b <= 0xdb) // str 8/16/32
  );
}

const NO_BYTES = new Uint8Array(0);

/**
 * A cursor over a msgpack buffer; every read checks bounds and throws `ERR_VRING_PROTOCOL`.
 * A router keeps one and {@link MsgpackPrefixReader.reset}s it per message: it allocates
 * nothing per message.
 */
export class MsgpackPrefixReader {
  /** Offset of the next unread byte. */
  offset = 0;
  #bytes: Uint8Array;
  /** Where the bytes read end: the end of `#bytes`, or of the range given to `reset`. */
  #end = 0;
  /** {@link MsgpackPrefixReader.skipValue}'s open levels, kept for the next value. */
  readonly #levels: number[] = [];

  constructor(bytes: Uint8Array = NO_BYTES) {
    this.#bytes = bytes;
    this.#end = bytes.byteLength;
  }

  /**
   * Starts reading `bytes[start, end)` (all of them by default) from `start`: offsets are
   * `bytes`'s own, so a router reads a message where it lies without a view of it.
   */
  reset(bytes: Uint8Array, start = 0, end = bytes.byteLength): this {
    this.#bytes = bytes;
    this.offset = start;
    this.#end = end;
    return this;
  }

  #need(n: number, what: string): void {
    if (this.offset + n > this.#end) throw malformed(`truncated ${what}`);
  }

  #byte(what: string): number {
    this.#need(1, what);
    return this.#bytes[this.offset++]!;
  }

  /** An array header: its element count. */
  arrayLength(): number {
    const b = this.#byte('array');
    if (b >= 0x90 && b <= 0x9f) return b & 0x0f;
    if (b === 0xdc) return this.#length(2);
    if (b === 0xdd) return this.#length(4);
    throw malformed('expected an array');
  }

  /** An unsigned integer up to 2^32 - 1 (ids on the wire are u32). */
  uint(): number {
    const b = this.#byte('integer');
    if (b <= 0x7f) return b;
    if (b === 0xcc) return this.#byte('integer');
    if (b === 0xcd) return this.#length(2);
    if (b === 0xce) return this.#length(4);
    throw malformed('expected an unsigned 32-bit integer');
  }

  /**
   * A UTF-8 string of at most `maxBytes` bytes; `repeated` hands back the string it decoded
   * last when the bytes are the same.
   */
  string(maxBytes: number, repeated?: RepeatedString): string {
    const length = this.#stringLength(maxBytes);
    const start = this.offset;
    this.offset += length;
    return repeated
      ? repeated.decode(this.#bytes, start, length)
      : utf8(this.#bytes, start, length);
  }

  /**
   * Walks message headers without decoding them: a map of at most `maxCount` entries whose
   * names (1 to `maxNameBytes` bytes) and values are strings, `maxBytes` at most in all.
   * @throws VringError `ERR_VRING_PROTOCOL` (reason `bad-envelope`).
   */
  skipHeaders(maxCount: number, maxNameBytes: number, maxBytes: number): void {
    const start = this.offset;
    const b = this.#byte('headers');
    let count: number;
    if (b >= 0x80 && b <= 0x8f) count = b & 0x0f;
    else if (b === 0xde) count = this.#length(2);
    else if (b === 0xdf) count = this.#length(4);
    else throw malformed('headers: expected a map');
    if (count > maxCount) throw malformed(`headers: more than ${maxCount}`);
    for (let i = 0; i < count; i++) {
      const nameLength = this.#stringLength(maxNameBytes);
      if (nameLength === 0) throw malformed('headers: an empty name');
      this.offset += nameLength;
      const valueLength = this.#stringLength(maxBytes);
      this.offset += valueLength;
      if (this.offset - start > maxBytes) throw malformed(`headers: more than ${maxBytes} bytes`);
    }
  }

  /**
   * Reads a string's header, checks that its `length` bytes (at most `maxBytes`) are there,
   * and returns the length; the cursor is then at the string's first byte.
   */
  #stringLength(maxBytes: number): number {
    const b = this.#byte('string');
    let length: number;
    if (b >= 0xa0 && b <= 0xbf) length = b & 0x1f;
    else if (b === 0xd9) length = this.#byte('string');
    else if (b === 0xda) length = this.#length(2);
    else if (b === 0xdb) length = this.#length(4);
    else throw malformed('expected a string');
    if (length > maxBytes) throw malformed(`a string of ${length} bytes (limit ${maxBytes})`);
    this.#need(length, 'string');
    return length;
  }

  /** The bytes from the cursor to the end: the fields still to come, undecoded. */
  rest(): Uint8Array {
    return this.#bytes.subarray(this.offset, this.#end);
  }

  /**
   * Walks one complete msgpack value without building it, so a router can vouch for bytes
   * it forwards: every length is bounds-checked, nesting is at most `maxDepth`, and only the
   * extension types a plain msgpack value uses are allowed (0: msgpackr's `undefined`;
   * -1: timestamp), and map keys are scalars (string, number, boolean, nil): the codec of
   * every receiver decodes maps to objects, which cannot have a container, a binary or an
   * extension as a key. Costs a pass over the structure, not over binary or string contents.
   * @throws VringError `ERR_VRING_PROTOCOL` (reason `bad-envelope`).
   */
  skipValue(maxDepth: number): void {
    // Items still to read at each open level; a map counts its keys and values, so in a map
    // an even count still to read means the next item is a key.
    let pending = 1;
    let inMap = false;
    // Each open level's count and whether it is a map, in one number: (count << 1) | map.
    const stack = this.#levels;
    stack.length = 0;
    while (pending > 0 || stack.length > 0) {
      if (pending === 0) {
        const level = stack.pop()!;
        pending = level >>> 1;
        inMap = (level & 1) === 1;
        continue;
      }
      const isKey = inMap && (pending & 1) === 0;
      pending--;
      const b = this.#byte('value');
      if (isKey && !isScalar(b)) {
        throw malformed(`msgpack byte 0x${b.toString(16)} cannot start a map key`);
      }
      let children = 0;
      if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) continue;
      if (b >= 0x80 && b <= 0x8f) children = (b & 0x0f) * 2;
      else if (b >= 0x90 && b <= 0x9f) children = b & 0x0f;
      else if (b >= 0xa0 && b <= 0xbf) this.#skip(b & 0x1f, 'string');
      else {
        switch (b) {
          case 0xc4:
          case 0xd9:
            this.#skip(this.#length(1), 'bytes');
            break;
          case 0xc5:
          case 0xda:
            this.#skip(this.#length(2), 'bytes');
            break;
          case 0xc6:
          case 0xdb:
            this.#skip(this.#length(4), 'bytes');
            break;
          case 0xca:
          case 0xce:
          case 0xd2:
            this.#skip(4, 'number');
            break;
          case 0xcb:
          case 0xcf:
          case 0xd3:
            this.#skip(8, 'number');
            break;
          case 0xcc:
          case 0xd0:
            this.#skip(1, 'number');
            break;
          case 0xcd:
          case 0xd1:
            this.#skip(2, 'number');
            break;
          case 0xd4:
            this.#extension(1);
            break;
          case 0xd6:
            this.#extension(4);
            break;
          case 0xd7:
            this.#extension(8);
            break;
          case 0xc7:
            this.#extension(this.#length(1));
            break;
          case 0xdc:
            children = this.#length(2);
            break;
          case 0xdd:
            children = this.#length(4);
            break;
          case 0xde:
            children = this.#length(2) * 2;
            break;
          case 0xdf:
            children = this.#length(4) * 2;
            break;
          default:
            // 0xc1 (never used), 0xd5/0xd8/0xc8/0xc9 (extensions no plain value needs).
            throw malformed(`msgpack byte 0x${b.toString(16)} is not allowed here`);
        }
      }
      if (children > 0) {
        if (stack.length + 1 >= maxDepth) throw malformed(`nesting deeper than ${maxDepth}`);
        // Every element takes at least one byte: a count beyond the bytes left is a lie.
        if (children > this.#end - this.offset) throw malformed('truncated container');
        stack.push(pending * 2 + (inMap ? 1 : 0));
        pending = children;
        inMap = (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf;
      }
    }
  }

  /** Checks that nothing follows the value read last. */
  end(): void {
    if (this.offset !== this.#end) throw malformed('bytes after the value');
  }

  /** A big-endian unsigned integer of `size` bytes (msgpack's lengths and integers). */
  #length(size: 1 | 2 | 4): number {
    this.#need(size, 'length');
    const b = this.#bytes;
    const at = this.offset;
    this.offset += size;
    if (size === 1) return b[at]!;
    if (size === 2) return (b[at]! << 8) | b[at + 1]!;
    return b[at]! * 0x1000000 + ((b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!);
  }

  #skip(n: number, what: string): void {
    this.#need(n, what);
    this.offset += n;
  }

  #extension(size: number): void {
    this.#need(1, 'extension');
    const type = (this.#bytes[this.offset]! << 24) >> 24;
    this.offset += 1;
    const allowed =
      (type === 0 && size === 1) || (type === -1 && (size === 4 || size === 8 || size === 12));
    if (!allowed) throw malformed(`msgpack extension ${type} (size ${size}) is not plain msgpack`);
    this.#skip(size, 'extension');
  }
}

/** Builds a msgpack prefix (array header and unsigned integers) to put before raw fields. */
export class MsgpackPrefixWriter {
  readonly #bytes: Buffer;
  #length = 0;

  constructor(capacity: number) {
    this.#bytes = Buffer.allocUnsafe(capacity);
  }

  arrayHeader(length: number): this {
    if (length <= 15) this.#bytes[this.#length++] = 0x90 | length;
    else if (length <= 0xffff) {
      this.#bytes[this.#length++] = 0xdc;
      this.#length = this.#bytes.writeUInt16BE(length, this.#length);
    } else {
      this.#bytes[this.#length++] = 0xdd;
      this.#length = this.#bytes.writeUInt32BE(length, this.#length);
    }
    return this;
  }

  uint(value: number): this {
    if (value <= 0x7f) this.#bytes[this.#length++] = value;
    else if (value <= 0xff) {
      this.#bytes[this.#length++] = 0xcc;
      this.#bytes[this.#length++] = value;
    } else if (value <= 0xffff) {
      this.#bytes[this.#length++] = 0xcd;
      this.#length = this.#bytes.writeUInt16BE(value, this.#length);
    } else {
      this.#bytes[this.#length++] = 0xce;
      this.#length = this.#bytes.writeUInt32BE(value, this.#length);
    }
    return this;
  }

  /** The bytes written so far (a view; the writer is not reused after this). */
  finish(): Buffer {
    return this.#bytes.subarray(0, this.#length);
  }
}

/** Bytes the writer needs at most for an array header and `uints` unsigned integers. */
export function prefixCapacity(uints: number): number {
  return 5 + 5 * uints;
}
