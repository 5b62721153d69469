/**
 * `VirtioUser`: a virtio-net device driven from this process (the vhost-user front-end, like
 * DPDK's virtio_user), whose rings and buffers live in one sealed memfd of ours and are
 * handed to a vhost-user back-end (DPDK net_vhost, OVS-DPDK, VPP, our own back-end).
 *
 * @packageDocumentation
 */
import { DriverQueuePair } from '../driver-queue-pair.js';
import { type NotificationMode, notificationPolicy } from '../endpoint-options.js';
import { positiveOption, VringError } from '../errors.js';
import type { FdSocket } from '../fd-socket.js';
import type { FrameLending, FramePolling, FramePort } from '../frame-port.js';
import type { InPlaceBatch } from '../in-place-batch.js';
import type { MessageBatch } from '../message-batch.js';
import type { ConnectAccessOptions, ListenAccessOptions } from '../peer-access.js';
import type {
  QueuePairEnd,
  QueuePairStats,
  WaitOptions,
  WaitSendableOptions,
} from '../queue-pair-end.js';
import { ReconnectBackoff, type ReconnectOptions } from '../reconnect-backoff.js';
import { ConnectionSource } from './connection-source.js';
import {
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
  VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MQ,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_RING_F_EVENT_IDX,
} from './features.js';
import { FrontendConnection, type FrontendConnectionTimeouts } from './frontend-connection.js';
import {
  configureDevice,
  type DeviceSetup,
  exchangeInflight,
  type NegotiatedFeatures,
  negotiateFeatures,
} from './frontend-handshake.js';
import { closeFds } from './message-decoder.js';
import { type InflightArea, VIRTQUEUE_MAX_SIZE } from './message-layout.js';

/**
 * Options of {@link VirtioUser.open}. In client mode, `retryInitialMs` and `retryMaxMs` (see
 * {@link ReconnectOptions}) pace the attempts to reach a back-end that is not listening yet,
 * and `expectPeerUid` names the uid the back-end must run as. In server mode the socket is
 * `0600` and admits back-ends of this process's uid (or root) unless the
 * {@link ListenAccessOptions} say otherwise.
 * @public
 */
export interface VirtioUserOptions
  extends ReconnectOptions,
    ListenAccessOptions,
    ConnectAccessOptions {
  /**
   * Listen at the path and let the back-end connect (DPDK virtio_user's `server=1`; the
   * back-end runs with `client=1`). Default false: connect to the back-end's socket,
   * retrying with backoff until it is there.
   */
  server?: boolean;
  /**
   * Descriptors per vring, a power of two from 2 to 32768 (default 256), with packed rings
   * too: virtio 1.1 allows other sizes there, but our queue pairs lay their buffers out in
   * powers of two. Another size is refused before anything connects.
   */
  queueSize?: number;
  /** Bytes per packet buffer (default 2048: a full Ethernet frame plus header fits in one). */
  bufferSize?: number;
  /** Largest frame sent or received, in bytes (default 9216: jumbo frames). */
  maxMessage?: number;
  /** Ask for mergeable receive buffers (default true; used only if the back-end offers them). */
  mergeable?: boolean;
  /** Ask for EVENT_IDX notification suppression (default true; used only if offered). */
  eventIdx?: boolean;
  /**
   * Keep an in-flight record (vhost-user INFLIGHT_SHMFD; default false; used only if the
   * back-end offers it): the back-end marks there every buffer it has taken and not
   * returned, this side keeps the record across back-end restarts and hands it to the
   * next back-end, which takes those buffers again. A killed back-end then loses nothing
   * that was made available to it (docs/architecture.md#in-flight-recovery).
   */
  inflight?: boolean;
  /**
   * Hand the memory over with GET_MAX_MEM_SLOTS and ADD_MEM_REG (vhost-user
   * CONFIGURE_MEM_SLOTS, as QEMU does) instead of SET_MEM_TABLE, when the back-end offers it
   * (default false).
   */
  memorySlots?: boolean;
  /**
   * Ask for VIRTIO_F_IN_ORDER (default true; used only if offered, as DPDK's net_vhost
   * does): descriptors go out in ring order, and the back-end may return a batch of them
   * with one used entry (on packed rings, one used descriptor naming the batch's last
   * chain, as DPDK's net_vhost writes for the frames it takes from us).
   */
  inOrder?: boolean;
  /**
   * Queue pairs to drive, 1 to {@link VIRTIO_USER_MAX_QUEUE_PAIRS} (default 1). More than
   * one needs a back-end that offers VIRTIO_NET_F_MQ and reports at least as many pairs
   * through GET_QUEUE_NUM (DPDK: `net_vhost,…,queues=N`); all of them are enabled. Each pair
   * has its own memory region, rings and eventfds: see {@link VirtioUser.queuePair}.
   */
  queuePairs?: number;
  /**
   * Ask for packed virtqueues, VIRTIO_F_RING_PACKED (default false: split rings). Used only if
   * the back-end offers them (DPDK's `net_vhost` does); otherwise the rings stay split.
   */
  packedRings?: boolean;
  /** Notification policy of the data path (see {@link NotificationMode}). */
  notification?: NotificationMode;
  /** Spin budget in µs (see `EndpointOptions.spinMicros`). */
  spinMicros?: number;
  /** Deadline for an ordinary control reply, in ms (default 10 000). */
  replyTimeoutMs?: number;
  /**
   * Deadline for the SET_MEM_TABLE ack, in ms (default 60 000): a back-end that mlocks the
   * region answers only after faulting all of it in.
   */
  memoryTableTimeoutMs?: number;
  /** Aborts {@link VirtioUser.open} while it waits for a back-end. */
  signal?: AbortSignal;
  /** Told about connections, handshakes and disconnects (for logs). */
  onEvent?: (event: VirtioUserEvent) => void;
}

/** What happened to a {@link VirtioUser}'s control connection. @public */
export type VirtioUserEvent =
  | {
      /** A back-end accepted the handshake; the rings are live. */
      type: 'connected';
      /** The virtio feature bits both sides agreed on. */
      features: bigint;
      /** The vhost-user protocol feature bits both sides agreed on. */
      protocolFeatures: bigint;
      /** Which connection this is, counting from 1 (reconnections count up). */
      connection: number;
    }
  | {
      /** The control connection dropped. */
      type: 'disconnected';
      /** Why, or undefined when it closed cleanly. */
      error: VringError | undefined;
    }
  | {
      /** A back-end connected but the handshake failed. */
      type: 'handshake-failed';
      /** What went wrong. */
      error: unknown;
    };

/** The virtio feature bits we can drive. @internal */
const SUPPORTED_FEATURES =
  VIRTIO_F_VERSION_1 |
  VHOST_USER_F_PROTOCOL_FEATURES |
  VIRTIO_NET_F_MRG_RXBUF |
  VIRTIO_RING_F_EVENT_IDX |
  VIRTIO_F_IN_ORDER;

/**
 * Most queue pairs a {@link VirtioUser} drives: each pair is one memory region, and a
 * vhost-user memory table holds 8 (DPDK's back-end takes no more).
 * @public
 */
export const VIRTIO_USER_MAX_QUEUE_PAIRS = 8;

/** The `queuePairs` option, checked. */
function queuePairCount(options: VirtioUserOptions): number {
  const count = options.queuePairs ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > VIRTIO_USER_MAX_QUEUE_PAIRS) {
    throw new VringError(
      'ERR_VRING_INVALID_ARGUMENT',
      `queuePairs must be an integer in [1, ${VIRTIO_USER_MAX_QUEUE_PAIRS}], got ${count}`,
    );
  }
  return count;
}

/** Refuses a queue size our queue pairs cannot lay out, before any back-end is involved. */
function checkQueueSize(options: VirtioUserOptions): void {
  const size = options.queueSize;
  if (size === undefined) return;
  if (
    !Number.isInteger(size) ||
    size < 2 ||
    size > VIRTQUEUE_MAX_SIZE ||
    (size & (size - 1)) !== 0
  ) {
    throw new VringError(
      'ERR_VRING_INVALID_ARGUMENT',
      `queueSize must be a power of two in [2, ${VIRTQUEUE_MAX_SIZE}], got ${size}`,
    );
  }
}

// Errors after which trying another connection cannot help: the rings cannot change mode,
// and a broken ring or a bad option stays so.
const FATAL_CODES = new Set([
  'ERR_VRING_FEATURE_MISMATCH',
  'ERR_VRING_INVALID_ARGUMENT',
  'ERR_VRING_BAD_RING',
  'ERR_VRING_QUEUE_BROKEN',
  // Credentials do not change by retrying: a refused process must be told, not spin.
  'ERR_VRING_PEER_REFUSED',
  // Nor does our memory's size; and a full listener is not helped by a client hammering it
  // (the application decides when to try again).
  'ERR_VRING_LIMIT_EXCEEDED',
]);

function isFatal(error: unknown): boolean {
  return !(error instanceof VringError) || FATAL_CODES.has(error.code);
}

/** Protocol features the options ask for beyond DPDK's set. */
function extraProtocol(options: VirtioUserOptions): bigint {
  return (
    // The in-flight record is kept for split rings only.
    (options.inflight && !options.packedRings ? VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD : 0n) |
    (options.memorySlots ? VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS : 0n)
  );
}

/** The deadlines of control replies `options` ask for, checked. */
function replyTimeouts(options: VirtioUserOptions): FrontendConnectionTimeouts {
  return {
    replyMs: positiveOption(options.replyTimeoutMs, 10_000, 'replyTimeoutMs'),
    memoryTableMs: positiveOption(options.memoryTableTimeoutMs, 60_000, 'memoryTableTimeoutMs'),
  };
}

/**
 * A virtio-net front-end over vhost-user: queue 0 receives, queue 1 transmits, frames carry
 * a 12-byte `virtio_net_hdr_v1` (added and stripped here), mergeable receive buffers and
 * EVENT_IDX are used when the back-end offers them (see
 * docs/architecture.md#vhost-user-roles).
 *
 * It speaks DPDK 22.11's dialect and survives its back-end: when the connection drops it
 * keeps the rings, the memory and the application's handle, reconnects (client mode
 * retries; server mode accepts the next back-end) and replays the handshake with each
 * ring's current position, so sends and receives that were waiting simply continue.
 * Frames the old back-end had taken but not delivered are lost, as on a real link, unless
 * the `inflight` option is on and the back-end offers INFLIGHT_SHMFD: then the next
 * back-end takes them again from the in-flight record this side kept.
 *
 * Process lifetime: while connected, only pending sends and receives keep the process
 * alive (as with any vring end). While disconnected, client mode's retry timer does not,
 * but server mode's listening socket does until {@link VirtioUser.close}. A connected
 * VirtioUser is reachable from its socket, so it is not garbage-collected: close it.
 *
 * Frames move with the queue-pair API: {@link VirtioUser.sendBatch},
 * {@link VirtioUser.receive} with a {@link MessageBatch}, {@link VirtioUser.send}, or
 * `for await (const frame of virtioUser)`.
 *
 * @example
 * ```ts
 * const port = await VirtioUser.open('/run/vhost/sock0');   // DPDK: --vdev net_vhost0,iface=…
 * await port.send(frame);
 * const batch = await port.receive();
 * port.close();
 * ```
 * @public
 */
export class VirtioUser implements FramePort, FramePolling, FrameLending, AsyncDisposable {
  /** The socket path. */
  readonly path: string;
  /** Whether this side listens (server mode). */
  readonly server: boolean;
  /**
   * Settles when the VirtioUser is closed (`undefined`) or failed for good (the error: a
   * back-end that changed features, a ring broken by invalid data). Never rejects. A
   * back-end going away is not a failure.
   */
  readonly closed: Promise<VringError | undefined>;

  /** Queue pair 0, which the data-path methods of the VirtioUser itself drive. */
  readonly #queuePair: DriverQueuePair;
  readonly #queuePairs: readonly DriverQueuePair[];
  readonly #source: ConnectionSource;
  #negotiated: NegotiatedFeatures;
  readonly #options: VirtioUserOptions;
  readonly #abort = new AbortController();
  #socket: FdSocket | undefined;
  /** The in-flight record kept across back-ends (with INFLIGHT_SHMFD); its fd is ours. */
  #inflight: InflightArea | undefined;
  #connections = 1;
  #done = false;
  #resolveClosed!: (error: VringError | undefined) => void;

  private constructor(
    path: string,
    options: VirtioUserOptions,
    source: ConnectionSource,
    queuePairs: readonly DriverQueuePair[],
    socket: FdSocket,
    negotiated: NegotiatedFeatures,
  ) {
    this.path = path;
    this.server = options.server ?? false;
    this.#options = options;
    this.#source = source;
    this.#queuePair = queuePairs[0]!;
    this.#queuePairs = queuePairs;
    this.#socket = socket;
    this.#negotiated = negotiated;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    for (const queuePair of queuePairs) {
      queuePair.closed.then((error) => {
        if (error) this.#fail(error);
      });
    }
    void this.#supervise(socket);
  }

  /**
   * Opens the device: listens or connects at `path`, performs the handshake, and resolves
   * once the back-end has the rings (DPDK calls the device ready then). Client mode keeps
   * retrying until a back-end listens; abort with `options.signal`. In server mode the
   * socket file exists as soon as this is called.
   * @throws VringError `ERR_VRING_FEATURE_MISMATCH` when the back-end lacks VERSION_1,
   * `ERR_VRING_INVALID_ARGUMENT` for bad options, `ERR_VRING_SYSTEM` when the path cannot
   * be listened on, or the signal's reason.
   */
  static async open(path: string, options: VirtioUserOptions = {}): Promise<VirtioUser> {
    // Checked before any connection: a bad option must not cost a back-end a handshake.
    notificationPolicy(options);
    checkQueueSize(options);
    const pairCount = queuePairCount(options);
    const timeouts = replyTimeouts(options);
    const source = new ConnectionSource(
      path,
      options.server ?? false,
      new ReconnectBackoff(options),
      options,
    );
    const wanted =
      (SUPPORTED_FEATURES &
        ~(options.mergeable === false ? VIRTIO_NET_F_MRG_RXBUF : 0n) &
        ~(options.eventIdx === false ? VIRTIO_RING_F_EVENT_IDX : 0n) &
        ~(options.inOrder === false ? VIRTIO_F_IN_ORDER : 0n)) |
      (pairCount > 1 ? VIRTIO_NET_F_MQ : 0n) |
      (options.packedRings ? VIRTIO_F_RING_PACKED : 0n);
    const required = VIRTIO_F_VERSION_1 | (pairCount > 1 ? VIRTIO_NET_F_MQ : 0n);
    const signal = options.signal ?? new AbortController().signal;
    let queuePairs: DriverQueuePair[] | undefined;
    let fixed: bigint | undefined;
    let inflight: InflightArea | undefined;
    try {
      for (;;) {
        const socket = await source.next(signal, true);
        try {
          const connection = new FrontendConnection(socket, timeouts, signal);
          const negotiated = await negotiateFeatures(connection, {
            wanted,
            required,
            fixed,
            extraProtocol: extraProtocol(options),
            queuePairs: pairCount,
          });
          fixed = negotiated.features;
          queuePairs ??= [];
          while (queuePairs.length < pairCount) {
            queuePairs.push(
              DriverQueuePair.createForVhostUser({
                queueSize: options.queueSize,
                bufferSize: options.bufferSize,
                maxMessage: options.maxMessage ?? 9216,
                mergeable: (negotiated.features & VIRTIO_NET_F_MRG_RXBUF) !== 0n,
                eventIdx: (negotiated.features & VIRTIO_RING_F_EVENT_IDX) !== 0n,
                inOrder: (negotiated.features & VIRTIO_F_IN_ORDER) !== 0n,
                packed: isPacked(negotiated.features),
                notification: options.notification,
                spinMicros: options.spinMicros,
                // Undefined fields mean "the default" there, which exactOptionalPropertyTypes
                // cannot express for an object built from optional inputs.
              } as Parameters<typeof DriverQueuePair.createForVhostUser>[0]),
            );
          }
          const queueSize = queuePairs[0]!.share().descriptor.queueSize;
          inflight = await exchangeInflight(
            connection,
            negotiated,
            inflight,
            2 * pairCount,
            queueSize,
          );
          await configureDevice(
            connection,
            negotiated,
            deviceSetup(queuePairs, isPacked(negotiated.features)),
          );
          const user = new VirtioUser(path, options, source, queuePairs, socket, negotiated);
          user.#inflight = inflight;
          user.#emit({ type: 'connected', ...negotiated, connection: 1 });
          return user;
        } catch (error) {
          socket.close();
          if (isFatal(error)) throw error;
          options.onEvent?.({ type: 'handshake-failed', error });
        }
      }
    } catch (error) {
      for (const queuePair of queuePairs ?? []) queuePair.close();
      source.close();
      closeFds(inflight?.fd === undefined ? [] : [inflight.fd]);
      throw error;
    }
  }

  /** The virtio feature word in force (SET_FEATURES). */
  get features(): bigint {
    return this.#negotiated.features;
  }

  /** The protocol feature word of the current (or last) connection. */
  get protocolFeatures(): bigint {
    return this.#negotiated.protocolFeatures;
  }

  /**
   * Whether the rings are packed (VIRTIO_F_RING_PACKED was negotiated): `packedRings` asked
   * for them and the back-end offered them.
   */
  get packedRings(): boolean {
    return isPacked(this.#negotiated.features);
  }

  /** Whether a back-end is attached right now. */
  get connected(): boolean {
    return this.#socket !== undefined;
  }

  /** Back-ends refused on their credentials so far (server mode). */
  get refusedPeers(): number {
    return this.#source.refusedPeers;
  }

  /** Handshakes completed so far (1 after open; +1 per reconnect). */
  get connections(): number {
    return this.#connections;
  }

  /** How many queue pairs this device drives (the `queuePairs` option). */
  get queuePairs(): number {
    return this.#queuePairs.length;
  }

  /**
   * Queue pair `index` (virtio-net receiveq/transmitq `index + 1`, vrings `2·index` and
   * `2·index + 1`), for traffic of its own: a back-end keeps the pairs apart (DPDK's
   * net_vhost maps them to its ethdev queues `index`). Pair 0 is the one the VirtioUser's
   * own send and receive methods drive. The pair is owned by the VirtioUser: it survives
   * reconnects with it and is closed by {@link VirtioUser.close}; do not close it yourself.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` when `index` is not below
   * {@link VirtioUser.queuePairs}.
   */
  queuePair(index: number): QueuePairEnd {
    const pair = Number.isInteger(index) ? this.#queuePairs[index] : undefined;
    if (!pair) {
      throw new VringError(
        'ERR_VRING_INVALID_ARGUMENT',
        `queue pair ${index} does not exist: this VirtioUser drives ${this.#queuePairs.length}`,
      );
    }
    return pair;
  }

  /** Largest frame, in bytes. */
  get maxMessage(): number {
    return this.#queuePair.maxMessage;
  }

  /** Data-path counters since open. */
  get stats(): QueuePairStats {
    return this.#queuePair.stats;
  }

  /** The notification policy in force. */
  get notification(): NotificationMode {
    return this.#queuePair.notification;
  }

  /** The spin budget in µs (0 in `event` mode): see {@link VirtioUserOptions.spinMicros}. */
  get spinMicros(): number {
    return this.#queuePair.spinMicros;
  }

  /** The back-end is another process (or thread): never in this one's event loop. */
  readonly peerInThread = false;

  /** A VirtioUser can be polled: {@link VirtioUser.tryReceive} and {@link VirtioUser.waitReceivable}. */
  get polling(): FramePolling {
    return this;
  }

  /**
   * A VirtioUser reads large frames in its receive buffers and writes them into its
   * transmit area in place, like the driver end of a queue pair: its rings are that end's,
   * handed to the back-end (see docs/architecture.md, "Large messages").
   */
  get lending(): FrameLending {
    return this;
  }

  /** Frames of at least this many bytes are read in place. */
  get inPlaceMin(): number {
    return this.#queuePair.inPlaceMin;
  }

  /**
   * See {@link QueuePairEnd.tryReceiveInPlace}. Frames held stay held across a reconnect:
   * the buffers under them are posted again only once they are released.
   */
  tryReceiveInPlace(batch: InPlaceBatch): number {
    return this.#queuePair.tryReceiveInPlace(batch);
  }

  /** See {@link QueuePairEnd.release}. */
  release(count: number): void {
    this.#queuePair.release(count);
  }

  /** A front-end writes frames in place. */
  readonly writesInPlace = true;

  /** See {@link QueuePairEnd.reserve}. */
  reserve(minBytes: number): Buffer | undefined {
    return this.#queuePair.reserve(minBytes);
  }

  /** See {@link QueuePairEnd.commit}. */
  commit(bytes: number): void {
    this.#queuePair.commit(bytes);
  }

  /** See {@link QueuePairEnd.trySendJoined}. */
  trySendJoined(head: Uint8Array, body: Uint8Array): boolean {
    return this.#queuePair.trySendJoined(head, body);
  }

  /** See {@link QueuePairEnd.trySend}. */
  trySend(batch: MessageBatch, start = 0): number {
    return this.#queuePair.trySend(batch, start);
  }

  /** See {@link QueuePairEnd.tryReceive}. */
  tryReceive(batch: MessageBatch): number {
    return this.#queuePair.tryReceive(batch);
  }

  /** Sends every frame of `batch`, waiting for ring space (also across a reconnect). */
  sendBatch(batch: MessageBatch, options?: WaitOptions): Promise<void> {
    return this.#queuePair.sendBatch(batch, options);
  }

  /** Sends one frame or several, in order. */
  send(frames: Uint8Array | readonly Uint8Array[], options?: WaitOptions): Promise<void> {
    return this.#queuePair.send(frames, options);
  }

  /** Waits for at least one frame and fills `batch` (see {@link QueuePairEnd.receive}). */
  receive(batch?: MessageBatch, options?: WaitOptions): Promise<MessageBatch> {
    return this.#queuePair.receive(batch, options);
  }

  /** Resolves once frames are waiting. */
  waitReceivable(options?: WaitOptions): Promise<void> {
    return this.#queuePair.waitReceivable(options);
  }

  /** Resolves once the transmit ring may have space again. */
  waitSendable(options?: WaitSendableOptions): Promise<void> {
    return this.#queuePair.waitSendable(options);
  }

  /** Yields each received frame as its own Buffer until the VirtioUser closes. */
  [Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    return this.#queuePair[Symbol.asyncIterator]();
  }

  /** Let pending waits keep the process alive (the default). */
  ref(): this {
    this.#queuePair.ref();
    return this;
  }

  /** Let the process exit even while a send or receive waits. */
  unref(): this {
    this.#queuePair.unref();
    return this;
  }

  /**
   * Drops the connection, stops listening or retrying, and releases the rings, memory and
   * eventfds. Pending operations reject with `ERR_VRING_CLOSED`. Idempotent. The back-end
   * keeps its own mapping until it notices the closed socket, so nothing it still does can
   * touch this process.
   */
  close(): void {
    this.#finish(undefined);
  }

  /** Same as {@link VirtioUser.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  #emit(event: VirtioUserEvent): void {
    try {
      this.#options.onEvent?.(event);
    } catch {
      // A logging callback must not break the device.
    }
  }

  /** Waits for each connection to end, then gets and sets up the next one. */
  async #supervise(socket: FdSocket): Promise<void> {
    const signal = this.#abort.signal;
    const timeouts = replyTimeouts(this.#options);
    for (;;) {
      const error = await socket.closed;
      socket.close();
      this.#socket = undefined;
      if (this.#done) return;
      this.#emit({ type: 'disconnected', error });
      for (;;) {
        let next: FdSocket;
        try {
          next = await this.#source.next(signal, false);
        } catch (failure) {
          if (!this.#done) this.#fail(failure);
          return;
        }
        if (this.#done) {
          next.close();
          return;
        }
        try {
          const connection = new FrontendConnection(next, timeouts, signal);
          const negotiated = await negotiateFeatures(connection, {
            wanted: this.#negotiated.features,
            required: VIRTIO_F_VERSION_1,
            fixed: this.#negotiated.features,
            extraProtocol: extraProtocol(this.#options),
            queuePairs: this.#queuePairs.length,
          });
          const queueSize = this.#queuePair.share().descriptor.queueSize;
          this.#inflight = await exchangeInflight(
            connection,
            negotiated,
            this.#inflight,
            2 * this.#queuePairs.length,
            queueSize,
          );
          await configureDevice(
            connection,
            negotiated,
            deviceSetup(this.#queuePairs, isPacked(negotiated.features)),
          );
          if (this.#done) {
            next.close();
            return;
          }
          this.#connections++;
          this.#negotiated = negotiated;
          this.#socket = next;
          socket = next;
          this.#emit({ type: 'connected', ...negotiated, connection: this.#connections });
          break;
        } catch (failure) {
          next.close();
          if (this.#done) return;
          if (isFatal(failure)) {
            this.#fail(failure);
            return;
          }
          this.#emit({ type: 'handshake-failed', error: failure });
        }
      }
    }
  }

  #fail(error: unknown): void {
    this.#finish(
      error instanceof VringError
        ? error
        : new VringError('ERR_VRING_PROTOCOL', String(error), { cause: error }),
    );
  }

  #finish(error: VringError | undefined): void {
    if (this.#done) return;
    this.#done = true;
    this.#abort.abort(new VringError('ERR_VRING_CLOSED', 'VirtioUser is closed'));
    this.#socket?.close();
    this.#socket = undefined;
    this.#source.close();
    for (const queuePair of this.#queuePairs) {
      if (error) queuePair.destroy(error);
      else queuePair.close();
    }
    if (this.#inflight?.fd !== undefined) closeFds([this.#inflight.fd]);
    this.#inflight = undefined;
    this.#resolveClosed(error);
  }
}

function isPacked(features: bigint): boolean {
  return (features & VIRTIO_F_RING_PACKED) !== 0n;
}

/**
 * The rings as the device must see them now: pair k's receive and transmit vrings are 2k and
 * 2k + 1, each pair in its own region. The base of each split vring is the device's own used
 * index read from our memory: everything before it was consumed and returned, so a new
 * back-end resumes exactly there (DPDK's back-end resynchronises from used->idx anyway;
 * other back-ends take the base as given). The old back-end is gone when this runs, so the
 * index is stable. A packed ring has no used index: its base is the first slot the old
 * back-end had not returned, with the wrap counter in bit 15 (0x8000 for a new ring).
 */
function deviceSetup(queuePairs: readonly DriverQueuePair[], packed: boolean): DeviceSetup {
  return {
    regions: queuePairs.map(({ region }) => ({
      fd: region.fd,
      address: region.address,
      size: region.size,
    })),
    vrings: queuePairs.flatMap((queuePair, pairIndex) => {
      const { descriptor } = queuePair.share();
      const { kick, call } = queuePair.vringFds();
      const region = queuePair.region;
      const resume = packed ? queuePair.prepareResume() : undefined;
      const rings = [descriptor.rx, descriptor.tx];
      return rings.map((ring, i) => {
        const used = BigInt(ring.used);
        const resumeBase = resume && (i === 0 ? resume.rx : resume.tx);
        return {
          index: 2 * pairIndex + i,
          size: descriptor.queueSize,
          base: resumeBase ?? region.read(Number(used - region.address) + 2, 2).readUInt16LE(0),
          desc: BigInt(ring.desc),
          avail: BigInt(ring.avail),
          used,
          kickFd: kick[i]!,
          callFd: call[i]!,
        };
      });
    }),
  };
}
