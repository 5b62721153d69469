import { setImmediate as nextLoopTurn } from 'node:timers/promises';
import {
  type EndpointOptions,
  type NotificationMode,
  notificationPolicy,
} from './endpoint-options.js';
import { VringError } from './errors.js';
import type { EventFd } from './event-fd.js';
import type { FrameLending, FramePolling, FramePort } from './frame-port.js';
import type { InPlaceBatch } from './in-place-batch.js';
import { MessageBatch } from './message-batch.js';
import { WaiterQueue } from './waiter-queue.js';

const RESOLVED: Promise<void> = Promise.resolve();
const NO_AREAS: readonly Buffer[] = [];

/** What an end releases; held apart from the end so a finalizer can release it. */
interface EndResources {
  handle: NativeQueuePairEnd;
  wakeups: readonly EventFd[];
  owned: ReadonlyArray<{ close(): void }>;
}

function release({ handle, wakeups, owned }: EndResources): void {
  for (const fd of wakeups) fd.stopWatching();
  handle.close();
  for (const resource of owned) resource.close();
}

// An end that was dropped without close() gives back its memory and fds when collected.
const dropped = new FinalizationRegistry<EndResources>(release);

// Ends with a pending wait are kept reachable, like a socket being read: an awaited
// receive() must not vanish with its end because the caller kept no reference.
const waiting = new Set<QueuePairEnd>();

/** Counters of one end. @public */
export interface QueuePairStats {
  /** Messages this end put on its send ring. */
  messagesSent: number;
  /** Payload bytes of those messages. */
  bytesSent: number;
  /** Messages this end took off its receive ring. */
  messagesReceived: number;
  /** Payload bytes of those messages. */
  bytesReceived: number;
  /** Eventfd signals this end sent to its peer: what notification suppression saves. */
  notificationsSent: number;
  /** Messages that could not be delivered (a non-mergeable receive buffer too small). */
  dropped: number;
}

/** Options of a single wait. @public */
export interface WaitOptions {
  /** Ends the wait early: it rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of {@link QueuePairEnd.waitSendable}. @public */
export interface WaitSendableOptions extends WaitOptions {
  /** Size of the next message to send: wait until it fits, not just any message. */
  bytes?: number;
}

/** The native handle both ends share (see native/binding/queue_pair_wrap.cc). @internal */
export interface NativeQueuePairEnd {
  send(
    data: Uint8Array,
    byteOffset: number,
    lengths: Uint32Array,
    start: number,
    count: number,
    spinNs: number,
  ): number;
  receive(out: Uint8Array, lengths: Uint32Array, maxCount: number, spinNs: number): number;
  /** Whether a message waits to be received, after spinning up to `spinNs` for one. */
  receivable(spinNs: number): boolean;
  armReceive(): boolean;
  disarmReceive(): void;
  armSend(nextMessageBytes: number): boolean;
  disarmSend(): void;
  stats(): QueuePairStats;
  close(): void;
  readonly broken: boolean;
  lend(): ArrayBuffer[];
  receiveInPlace(
    locations: Float64Array,
    scratch: Uint8Array,
    maxCount: number,
    inPlaceMin: number,
    spinNs: number,
  ): number;
  release(count: number): void;
  /** Only the driver writes in place (the device writes into buffers the driver chose). */
  reserve?(minBytes: number, out: Float64Array): boolean;
  commit?(bytes: number): void;
  /** The device's way to send a frame from two places (the driver reserves room instead). */
  sendJoined?(head: Uint8Array, body: Uint8Array): boolean;
}

/**
 * Frames from this size on are read in place: below it a copy costs less than holding the
 * memory and a native call to release it. @internal
 */
export const IN_PLACE_MIN = 8 * 1024;

/**
 * What both ends of a queue pair do: batch send and receive, and the notification policy
 * that decides when to spin, when to sleep and when to wake the peer.
 *
 * One sender and one receiver at a time: concurrent `send()` calls are queued in call
 * order, and so are concurrent `receive()` calls.
 *
 * @public
 */
export abstract class QueuePairEnd
  implements FramePort, FramePolling, FrameLending, AsyncDisposable
{
  /** @internal */
  protected readonly handle: NativeQueuePairEnd;
  /** Largest message either side may send, in bytes. */
  readonly maxMessage: number;
  /** Settles once the end is closed (`undefined`) or failed (the error). Never rejects. */
  readonly closed: Promise<VringError | undefined>;

  readonly #wakeups: readonly EventFd[];
  readonly #owned: ReadonlyArray<{ close(): void }>;
  readonly #mode: NotificationMode;
  readonly #spinNs: number;
  readonly #waiters = new WaiterQueue<void>(() => this.#updateRefs());
  #failure: VringError | undefined;
  #done = false;
  #peerGone: VringError | undefined;
  #keepAlive = true;
  #sendsWaiting = 0;
  /** Whether the wakeup fds are ref'd now (they start unref'd: see EventFd). */
  #held = false;
  #resolveClosed!: (value: VringError | undefined) => void;
  #sendChain: Promise<void> = Promise.resolve();
  #receiveChain: Promise<unknown> = Promise.resolve();
  // Operations queued behind one that had to wait; zero means the fast path may run now.
  #sendsQueued = 0;
  #receivesQueued = 0;
  #sendBatch: MessageBatch | undefined;
  #receiveBatch: MessageBatch | undefined;
  /** The lent areas as Buffers, made on first use. */
  #areas: readonly Buffer[] | undefined;
  readonly #reservation = new Float64Array(3);

  /** @internal */
  protected constructor(
    handle: NativeQueuePairEnd,
    maxMessage: number,
    wakeups: readonly EventFd[],
    owned: ReadonlyArray<{ close(): void }>,
    options: EndpointOptions,
  ) {
    this.handle = handle;
    this.maxMessage = maxMessage;
    this.#wakeups = wakeups;
    this.#owned = owned;
    const policy = notificationPolicy(options);
    this.#mode = policy.mode;
    this.#spinNs = policy.spinNs;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    if (this.#mode === 'poll') {
      // A polling end never sleeps, so the peer need never signal it.
      handle.disarmReceive();
      handle.disarmSend();
    } else {
      for (const fd of wakeups) fd.unref();
    }
    QueuePairEnd.#connectWeakly(new WeakRef(this), this.#mode === 'poll' ? [] : wakeups, options);
    dropped.register(this, { handle, wakeups, owned }, this);
  }

  /**
   * Watchers and the lifeline reach the end only weakly: they outlive it (a watching eventfd
   * is pinned), and must not keep a dropped end from being collected. Static on purpose: a
   * closure created in the constructor would share its context, and with it `this`.
   */
  static #connectWeakly(
    self: WeakRef<QueuePairEnd>,
    wakeups: readonly EventFd[],
    options: EndpointOptions,
  ): void {
    for (const fd of wakeups) {
      fd.watch(() => {
        const end = self.deref();
        if (end) end.#onWakeup();
      });
    }
    const peerGone = () => {
      const end = self.deref();
      if (end) end.#onPeerGone();
    };
    options.lifeline?.closed.then(peerGone, peerGone);
  }

  /** The notification policy in force. */
  get notification(): NotificationMode {
    return this.#mode;
  }

  /** The spin budget in µs (0 in `event` mode): see {@link EndpointOptions.spinMicros}. */
  get spinMicros(): number {
    return this.#spinNs / 1000;
  }

  /** The peer is another thread or process: never in this one's event loop. */
  readonly peerInThread = false;

  /** This end can be polled: {@link QueuePairEnd.tryReceive} and {@link QueuePairEnd.waitReceivable}. */
  get polling(): FramePolling {
    return this;
  }

  /** This end reads (and, the driver, writes) large frames in place. */
  get lending(): FrameLending {
    return this;
  }

  /** Frames of at least this many bytes are read in place. */
  readonly inPlaceMin = IN_PLACE_MIN;

  /**
   * Takes what has arrived into `batch` without waiting: large frames as locations in
   * shared memory (held until {@link QueuePairEnd.release}), the rest copied into its
   * scratch buffer, which must hold at least `maxMessage` bytes.
   */
  tryReceiveInPlace(batch: InPlaceBatch): number {
    this.#check();
    let n = 0;
    if (this.#receivable()) {
      try {
        n = this.handle.receiveInPlace(
          batch.locations,
          batch.scratch,
          batch.locations.length / 3,
          IN_PLACE_MIN,
          0,
        );
      } catch (error) {
        throw this.#failed(error);
      }
    }
    batch.filled(n, n > 0 ? this.#lentAreas() : NO_AREAS);
    return n;
  }

  /** Gives back the oldest `count` frames read in place. Nothing to do once closed. */
  release(count: number): void {
    if (count === 0 || this.#done) return;
    this.#call(() => {
      this.handle.release(count);
      return 0;
    });
  }

  /** Whether this end writes frames in place: the driver does, the device never does. */
  get writesInPlace(): boolean {
    return this.handle.reserve !== undefined;
  }

  /**
   * Room in shared memory for the next frame, at least `minBytes` and as large as is
   * contiguous now, or undefined when there is none yet or this end cannot write in place
   * (a device writes into the buffers its driver posted).
   */
  reserve(minBytes: number): Buffer | undefined {
    const handle = this.handle;
    if (!handle.reserve) return undefined;
    this.#checkSendable();
    const room = this.#reservation;
    if (!this.#call(() => Number(handle.reserve!(minBytes, room)))) return undefined;
    const offset = room[1]!;
    return this.#lentAreas()[room[0]!]!.subarray(offset, offset + room[2]!);
  }

  /** Sends the first `bytes` bytes written into the reserved room as one frame. */
  commit(bytes: number): void {
    const handle = this.handle;
    if (!handle.commit) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'this end cannot write in place');
    }
    this.#checkSendable();
    this.#call(() => {
      handle.commit!(bytes);
      return 0;
    });
  }

  /** Sends `head` + `body` as one frame, each copied once into the ring; false without room now. */
  trySendJoined(head: Uint8Array, body: Uint8Array): boolean {
    const bytes = head.byteLength + body.byteLength;
    if (bytes > this.maxMessage) {
      throw new VringError(
        'ERR_VRING_OVERSIZED_MESSAGE',
        `message of ${bytes} bytes exceeds maxMessage ${this.maxMessage}`,
      );
    }
    const handle = this.handle;
    if (handle.sendJoined) {
      this.#checkSendable();
      return this.#call(() => Number(handle.sendJoined!(head, body))) === 1;
    }
    const room = this.reserve(bytes);
    if (!room) return false;
    room.set(head, 0);
    room.set(body, head.byteLength);
    this.commit(bytes);
    return true;
  }

  #lentAreas(): readonly Buffer[] {
    this.#areas ??= this.handle.lend().map((area) => Buffer.from(area));
    return this.#areas;
  }

  /** Counters since creation. */
  get stats(): QueuePairStats {
    return this.handle.stats();
  }

  /**
   * Queues messages of `batch` starting at message `start`, without waiting. Returns how
   * many were accepted; the rest did not fit in the ring (try again after
   * {@link QueuePairEnd.waitSendable}).
   */
  trySend(batch: MessageBatch, start = 0): number {
    this.#checkSendable();
    return this.#sendFrom(batch, start, 0) - start;
  }

  /** Fills `batch` with the messages that have arrived, without waiting; returns their number. */
  tryReceive(batch: MessageBatch): number {
    this.#check();
    const n = this.#receivable() ? this.#receiveInto(batch, 0) : 0;
    if (n === 0) batch.clear();
    return n;
  }

  /**
   * Sends every message of `batch`, waiting for ring space as needed. Resolves when the
   * last message is in the ring (not when the peer has read it).
   */
  sendBatch(batch: MessageBatch, options: WaitOptions = {}): Promise<void> {
    let start = 0;
    if (this.#sendsQueued === 0 && !options.signal?.aborted) {
      // Fast path: nothing queued ahead, so go straight to the ring; most batches fit and
      // resolve without a promise hop.
      try {
        this.#checkSendable();
        start = this.#sendFrom(batch, start, 0);
      } catch (error) {
        return Promise.reject(error);
      }
      if (start === batch.count) return RESOLVED;
    }
    const from = start;
    return this.#queueSend(() => this.#sendAll(batch, options.signal, from));
  }

  /** Sends one message or several, in order. Resolves when all are in the ring. */
  send(messages: Uint8Array | readonly Uint8Array[], options: WaitOptions = {}): Promise<void> {
    const list = messages instanceof Uint8Array ? [messages] : messages;
    for (const m of list) {
      if (m.byteLength > this.maxMessage) {
        return Promise.reject(
          new VringError(
            'ERR_VRING_OVERSIZED_MESSAGE',
            `message of ${m.byteLength} bytes exceeds maxMessage ${this.maxMessage}`,
          ),
        );
      }
    }
    return this.#queueSend(async () => {
      this.#sendBatch ??= new MessageBatch({ bytes: Math.max(this.maxMessage, 256 * 1024) });
      const batch = this.#sendBatch;
      let i = 0;
      while (i < list.length) {
        batch.clear();
        while (i < list.length && batch.push(list[i]!)) i++;
        await this.#sendAll(batch, options.signal, 0);
      }
    });
  }

  /**
   * Waits until at least one message has arrived and fills `batch` (a batch owned by this
   * end when omitted) with what is there. The batch's views are valid until it is refilled.
   */
  receive(batch?: MessageBatch, options: WaitOptions = {}): Promise<MessageBatch> {
    const target = batch ?? this.#defaultReceiveBatch();
    if (this.#receivesQueued === 0 && !options.signal?.aborted) {
      // Fast path: when messages are there (or arrive within the spin budget), no promise
      // machinery beyond the one returned.
      try {
        this.#check();
        if (this.#receiveInto(target, this.#spinNs) > 0) return Promise.resolve(target);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    this.#receivesQueued++;
    const run = this.#receiveChain.then(async () => {
      for (;;) {
        this.#check();
        if (this.#receiveInto(target, this.#spinNs) > 0) return target;
        // After the peer left, a receive that finds nothing (or only a message it never
        // finished) means everything deliverable has been delivered.
        if (this.#peerGone) this.destroy(this.#peerGone);
        await this.#wait('receive', options.signal);
      }
    });
    this.#receiveChain = run.then(
      () => void this.#receivesQueued--,
      () => void this.#receivesQueued--,
    );
    return run;
  }

  /** Yields each message as its own Buffer (a copy, safe to keep), until the end closes. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    const batch = new MessageBatch({ bytes: Math.max(this.maxMessage, 256 * 1024) });
    for (;;) {
      try {
        await this.receive(batch);
      } catch (error) {
        if (error instanceof VringError && error.code === 'ERR_VRING_CLOSED') return;
        throw error;
      }
      for (const view of batch) yield Buffer.from(view);
    }
  }

  /** Resolves once messages are waiting to be received (or rejects if the end fails). */
  async waitReceivable(options: WaitOptions = {}): Promise<void> {
    await this.#wait('receive', options.signal);
  }

  /**
   * Resolves once the ring may have space again (or rejects if the end fails): for a message
   * of `bytes` when given, which may need several buffers.
   */
  async waitSendable(options: WaitSendableOptions = {}): Promise<void> {
    await this.#wait('send', options.signal, options.bytes ?? 0);
  }

  /** Let pending waits keep the process alive (the default), like a socket being read. */
  ref(): this {
    this.#keepAlive = true;
    this.#updateRefs();
    return this;
  }

  /**
   * Let the process exit even while this end waits for its peer to send. A send waiting for
   * ring space still keeps the process alive: exiting would lose what it holds.
   */
  unref(): this {
    this.#keepAlive = false;
    this.#updateRefs();
    return this;
  }

  /**
   * Fails the end with `error`: pending and later operations reject with it. Used when the
   * peer is known to be gone. Releases everything, like {@link QueuePairEnd.close}.
   */
  destroy(error?: VringError): void {
    if (this.#done) return;
    this.#failure = error;
    this.#finish(error);
  }

  /** Releases the rings' memory, eventfds and handles. Pending waits reject with `ERR_VRING_CLOSED`. */
  close(): void {
    this.destroy();
  }

  /** Same as {@link QueuePairEnd.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  #defaultReceiveBatch(): MessageBatch {
    this.#receiveBatch ??= new MessageBatch({ bytes: Math.max(this.maxMessage, 256 * 1024) });
    return this.#receiveBatch;
  }

  #queueSend(work: () => Promise<void>): Promise<void> {
    this.#sendsQueued++;
    const run = this.#sendChain.then(work);
    this.#sendChain = run.then(
      () => void this.#sendsQueued--,
      () => void this.#sendsQueued--,
    );
    return run;
  }

  /** Puts messages `start..` of `batch` into the ring (spinning per the policy); returns the next unsent index. */
  #sendFrom(batch: MessageBatch, start: number, spinNs: number): number {
    let offset = 0;
    for (let i = 0; i < start; i++) offset += batch.lengths[i]!;
    return this.#sendAt(batch, start, offset, spinNs);
  }

  /** Sends messages `start..` whose bytes begin at `offset`; returns the next unsent index. */
  #sendAt(batch: MessageBatch, start: number, offset: number, spinNs: number): number {
    try {
      return (
        start +
        this.handle.send(batch.data, offset, batch.lengths, start, batch.count - start, spinNs)
      );
    } catch (error) {
      throw this.#failed(error);
    }
  }

  /**
   * Fills `target` with what has arrived (spinning per `spinNs`); returns the count. An empty
   * result leaves `target` alone: it may still hold what an earlier receive returned.
   */
  #receiveInto(target: MessageBatch, spinNs: number): number {
    let n: number;
    try {
      n = this.handle.receive(target.data, target.lengths, target.lengths.length, spinNs);
    } catch (error) {
      throw this.#failed(error);
    }
    if (n > 0) target.filled(n);
    return n;
  }

  async #sendAll(
    batch: MessageBatch,
    signal: AbortSignal | undefined,
    start: number,
  ): Promise<void> {
    // The byte offset advances with `start` instead of being summed again on every pass.
    let offset = 0;
    for (let i = 0; i < start; i++) offset += batch.lengths[i]!;
    while (start < batch.count) {
      this.#checkSendable();
      const next = this.#sendAt(batch, start, offset, this.#spinNs);
      for (let i = start; i < next; i++) offset += batch.lengths[i]!;
      start = next;
      if (start < batch.count) await this.#wait('send', signal, batch.lengths[start]!);
    }
  }

  /**
   * Whether something waits in the receive ring: a bare native check, with no buffers to
   * marshal, for the tries that find nothing (most of a poll's).
   */
  #receivable(): boolean {
    try {
      return this.handle.receivable(0);
    } catch (error) {
      throw this.#failed(error);
    }
  }

  /** Runs a native data-path call; a broken ring fails the whole end. */
  #call(fn: () => number): number {
    try {
      return fn();
    } catch (error) {
      throw this.#failed(error);
    }
  }

  /** A native error that means the ring is unusable (not a bad argument) fails the end. */
  #failed(error: unknown): unknown {
    if (
      error instanceof VringError &&
      error.code !== 'ERR_VRING_INVALID_ARGUMENT' &&
      error.code !== 'ERR_VRING_OVERSIZED_MESSAGE'
    ) {
      this.destroy(error);
    }
    return error;
  }

  #checkSendable(): void {
    if (this.#peerGone) this.destroy(this.#peerGone);
    this.#check();
  }

  /**
   * The peer is gone: nothing will be read or refilled any more. Messages it left in the ring
   * can still be received; the end fails once they are consumed (at once if there are none).
   */
  #onPeerGone(): void {
    if (this.#done) return;
    this.#peerGone = new VringError('ERR_VRING_PEER_DISCONNECTED', 'the peer went away');
    let pending = false;
    try {
      pending = this.handle.armReceive();
    } catch {
      // A ring the peer left broken: nothing more to deliver.
    }
    if (pending) this.#waiters.resolveAll();
    else this.destroy(this.#peerGone);
  }

  #check(): void {
    if (this.#done)
      throw this.#failure ?? new VringError('ERR_VRING_CLOSED', 'queue pair end is closed');
  }

  async #wait(
    kind: 'receive' | 'send',
    signal: AbortSignal | undefined,
    nextMessageBytes = 0,
  ): Promise<void> {
    if (this.#peerGone) {
      // What the peer sent before leaving is still delivered; only then does the end fail.
      if (kind === 'receive' && !this.#done && this.#call(() => Number(this.handle.armReceive())))
        return;
      this.destroy(this.#peerGone);
    }
    this.#check();
    signal?.throwIfAborted();
    if (this.#mode === 'poll') {
      // The spin happened inside the native call; give the event loop a turn so timers,
      // sockets (and a peer's disconnect) are seen, then spin again.
      await nextLoopTurn();
      this.#check();
      return;
    }
    const ready = this.#call(() =>
      Number(kind === 'receive' ? this.handle.armReceive() : this.handle.armSend(nextMessageBytes)),
    );
    if (ready) return;
    if (kind === 'receive') {
      await this.#waiters.wait(signal);
      return;
    }
    // A send that waits holds data the application handed over: it keeps the process alive
    // whatever ref()/unref() say (exiting would lose it).
    this.#sendsWaiting++;
    try {
      await this.#waiters.wait(signal);
    } finally {
      this.#sendsWaiting--;
      this.#updateRefs();
    }
  }

  #onWakeup(): void {
    if (this.#done) return;
    try {
      // Stop further signals while we process; the next wait re-arms.
      this.handle.disarmReceive();
      this.handle.disarmSend();
    } catch (error) {
      this.destroy(error as VringError);
      return;
    }
    this.#waiters.resolveAll();
  }

  #updateRefs(): void {
    if (this.#done || this.#mode === 'poll') return;
    if (this.#waiters.size > 0) waiting.add(this);
    else waiting.delete(this);
    const hold = this.#waiters.size > 0 && (this.#keepAlive || this.#sendsWaiting > 0);
    // Native calls only on a change: a request/response loop flips keepAlive every turn.
    if (hold === this.#held) return;
    this.#held = hold;
    for (const fd of this.#wakeups) {
      if (hold) fd.ref();
      else fd.unref();
    }
  }

  #finish(error: VringError | undefined): void {
    this.#done = true;
    this.#waiters.rejectAll(
      error ?? new VringError('ERR_VRING_CLOSED', 'queue pair end is closed'),
    );
    waiting.delete(this);
    dropped.unregister(this);
    // Views handed out keep their areas mapped; this end no longer does.
    this.#areas = undefined;
    release({ handle: this.handle, wakeups: this.#wakeups, owned: this.#owned });
    this.#resolveClosed(error);
  }
}
