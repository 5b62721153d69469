import type { FrameLending } from '@vring/core';
import { encodeOrFail, type MessageCodec, unencodable } from '../message-codec.js';
import type { Fragmenter, OutgoingMessage } from '../wire/fragmenter.js';
import { FRAME_HEADER_BYTES } from '../wire/frame-header.js';
import { StagingBuffers } from './staging-buffers.js';

/**
 * An encoding from this size on is worth writing straight into the port's memory; below it,
 * the send batch's one copy costs less than a native call of its own.
 */
const LARGE_VALUE = 8 * 1024;

/**
 * Staging buffers a link keeps for large values waiting for room: at least this many, and
 * as many as {@link STAGING_BYTES} holds. A sender a burst ahead of its receiver (the ring
 * full, a window of sends under way) has its waiting values encoded into them; past them
 * each value is encoded into fresh memory of msgpackr's, whose page faults and collection
 * cost more than the encoding.
 */
const STAGING_BUFFERS = 8;
const STAGING_BYTES = 4 * 1024 * 1024;

/** What became of a value {@link InPlaceWriter.encode} was asked to write. */
export type InPlaceResult =
  /** It is in the ring, as one frame of this many body bytes. */
  | number
  /** There is no room now: send it another way, or try again later. */
  | 'no-room'
  /** Its encoding, a buffer of its own: it outgrew the room (or a frame). */
  | Uint8Array;

/**
 * Writes large messages straight into the memory a port lends, as one whole frame each,
 * where the peer reads them: no send batch, no copy into the ring, no fragments. A value is
 * encoded there by msgpackr; a message already encoded (it had to wait) is copied there once.
 *
 * The size of a value is known only once it is encoded, so the writer remembers how large
 * the last value was (a stream's values tend to be alike): a link tries the next one in
 * place only after a large one, and asks for room enough for one of the same size. It also
 * keeps the staging buffers that large values wait in. @internal
 */
export class InPlaceWriter {
  readonly #lending: FrameLending;
  readonly #codec: MessageCodec;
  readonly #maxMessage: number;
  #large = false;
  #lastSize = 0;
  /** Made on first use. */
  #staging: StagingBuffers | undefined;

  /** Writes into what `lending` lends, frames of at most `maxMessage` bytes. */
  constructor(lending: FrameLending, codec: MessageCodec, maxMessage: number) {
    this.#lending = lending;
    this.#codec = codec;
    this.#maxMessage = maxMessage;
  }

  /** The last value was large: the next is expected to be, and is tried in place first. */
  get expectsLarge(): boolean {
    return this.#large;
  }

  /** Notes the encoded size of a value just sent, whichever way it went. */
  sized(bytes: number): void {
    this.#large = bytes >= LARGE_VALUE;
    this.#lastSize = bytes;
  }

  /** Whether a message of `bytes` (head and body, encoded) goes in place: large, within a frame. */
  fits(bytes: number): boolean {
    return bytes >= LARGE_VALUE && FRAME_HEADER_BYTES + bytes <= this.#maxMessage;
  }

  /**
   * Encodes `value` into room the port lends and sends it as a message of `kind`, numbered
   * by `stream()` once it is known to go.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a value msgpack cannot encode.
   */
  encode(
    value: unknown,
    kind: number,
    stream: () => number,
    fragmenter: Fragmenter,
  ): InPlaceResult {
    const lending = this.#lending;
    let room: Buffer | undefined;
    try {
      room = lending.reserve(this.#roomToAsk());
    } catch {
      // A failing port fails the link through the pump, as any send does.
      return 'no-room';
    }
    if (!room) return 'no-room';
    const codec = this.#codec;
    let end: number;
    try {
      end = codec.encodeInto(value, room, FRAME_HEADER_BYTES);
    } catch (error) {
      throw unencodable(error);
    }
    if (end < 0) {
      this.sized(codec.overflow!.byteLength);
      return codec.overflow!;
    }
    const length = end - FRAME_HEADER_BYTES;
    this.sized(length);
    fragmenter.writeWholeFrame(room, kind, stream(), length);
    try {
      lending.commit(end);
    } catch {
      return 'no-room';
    }
    return length;
  }

  /**
   * Copies an encoded message into room the port lends, as one whole frame, and sends it: one
   * copy, where the batch takes two (into the batch, then into the ring). False when there
   * is no room yet.
   */
  copy(o: OutgoingMessage, fragmenter: Fragmenter): boolean {
    const total = o.head.byteLength + o.body.byteLength;
    const room = this.#lending.reserve(FRAME_HEADER_BYTES + total);
    if (!room) return false;
    room.set(o.head, FRAME_HEADER_BYTES);
    room.set(o.body, FRAME_HEADER_BYTES + o.head.byteLength);
    fragmenter.writeWholeFrame(room, o.kind, o.stream, total);
    this.#lending.commit(FRAME_HEADER_BYTES + total);
    o.offset = total;
    o.done = true;
    return true;
  }

  /**
   * Encodes a value that will wait in the queue: a large one (as the last was) into a staging
   * buffer, given back with {@link InPlaceWriter.giveBack} once the message has gone.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a value msgpack cannot encode.
   */
  encodeToWait(value: unknown): Uint8Array {
    if (!this.#large) return encodeOrFail(this.#codec, value);
    this.#staging ??= new StagingBuffers(
      this.#maxMessage,
      Math.max(STAGING_BUFFERS, Math.floor(STAGING_BYTES / this.#maxMessage)),
    );
    const buffer = this.#staging.take();
    if (!buffer) return encodeOrFail(this.#codec, value);
    const codec = this.#codec;
    let end: number;
    try {
      end = codec.encodeInto(value, buffer, 0);
    } catch (error) {
      this.#staging.give(buffer);
      throw unencodable(error);
    }
    if (end >= 0) return buffer.subarray(0, end);
    this.#staging.give(buffer);
    return codec.overflow!;
  }

  /**
   * Whether `body` lies in a staging buffer: it must go through the queue, whose message gives
   * the buffer back once sent.
   */
  staged(body: Uint8Array): boolean {
    return this.#staging?.holds(body) ?? false;
  }

  /** Takes back the staging buffer under `body`, if it is one (`body` is no longer read). */
  giveBack(body: Uint8Array): void {
    this.#staging?.give(body);
  }

  /**
   * Room to ask for before encoding in place: enough for a value the size of the last one.
   * Encoding into less would overflow midway, and the value would end up copied twice and in
   * a buffer of its own; waiting for the room costs nothing the receiver is not doing anyway.
   * A value too large for one frame asks for the minimum (it overflows into frames anyway).
   */
  #roomToAsk(): number {
    const wanted = FRAME_HEADER_BYTES + Math.max(LARGE_VALUE, this.#lastSize + 64);
    return wanted <= this.#maxMessage ? wanted : FRAME_HEADER_BYTES + LARGE_VALUE;
  }
}
