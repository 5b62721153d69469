/**
 * `VhostUserPort`: the data path of one front-end attached to a `VhostUserBackend`, a
 * {@link FramePort} whose virtio-net rings (queue 0 = receive, 1 = transmit) live in the
 * front-end's memory. Its {@link VhostUserSession} runs the control connection and hands it
 * a fresh queue pair whenever the front-end (re)starts the rings; the port keeps waits,
 * counters and ref state across those restarts, so the application sees one port until the
 * front-end disconnects.
 *
 * A front-end that breaks the protocol or a ring with hostile data fails this port only: the
 * error is reported, the connection closed and every fd and mapping released.
 *
 * @packageDocumentation
 */
import type { DeviceQueuePair } from '../device-queue-pair.js';
import type { NotificationMode } from '../endpoint-options.js';
import { VringError } from '../errors.js';
import type { FdSocket } from '../fd-socket.js';
import type { FrameLending, FramePolling, FramePort } from '../frame-port.js';
import type { InPlaceBatch } from '../in-place-batch.js';
import { MessageBatch } from '../message-batch.js';
import type { PeerCredentials } from '../peer-access.js';
import {
  IN_PLACE_MIN,
  type QueuePairStats,
  type WaitOptions,
  type WaitSendableOptions,
} from '../queue-pair-end.js';
import { WaiterQueue } from '../waiter-queue.js';
import {
  type ResolvedPortOptions,
  resolvePortOptions,
  type VhostUserPortOptions,
} from './backend-options.js';
import { VhostUserSession } from './backend-session.js';
import { VIRTIO_F_RING_PACKED } from './features.js';

/** Per-port counters, summed over every time the port went live. @public */
export interface VhostUserPortStats {
  /** Frames the front-end transmitted that this port received. */
  framesReceived: number;
  /** Bytes of those frames (without the net header). */
  bytesReceived: number;
  /** Frames written into the front-end's receive buffers. */
  framesSent: number;
  /** Bytes of those frames (without the net header). */
  bytesSent: number;
  /** Frames not delivered because a non-mergeable receive buffer was too small. */
  dropped: number;
  /** Times the data path went live (1 + reconnect replays). */
  starts: number;
  /**
   * Chains a killed back-end had taken from the front-end's rings and not returned, taken
   * again by this port from the in-flight record (INFLIGHT_SHMFD) when it started.
   */
  resubmitted: number;
  /** Memory regions the front-end added one at a time (ADD_MEM_REG, CONFIGURE_MEM_SLOTS). */
  regionsAdded: number;
}

/** Called with every error that ends a port. @internal */
export type PortErrorHandler = (error: VringError, port: VhostUserPort) => void;

/**
 * One front-end's virtio-net device. Frames move in batches: {@link VhostUserPort.receive}
 * waits for frames the front-end transmitted, {@link VhostUserPort.sendBatch} writes frames
 * into its receive queue. Both wait across a stop/restart of the rings (a front-end that
 * reconnects and replays its handshake), and fail only once the port is closed.
 *
 * @public
 */
export class VhostUserPort implements FramePort, FramePolling, FrameLending, AsyncDisposable {
  /** A number unique within the backend, for logs. */
  readonly id: number;
  /** Settles when the port is closed: `undefined` for a normal close, else the error. */
  readonly closed: Promise<VringError | undefined>;
  /**
   * The front-end's process (pid, uid, gid as the kernel recorded them when the connection
   * was made); undefined when the kernel could not tell.
   */
  readonly peer: PeerCredentials | undefined;

  readonly #options: ResolvedPortOptions;
  readonly #onError: PortErrorHandler;
  readonly #session: VhostUserSession;
  /** The port of queue pair 0, which owns the session; `this` for that port itself. */
  readonly #primary: VhostUserPort;
  /** Every queue pair's port, by index (only on the primary; empty on the others). */
  readonly #queuePairs: VhostUserPort[] = [];
  readonly #liveWaiters = new WaiterQueue<void>(() => undefined);
  #pair: DeviceQueuePair | undefined;
  #queueSize: number | undefined;
  /** Frames read in place from the live pair and not released yet. */
  #held = 0;
  /**
   * Frames a stopped pair gave back as it stopped, that the reader still counts as held:
   * the oldest it releases, so they are skipped there.
   */
  #heldByStopped = 0;
  #keepAlive = true;
  #done = false;
  #failure: VringError | undefined;
  #resolveClosed!: (error: VringError | undefined) => void;
  readonly #totals: VhostUserPortStats = {
    framesReceived: 0,
    bytesReceived: 0,
    framesSent: 0,
    bytesSent: 0,
    dropped: 0,
    starts: 0,
    resubmitted: 0,
    regionsAdded: 0,
  };

  /**
   * The port of queue pair 0 on `socket`; with `primary`, the port of a further queue pair
   * of that one's connection.
   * @internal
   */
  constructor(
    id: number,
    socket: FdSocket,
    options: VhostUserPortOptions,
    onError: PortErrorHandler,
    primary?: VhostUserPort,
  ) {
    this.id = id;
    this.peer = primary ? primary.peer : peerOf(socket);
    this.#options = primary ? primary.#options : resolvePortOptions(options);
    this.#onError = onError;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#primary = primary ?? this;
    if (primary) {
      this.#session = primary.#session;
      return;
    }
    this.#session = new VhostUserSession(socket, this.#options, {
      started: (pair, index) => this.#queuePairs[index]!.#started(pair),
      stopped: (pair, index) => this.#queuePairs[index]!.#stopped(pair),
      ended: (error) => (error ? this.#fail(error) : this.#finish(undefined)),
    });
    this.#queuePairs.push(this);
    while (this.#queuePairs.length < this.#options.queuePairs) {
      this.#queuePairs.push(new VhostUserPort(id, socket, options, onError, this));
    }
  }

  /** How many queue pairs the port offers (the `queuePairs` option). */
  get queuePairs(): number {
    return this.#options.queuePairs;
  }

  /**
   * The port of queue pair `index` (the front-end's receiveq/transmitq `index + 1`, vrings
   * `2·index` and `2·index + 1`): the same API, for the frames of that pair only. Pair 0 is
   * this port itself. Each pair goes live when the front-end enables both its vrings, so a
   * pair the front-end never enables simply never goes live. They share one connection:
   * closing any of them, or a failure of any, closes them all.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` when `index` is not below
   * {@link VhostUserPort.queuePairs}.
   */
  queuePair(index: number): VhostUserPort {
    const port = Number.isInteger(index) ? this.#primary.#queuePairs[index] : undefined;
    if (!port) {
      throw new VringError(
        'ERR_VRING_INVALID_ARGUMENT',
        `queue pair ${index} does not exist: the port has ${this.queuePairs}`,
      );
    }
    return port;
  }

  /** Whether the data path is running (both rings set up, enabled, DRIVER_OK). */
  get live(): boolean {
    return this.#pair !== undefined;
  }

  /** The negotiated virtio features, once SET_FEATURES arrived. */
  get features(): bigint | undefined {
    return this.#session.features;
  }

  /**
   * Whether the front-end runs packed rings (it accepted VIRTIO_F_RING_PACKED, which
   * `packedRings` offers); false for split rings, and until SET_FEATURES arrived.
   */
  get packedRings(): boolean {
    return ((this.#session.features ?? 0n) & VIRTIO_F_RING_PACKED) !== 0n;
  }

  /**
   * Descriptors per ring, as the front-end sized them (SET_VRING_NUM) when the rings last
   * started; undefined until they first start.
   */
  get queueSize(): number | undefined {
    return this.#queueSize;
  }

  /**
   * The negotiated vhost-user protocol features (0 until SET_PROTOCOL_FEATURES arrived), e.g.
   * whether the front-end may ask for acks (REPLY_ACK, bit 3).
   */
  get protocolFeatures(): bigint {
    return this.#session.protocolFeatures;
  }

  /** Largest frame this port sends or receives (the `maxFrame` option). */
  get maxMessage(): number {
    return this.#options.maxFrame;
  }

  /** Counters since the port was created (frames moved across every restart). */
  get stats(): VhostUserPortStats {
    const now = { ...this.#totals, regionsAdded: this.#session.regionsAdded };
    if (this.#pair) addPairStats(now, this.#pair);
    return now;
  }

  /**
   * Waits for frames the front-end transmitted and fills `batch` with them (each an
   * Ethernet frame, the net header stripped). The views stay valid until `batch` is refilled.
   * Waits across ring restarts; rejects once the port is closed.
   */
  receive(batch: MessageBatch, options: WaitOptions = {}): Promise<MessageBatch> {
    const pair = this.#pair;
    // Fast path while live: the pair's own promise, no extra hops through an async function.
    if (pair && !this.#done) {
      return pair.receive(batch, options).catch((error: unknown) => {
        this.#throwUnlessRestarted(pair, error);
        return this.#acrossRestarts(options, (live) => live.receive(batch, options));
      });
    }
    return this.#acrossRestarts(options, (live) => live.receive(batch, options));
  }

  /**
   * Takes the frames that have arrived without waiting; returns their number (0 while the
   * rings are not live).
   */
  tryReceive(batch: MessageBatch): number {
    const pair = this.#pair;
    if (!pair || this.#done) return 0;
    try {
      return pair.tryReceive(batch);
    } catch (error) {
      this.#throwUnlessRestarted(pair, error);
      return 0;
    }
  }

  /** Resolves once frames are waiting (across ring restarts); rejects once the port is closed. */
  waitReceivable(options: WaitOptions = {}): Promise<void> {
    return this.#acrossRestarts(options, (pair) => pair.waitReceivable(options));
  }

  /**
   * Writes frames `start..` of `batch` into the front-end's receive buffers without waiting;
   * returns how many went (none while the rings are down). Rejects once the port is closed.
   */
  trySend(batch: MessageBatch, start = 0): number {
    const pair = this.#pair;
    if (this.#done) throw this.#failure ?? new VringError('ERR_VRING_CLOSED', 'port is closed');
    if (!pair) return 0;
    try {
      return pair.trySend(batch, start);
    } catch (error) {
      this.#throwUnlessRestarted(pair, error);
      return 0;
    }
  }

  /**
   * Resolves once the front-end may have receive buffers again (across ring restarts): for a
   * frame of `bytes` when given, which may need several buffers.
   */
  waitSendable(options: WaitSendableOptions = {}): Promise<void> {
    return this.#acrossRestarts(options, (pair) => pair.waitSendable(options));
  }

  /** The notification policy of the port's data path. */
  get notification(): NotificationMode {
    return this.#options.endpoint.notification;
  }

  /** The spin budget in µs of the port's data path (0 in `event` mode). */
  get spinMicros(): number {
    return this.#options.endpoint.spinMicros;
  }

  /** The front end is another process (or thread): never in this one's event loop. */
  readonly peerInThread = false;

  /** A port can be polled: {@link VhostUserPort.tryReceive} and {@link VhostUserPort.waitReceivable}. */
  get polling(): FramePolling {
    return this;
  }

  /**
   * A port reads large frames where the front-end wrote them, in the front-end's memory, and
   * sends a frame from two places with one copy ({@link VhostUserPort.trySendJoined}); it
   * never writes in place (it writes into the buffers the front-end posted).
   */
  get lending(): FrameLending {
    return this;
  }

  /** Frames of at least this many bytes are read in place (as a device queue pair's). */
  readonly inPlaceMin = IN_PLACE_MIN;

  /** A back-end writes into the buffers its front-end posted, never in place. */
  readonly writesInPlace = false;

  /**
   * Takes what has arrived without waiting (0 while the rings are not live), large frames
   * where they lie in the front-end's memory: held until {@link VhostUserPort.release}.
   * When the front-end stops the rings, frames still held are given back to it first (a
   * view of one stays readable, but the front-end may then reuse that memory).
   */
  tryReceiveInPlace(batch: InPlaceBatch): number {
    const pair = this.#pair;
    if (!pair || this.#done) {
      batch.filled(0, []);
      return 0;
    }
    try {
      const n = pair.tryReceiveInPlace(batch);
      this.#held += batch.held;
      return n;
    } catch (error) {
      this.#throwUnlessRestarted(pair, error);
      batch.filled(0, []);
      return 0;
    }
  }

  /** Gives back the oldest `count` frames held (those of a stopped pair went back already). */
  release(count: number): void {
    const stale = Math.min(count, this.#heldByStopped);
    this.#heldByStopped -= stale;
    const live = Math.min(count - stale, this.#held);
    if (live === 0) return;
    this.#held -= live;
    const pair = this.#pair;
    if (!pair || this.#done) return;
    try {
      pair.release(live);
    } catch (error) {
      this.#throwUnlessRestarted(pair, error);
    }
  }

  /** Never room: a back-end cannot write in place. */
  reserve(_minBytes: number): Buffer | undefined {
    return undefined;
  }

  /** @throws VringError `ERR_VRING_INVALID_ARGUMENT`: a back-end cannot write in place. */
  commit(_bytes: number): void {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'a vhost-user port cannot write in place');
  }

  /**
   * Writes one frame, `head` then `body`, into the front-end's receive buffers without
   * waiting, each copied once; false when it has not posted buffers enough (or the rings
   * are down). Rejects once the port is closed.
   * @throws VringError `ERR_VRING_OVERSIZED_MESSAGE` beyond {@link VhostUserPort.maxMessage}.
   */
  trySendJoined(head: Uint8Array, body: Uint8Array): boolean {
    const pair = this.#pair;
    if (this.#done) throw this.#failure ?? new VringError('ERR_VRING_CLOSED', 'port is closed');
    if (!pair) return false;
    try {
      return pair.trySendJoined(head, body);
    } catch (error) {
      this.#throwUnlessRestarted(pair, error);
      return false;
    }
  }

  /** Let pending waits keep the process alive (the default); holds across ring restarts. */
  ref(): this {
    this.#keepAlive = true;
    this.#pair?.ref();
    return this;
  }

  /** Let the process exit even while a receive waits; holds across ring restarts. */
  unref(): this {
    this.#keepAlive = false;
    this.#pair?.unref();
    return this;
  }

  /**
   * Runs a wait on the live pair; when the rings are stopped under it (GET_VRING_BASE, a new
   * memory table), runs it again on the pair the replayed handshake brings back.
   */
  async #acrossRestarts<T>(
    options: WaitOptions,
    wait: (pair: DeviceQueuePair) => Promise<T>,
  ): Promise<T> {
    for (;;) {
      const pair = await this.#whenLive(options);
      try {
        return await wait(pair);
      } catch (error) {
        this.#throwUnlessRestarted(pair, error);
      }
    }
  }

  /**
   * Rethrows an error of `pair` unless the session stopped that pair to restart the rings: an
   * error of the pair still live (or of a closed port) is the port's.
   */
  #throwUnlessRestarted(pair: DeviceQueuePair, error: unknown): void {
    if (pair === this.#pair || this.#done) throw this.#failure ?? error;
  }

  /**
   * Writes every frame of `batch` into the front-end's receive buffers, waiting for buffers
   * as needed. Frames a non-mergeable receive buffer cannot hold are dropped and counted, like
   * a NIC would; frames still unsent when the front-end stops the rings are discarded.
   * Rejects once the port is closed.
   */
  sendBatch(batch: MessageBatch, options: WaitOptions = {}): Promise<void> {
    const pair = this.#pair;
    if (pair && !this.#done) return this.#sendOn(pair, pair.sendBatch(batch, options));
    return this.#whenLive(options).then((live) =>
      this.#sendOn(live, live.sendBatch(batch, options)),
    );
  }

  #sendOn(pair: DeviceQueuePair, sending: Promise<void>): Promise<void> {
    return sending.catch((error: unknown) => {
      this.#throwUnlessRestarted(pair, error);
      // Stopped mid-batch: the front-end is resetting its rings; what was unsent is discarded
      // (its receive buffers are gone with them).
    });
  }

  /** Sends frames (each an Ethernet frame, without net header) as one batch. */
  async send(frames: Uint8Array | readonly Uint8Array[], options: WaitOptions = {}): Promise<void> {
    const list = frames instanceof Uint8Array ? [frames] : frames;
    const bytes = list.reduce((sum, f) => sum + f.byteLength, 0);
    const batch = new MessageBatch({
      bytes: Math.max(bytes, 1),
      messages: Math.max(list.length, 1),
    });
    for (const f of list) {
      if (f.byteLength > this.#options.maxFrame) {
        throw new VringError(
          'ERR_VRING_OVERSIZED_MESSAGE',
          `frame of ${f.byteLength} bytes exceeds maxFrame ${this.#options.maxFrame}`,
        );
      }
      batch.push(f);
    }
    await this.sendBatch(batch, options);
  }

  /** Yields each received frame as its own Buffer (a copy) until the port closes. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    const batch = this.createBatch();
    for (;;) {
      try {
        await this.receive(batch);
      } catch (error) {
        if (this.#done) return;
        throw error;
      }
      for (const frame of batch) yield Buffer.from(frame);
    }
  }

  /** A batch big enough to receive into from this port. */
  createBatch(): MessageBatch {
    return new MessageBatch({ bytes: Math.max(this.#options.maxFrame, 256 * 1024) });
  }

  /** Closes the connection and releases the rings, eventfds and mappings. Idempotent. */
  close(): void {
    this.#finish(undefined);
  }

  /** Same as {@link VhostUserPort.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  async #whenLive(options: WaitOptions): Promise<DeviceQueuePair> {
    for (;;) {
      if (this.#done) throw this.#failure ?? new VringError('ERR_VRING_CLOSED', 'port is closed');
      if (this.#pair) return this.#pair;
      await this.#liveWaiters.wait(options.signal);
    }
  }

  #started(pair: DeviceQueuePair): void {
    if (!this.#keepAlive) pair.unref();
    this.#pair = pair;
    this.#queueSize = pair.queueSize;
    this.#totals.starts++;
    this.#totals.resubmitted += pair.resubmitted;
    // A ring the front-end breaks with hostile data ends this port, not the process.
    void pair.closed.then((error) => {
      if (error && this.#pair === pair) this.#fail(error);
    });
    this.#liveWaiters.resolveAll();
  }

  #stopped(pair: DeviceQueuePair): void {
    // What the reader still holds goes back to the front-end before the ring stops: chains
    // never returned would be lost to it. The reader's later releases of them are skipped.
    if (this.#held > 0) {
      try {
        pair.release(this.#held);
      } catch {
        // A ring the front-end broke: nothing to give back to.
      }
      this.#heldByStopped += this.#held;
      this.#held = 0;
    }
    addPairStats(this.#totals, pair);
    this.#pair = undefined;
  }

  #fail(error: VringError): void {
    const primary = this.#primary;
    if (primary.#done) return;
    this.#onError(error, primary);
    primary.#finish(error);
  }

  /** Ends every queue pair's port of the connection, whichever of them it is called on. */
  #finish(error: VringError | undefined): void {
    const primary = this.#primary;
    if (primary !== this) {
      primary.#finish(error);
      return;
    }
    if (this.#done) return;
    for (const port of this.#queuePairs) {
      port.#done = true;
      port.#failure = error;
    }
    this.#session.close();
    for (const port of this.#queuePairs) {
      port.#liveWaiters.rejectAll(error ?? new VringError('ERR_VRING_CLOSED', 'port is closed'));
      port.#resolveClosed(error);
    }
  }
}

function addPairStats(into: VhostUserPortStats, pair: DeviceQueuePair): void {
  let s: QueuePairStats;
  try {
    s = pair.stats;
  } catch {
    return; // a ring the peer broke took its counters with it
  }
  into.framesReceived += s.messagesReceived;
  into.bytesReceived += s.bytesReceived;
  into.framesSent += s.messagesSent;
  into.bytesSent += s.bytesSent;
  into.dropped += s.dropped;
}

/** The credentials of the socket's peer, read once: they do not change for its lifetime. */
function peerOf(socket: FdSocket): PeerCredentials | undefined {
  try {
    return socket.peerCredentials;
  } catch {
    return undefined;
  }
}
