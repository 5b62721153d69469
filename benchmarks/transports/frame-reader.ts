// Length-prefixed frames over a byte stream (the `net` baselines' Unix sockets): a 4-byte
// little-endian length, then the payload. The reader is what a competent socket user
// writes, so the baseline costs what a real socket application costs and no more: each
// payload byte is copied at most once, whatever the frame size.
//
// - A frame that lies whole within one chunk is handed over as a view of the chunk, no copy
//   (small frames, the common case).
// - A frame that spans chunks is allocated once, as soon as its length is known, and each
//   chunk is copied into it once.
// - A length prefix split across chunks is collected in a 4-byte buffer.
//
// (The reader this replaces concatenated everything pending with every chunk, then copied
// the rest again: quadratic in the frame size. A 1 MiB frame arriving in 64 KiB chunks cost
// about 17 MiB of copying, milliseconds per message, which flattered vring at large sizes.)

/** Bytes of the length prefix. */
export const HEADER_BYTES = 4;

/** One frame: the length prefix and `body`, in one Buffer (one `socket.write`). */
export function frame(body: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  b.writeUInt32LE(body.length, 0);
  b.set(body, HEADER_BYTES);
  return b;
}

/** Splits a byte stream into frames, calling `onFrame` with each payload, in order. */
export class FrameReader {
  /** The frame being filled (allocated once its length is known), and how much of it is. */
  #frame: Buffer | undefined;
  #filled = 0;
  /** A length prefix split across chunks, and how much of it has arrived. */
  readonly #header = Buffer.alloc(HEADER_BYTES);
  #headerFilled = 0;

  /** `onFrame` may get a view of a chunk: what it keeps, it keeps the chunk alive with. */
  constructor(private readonly onFrame: (payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    const end = chunk.length;
    let offset = 0;
    while (offset < end) {
      if (this.#frame) {
        // The rest of a frame that spans chunks.
        const copied = chunk.copy(this.#frame, this.#filled, offset);
        this.#filled += copied;
        offset += copied;
        if (this.#filled < this.#frame.length) return;
        const payload = this.#frame;
        this.#frame = undefined;
        this.onFrame(payload);
        continue;
      }
      let length: number;
      if (this.#headerFilled === 0 && end - offset >= HEADER_BYTES) {
        length = chunk.readUInt32LE(offset);
        offset += HEADER_BYTES;
      } else {
        // A length prefix split across chunks.
        const copied = chunk.copy(this.#header, this.#headerFilled, offset);
        this.#headerFilled += copied;
        offset += copied;
        if (this.#headerFilled < HEADER_BYTES) return;
        this.#headerFilled = 0;
        length = this.#header.readUInt32LE(0);
      }
      if (end - offset >= length) {
        // Whole within this chunk: a view, no copy.
        const payload = chunk.subarray(offset, offset + length);
        offset += length;
        this.onFrame(payload);
      } else {
        this.#frame = Buffer.allocUnsafe(length);
        this.#filled = chunk.copy(this.#frame, 0, offset);
        return;
      }
    }
  }
}
