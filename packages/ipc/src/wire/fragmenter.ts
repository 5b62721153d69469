import { type MessageBatch, VringError } from '@vring/core';
import {
  DEFAULT_MAC,
  ETHERNET_HEADER_BYTES,
  FLAG_FIRST,
  FLAG_LAST,
  FLAG_MORE,
  FRAME_HEADER_BYTES,
  RECORD_HEADER_BYTES,
  WIRE_VERSION,
  writeFrameHeader,
} from './frame-header.js';

const WHOLE = FLAG_FIRST | FLAG_LAST;

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
 * instead of holding the ring until it is done. Whole messages written one after another
 * share a frame (records packed with FLAG_MORE) up to `maxFrame`: the ring then moves one
 * packet for many small messages.
 */
export class Fragmenter {
  readonly #maxFrame: number;
  readonly #chunk: number;
  /** Destination MAC, source MAC and EtherType: the same in every frame. */
  readonly #ethernet: Buffer;
  // The frame that may take another record: the batch's last message, as long as the batch
  // has not changed since (same batch, count and length) and it ends with a whole message.
  #openBatch: MessageBatch | undefined;
  #openCount = 0;
  #openEnd = 0;
  #openStart = 0;
  /** Where the flags of the open frame's last record are, to set FLAG_MORE on. */
  #openFlagsAt = 0;
  /** A DataView of the batch written last: header fields without Buffer method calls. */
  #view: DataView | undefined;
  #viewOf: Buffer | undefined;

  constructor(options: FragmenterOptions) {
    const { maxFrame } = options;
    if (!Number.isSafeInteger(maxFrame) || maxFrame <= FRAME_HEADER_BYTES) {
      throw new VringError(
        'ERR_VRING_INVALID_ARGUMENT',
        `maxFrame must be an integer above the ${FRAME_HEADER_BYTES}-byte header`,
      );
    }
    this.#maxFrame = maxFrame;
    this.#chunk = maxFrame - FRAME_HEADER_BYTES;
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    this.#ethernet = header.subarray(0, ETHERNET_HEADER_BYTES);
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
    const total = message.head.byteLength + message.body.byteLength;
    if (message.offset === 0 && !message.done && this.#pack(batch, message, total)) return true;
    for (let frames = 0; !message.done && frames < maxFrames; frames++) {
      const offset = message.offset;
      const length = Math.min(this.#chunk, total - offset);
      const at = batch.appendAt(FRAME_HEADER_BYTES + length);
      if (at < 0) return false;
      const last = offset + length === total;
      const flags = (offset === 0 ? FLAG_FIRST : 0) | (last ? FLAG_LAST : 0);
      batch.data.set(this.#ethernet, at);
      const record = at + ETHERNET_HEADER_BYTES;
      this.#writeRecord(batch.data, record, message, flags, total, offset, length);
      message.offset = offset + length;
      message.done = last;
      if (flags === WHOLE) {
        this.#openBatch = batch;
        this.#openCount = batch.count;
        this.#openEnd = batch.byteLength;
        this.#openStart = at;
        this.#openFlagsAt = record + 2;
      } else {
        this.#openBatch = undefined;
      }
    }
    return message.done;
  }

  /** Adds a whole message as one more record of the open frame, if it fits there. */
  #pack(batch: MessageBatch, message: OutgoingMessage, total: number): boolean {
    if (
      this.#openBatch !== batch ||
      batch.count !== this.#openCount ||
      batch.byteLength !== this.#openEnd ||
      this.#openEnd - this.#openStart + RECORD_HEADER_BYTES + total > this.#maxFrame
    ) {
      return false;
    }
    const at = batch.extendLast(RECORD_HEADER_BYTES + total);
    if (at < 0) return false;
    const data = batch.data;
    data[this.#openFlagsAt] = data[this.#openFlagsAt]! | FLAG_MORE;
    this.#writeRecord(data, at, message, WHOLE, total, 0, total);
    message.offset = total;
    message.done = true;
    this.#openEnd = batch.byteLength;
    this.#openFlagsAt = at + 2;
    return true;
  }

  /** A record header and its chunk `[offset, offset + length)` of head + body, at `at`. */
  #writeRecord(
    data: Buffer,
    at: number,
    message: OutgoingMessage,
    flags: number,
    total: number,
    offset: number,
    length: number,
  ): void {
    const { head, body } = message;
    if (this.#viewOf !== data) {
      this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      this.#viewOf = data;
    }
    const view = this.#view!;
    data[at] = WIRE_VERSION;
    data[at + 1] = message.kind;
    view.setUint16(at + 2, flags, true);
    view.setUint32(at + 4, message.stream, true);
    view.setUint32(at + 8, total, true);
    view.setUint32(at + 12, offset, true);
    const headBytes = head.byteLength;
    const end = offset + length;
    let to = at + RECORD_HEADER_BYTES;
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
