import { type FramePort, type MessageBatch, VringError, WaiterQueue } from '@vring/core';
import { encodeOrFail, MessageCodec, unencodable } from '../message-codec.js';
import { Fragmenter, OutgoingMessage } from '../wire/fragmenter.js';
import { FRAME_HEADER_BYTES } from '../wire/frame-header.js';
import { dropKept, type KeptCopy, keptCopyOf } from './borrowed-copy.js';
import { FORWARD_MIN, FrameForwarder } from './frame-forwarder.js';
import { InPlaceWriter } from './in-place-writer.js';
import { PollBudget } from './poll-budget.js';
import { pollUntil } from './polling.js';
import { SendGroup } from './send-group.js';

/** Options of a {@link SendQueue}. @internal */
export interface SendQueueOptions {
  /** Largest frame, headers included. */
  maxFrame: number;
  /**
   * Encodes what {@link SendQueue.sendValue} and {@link SendQueue.postValue} send (default:
   * a new one).
   */
  codec?: MessageCodec;
  /** Messages queued to send below which `onWritable` is called (default 256). */
  lowWaterMark?: number;
  /**
   * Bytes queued to send (see {@link SendQueue.queuedBytes}) below which `onWritable` is
   * called, whatever the count (default: no bound by bytes).
   */
  lowWaterBytes?: number;
  /**
   * Called when the send queue shrinks to `lowWaterMark` messages and `lowWaterBytes` bytes
   * after being above either.
   */
  onWritable?(): void;
  /**
   * A large value that has to wait for room is encoded only when room comes, straight into
   * the port's memory (one copy instead of two); its sender must not change it until its
   * send settles. Default false: a value is encoded when it is sent.
   */
  lazyEncoding?: boolean;
}

const RESOLVED = Promise.resolve();
const NO_BODY = new Uint8Array(0);
/** {@link SendQueue.#placeValue}: the value waits in the queue unencoded. */
const LAZY = 3;

/** Where a message went: straight into the ring, into the send batch, or nowhere yet. */
const IN_RING = 1;
const IN_BATCH = 2;
const QUEUE = 0;
type Sent = typeof IN_RING | typeof IN_BATCH;
type Placed = Sent | typeof QUEUE;

/** Ordering lane of a message: messages of one lane arrive in send order. */
export type Lane = string | number | undefined;

/** A message in the send queue, with who waits for it: one object per message. */
class Outgoing extends OutgoingMessage {
  group: SendGroup | undefined = undefined;
  /** What may withdraw the message while none of it is in the ring. */
  signal: AbortSignal | undefined = undefined;
  /** Withdrawn (its signal fired before any of it went): it is no longer queued. */
  withdrawn = false;
  /** A value to encode when it goes in place (see {@link SendQueueOptions.lazyEncoding}). */
  value: unknown = undefined;
  lazy = false;
  /** The shared copy the body lies in, when it was borrowed (given back once done with). */
  kept: KeptCopy | undefined = undefined;

  constructor(
    kind: number,
    stream: number,
    body: Uint8Array,
    head: Uint8Array | undefined,
    readonly lane: Lane,
    readonly resolve: (() => void) | undefined,
    readonly reject: ((error: unknown) => void) | undefined,
  ) {
    super(kind, stream, body, head);
  }
}

/**
 * Frames per message per turn: a message longer than this shares each batch with the
 * messages queued behind it, so a 64 MiB publish does not hold up small ones.
 */
const FRAMES_PER_TURN = 16;

/**
 * The sending half of a {@link Link}: messages cut into frames and written into the ring,
 * concurrent sends batched into one native crossing, ordering per lane with interleaving
 * across lanes, and the queue's own flow control (`drain`, `onWritable`). The first message
 * of a turn goes straight into the ring; the rest of the turn joins the send batch, and a
 * message that cannot join it waits in the queue for the pump. @internal
 */
export abstract class SendQueue {
  readonly transport: FramePort;
  readonly #codec: MessageCodec;
  #fragmenter: Fragmenter;
  /** Large messages written where the peer reads them, when the port lends its memory. */
  readonly #inPlace: InPlaceWriter | undefined;
  /** Large bodies posted written straight into the ring, when the port joins frames. */
  readonly #forwarder: FrameForwarder | undefined;
  readonly #sendBatch: MessageBatch;
  readonly #options: SendQueueOptions;
  readonly #lowWaterMark: number;
  readonly #lowWaterBytes: number;
  /** Messages that could not go straight into the send batch, in send order. */
  #outgoing: Outgoing[] = [];
  /** The bytes (head and body) of the messages in `#outgoing`. */
  #outgoingBytes = 0;
  /** Messages put straight into the send batch since it was last sent (see #appended). */
  #batched = 0;
  /** Of those, the sends waiting on `#batchGroup`. */
  #batchedSends = 0;
  #batchGroup: SendGroup | undefined;
  /** A pump is scheduled or running. */
  #pumping = false;
  /** The send batch is going into the ring (waiting for room): nothing may join it. */
  #sending = false;
  /** The stream number of the next message. */
  #streams = 1;
  #aboveLowWater = false;
  readonly #drainWaiters = new WaiterQueue<void>();
  /** The group later sends of this tick join (see {@link SendGroup}). */
  #group: SendGroup | undefined;
  /** What a send calls to wake a sleeping reader (see {@link SendQueue.wakeOnSend}). */
  #wake: (() => void) | undefined;
  /**
   * A message went straight into the ring in this turn, or the owner asked to batch (see
   * {@link SendQueue.#appended}): later ones wait for the batch.
   */
  #wroteThisTurn = false;
  #failure: VringError | undefined;
  #done = false;
  /**
   * How long to poll for room before sleeping, learnt like the reader's poll: room comes
   * within microseconds from a receiver draining on another core, and never during a poll
   * from one that shares this core or has stopped taking messages.
   */
  #room: PollBudget | undefined;

  /**
   * `batch` is where messages are cut into frames before they go into the ring.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a `maxFrame` beyond the transport's.
   */
  constructor(transport: FramePort, options: SendQueueOptions, batch: MessageBatch) {
    this.transport = transport;
    this.#codec = options.codec ?? new MessageCodec();
    this.#fragmenter = this.#fragmenterFor(options.maxFrame);
    const lending = transport.peerInThread ? undefined : transport.lending;
    // A port that cannot write in place (a device end) would have large messages wait for
    // room that never comes.
    this.#inPlace = lending?.writesInPlace
      ? new InPlaceWriter(lending, this.#codec, transport.maxMessage)
      : undefined;
    this.#forwarder = lending && new FrameForwarder(lending);
    this.#sendBatch = batch;
    this.#options = options;
    this.#lowWaterMark = options.lowWaterMark ?? 256;
    this.#lowWaterBytes = options.lowWaterBytes ?? Number.POSITIVE_INFINITY;
  }

  /** Ends the link with `error`: the queue cannot go on (the transport failed under it). */
  protected abstract fail(error: VringError): void;

  /** Whether the link has closed or failed. */
  get done(): boolean {
    return this.#done;
  }

  /** Messages waiting to be written into the ring, the one being written included. */
  get queued(): number {
    return this.#outgoing.length + this.#batched;
  }

  /**
   * Bytes of the messages waiting in the queue, the one being written included (those
   * already cut into the send batch are not counted: one batch at most). What a router
   * bounds besides the count: a few large messages hold as much memory as many small ones.
   */
  get queuedBytes(): number {
    return this.#outgoingBytes;
  }

  /** The error that closed the link, or `ERR_VRING_CLOSED`. */
  get closedError(): VringError {
    return this.#failure ?? new VringError('ERR_VRING_CLOSED', 'connection is closed');
  }

  /** What closed the link: undefined after a plain close. */
  protected get failure(): VringError | undefined {
    return this.#failure;
  }

  /**
   * Changes the frame size for messages not yet begun: what a peer announces it can take
   * when a session starts.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` beyond the transport's limit.
   */
  setMaxFrame(maxFrame: number): void {
    this.#fragmenter = this.#fragmenterFor(maxFrame);
  }

  #fragmenterFor(maxFrame: number): Fragmenter {
    if (maxFrame > this.transport.maxMessage) {
      throw new VringError(
        'ERR_VRING_INVALID_ARGUMENT',
        `maxFrame ${maxFrame} exceeds the transport's maxMessage ${this.transport.maxMessage}`,
      );
    }
    return new Fragmenter({ maxFrame });
  }

  /** Sends a message; resolves when its last frame is in the ring. */
  send(
    kind: number,
    body: Uint8Array,
    head?: Uint8Array,
    lane?: Lane,
    signal?: AbortSignal,
  ): Promise<void> {
    if (this.#done) return Promise.reject(this.closedError);
    if (!signal) {
      const placed = this.#inPlace?.staged(body) ? QUEUE : this.#place(kind, body, head);
      if (placed !== QUEUE) return this.#promiseOf(placed);
      this.#queue(kind, body, head, lane, undefined, undefined).group = this.#joinGroup();
      return this.#group!.promise;
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    // Not a WaiterQueue wait: aborting withdraws the message only while none of it is in the
    // ring (half a message would break the stream); once begun, the send runs to its end.
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const i = this.#outgoing.indexOf(entry);
        if (i === -1 || entry.offset > 0) return;
        this.#outgoing.splice(i, 1);
        this.#outgoingBytes -= bytesOf(entry);
        entry.withdrawn = true;
        this.#doneWith(entry);
        reject(signal.reason);
      };
      const entry = this.#queue(
        kind,
        body,
        head,
        lane,
        () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
      entry.signal = signal;
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Sends a message nobody waits for (a failure shows in `closed`). A `borrowed` body is
   * valid only during the call (a view of a ring batch, say): it is copied only if the
   * message has to wait in the queue, not when it goes into the send batch at once.
   */
  post(kind: number, body: Uint8Array, head?: Uint8Array, lane?: Lane, borrowed = false): void {
    if (this.#done) return;
    if (this.#inPlace?.staged(body)) {
      this.#queue(kind, body, head, lane, undefined, undefined);
      return;
    }
    if (body.byteLength >= FORWARD_MIN && this.#forward(kind, body, head, lane, borrowed)) return;
    if (this.#place(kind, body, head) !== QUEUE) return;
    if (!borrowed) {
      this.#queue(kind, body, head, lane, undefined, undefined);
      return;
    }
    const kept = keptCopyOf(body);
    this.#queue(kind, kept.body, head, lane, undefined, undefined).kept = kept;
  }

  /**
   * Writes a large posted message straight into the ring, frame by frame, each byte of its
   * body copied once, from where it lies (see {@link FrameForwarder}), when nothing queued
   * would be overtaken. Frames that find no room wait in the queue (a `borrowed` body is
   * copied for them). False when it does not apply: the port cannot join frames, or
   * messages are waiting.
   */
  #forward(
    kind: number,
    body: Uint8Array,
    head: Uint8Array | undefined,
    lane: Lane,
    borrowed: boolean,
  ): boolean {
    const forwarder = this.#forwarder;
    if (!forwarder || !this.#appendable() || this.#sendBatch.count > 0) return false;
    if (head && !forwarder.fits(head, this.#fragmenter)) return false;
    const message = new Outgoing(kind, this.#stream(), body, head, lane, undefined, undefined);
    let done = false;
    try {
      done = forwarder.write(message, this.#fragmenter);
    } catch {
      // A failing port fails the link through the pump, as any send does.
    }
    this.#wake?.();
    if (done) return true;
    if (borrowed) {
      message.kept = keptCopyOf(body);
      message.body = message.kept.body;
    }
    this.#enqueue(message);
    this.#kick();
    return true;
  }

  /**
   * Sends `value` encoded by the codec (see {@link SendQueue.send}). A value msgpack cannot
   * encode rejects with `ERR_VRING_INVALID_ARGUMENT`.
   */
  sendValue(kind: number, value: unknown, lane?: Lane, signal?: AbortSignal): Promise<void> {
    if (this.#done) return Promise.reject(this.closedError);
    try {
      // A send that may be withdrawn waits in the queue, where it can still be taken out.
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (signal) return this.send(kind, this.#encodeToWait(value), undefined, lane, signal);
      const placed = this.#placeValue(kind, value, true);
      if (placed === LAZY) return this.#queueLazy(kind, value, lane);
      return typeof placed === 'number'
        ? this.#promiseOf(placed)
        : this.send(kind, placed, undefined, lane);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Sends `value` encoded by the codec, with nobody waiting (see {@link SendQueue.post}).
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a value msgpack cannot encode.
   */
  postValue(kind: number, value: unknown, lane?: Lane): void {
    if (this.#done) return;
    const placed = this.#placeValue(kind, value);
    if (typeof placed !== 'number') this.post(kind, placed, undefined, lane);
    // (A posted value is never encoded lazily: nobody learns when it may change.)
  }

  /** Resolves when every queued message is in the ring (at once if none is). */
  drain(): Promise<void> {
    if ((this.#outgoing.length === 0 && this.#batched === 0) || this.#done) {
      return Promise.resolve();
    }
    return this.#drainWaiters.wait();
  }

  /**
   * Messages sent for the rest of this turn wait for the batch instead of going straight
   * into the ring: for a router about to send many, one native crossing (and at most one
   * wakeup of the peer) instead of one for the first message and one for the rest.
   */
  deferToBatch(): void {
    if (this.#wroteThisTurn) return;
    this.#wroteThisTurn = true;
    RESOLVED.then(this.#endTurn);
  }

  /**
   * Until called again, every send calls `wake`: a reader asleep on an empty ring goes back
   * to polling, since whoever sends expects an answer. Undefined stops it.
   */
  wakeOnSend(wake: (() => void) | undefined): void {
    this.#wake = wake;
  }

  /**
   * A new peer behind the same transport: messages half written start again from their
   * first frame, after `preamble`, which goes before everything queued.
   */
  protected rewind(preamble: ReadonlyArray<{ kind: number; body: Uint8Array }>): void {
    // Messages already in the send batch go first, to a peer that drops them until it has
    // synced (in flight when the session ended: at most once); the preamble must start a
    // frame of its own, where the peer looks for it.
    this.#fragmenter.closeFrame();
    for (const o of this.#outgoing) {
      o.offset = 0;
      o.done = false;
    }
    const first = preamble.map(
      ({ kind, body }) =>
        new Outgoing(kind, this.#stream(), body, undefined, undefined, undefined, undefined),
    );
    this.#outgoing.unshift(...first);
    for (const o of first) this.#outgoingBytes += bytesOf(o);
    this.#kick();
  }

  /**
   * Stops sending for good: queued messages fail with `error` (or `ERR_VRING_CLOSED`, for
   * which `failure` stays undefined) and drain waits end.
   */
  protected stop(error: VringError): void {
    this.#done = true;
    this.#failure = error.code === 'ERR_VRING_CLOSED' ? undefined : error;
    const reason = this.closedError;
    this.#batchGroup?.fail(reason);
    this.#batchGroup = undefined;
    this.#batched = 0;
    this.#batchedSends = 0;
    this.#outgoingBytes = 0;
    for (const o of this.#outgoing.splice(0)) {
      this.#doneWith(o);
      o.reject?.(reason);
      o.group?.fail(reason);
    }
    this.#drainWaiters.resolveAll();
  }

  #stream(): number {
    const stream = this.#streams;
    this.#streams = (this.#streams % 0xffff_ffff) + 1;
    return stream;
  }

  readonly #nextStream = (): number => this.#stream();

  /**
   * Whether a message may go straight into the send batch now: nothing queued would then be
   * overtaken, and the batch is not on its way into the ring.
   */
  #appendable(): boolean {
    return this.#outgoing.length === 0 && !this.#sending;
  }

  /**
   * Encodes `value` straight into the send batch when it may go there, and returns where it
   * went; else returns its encoding (a buffer of its own) to be sent as a byte body: the
   * batch is not open to it, or has too little room left.
   */
  #placeValue(kind: number, value: unknown, mayWait = false): Sent | Uint8Array | typeof LAZY {
    const inPlace = this.#inPlace;
    if (!this.#appendable()) {
      if (mayWait && inPlace?.expectsLarge && this.#options.lazyEncoding) return LAZY;
      return this.#encodeToWait(value);
    }
    const batch = this.#sendBatch;
    if (inPlace?.expectsLarge && batch.count === 0) {
      // Straight into the port's memory; with no room now, the batch's way (and the queue).
      const placed = inPlace.encode(value, kind, this.#nextStream, this.#fragmenter);
      if (typeof placed === 'number') {
        this.#wake?.();
        return IN_RING;
      }
      if (placed !== 'no-room') return placed;
      // The ring is full: the value waits in a staging buffer and goes whole, in place, when
      // room comes. Through the batch it would be cut into frames (which the receiver puts
      // back together in a buffer of its own) or copied into a fresh buffer to wait.
      return this.#encodeToWait(value);
    }
    const wasEmpty = batch.count === 0;
    const codec = this.#codec;
    const fragmenter = this.#fragmenter;
    const at = fragmenter.bodyOffset(batch);
    let end: number;
    try {
      end = codec.encodeInto(value, batch.data, at);
    } catch (error) {
      throw unencodable(error);
    }
    if (end < 0) {
      inPlace?.sized(codec.overflow!.byteLength);
      return codec.overflow!;
    }
    inPlace?.sized(end - at);
    const stream = this.#stream();
    if (
      fragmenter.commitWhole(batch, kind, stream, end - at) ||
      // Over a frame but within the batch (a 64 KiB value in 64 KiB frames): cut in place.
      fragmenter.commitFragments(batch, kind, stream, end - at)
    ) {
      return this.#appended(wasEmpty);
    }
    return Buffer.from(batch.data.subarray(at, end));
  }

  /** Appends a one-frame message to the send batch when it may go there (see #appended). */
  #place(kind: number, body: Uint8Array, head: Uint8Array | undefined): Placed {
    if (!this.#appendable()) return QUEUE;
    const batch = this.#sendBatch;
    const wasEmpty = batch.count === 0;
    if (!this.#fragmenter.appendWhole(batch, kind, this.#stream(), body, head)) return QUEUE;
    return this.#appended(wasEmpty);
  }

  /** The promise of a send placed in the batch or the ring. */
  #promiseOf(placed: Sent): Promise<void> {
    if (placed === IN_RING) return RESOLVED;
    const group = this.#joinGroup();
    this.#batchGroup = group;
    this.#batchedSends++;
    return group.promise;
  }

  /** Queues `value` to be encoded when it goes in place; resolves once it has. */
  #queueLazy(kind: number, value: unknown, lane: Lane): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const entry = this.#queue(kind, NO_BODY, undefined, lane, resolve, reject);
      entry.value = value;
      entry.lazy = true;
    });
  }

  /** Encodes a value that will wait in the queue (a large one into a staging buffer). */
  #encodeToWait(value: unknown): Uint8Array {
    return this.#inPlace ? this.#inPlace.encodeToWait(value) : encodeOrFail(this.#codec, value);
  }

  /**
   * A message joined the send batch. The first one of a turn goes on into the ring at once
   * when nothing was in the batch before it: a request or a reply then reaches the peer now,
   * not after a microtask, a pump and a promise. Only a one-frame message: the pump resends
   * a batch from its first frame, so a message must go through whole or not at all. Later
   * ones of the turn wait and leave together, in one native crossing. Returns where the message
   * is.
   */
  #appended(wasEmpty: boolean): Sent {
    if (
      wasEmpty &&
      this.#sendBatch.count === 1 &&
      !this.#wroteThisTurn &&
      !this.transport.peerInThread
    ) {
      let sent = 0;
      try {
        sent = this.transport.trySend(this.#sendBatch, 0);
      } catch {
        // A failing transport fails the link through the pump, as any send does: the caller
        // gets a rejected promise, never a throw.
      }
      if (sent === 1) {
        this.#sendBatch.clear();
        this.#wroteThisTurn = true;
        RESOLVED.then(this.#endTurn);
        this.#wake?.();
        return IN_RING;
      }
    }
    if (++this.#batched + this.#outgoing.length > this.#lowWaterMark) this.#aboveLowWater = true;
    this.#kick();
    this.#wake?.();
    return IN_BATCH;
  }

  /** Counts one more send in this turn's group (see {@link SendGroup}). */
  #joinGroup(): SendGroup {
    let group = this.#group;
    if (!group) {
      group = new SendGroup();
      this.#group = group;
    }
    group.pending++;
    return group;
  }

  // Scheduled with `RESOLVED.then`, not queueMicrotask: Node's queueMicrotask allocates an
  // AsyncResource and a bound function per call (~80 ns against ~35 ns), and these run once
  // or twice per request/response turn.
  readonly #endTurn = (): void => {
    this.#wroteThisTurn = false;
  };

  readonly #runPump = (): void => {
    void this.#pump();
  };

  #queue(
    kind: number,
    body: Uint8Array,
    head: Uint8Array | undefined,
    lane: Lane,
    resolve: (() => void) | undefined,
    reject: ((error: unknown) => void) | undefined,
  ): Outgoing {
    const entry = new Outgoing(kind, this.#stream(), body, head, lane, resolve, reject);
    this.#enqueue(entry);
    this.#kick();
    this.#wake?.();
    return entry;
  }

  /** Puts `o` at the end of the queue, counting it toward the low-water marks. */
  #enqueue(o: Outgoing): void {
    this.#outgoing.push(o);
    this.#outgoingBytes += bytesOf(o);
    if (this.#outgoing.length > this.#lowWaterMark || this.#outgoingBytes > this.#lowWaterBytes) {
      this.#aboveLowWater = true;
    }
  }

  #kick(): void {
    if (this.#pumping || this.#done) return;
    this.#pumping = true;
    // Sends issued in the same tick go out in one batch.
    RESOLVED.then(this.#runPump);
  }

  async #pump(): Promise<void> {
    const batch = this.#sendBatch;
    try {
      while (!this.#done) {
        // Sends from here on are a new group: this one's members are in the batch or queued.
        this.#group = undefined;
        // Queued messages follow those already in the batch: they were sent after them.
        const waiting = this.#fill(batch);
        if (batch.count === 0) {
          if (waiting) {
            // A large message next in line, and no room for it yet.
            await this.#roomFor(waiting);
            this.#settle();
            continue;
          }
          this.#settle();
          break;
        }
        this.#sending = true;
        const sending = this.#send(batch);
        if (sending) await sending;
        this.#sending = false;
        batch.clear();
        this.#settle();
        if (this.#outgoing.length === 0) break;
      }
    } catch (error) {
      this.fail(
        error instanceof VringError ? error : new VringError('ERR_VRING_CLOSED', String(error)),
      );
    } finally {
      this.#pumping = false;
      this.#sending = false;
    }
  }

  /**
   * Whether `o` goes as one frame written straight into the port's memory: a whole large
   * message, not begun, that fits a frame of the port.
   */
  #goesInPlace(o: Outgoing): boolean {
    const inPlace = this.#inPlace;
    if (!inPlace || o.offset !== 0) return false;
    return o.lazy || inPlace.fits(o.head.byteLength + o.body.byteLength);
  }

  /**
   * Whether `o` goes frame by frame straight from its body into the ring (see
   * {@link FrameForwarder}): a large body, on a port that joins frames, and not a message
   * for in place.
   */
  #forwards(o: Outgoing): boolean {
    const forwarder = this.#forwarder;
    return (
      forwarder !== undefined &&
      !o.lazy &&
      o.body.byteLength >= FORWARD_MIN &&
      !this.#goesInPlace(o) &&
      forwarder.fits(o.head, this.#fragmenter)
    );
  }

  /** Writes `o` into room the port lends, as one whole frame; false when there is none yet. */
  #sendInPlace(o: Outgoing): boolean {
    // A withdrawn message is out of the queue (and its staging buffer maybe reused): a wait
    // for room that was under way when it was withdrawn must not send it.
    if (o.withdrawn) return false;
    if (o.lazy) return this.#encodeInPlace(o);
    return this.#inPlace!.copy(o, this.#fragmenter);
  }

  /**
   * Encodes a lazily queued value straight into room the port lends. A value that outgrows
   * the room becomes an ordinary message of its encoding (sent from the same place in the
   * queue); one msgpack cannot encode fails its own send only.
   */
  #encodeInPlace(o: Outgoing): boolean {
    let placed: ReturnType<InPlaceWriter['encode']>;
    try {
      placed = this.#inPlace!.encode(o.value, o.kind, () => o.stream, this.#fragmenter);
    } catch (error) {
      // Done, as failed: the resolve #settle then calls comes after the reject, and is moot.
      o.lazy = false;
      o.value = undefined;
      o.done = true;
      o.reject?.(error);
      return true;
    }
    if (placed === 'no-room') return false;
    o.lazy = false;
    o.value = undefined;
    if (typeof placed !== 'number') {
      // Queued as a value (no bytes), it now has a body: counted from here on.
      this.#outgoingBytes += placed.byteLength;
      o.body = placed;
      return this.#goesInPlace(o) && this.#sendInPlace(o);
    }
    o.offset = placed;
    o.done = true;
    return true;
  }

  #roomBudget(): PollBudget {
    this.#room ??= new PollBudget(this.transport);
    return this.#room;
  }

  /**
   * Waits until `o` has gone in place, or its next frame has gone straight into the ring
   * (a forwarded message): polling for room first, then sleeping on the port.
   */
  async #roomFor(o: Outgoing): Promise<void> {
    const transport = this.transport;
    const forwarded = this.#forwards(o);
    const from = o.offset;
    const attempt = forwarded
      ? () => this.#forwarder!.write(o, this.#fragmenter, 1) || o.offset !== from
      : () => this.#sendInPlace(o);
    // Stops when the message went, was withdrawn, or became one for the batch (see #fill).
    const stop = () =>
      this.#done || o.withdrawn || (forwarded ? o.offset !== from : !this.#goesInPlace(o));
    const bytes = forwarded
      ? FRAME_HEADER_BYTES + this.#fragmenter.chunkBytes
      : FRAME_HEADER_BYTES + o.body.byteLength;
    const budget = this.#roomBudget();
    while (!o.done && !stop()) {
      const began = performance.now();
      const pollMs = budget.next();
      if (pollMs > 0 && (await pollUntil(attempt, pollMs, stop, budget.contended))) {
        budget.ended(performance.now() - began, false);
        return;
      }
      if (stop()) return;
      try {
        // The message's own signal ends the wait too: a withdrawn message waits for nothing.
        await transport.waitSendable({
          bytes,
          ...(o.signal && { signal: o.signal }),
        });
      } catch (error) {
        if (o.withdrawn) return;
        throw error;
      }
      budget.ended(performance.now() - began, true);
      if (!stop()) attempt();
    }
  }

  /**
   * Writes the batch into the ring. Straight into it when the transport can say how much
   * fit (no promise when it all does: a request/response turn saves its microtask hops),
   * else through its waiting send.
   */
  #send(batch: MessageBatch): Promise<void> | undefined {
    const sent = this.transport.trySend(batch, 0);
    if (sent === batch.count) return undefined;
    return this.#sendRest(batch, sent);
  }

  /**
   * The ring was full: poll for room as the reader polls for frames (the receiver frees
   * buffers as it goes, usually within microseconds), then sleep until it signals.
   */
  async #sendRest(batch: MessageBatch, start: number): Promise<void> {
    const transport = this.transport;
    const budget = this.#roomBudget();
    let sent = start;
    const attempt = () => {
      sent += transport.trySend(batch, sent);
      return sent === batch.count;
    };
    while (sent < batch.count && !this.#done) {
      const began = performance.now();
      const pollMs = budget.next();
      if (pollMs > 0 && (await pollUntil(attempt, pollMs, () => this.#done, budget.contended))) {
        budget.ended(performance.now() - began, false);
        return;
      }
      // The size matters: a frame may need several of the peer's receive buffers.
      await transport.waitSendable({ bytes: batch.lengths[sent]! });
      budget.ended(performance.now() - began, true);
      attempt();
    }
  }

  /**
   * Fills a batch from the queue in turns of {@link FRAMES_PER_TURN} frames per message:
   * a message whose lane has an unfinished message ahead of it waits for that one. A large
   * message goes in place instead (see {@link SendQueue.#sendInPlace}), in its turn: the
   * batch is sent before it. Returns that message when it is next and there is no room.
   */
  #fill(batch: MessageBatch): Outgoing | undefined {
    for (let progress = true; progress; ) {
      progress = false;
      let blocked: Set<Lane> | undefined;
      for (const o of this.#outgoing) {
        if (o.done || blocked?.has(o.lane)) continue;
        if (this.#goesInPlace(o)) {
          // What is in the batch goes first; then this one, once there is room for it.
          if (batch.count > 0) return undefined;
          if (this.#sendInPlace(o)) {
            progress = true;
            continue;
          }
          // No room yet; or a lazy value turned out too large for one frame, and goes on
          // below as frames of its encoding.
          if (this.#goesInPlace(o)) return o;
        }
        if (this.#forwards(o)) {
          // Straight from the body into the ring, after what is in the batch.
          if (batch.count > 0) return undefined;
          const offset = o.offset;
          if (this.#forwarder!.write(o, this.#fragmenter, FRAMES_PER_TURN)) {
            progress = true;
            continue;
          }
          if (o.offset === offset) return o; // no room for its next frame yet
          progress = true;
          if (o.lane !== undefined) {
            blocked ??= new Set();
            blocked.add(o.lane);
          }
          continue;
        }
        const before = batch.count;
        const done = this.#fragmenter.write(batch, o, FRAMES_PER_TURN);
        const written = batch.count - before;
        if (written > 0) progress = true;
        if (done) continue;
        if (written < FRAMES_PER_TURN) return undefined; // the batch is full
        if (o.lane !== undefined) {
          blocked ??= new Set();
          blocked.add(o.lane);
        }
      }
    }
    return undefined;
  }

  /** `o` is sent, withdrawn or failed: the buffer its body lies in may be used again. */
  #doneWith(o: Outgoing): void {
    this.#inPlace?.giveBack(o.body);
    if (o.kept) {
      dropKept(o.kept);
      o.kept = undefined;
    }
  }

  #settle(): void {
    const group = this.#batchGroup;
    const sends = this.#batchedSends;
    this.#batched = 0;
    this.#batchedSends = 0;
    this.#batchGroup = undefined;
    group?.sent(sends);
    let kept = 0;
    const outgoing = this.#outgoing;
    for (let i = 0; i < outgoing.length; i++) {
      const o = outgoing[i]!;
      if (o.done) {
        this.#outgoingBytes -= bytesOf(o);
        this.#doneWith(o);
        o.resolve?.();
        o.group?.sent();
      } else outgoing[kept++] = o;
    }
    outgoing.length = kept;
    if (
      this.#aboveLowWater &&
      kept <= this.#lowWaterMark &&
      this.#outgoingBytes <= this.#lowWaterBytes
    ) {
      this.#aboveLowWater = false;
      this.#options.onWritable?.();
    }
    if (kept === 0 && this.#drainWaiters.size > 0) this.#drainWaiters.resolveAll();
  }
}

/** What a queued message counts toward the byte bound: its head and body as queued. */
function bytesOf(o: Outgoing): number {
  return o.head.byteLength + o.body.byteLength;
}
