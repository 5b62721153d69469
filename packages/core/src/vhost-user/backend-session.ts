/**
 * The control plane of one front-end attached to a back-end: the device side of the
 * vhost-user protocol over one control connection. It negotiates features, maps the memory
 * table, collects each ring's size, base, addresses and eventfds, answers GET_VRING_BASE,
 * RESET_OWNER and SET/GET_STATUS, and starts a {@link DeviceQueuePair} whenever the rings
 * are complete, stopping it whenever the front-end changes them.
 *
 * Every control message is decoded and validated by `message-decoder.ts` before it is acted on.
 * A refused request that asked for an ack (NEED_REPLY) is answered with a NACK and the session
 * goes on where `refusal-policy.ts` says the port stays usable; any other refusal ends the
 * session with a reason, and every fd and mapping it held is released.
 *
 * @packageDocumentation
 */
import { DeviceQueuePair, type VhostUserRingAddresses } from '../device-queue-pair.js';
import { VringError } from '../errors.js';
import type { FdSocket } from '../fd-socket.js';
import { limitExceeded, type PeerLimitReason } from '../peer-limits.js';
import { BACKEND_PROTOCOL_FEATURES, type ResolvedPortOptions } from './backend-options.js';
import {
  checkAccepted,
  checkProtocolFeatureDependencies,
  requireFeatures,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_STATUS,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_STATUS_DRIVER_OK,
} from './features.js';
import { MappedMemory } from './mapped-memory.js';
import {
  closeFds,
  decodeRequest,
  protocolError,
  type VhostUserRequestMessage,
} from './message-decoder.js';
import { encodeAck, encodeReply } from './message-encoder.js';
import { type MemoryTable, VhostUserRequest as R, VHOST_VRING_F_LOG } from './message-layout.js';
import { limitNotice, noticeError } from './refusal-notice.js';
import { requestToNack } from './refusal-policy.js';

/**
 * Refuses a memory table whose regions add up to more than `limit` bytes, before any of it
 * is mapped (mapping faults every page in).
 * @throws VringError `ERR_VRING_LIMIT_EXCEEDED` (reason `memory-limit`).
 */
function checkMemoryLimit(table: MemoryTable, limit: number): void {
  const total = table.regions.reduce((sum, region) => sum + region.memorySize, 0n);
  if (limit !== Number.POSITIVE_INFINITY && total > BigInt(limit)) {
    throw limitExceeded(
      'memory-limit',
      `SET_MEM_TABLE: ${table.regions.length} regions of ${total} bytes in all, over the ` +
        `back-end's maxPeerMemory of ${limit} bytes`,
    );
  }
}

/** One queue pair: vrings 0 (receive) and 1 (transmit). */
const VRINGS = 2;

/** What the front-end has told us about one vring so far. */
interface RingSetup {
  num: number | undefined;
  base: number;
  addr: VhostUserRingAddresses | undefined;
  kicked: boolean;
  kickFd: number | undefined;
  callFd: number | undefined;
  enabled: boolean;
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

function closeRingFds(ring: RingSetup): void {
  closeFds([ring.kickFd, ring.callFd].filter((fd) => fd !== undefined));
}

/** What a {@link VhostUserSession} tells the port it serves. @internal */
export interface SessionHandlers {
  /** The rings are complete: `pair` carries the data path until {@link stopped}. */
  started(pair: DeviceQueuePair): void;
  /** `pair` is about to close: the front-end is changing its rings, or the session ends. */
  stopped(pair: DeviceQueuePair): void;
  /**
   * The session ended: `undefined` when the front-end disconnected, else the error that
   * rejected it. Called once, before the session releases anything.
   */
  ended(error: VringError | undefined): void;
}

/**
 * The vhost-user request state machine of one control connection. It owns the socket, the
 * mapped memory, the rings' eventfds and the running {@link DeviceQueuePair}, and releases
 * them all on {@link VhostUserSession.close}.
 * @internal
 */
export class VhostUserSession {
  readonly #socket: FdSocket;
  readonly #options: ResolvedPortOptions;
  readonly #handlers: SessionHandlers;
  readonly #rings: RingSetup[] = [freshRing(), freshRing()];
  #features: bigint | undefined;
  #protocolFeatures = 0n;
  #status = 0n;
  #memory: MappedMemory | undefined;
  #pair: DeviceQueuePair | undefined;
  #done = false;

  /** Starts serving the control connection `socket`. */
  constructor(socket: FdSocket, options: ResolvedPortOptions, handlers: SessionHandlers) {
    this.#socket = socket;
    this.#options = options;
    this.#handlers = handlers;
    void this.#serve();
  }

  /** The negotiated virtio features, once SET_FEATURES arrived. */
  get features(): bigint | undefined {
    return this.#features;
  }

  /** The protocol features SET_PROTOCOL_FEATURES agreed on (0 before it arrived). */
  get protocolFeatures(): bigint {
    return this.#protocolFeatures;
  }

  /** Stops the data path, closes the connection and releases every fd and mapping. Idempotent. */
  close(): void {
    if (this.#done) return;
    this.#done = true;
    this.#stopIfRunning();
    for (const ring of this.#rings) closeRingFds(ring);
    this.#rings.splice(0, this.#rings.length, freshRing(), freshRing());
    this.#memory?.close();
    this.#memory = undefined;
    this.#socket.close();
  }

  #end(error: VringError | undefined): void {
    if (this.#done) return;
    this.#handlers.ended(error);
    this.close();
  }

  async #serve(): Promise<void> {
    // The socket settles `closed` with an error for framing problems the binding catches
    // itself (short header at EOF, a size beyond the limit, truncated fds); the binding names
    // the problem in `reason` (`short-message`, `oversized-message`, `too-many-fds`, …).
    void this.#socket.closed.then((error) => {
      if (this.#done) return;
      if (error && error.code !== 'ERR_VRING_PEER_DISCONNECTED') {
        const reason = error.reason ?? 'bad-frame';
        this.#end(protocolError(reason, `control connection: ${error.message}`, error));
      } else {
        this.#end(undefined);
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
      const notice = noticeError(frame, 'front-end');
      if (notice) {
        // A listening front-end of ours turned this process away: on its credentials, or
        // over one of its limits.
        closeFds(fds);
        this.#end(notice);
        return;
      }
      try {
        await this.#handle(frame, fds);
      } catch (error) {
        const code = (error as VringError).code;
        if (code === 'ERR_VRING_PEER_DISCONNECTED' || code === 'ERR_VRING_CLOSED') {
          this.#end(undefined); // the front-end left while we replied: not an error
        } else if (code === 'ERR_VRING_LIMIT_EXCEEDED') {
          // Tell the front-end which limit, so it reports that rather than a disconnect. The
          // notice is written at once into a socket we only ever answer on; not waited for,
          // so a front-end that stopped reading cannot hold the session open.
          const reason = (error as VringError).reason as PeerLimitReason;
          this.#socket.send(limitNotice(reason)).catch(() => {});
          this.#end(error as VringError);
        } else {
          this.#end(
            error instanceof VringError
              ? error
              : protocolError('internal', `handling a message failed: ${String(error)}`, error),
          );
        }
        return;
      }
    }
  }

  /**
   * Decodes and applies one request and answers it. A refusal that `refusal-policy.ts` lets
   * the session survive is answered with a NACK; every other one is thrown and ends it.
   */
  async #handle(frame: Buffer, fds: number[]): Promise<void> {
    let message: VhostUserRequestMessage;
    let reply: Buffer | undefined;
    try {
      message = decodeRequest(frame, fds, {
        maxVrings: VRINGS,
        ringPacked: ((this.#features ?? 0n) & VIRTIO_F_RING_PACKED) !== 0n,
      });
      try {
        reply = this.#apply(message);
      } catch (error) {
        // Whatever the message carried and nobody adopted is released with it.
        closeFds(message.fds);
        throw error;
      }
    } catch (error) {
      const nacked = requestToNack(frame, error);
      if (nacked === undefined) throw error;
      // Refusals are checked before a request changes anything, so the rings run on as
      // they were.
      await this.#socket.send(encodeAck(nacked, 1n));
      return;
    }
    if (reply) {
      await this.#socket.send(reply);
    } else if (message.needReply) {
      // DPDK acks NEED_REPLY whether or not REPLY_ACK was negotiated; a front-end waiting
      // for the ack would otherwise hang.
      await this.#socket.send(encodeAck(message.request, 0n));
    }
    this.#startIfReady();
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
      case R.SET_MEM_TABLE: {
        this.#stopIfRunning();
        checkMemoryLimit(m.payload, this.#options.maxPeerMemory);
        // The received fds are closed by #handle with the message if mapping fails.
        const memory = MappedMemory.map(m.payload, this.#options.requireSealedMemory);
        // The mappings hold their own duplicates of the fds.
        closeFds(m.fds);
        this.#memory?.close();
        this.#memory = memory;
        return undefined;
      }
      case R.SET_VRING_NUM:
        this.#stopIfRunning();
        this.#rings[m.payload.index]!.num = m.payload.num;
        return undefined;
      case R.SET_VRING_BASE:
        this.#stopIfRunning();
        this.#rings[m.payload.index]!.base = m.payload.num;
        return undefined;
      case R.SET_VRING_ADDR: {
        const memory = this.#memory;
        if (!memory) {
          throw protocolError('no-memory-table', 'SET_VRING_ADDR before SET_MEM_TABLE');
        }
        if ((m.payload.flags & VHOST_VRING_F_LOG) !== 0) {
          throw protocolError(
            'not-negotiated',
            'SET_VRING_ADDR asks for logging, LOG_ALL was not offered',
          );
        }
        checkRingInMemory(memory, m.payload.descUser, 'descriptor table');
        checkRingInMemory(memory, m.payload.availUser, 'avail ring');
        checkRingInMemory(memory, m.payload.usedUser, 'used ring');
        this.#stopIfRunning();
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
        closeRingFds(ring);
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
        // with it once the message is answered.
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

  /** Starts the data path once everything a device needs is there. */
  #startIfReady(): void {
    const memory = this.#memory;
    if (this.#done || this.#pair || !memory || !this.#ready()) return;
    const [rx, tx] = this.#rings as [RingSetup, RingSetup];
    if (rx.num !== tx.num) {
      throw protocolError('ring-size-mismatch', `vring sizes differ: ${rx.num} and ${tx.num}`);
    }
    const features = this.#features ?? 0n;
    let pair: DeviceQueuePair;
    try {
      pair = DeviceQueuePair.fromVhostUser(
        {
          regions: memory.regions,
          rx: rx.addr!,
          tx: tx.addr!,
          queueSize: rx.num!,
          maxMessage: this.#options.maxFrame,
          eventIdx: (features & VIRTIO_RING_F_EVENT_IDX) !== 0n,
          mergeable: (features & VIRTIO_NET_F_MRG_RXBUF) !== 0n,
          packed: (features & VIRTIO_F_RING_PACKED) !== 0n,
          rxBase: resyncBase(memory, rx, features),
          txBase: resyncBase(memory, tx, features),
          rxKickFd: rx.kickFd,
          txKickFd: tx.kickFd,
          rxCallFd: rx.callFd,
          txCallFd: tx.callFd,
        },
        this.#options.endpoint,
      );
    } catch (error) {
      const e = error as VringError;
      throw protocolError(
        e.reason ?? 'bad-ring-setup',
        `cannot start the rings: ${e.message}`,
        error,
      );
    }
    this.#pair = pair;
    this.#handlers.started(pair);
  }

  #ready(): boolean {
    if (this.#features === undefined) return false;
    const needStatus = (this.#protocolFeatures & VHOST_USER_PROTOCOL_F_STATUS) !== 0n;
    if (needStatus && (this.#status & VIRTIO_STATUS_DRIVER_OK) === 0n) return false;
    return this.#rings.every(
      (r) => r.num !== undefined && r.addr !== undefined && r.kicked && r.enabled,
    );
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
    this.#handlers.stopped(pair);
    this.#pair = undefined;
    pair.close();
  }

  #reset(): void {
    this.#stopIfRunning();
    for (const [i, ring] of this.#rings.entries()) {
      closeRingFds(ring);
      this.#rings[i] = freshRing();
    }
    this.#features = undefined;
    this.#protocolFeatures = 0n;
    this.#status = 0n;
  }
}

/** A ring address must at least start inside a region; the native end checks whole ranges. */
function checkRingInMemory(memory: MappedMemory, address: bigint, what: string): void {
  if (!memory.contains(address)) {
    throw protocolError(
      'ring-outside-memory',
      `SET_VRING_ADDR: ${what} 0x${address.toString(16)} is outside every region`,
    );
  }
}

/**
 * The base a ring restarts from. A front-end replaying its handshake after it reconnected
 * may send base 0 although its used ring says otherwise (DPDK's virtio_user sends 0 on every
 * handshake). Like DPDK's own back-end, trust the used index in shared memory instead: we
 * complete every chain we take, so it equals our last avail index. (used->flags left by a
 * killed back-end is reset by the native device queue.)
 */
function resyncBase(memory: MappedMemory, ring: RingSetup, features: bigint): number {
  // A packed ring has no used index to read back: its base (slot and wrap counter) is
  // taken as given, and used descriptors start there too.
  if ((features & VIRTIO_F_RING_PACKED) !== 0n) return ring.base;
  return memory.usedIndex(ring.addr!.used) ?? ring.base;
}
