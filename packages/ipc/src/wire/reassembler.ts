import { VringError } from '@vring/core';
import {
  FLAG_FIRST,
  FLAG_LAST,
  FLAG_MORE,
  ReceivedRecord,
  readEthernetHeader,
  readRecord,
} from './frame-header.js';

/** Limits that keep a hostile or broken peer from growing our memory without bound. */
export interface ReassemblerLimits {
  /** Largest message body accepted (default 64 MiB). */
  maxMessage?: number;
  /** Messages in flight at once from one peer (default 64). */
  maxStreams?: number;
  /** Sum of the declared sizes of the messages in flight (default twice `maxMessage`). */
  maxPendingBytes?: number;
}

/**
 * Takes each complete message: its body is `data[start, end)`. Unless `owned`, `data` is the
 * memory the frame was read into: valid only during the call, so decode it at once without
 * keeping references. An `owned` body was reassembled into a buffer of its own.
 */
export type MessageSink = (
  kind: number,
  data: Uint8Array,
  start: number,
  end: number,
  owned: boolean,
  stream: number,
) => void;

interface Partial {
  kind: number;
  total: number;
  /** Grows toward `total` as bytes arrive (see {@link INITIAL_RESERVATION}). */
  body: Buffer;
  received: number;
}

/**
 * Bytes reserved when a message starts. A message declares its size in its first fragment,
 * but a peer can declare 64 MiB and send nothing more: memory follows what actually
 * arrived (doubling, so a large message costs at most one extra copy), not what was
 * declared.
 */
const INITIAL_RESERVATION = 1024 * 1024;

function protocolError(reason: string, message: string): VringError {
  return new VringError('ERR_VRING_PROTOCOL', `invalid fragment: ${message}`, { reason });
}

/**
 * Puts messages back together from the frames of one peer. Fragments of one message arrive
 * in order; fragments of different messages may interleave (a big message never holds up
 * small ones for long). Any violation throws, and the caller should disconnect the peer:
 * after a lost or forged fragment nothing that follows can be trusted.
 */
export class Reassembler {
  readonly #maxMessage: number;
  readonly #maxStreams: number;
  readonly #maxPendingBytes: number;
  readonly #streams = new Map<number, Partial>();
  #pendingBytes = 0;
  readonly #sink: MessageSink;
  readonly #record = new ReceivedRecord();

  constructor(sink: MessageSink, limits: ReassemblerLimits = {}) {
    this.#sink = sink;
    this.#maxMessage = limits.maxMessage ?? 64 * 1024 * 1024;
    this.#maxStreams = limits.maxStreams ?? 64;
    this.#maxPendingBytes = limits.maxPendingBytes ?? 2 * this.#maxMessage;
  }

  /** Bytes reserved for messages still in flight. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Messages still in flight. */
  get pendingMessages(): number {
    return this.#streams.size;
  }

  /**
   * Takes the frame `data[start, end)` and hands every message it completes to the sink, in
   * order: a frame can carry several whole messages and the fragment of one more.
   * @throws VringError `ERR_VRING_PROTOCOL` (with `reason`) or `ERR_VRING_OVERSIZED_MESSAGE`.
   */
  push(data: Uint8Array, start = 0, end = data.byteLength): void {
    const r = this.#record;
    for (let at = readEthernetHeader(data, start, end); ; at = r.chunkEnd) {
      readRecord(data, at, end, r);
      this.#take(data, r);
      if ((r.flags & FLAG_MORE) === 0) return;
    }
  }

  #take(data: Uint8Array, f: ReceivedRecord): void {
    const first = (f.flags & FLAG_FIRST) !== 0;
    const last = (f.flags & FLAG_LAST) !== 0;
    const length = f.chunkEnd - f.chunkStart;
    if (f.totalLength > this.#maxMessage) {
      throw new VringError(
        'ERR_VRING_OVERSIZED_MESSAGE',
        `a message of ${f.totalLength} bytes exceeds the limit of ${this.#maxMessage}`,
      );
    }
    if (first) {
      if (this.#streams.has(f.stream)) {
        throw protocolError('stream-restarted', `stream ${f.stream} started again before it ended`);
      }
      // Fast path: the whole message in one record needs no reassembly buffer.
      if (last) {
        this.#sink(f.kind, data, f.chunkStart, f.chunkEnd, false, f.stream);
        return;
      }
      if (this.#streams.size >= this.#maxStreams) {
        throw protocolError('too-many-streams', `more than ${this.#maxStreams} messages in flight`);
      }
      if (this.#pendingBytes + f.totalLength > this.#maxPendingBytes) {
        throw protocolError(
          'pending-bytes-exceeded',
          `messages in flight would reserve more than ${this.#maxPendingBytes} bytes`,
        );
      }
      const body = Buffer.allocUnsafe(
        Math.min(f.totalLength, Math.max(INITIAL_RESERVATION, length)),
      );
      body.set(data.subarray(f.chunkStart, f.chunkEnd), 0);
      this.#streams.set(f.stream, {
        kind: f.kind,
        total: f.totalLength,
        body,
        received: length,
      });
      this.#pendingBytes += f.totalLength;
      return;
    }
    const partial = this.#streams.get(f.stream);
    if (!partial) {
      throw protocolError('fragment-without-start', `stream ${f.stream} has no first fragment`);
    }
    if (f.kind !== partial.kind || f.totalLength !== partial.total) {
      throw protocolError('fragment-mismatch', `stream ${f.stream} changed its kind or length`);
    }
    if (f.offset !== partial.received) {
      throw protocolError(
        'fragment-out-of-order',
        `stream ${f.stream} expected offset ${partial.received}, got ${f.offset}`,
      );
    }
    const needed = f.offset + length;
    if (needed > partial.body.byteLength) {
      const grown = Buffer.allocUnsafe(
        Math.min(partial.total, Math.max(needed, partial.body.byteLength * 2)),
      );
      grown.set(partial.body.subarray(0, partial.received), 0);
      partial.body = grown;
    }
    partial.body.set(data.subarray(f.chunkStart, f.chunkEnd), f.offset);
    partial.received = needed;
    if (!last) return;
    this.#streams.delete(f.stream);
    this.#pendingBytes -= partial.total;
    this.#sink(partial.kind, partial.body, 0, partial.total, true, f.stream);
  }

  /** Drops every message in flight (e.g. when the peer is gone). */
  clear(): void {
    this.#streams.clear();
    this.#pendingBytes = 0;
  }
}
