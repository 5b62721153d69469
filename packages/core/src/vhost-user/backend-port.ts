/**
 * One front-end attached to a {@link VhostUserBackend}: the vhost-user protocol state machine
 * of the device side (features, memory table, ring setup, start/stop) over one control
 * connection, and the virtio-net data path (queue 0 = receive, 1 = transmit) that goes live
 * once the front-end has set both rings up.
 *
 * Every control message is decoded and validated by `message.ts` before it is acted on;
 * anything invalid (or a ring the front-end breaks with hostile data) fails this port only:
 * the error is reported, the connection closed and every fd and mapping released.
 *
 * @packageDocumentation
 */
import { DeviceQueuePair, type VhostUserRingAddresses } from '../device-queue-pair.js';
import { VringError } from '../errors.js';
import type { FdSocket } from '../fd-socket.js';
import type { FramePolling, FramePort } from '../frame-port.js';
import { MessageBatch } from '../message-batch.js';
import {
  type EndpointOptions,
  type NotificationMode,
  notificationPolicy,
  type QueuePairStats,
  type WaitOptions,
  type WaitSendableOptions,
} from '../queue-pair-end.js';
import { SharedRegion } from '../shared-region.js';
import { WaiterQueue } from '../waiter-queue.js';
import {
  checkAccepted,
  checkProtocolFeatureDependencies,
  requireFeatures,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_STATUS,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTIO_STATUS_DRIVER_OK,
} from './features.js';
import {
  closeFds,
  decodeRequest,
  encodeAck,
  encodeReply,
  type MemoryTable,
  VhostUserRequest as R,
  VHOST_VRING_F_LOG,
  type VhostUserRequestMessage,
} from './message.js';

/**
 * Virtio features a back-end offers by default: what DPDK's virtio_user and our own
 * front-end use (VERSION_1, MRG_RXBUF, INDIRECT_DESC, EVENT_IDX) plus PROTOCOL_FEATURES.
 * No offloads: frames are delivered exactly as sent.
 * @public
 */
export const BACKEND_DEFAULT_FEATURES =
  VIRTIO_F_VERSION_1 |
  VIRTIO_NET_F_MRG_RXBUF |
  VIRTIO_RING_F_INDIRECT_DESC |
  VIRTIO_RING_F_EVENT_IDX |
  VHOST_USER_F_PROTOCOL_FEATURES;

/**
 * Protocol features a back-end offers: REPLY_ACK and STATUS (what DPDK 22.11 asks for
 * besides MQ), and MQ so GET_QUEUE_NUM can tell the front-end there is one queue pair.
 * @public
 */
export const BACKEND_PROTOCOL_FEATURES =
  VHOST_USER_PROTOCOL_F_MQ | VHOST_USER_PROTOCOL_F_REPLY_ACK | VHOST_USER_PROTOCOL_F_STATUS;

/** One queue pair: vrings 0 (receive) and 1 (transmit). */
const VRINGS = 2;
/** Largest Ethernet frame (without the net header) a port moves by default. */
const DEFAULT_MAX_FRAME = 65535;

/** Options of each port a {@link VhostUserBackend} serves. @public */
export interface VhostUserPortOptions {
  /** Virtio features to offer (default {@link BACKEND_DEFAULT_FEATURES}); VERSION_1 is required. */
  features?: bigint | undefined;
  /** Largest frame in bytes, without the 12-byte net header (default 65535). */
  maxFrame?: number | undefined;
  /**
   * Refuse memory regions not sealed against shrinking (default false: DPDK's memory is an
   * unsealed memfd). Sealed regions cannot SIGBUS us through a peer's `ftruncate`.
   */
  requireSealedMemory?: boolean | undefined;
  /** Notification policy of the data path (see {@link EndpointOptions}). */
  notification?: EndpointOptions['notification'] | undefined;
  /** Spin budget of the data path in µs. */
  spinMicros?: number | undefined;
}

/** Per-port counters, summed over every time the port went live. @public */
export interface VhostUserPortStats {
  /** Frames the front-end transmitted that this port received. */
  framesReceived: number;
  bytesReceived: number;
  /** Frames written into the front-end's receive buffers. */
  framesSent: number;
  bytesSent: number;
  /** Frames not delivered because a non-mergeable receive buffer was too small. */
  dropped: number;
  /** Times the data path went live (1 + reconnect replays). */
  starts: number;
}

interface RingSetup {
  num: number | undefined;
  base: number;
  addr: VhostUserRingAddresses | undefined;
  kicked: boolean;
  kickFd: number | undefined;
  callFd: number | undefined;
  enabled: boolean;
}

interface MappedRegion {
  region: SharedRegion;
  guestAddress: bigint;
  userAddress: bigint;
}

function freshRing(): RingSetup {
  return {
    num: undefined,
    base: 0,
    addr: undefined,
    kicked: false,
    kickFd: undefined,
    callFd: undefined,
    enabled: false,
  };
}

/** The reject reason for a framing error the socket binding caught before decoding. */
function framingReason(error: VringError): string {
  if (error.reason) return error.reason;
  switch (error.code) {
    case 'ERR_VRING_PARTIAL_MESSAGE':
      return 'short-message';
    case 'ERR_VRING_FDS_TRUNCATED':
      return 'too-many-fds';
    case 'ERR_VRING_PROTOCOL':
      return 'oversized-message';
    default:
      return 'bad-frame';
  }
}

function protocolError(reason: string, message: string, cause?: unknown): VringError {
  return new VringError('ERR_VRING_PROTOCOL', message, { reason, cause });
}

interface ResolvedPortOptions {
  features: bigint;
  maxFrame: number;
  requireSealedMemory: boolean;
  notification: EndpointOptions['notification'];
  spinMicros: number | undefined;
}

/**
 * Checks port options and fills in defaults; the backend calls it once up front so a bad
 * option fails its constructor instead of every connection.
 * @internal
 */
export function resolvePortOptions(options: VhostUserPortOptions): ResolvedPortOptions {
  const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
  if (!Number.isInteger(maxFrame) || maxFrame < 1 || maxFrame > 1 << 30) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'maxFrame must be an integer in [1, 2^30]');
  }
  notificationPolicy({
    ...(options.notification ? { notification: options.notification } : {}),
    ...(options.spinMicros !== undefined ? { spinMicros: options.spinMicros } : {}),
  });
  return {
    // PROTOCOL_FEATURES is how rings get SET_VRING_ENABLE semantics; VERSION_1 fixes the
    // 12-byte header the data path adds and strips.
    features:
      (options.features ?? BACKEND_DEFAULT_FEATURES) |
      VIRTIO_F_VERSION_1 |
      VHOST_USER_F_PROTOCOL_FEATURES,
    maxFrame,
    requireSealedMemory: options.requireSealedMemory ?? false,
    notification: options.notification,
    spinMicros: options.spinMicros,
  };
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
export class VhostUserPort implements FramePort, FramePolling, AsyncDisposable {
  /** A number unique within the backend, for logs. */
  readonly id: number;
  /** Settles when the port is closed: `undefined` for a normal close, else the error. */
  readonly closed: Promise<VringError | undefined>;

  readonly #socket: FdSocket;
  readonly #options: ResolvedPortOptions;
  readonly #onError: PortErrorHandler;
  readonly #liveWaiters = new WaiterQueue<void>(() => undefined);
  readonly #rings: RingSetup[] = [freshRing(), freshRing()];
  #features: bigint | undefined;
  #protocolFeatures = 0n;
  #status = 0n;
  #regions: MappedRegion[] = [];
  #pair: DeviceQueuePair | undefined;
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
  };

  /** @internal */
  constructor(
    id: number,
    socket: FdSocket,
    options: VhostUserPortOptions,
    onError: PortErrorHandler,
  ) {
    this.id = id;
    this.#socket = socket;
    this.#options = resolvePortOptions(options);
    this.#onError = onError;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    void this.#serve();
  }

  /** Whether the data path is running (both rings set up, enabled, DRIVER_OK). */
  get live(): boolean {
    return this.#pair !== undefined;
  }

  /** The negotiated virtio features, once SET_FEATURES arrived. */
  get features(): bigint | undefined {
    return this.#features;
  }

  /** Largest frame this port sends or receives (the `maxFrame` option). */
  get maxMessage(): number {
    return this.#options.maxFrame;
  }

  /** Counters since the port was created (frames moved across every restart). */
  get stats(): VhostUserPortStats {
    const now = { ...this.#totals };
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
        if (pair === this.#pair || this.#done) throw this.#failure ?? error;
        return this.#receiveAcrossRestarts(batch, options);
      });
    }
    return this.#receiveAcrossRestarts(batch, options);
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
      if (pair === this.#pair || this.#done) throw this.#failure ?? error;
      return 0;
    }
  }

  /** Resolves once frames are waiting (across ring restarts); rejects once the port is closed. */
  async waitReceivable(options: WaitOptions = {}): Promise<void> {
    for (;;) {
      const pair = await this.#whenLive(options);
      try {
        await pair.waitReceivable(options);
        return;
      } catch (error) {
        if (pair === this.#pair || this.#done) throw this.#failure ?? error;
      }
    }
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
      if (pair === this.#pair || this.#done) throw this.#failure ?? error;
      return 0;
    }
  }

  /**
   * Resolves once the front-end may have receive buffers again (across ring restarts): for a
   * frame of `bytes` when given, which may need several buffers.
   */
  async waitSendable(options: WaitSendableOptions = {}): Promise<void> {
    for (;;) {
      const pair = await this.#whenLive(options);
      try {
        await pair.waitSendable(options);
        return;
      } catch (error) {
        if (pair === this.#pair || this.#done) throw this.#failure ?? error;
      }
    }
  }

  /** The notification policy of the port's data path. */
  get notification(): NotificationMode {
    return this.#options.notification ?? 'event';
  }

  /** The front end is another process (or thread): never in this one's event loop. */
  readonly peerInThread = false;

  /** A port can be polled: {@link VhostUserPort.tryReceive} and {@link VhostUserPort.waitReceivable}. */
  get polling(): FramePolling {
    return this;
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

  async #receiveAcrossRestarts(batch: MessageBatch, options: WaitOptions): Promise<MessageBatch> {
    for (;;) {
      const pair = await this.#whenLive(options);
      try {
        return await pair.receive(batch, options);
      } catch (error) {
        if (pair === this.#pair || this.#done) throw this.#failure ?? error;
        // The rings were stopped under us (GET_VRING_BASE, a new memory table): wait for the
        // replayed handshake to bring them back.
      }
    }
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
      if (pair === this.#pair || this.#done) throw this.#failure ?? error;
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
    const batch = new MessageBatch({ bytes: Math.max(this.#options.maxFrame, 256 * 1024) });
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

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  // ---- control channel ----

  async #serve(): Promise<void> {
    // The socket settles `closed` with an error for framing problems the binding catches
    // itself (short header at EOF, a size beyond the limit, truncated fds).
    void this.#socket.closed.then((error) => {
      if (this.#done) return;
      if (error && error.code !== 'ERR_VRING_PEER_DISCONNECTED') {
        this.#fail(protocolError(framingReason(error), `control channel: ${error.message}`, error));
      } else {
        this.#finish(undefined);
      }
    });
    for (;;) {
      let frame: Buffer;
      let fds: number[];
      try {
        ({ data: frame, fds } = await this.#socket.receive());
      } catch {
        return; // closed: the `closed` handler above decides how
      }
      if (this.#done) {
        closeFds(fds);
        return;
      }
      try {
        const message = decodeRequest(frame, fds, { maxVrings: VRINGS });
        await this.#handle(message);
      } catch (error) {
        const code = (error as VringError).code;
        if (code === 'ERR_VRING_PEER_DISCONNECTED' || code === 'ERR_VRING_CLOSED') {
          this.#finish(undefined); // the front-end left while we replied: not an error
        } else {
          this.#fail(
            error instanceof VringError
              ? error
              : protocolError('internal', `handling a message failed: ${String(error)}`, error),
          );
        }
        return;
      }
    }
  }

  async #handle(message: VhostUserRequestMessage): Promise<void> {
    let reply: Buffer | undefined;
    try {
      reply = this.#apply(message);
    } catch (error) {
      // Whatever the message carried and nobody adopted is released with it.
      closeFds(message.fds);
      throw error;
    }
    if (reply) {
      await this.#socket.send(reply);
    } else if (message.needReply) {
      // DPDK acks NEED_REPLY whether or not REPLY_ACK was negotiated; a front-end waiting
      // for the ack would otherwise hang.
      await this.#socket.send(encodeAck(message.request, 0n));
    }
    this.#update();
  }

  /** Acts on a validated message; returns its explicit reply. Takes ownership of its fds. */
  #apply(m: VhostUserRequestMessage): Buffer | undefined {
    const offered = this.#options.features;
    switch (m.request) {
      case R.GET_FEATURES:
        return encodeReply(R.GET_FEATURES, offered);
      case R.SET_FEATURES: {
        checkAccepted(offered, m.payload, 'virtio');
        requireFeatures(m.payload, VIRTIO_F_VERSION_1, 'virtio');
        if (this.#pair && this.#features !== m.payload) {
          throw protocolError(
            'features-changed',
            'SET_FEATURES changed the features while running',
          );
        }
        this.#features = m.payload;
        if ((m.payload & VHOST_USER_F_PROTOCOL_FEATURES) === 0n) {
          // Without PROTOCOL_FEATURES rings are enabled as soon as they exist (spec).
          for (const ring of this.#rings) ring.enabled = true;
        }
        return undefined;
      }
      case R.GET_PROTOCOL_FEATURES:
        return encodeReply(R.GET_PROTOCOL_FEATURES, BACKEND_PROTOCOL_FEATURES);
      case R.SET_PROTOCOL_FEATURES:
        checkAccepted(BACKEND_PROTOCOL_FEATURES, m.payload, 'protocol');
        checkProtocolFeatureDependencies(m.payload);
        this.#protocolFeatures = m.payload;
        return undefined;
      case R.SET_OWNER:
        return undefined;
      case R.RESET_OWNER:
        this.#reset();
        return undefined;
      case R.GET_QUEUE_NUM:
        if ((this.#protocolFeatures & VHOST_USER_PROTOCOL_F_MQ) === 0n) {
          throw protocolError('not-negotiated', 'GET_QUEUE_NUM without PROTOCOL_F_MQ');
        }
        return encodeReply(R.GET_QUEUE_NUM, 1n);
      case R.SET_MEM_TABLE:
        this.#setMemTable(m.payload, m.fds);
        return undefined;
      case R.SET_VRING_NUM:
        this.#stopIfRunning();
        this.#rings[m.payload.index]!.num = m.payload.num;
        return undefined;
      case R.SET_VRING_BASE:
        this.#stopIfRunning();
        this.#rings[m.payload.index]!.base = m.payload.num;
        return undefined;
      case R.SET_VRING_ADDR: {
        if (this.#regions.length === 0) {
          throw protocolError('no-memory-table', 'SET_VRING_ADDR before SET_MEM_TABLE');
        }
        if ((m.payload.flags & VHOST_VRING_F_LOG) !== 0) {
          throw protocolError(
            'not-negotiated',
            'SET_VRING_ADDR asks for logging, LOG_ALL was not offered',
          );
        }
        this.#stopIfRunning();
        this.#checkRingInMemory(m.payload.descUser, 'descriptor table');
        this.#checkRingInMemory(m.payload.availUser, 'avail ring');
        this.#checkRingInMemory(m.payload.usedUser, 'used ring');
        this.#rings[m.payload.index]!.addr = {
          desc: m.payload.descUser,
          avail: m.payload.availUser,
          used: m.payload.usedUser,
        };
        return undefined;
      }
      case R.GET_VRING_BASE: {
        // Stops the ring (spec); like DPDK, its kick and call are forgotten, so a restart
        // needs a full replay. `num` is reserved but virtio_user sends garbage: ignored.
        this.#stopIfRunning();
        const ring = this.#rings[m.payload.index]!;
        const base = ring.base;
        closeFds([ring.kickFd, ring.callFd].filter((fd) => fd !== undefined));
        this.#rings[m.payload.index] = { ...freshRing(), base, num: ring.num, addr: ring.addr };
        return encodeReply(R.GET_VRING_BASE, { index: m.payload.index, num: base });
      }
      case R.SET_VRING_KICK: {
        this.#stopIfRunning();
        const ring = this.#rings[m.payload.index]!;
        if (ring.kickFd !== undefined) closeFds([ring.kickFd]);
        ring.kickFd = m.payload.fd;
        ring.kicked = true;
        return undefined;
      }
      case R.SET_VRING_CALL: {
        // A new call fd for a running ring is legal (QEMU does it); the data path restarts
        // with it below.
        this.#stopIfRunning();
        const ring = this.#rings[m.payload.index]!;
        if (ring.callFd !== undefined) closeFds([ring.callFd]);
        ring.callFd = m.payload.fd;
        return undefined;
      }
      case R.SET_VRING_ERR:
        // We never report ring errors through it; keep nothing.
        closeFds(m.fds);
        return undefined;
      case R.SET_VRING_ENABLE:
        if (
          this.#features !== undefined &&
          (this.#features & VHOST_USER_F_PROTOCOL_FEATURES) === 0n
        ) {
          throw protocolError('not-negotiated', 'SET_VRING_ENABLE without PROTOCOL_FEATURES');
        }
        if (m.payload.num === 0) this.#stopIfRunning();
        this.#rings[m.payload.index]!.enabled = m.payload.num === 1;
        return undefined;
      case R.SET_STATUS:
        if ((this.#protocolFeatures & VHOST_USER_PROTOCOL_F_STATUS) === 0n) {
          throw protocolError('not-negotiated', 'SET_STATUS without PROTOCOL_F_STATUS');
        }
        this.#status = m.payload;
        if (m.payload === 0n) this.#reset();
        else if ((m.payload & VIRTIO_STATUS_DRIVER_OK) === 0n) this.#stopIfRunning();
        return undefined;
      case R.GET_STATUS:
        if ((this.#protocolFeatures & VHOST_USER_PROTOCOL_F_STATUS) === 0n) {
          throw protocolError('not-negotiated', 'GET_STATUS without PROTOCOL_F_STATUS');
        }
        return encodeReply(R.GET_STATUS, this.#status);
    }
  }

  #setMemTable(table: MemoryTable, fds: readonly number[]): void {
    this.#stopIfRunning();
    const mapped: MappedRegion[] = [];
    try {
      for (const [i, r] of table.regions.entries()) {
        // SharedRegion takes numbers; beyond 2^53 a region could not be mapped anyway.
        if (
          r.mmapOffset > BigInt(Number.MAX_SAFE_INTEGER) ||
          r.memorySize > BigInt(Number.MAX_SAFE_INTEGER)
        ) {
          throw protocolError('region-overflow', `SET_MEM_TABLE: region ${i} is beyond 2^53`);
        }
        try {
          // fstat-checked against the file's size, so a region beyond EOF (which DPDK
          // accepts and later SIGBUSes on) is refused here.
          const region = SharedRegion.fromFd(r.fd, {
            offset: Number(r.mmapOffset),
            size: Number(r.memorySize),
            requireSeal: this.#options.requireSealedMemory,
          });
          mapped.push({ region, guestAddress: r.guestPhysAddr, userAddress: r.userspaceAddr });
        } catch (error) {
          const e = error as VringError;
          throw protocolError(
            e.code === 'ERR_VRING_REGION_NOT_SEALED' ? 'region-not-sealed' : 'bad-region',
            `SET_MEM_TABLE: region ${i} cannot be mapped: ${e.message}`,
            error,
          );
        }
      }
    } catch (error) {
      // The received fds are closed by the caller with the rejected message.
      for (const m of mapped) m.region.close();
      throw error;
    }
    // The mappings hold their own duplicates of the fds.
    closeFds(fds);
    for (const old of this.#regions) old.region.close();
    this.#regions = mapped;
  }

  /** A ring address must at least start inside a region; the native end checks whole ranges. */
  #checkRingInMemory(address: bigint, what: string): void {
    const inside = this.#regions.some(
      (r) => address >= r.userAddress && address < r.userAddress + BigInt(r.region.size),
    );
    if (!inside) {
      throw protocolError(
        'ring-outside-memory',
        `SET_VRING_ADDR: ${what} 0x${address.toString(16)} is outside every region`,
      );
    }
  }

  /** Starts the data path once everything a device needs is there. */
  #update(): void {
    if (this.#done || this.#pair || !this.#ready()) return;
    const [rx, tx] = this.#rings as [RingSetup, RingSetup];
    if (rx.num !== tx.num) {
      throw protocolError('ring-size-mismatch', `vring sizes differ: ${rx.num} and ${tx.num}`);
    }
    const features = this.#features ?? 0n;
    let pair: DeviceQueuePair;
    try {
      pair = DeviceQueuePair.fromVhostUser(
        {
          regions: this.#regions,
          rx: rx.addr!,
          tx: tx.addr!,
          queueSize: rx.num!,
          maxMessage: this.#options.maxFrame,
          eventIdx: (features & VIRTIO_RING_F_EVENT_IDX) !== 0n,
          mergeable: (features & VIRTIO_NET_F_MRG_RXBUF) !== 0n,
          rxBase: this.#resyncBase(rx),
          txBase: this.#resyncBase(tx),
          rxKickFd: rx.kickFd,
          txKickFd: tx.kickFd,
          rxCallFd: rx.callFd,
          txCallFd: tx.callFd,
        },
        {
          ...(this.#options.notification ? { notification: this.#options.notification } : {}),
          ...(this.#options.spinMicros !== undefined
            ? { spinMicros: this.#options.spinMicros }
            : {}),
        },
      );
    } catch (error) {
      const e = error as VringError;
      throw protocolError(
        e.reason ?? 'bad-ring-setup',
        `cannot start the rings: ${e.message}`,
        error,
      );
    }
    if (!this.#keepAlive) pair.unref();
    this.#pair = pair;
    this.#totals.starts++;
    // A ring the front-end breaks with hostile data ends this port, not the process.
    void pair.closed.then((error) => {
      if (error && this.#pair === pair) this.#fail(error);
    });
    this.#liveWaiters.resolveAll();
  }

  #ready(): boolean {
    if (this.#features === undefined || this.#regions.length === 0) return false;
    const needStatus = (this.#protocolFeatures & VHOST_USER_PROTOCOL_F_STATUS) !== 0n;
    if (needStatus && (this.#status & VIRTIO_STATUS_DRIVER_OK) === 0n) return false;
    return this.#rings.every(
      (r) => r.num !== undefined && r.addr !== undefined && r.kicked && r.enabled,
    );
  }

  /**
   * The base a ring restarts from. A front-end replaying its handshake after reconnecting
   * sends base 0 while its used ring says otherwise (interop/04); like DPDK, trust the used
   * index in shared memory then: we complete every chain we take, so it equals our last avail.
   */
  #resyncBase(ring: RingSetup): number {
    const used = ring.addr!.used;
    for (const r of this.#regions) {
      const size = BigInt(r.region.size);
      if (used >= r.userAddress && used + 4n <= r.userAddress + size) {
        // used->flags left by a killed back-end is reset by the native device queue.
        const at = Number(used - r.userAddress);
        return r.region.read(at + 2, 2).readUInt16LE(0);
      }
    }
    return ring.base;
  }

  /** Stops the data path (rings keep their setup); the next base is where it stopped. */
  #stopIfRunning(): void {
    const pair = this.#pair;
    if (!pair) return;
    const bases = pair.ringBases();
    if (bases) {
      this.#rings[0]!.base = bases.rx;
      this.#rings[1]!.base = bases.tx;
    }
    addPairStats(this.#totals, pair);
    this.#pair = undefined;
    pair.close();
  }

  #reset(): void {
    this.#stopIfRunning();
    for (const [i, ring] of this.#rings.entries()) {
      closeFds([ring.kickFd, ring.callFd].filter((fd) => fd !== undefined));
      this.#rings[i] = freshRing();
    }
    this.#features = undefined;
    this.#protocolFeatures = 0n;
    this.#status = 0n;
  }

  async #whenLive(options: WaitOptions): Promise<DeviceQueuePair> {
    for (;;) {
      if (this.#done) throw this.#failure ?? new VringError('ERR_VRING_CLOSED', 'port is closed');
      if (this.#pair) return this.#pair;
      await this.#liveWaiters.wait(options.signal);
    }
  }

  #fail(error: VringError): void {
    if (this.#done) return;
    this.#onError(error, this);
    this.#finish(error);
  }

  #finish(error: VringError | undefined): void {
    if (this.#done) return;
    this.#done = true;
    this.#failure = error;
    this.#stopIfRunning();
    for (const ring of this.#rings) {
      closeFds([ring.kickFd, ring.callFd].filter((fd) => fd !== undefined));
    }
    this.#rings.splice(0, this.#rings.length, freshRing(), freshRing());
    for (const r of this.#regions) r.region.close();
    this.#regions = [];
    this.#socket.close();
    this.#liveWaiters.rejectAll(error ?? new VringError('ERR_VRING_CLOSED', 'port is closed'));
    this.#resolveClosed(error);
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
