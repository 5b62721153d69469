import type { FrameLending } from '@vring/core';
import type { Fragmenter, OutgoingMessage } from '../wire/fragmenter.js';
import { FLAG_FIRST, FLAG_LAST, FRAME_HEADER_BYTES } from '../wire/frame-header.js';

/**
 * A body from this size on is written frame by frame straight from where it lies; below it,
 * the send batch's extra copy costs less than a native call per frame.
 */
export const FORWARD_MIN = 8 * 1024;

/**
 * Writes a message into the ring frame by frame: each frame's headers (and, in the first,
 * the message's head) from a small buffer of its own, its share of the body straight from
 * where the body lies, joined by the port as it copies them in (`trySendJoined`). One copy
 * per byte, where the send batch takes two (into the batch, then into the ring).
 *
 * This is how the bus forwards a large message: the body is a view of the publisher's
 * frame, read in place from its ring (or the buffer it was reassembled in), and each
 * subscriber costs one copy of it, into the receive buffers that subscriber posted. @internal
 */
export class FrameForwarder {
  readonly #lending: FrameLending;
  /** Headers of the frame being written, and the head in the first frame. */
  #headers = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 256);

  constructor(lending: FrameLending) {
    this.#lending = lending;
  }

  /**
   * Whether a message with `head` can be forwarded in frames of `fragmenter`: the head must
   * fit the first frame with body to spare.
   */
  fits(head: Uint8Array, fragmenter: Fragmenter): boolean {
    return head.byteLength < fragmenter.chunkBytes;
  }

  /**
   * Writes up to `maxFrames` frames of `message` from where it stopped; returns whether it
   * is done. Not done: the ring had no room for the next frame, or `maxFrames` went (see
   * `message.offset`).
   * @throws VringError what the port throws when it fails.
   */
  write(
    message: OutgoingMessage,
    fragmenter: Fragmenter,
    maxFrames = Number.POSITIVE_INFINITY,
  ): boolean {
    const { head, body, kind, stream } = message;
    const headBytes = head.byteLength;
    const total = headBytes + body.byteLength;
    const chunk = fragmenter.chunkBytes;
    const lending = this.#lending;
    for (let frames = 0; !message.done && frames < maxFrames; frames++) {
      const offset = message.offset;
      const length = Math.min(chunk, total - offset);
      const last = offset + length === total;
      const flags = (offset === 0 ? FLAG_FIRST : 0) | (last ? FLAG_LAST : 0);
      // Only the first frame carries the head: fits() keeps it whole in there.
      const headPart = offset === 0 ? headBytes : 0;
      const headers = this.#headersFor(headPart);
      fragmenter.writeFrameHeaders(headers, { kind, flags, stream, totalLength: total, offset });
      if (headPart > 0) headers.set(head, FRAME_HEADER_BYTES);
      const from = offset === 0 ? 0 : offset - headBytes;
      const chunkOfBody = body.subarray(from, from + length - headPart);
      if (!lending.trySendJoined(headers.subarray(0, FRAME_HEADER_BYTES + headPart), chunkOfBody)) {
        return false;
      }
      message.offset = offset + length;
      message.done = last;
    }
    return message.done;
  }

  #headersFor(headBytes: number): Buffer {
    if (this.#headers.length < FRAME_HEADER_BYTES + headBytes) {
      this.#headers = Buffer.allocUnsafe(FRAME_HEADER_BYTES + headBytes);
    }
    return this.#headers;
  }
}
