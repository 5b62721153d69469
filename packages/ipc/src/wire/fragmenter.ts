import { type MessageBatch, VringError } from '@vring/core';
import {
  DEFAULT_MAC,
  FLAG_FIRST,
  FLAG_LAST,
  FRAME_HEADER_BYTES,
  writeFrameHeader,
} from './frame-header.js';

/** Offset of the version byte; kind, flags, stream, total and offset follow it. */
const VERSION_OFFSET = 14;

/** Options of a {@link Fragmenter}. */
export interface FragmenterOptions {
  /**
   * Largest frame in bytes, headers included. 1514 keeps frames within a standard Ethernet
   * MTU (what a DPDK switch forwards); between two vring processes it can be as large as the
   * queue pair's `maxMessage`.
   */
  maxFrame: number;
  destination?: Uint8Array;
  source?: Uint8Array;
}

/**
 * Cuts message bodies into frames, written straight into a {@link MessageBatch} (the copy
 * into the ring happens once, in native code). A body that does not fit the batch is
 * continued from the returned offset, so a large message can share batches with others
 * instead of holding the ring until it is done.
 */
export class Fragmenter {
  readonly #chunk: number;
  /** Destination MAC, source MAC, EtherType and version: the same in every frame. */
  readonly #prefix: Buffer;

  constructor(options: FragmenterOptions) {
    const { maxFrame } = options;
    if (!Number.isSafeInteger(maxFrame) || maxFrame <= FRAME_HEADER_BYTES) {
      throw new VringError(
        'ERR_VRING_INVALID_ARGUMENT',
        `maxFrame must be an integer above the ${FRAME_HEADER_BYTES}-byte header`,
      );
    }
    this.#chunk = maxFrame - FRAME_HEADER_BYTES;
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    this.#prefix = header.subarray(0, VERSION_OFFSET + 1);
    writeFrameHeader(
      header,
      { kind: 1, flags: 0, stream: 0, totalLength: 0, offset: 0 },
      options.destination ?? DEFAULT_MAC,
      options.source ?? DEFAULT_MAC,
    );
  }

  /** Body bytes one frame carries. */
  get chunkBytes(): number {
    return this.#chunk;
  }

  /**
   * Appends up to `maxFrames` frames of `message` to `batch`, from where it stopped, until
   * the message is done or the batch is full. Returns whether the last frame is in.
   */
  write(
    batch: MessageBatch,
    message: OutgoingMessage,
    maxFrames = Number.POSITIVE_INFINITY,
  ): boolean {
    const { head, body, kind, stream } = message;
    const headBytes = head.byteLength;
    const total = headBytes + body.byteLength;
    for (let frames = 0; !message.done && frames < maxFrames; frames++) {
      const offset = message.offset;
      const length = Math.min(this.#chunk, total - offset);
      const at = batch.appendAt(FRAME_HEADER_BYTES + length);
      if (at < 0) return false;
      const data = batch.data;
      const last = offset + length === total;
      const flags = (offset === 0 ? FLAG_FIRST : 0) | (last ? FLAG_LAST : 0);
      // The header field by field (writeFrameHeader's layout), without an object per frame.
      data.set(this.#prefix, at);
      data[at + VERSION_OFFSET + 1] = kind;
      data.writeUInt16LE(flags, at + VERSION_OFFSET + 2);
      data.writeUInt32LE(stream, at + VERSION_OFFSET + 4);
      data.writeUInt32LE(total, at + VERSION_OFFSET + 8);
      data.writeUInt32LE(offset, at + VERSION_OFFSET + 12);
      const end = offset + length;
      let to = at + FRAME_HEADER_BYTES;
      if (offset < headBytes) {
        const part = head.subarray(offset, Math.min(end, headBytes));
        data.set(part, to);
        to += part.byteLength;
      }
      if (end > headBytes) {
        const from = Math.max(offset - headBytes, 0);
        // A whole body in one frame (the common small message) needs no view of it.
        if (from === 0 && end - headBytes === body.byteLength) data.set(body, to);
        else data.set(body.subarray(from, end - headBytes), to);
      }
      message.offset = end;
      message.done = last;
    }
    return message.done;
  }
}

const NO_HEAD = new Uint8Array(0);

/**
 * A message being cut into frames: what {@link Fragmenter.write} resumes from. Its body on
 * the wire is `head` followed by `body`, so a router can put new routing fields in front of
 * a body it forwards without copying it.
 */
export class OutgoingMessage {
  /** Body bytes already written into frames. */
  offset = 0;
  /** Whether the last frame has been written. */
  done = false;

  constructor(
    readonly kind: number,
    readonly stream: number,
    readonly body: Uint8Array,
    readonly head: Uint8Array = NO_HEAD,
  ) {
    if (!Number.isInteger(kind) || kind < 1 || kind > 255) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'kind must be an integer in 1..255');
    }
    if (!Number.isInteger(stream) || stream < 0 || stream > 0xffff_ffff) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'stream must be a u32');
    }
    if (head.byteLength + body.byteLength > 0xffff_ffff) {
      throw new VringError(
        'ERR_VRING_OVERSIZED_MESSAGE',
        `a body of ${head.byteLength + body.byteLength} bytes exceeds 4 GiB`,
      );
    }
  }
}
