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
const NO_HEAD = new Uint8Array(0);

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
  // The frame that may take another record (see #fitsOpenFrame).
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
    const { head, body } = message;
    const total = head.byteLength + body.byteLength;
    if (message.offset === 0 && !message.done && total <= this.#chunk) {
      // A whole message: one record, in the open frame when it fits there.
      if (!this.appendWhole(batch, message.kind, message.stream, body, head)) return false;
      message.offset = total;
      message.done = true;
      return true;
    }
    for (let frames = 0; !message.done && frames < maxFrames; frames++) {
      const offset = message.offset;
      const length = Math.min(this.#chunk, total - offset);
      const at = batch.appendAt(FRAME_HEADER_BYTES + length);
      if (at < 0) return false;
      const last = offset + length === total;
      const flags = (offset === 0 ? FLAG_FIRST : 0) | (last ? FLAG_LAST : 0);
      batch.data.set(this.#ethernet, at);
      const record = at + ETHERNET_HEADER_BYTES;
      this.#writeRecordHeader(
        batch.data,
        record,
        message.kind,
        flags,
        message.stream,
        total,
        offset,
      );
      this.#copyChunk(batch.data, record + RECORD_HEADER_BYTES, head, body, offset, length);
      message.offset = offset + length;
      message.done = last;
      // A fragment ends its frame: only whole messages share one.
      this.#openBatch = undefined;
    }
    return message.done;
  }

  /**
   * Appends `head` + `body` as one whole message, as a record of the open frame when it fits
   * there, else in a frame of its own. Returns false (nothing changes) when it needs more
   * than one frame or does not fit the batch.
   */
  appendWhole(
    batch: MessageBatch,
    kind: number,
    stream: number,
    body: Uint8Array,
    head: Uint8Array = NO_HEAD,
  ): boolean {
    const length = head.byteLength + body.byteLength;
    if (length > this.#chunk) return false;
    const inOpenFrame = this.#fitsOpenFrame(batch, length);
    const at = batch.byteLength + (inOpenFrame ? RECORD_HEADER_BYTES : FRAME_HEADER_BYTES);
    if (at + length > batch.data.length) return false;
    this.#copyChunk(batch.data, at, head, body, 0, length);
    return this.#commit(batch, kind, stream, length, inOpenFrame);
  }

  /**
   * Where the body of the next whole message goes if it joins the open frame (or starts a
   * frame, when none is open): for a caller that encodes straight into the batch and then
   * calls {@link Fragmenter.commitWhole}.
   */
  bodyOffset(batch: MessageBatch): number {
    return (
      batch.byteLength + (this.#fitsOpenFrame(batch, 0) ? RECORD_HEADER_BYTES : FRAME_HEADER_BYTES)
    );
  }

  /**
   * Makes the `length` bytes written at {@link Fragmenter.bodyOffset} one whole message:
   * writes its headers, moving the body to a frame of its own when the open frame has no
   * room for it. Returns false (the batch unchanged) when it needs more than one frame or
   * does not fit the batch.
   */
  commitWhole(batch: MessageBatch, kind: number, stream: number, length: number): boolean {
    if (this.#fitsOpenFrame(batch, length)) return this.#commit(batch, kind, stream, length, true);
    const base = batch.byteLength;
    if (
      length > this.#chunk ||
      batch.count === batch.lengths.length ||
      base + FRAME_HEADER_BYTES + length > batch.data.length
    ) {
      return false;
    }
    if (this.#fitsOpenFrame(batch, 0)) {
      // Written for the open frame, which is full: the body moves past a new frame's header.
      const from = base + RECORD_HEADER_BYTES;
      batch.data.copyWithin(base + FRAME_HEADER_BYTES, from, from + length);
    }
    return this.#commit(batch, kind, stream, length, false);
  }

  /**
   * Makes the `length` bytes written at {@link Fragmenter.bodyOffset} one message of several
   * frames, cut where it lies: each chunk moves up past the headers of the frames before it
   * (a memmove; no buffer of its own, no second copy). Returns false (the batch unchanged)
   * when the frames do not fit the batch.
   */
  commitFragments(batch: MessageBatch, kind: number, stream: number, length: number): boolean {
    const chunk = this.#chunk;
    const frames = Math.ceil(length / chunk);
    const base = batch.byteLength;
    const from = this.bodyOffset(batch);
    if (
      frames < 2 ||
      batch.count + frames > batch.lengths.length ||
      base + frames * FRAME_HEADER_BYTES + length > batch.data.length
    ) {
      return false;
    }
    const data = batch.data;
    // Last chunk first: each moves forward, over bytes that have already moved.
    for (let i = frames - 1; i >= 0; i--) {
      const start = from + i * chunk;
      const to = base + i * (FRAME_HEADER_BYTES + chunk) + FRAME_HEADER_BYTES;
      if (to !== start) data.copyWithin(to, start, start + Math.min(chunk, length - i * chunk));
    }
    for (let i = 0; i < frames; i++) {
      const offset = i * chunk;
      const at = batch.appendAt(FRAME_HEADER_BYTES + Math.min(chunk, length - offset));
      const flags = (i === 0 ? FLAG_FIRST : 0) | (i === frames - 1 ? FLAG_LAST : 0);
      data.set(this.#ethernet, at);
      this.#writeRecordHeader(
        data,
        at + ETHERNET_HEADER_BYTES,
        kind,
        flags,
        stream,
        length,
        offset,
      );
    }
    // A fragment ends its frame: only whole messages share one.
    this.#openBatch = undefined;
    return true;
  }

  /**
   * Whether a whole message of `length` body bytes can join the open frame: the batch's last
   * frame, as long as the batch has not changed since, ending with a whole message.
   */
  #fitsOpenFrame(batch: MessageBatch, length: number): boolean {
    return (
      this.#openBatch === batch &&
      batch.count === this.#openCount &&
      batch.byteLength === this.#openEnd &&
      this.#openEnd - this.#openStart + RECORD_HEADER_BYTES + length <= this.#maxFrame
    );
  }

  /**
   * Writes the headers of a whole message whose body is in place after them. This and the
   * other per-message helpers take positional arguments on purpose: they run once per
   * message (once per delivery on a bus), and an options object would be an allocation each.
   */
  #commit(
    batch: MessageBatch,
    kind: number,
    stream: number,
    length: number,
    inOpenFrame: boolean,
  ): boolean {
    const data = batch.data;
    let record: number;
    if (inOpenFrame) {
      record = batch.extendLast(RECORD_HEADER_BYTES + length);
      if (record < 0) return false;
      data[this.#openFlagsAt] = data[this.#openFlagsAt]! | FLAG_MORE;
    } else {
      const at = batch.appendAt(FRAME_HEADER_BYTES + length);
      if (at < 0) return false;
      data.set(this.#ethernet, at);
      record = at + ETHERNET_HEADER_BYTES;
      this.#openBatch = batch;
      this.#openCount = batch.count;
      this.#openStart = at;
    }
    this.#writeRecordHeader(data, record, kind, WHOLE, stream, length, 0);
    this.#openEnd = batch.byteLength;
    this.#openFlagsAt = record + 2;
    return true;
  }

  /**
   * Writes the headers of a frame that holds one whole message, whose `length`-byte body is
   * already in place after them (at {@link FRAME_HEADER_BYTES} in `frame`): for a frame
   * written straight into memory the port lends, where the peer will read it.
   */
  writeWholeFrame(frame: Buffer, kind: number, stream: number, length: number): void {
    this.writeFrameHeaders(frame, kind, WHOLE, stream, length, 0);
  }

  /**
   * Writes the headers of a frame that carries bytes from `offset` on of a message of
   * `total` bytes, at the start of `frame`: for a frame whose chunk is sent from where it
   * lies instead of being copied behind them.
   */
  writeFrameHeaders(
    frame: Buffer,
    kind: number,
    flags: number,
    stream: number,
    total: number,
    offset: number,
  ): void {
    frame.set(this.#ethernet, 0);
    this.#writeRecordHeader(frame, ETHERNET_HEADER_BYTES, kind, flags, stream, total, offset);
  }

  /** Ends the open frame: the next message starts a frame of its own. */
  closeFrame(): void {
    this.#openBatch = undefined;
  }

  #writeRecordHeader(
    data: Buffer,
    at: number,
    kind: number,
    flags: number,
    stream: number,
    total: number,
    offset: number,
  ): void {
    if (this.#viewOf !== data) {
      this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      this.#viewOf = data;
    }
    const view = this.#view!;
    data[at] = WIRE_VERSION;
    data[at + 1] = kind;
    view.setUint16(at + 2, flags, true);
    view.setUint32(at + 4, stream, true);
    view.setUint32(at + 8, total, true);
    view.setUint32(at + 12, offset, true);
  }

  /** Copies bytes `[offset, offset + length)` of head + body to `to`. */
  #copyChunk(
    data: Buffer,
    to: number,
    head: Uint8Array,
    body: Uint8Array,
    offset: number,
    length: number,
  ): void {
    const headBytes = head.byteLength;
    const end = offset + length;
    if (offset < headBytes) {
      // A head is a few bytes of routing fields: copied byte by byte, with no view of it
      // (a router writes one per delivery).
      const headEnd = Math.min(end, headBytes);
      for (let i = offset; i < headEnd; i++) data[to++] = head[i]!;
    }
    if (end > headBytes) {
      const from = Math.max(offset - headBytes, 0);
      // A whole body in one frame (the common small message) needs no view of it.
      if (from === 0 && end - headBytes === body.byteLength) data.set(body, to);
      else data.set(body.subarray(from, end - headBytes), to);
    }
  }
}

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
    /** The bytes to send (a message encoded only once it goes in place sets it then). */
    public body: Uint8Array,
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
