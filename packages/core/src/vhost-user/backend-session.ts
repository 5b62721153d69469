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
  VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
  VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_STATUS,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_STATUS_DRIVER_OK,
} from './features.js';
import { InflightRegion } from './inflight-region.js';
import { MappedMemory, type MappedRegion } from './mapped-memory.js';
import {
  closeFds,
  decodeRequest,
  protocolError,
  regionsOverlap,
  type VhostUserRequestMessage,
} from './message-decoder.js';
import { encodeAck, encodeReply, encodeReplyWithFds } from './message-encoder.js';
import {
  type MemoryRegion,
  type MemoryTable,
  VhostUserRequest as R,
  VHOST_VRING_F_LOG,
} from './message-layout.js';
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

/**
 * Memory slots we announce with GET_MAX_MEM_SLOTS: regions ADD_MEM_REG may add (the native
 * memory table's limit; every translation scans them, so not the 509 of libvhost-user).
 */
export const MAX_MEM_SLOTS = 32;

/** Vrings per queue pair: 2k receives (the front-end's receiveq), 2k + 1 transmits. */
const VRINGS_PER_PAIR = 2;

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

function freshRings(count: number): RingSetup[] {
  return Array.from({ length: count }, freshRing);
}

function closeRingFds(ring: RingSetup): void {
  closeFds([ring.kickFd, ring.callFd].filter((fd) => fd !== undefined));
}

/** What a {@link VhostUserSession} tells the port it serves. @internal */
export interface SessionHandlers {
  /**
   * The rings of queue pair `index` are complete: `pair` carries its data path until
   * {@link stopped}.
   */
  started(pair: DeviceQueuePair, index: number): void;
  /**
   * `pair`, queue pair `index`, is about to close: the front-end is changing its rings, or
   * the session ends.
   */
  stopped(pair: DeviceQueuePair, index: number): void;
  /**
   * The session ended: `undefined` when the front-end disconnected, else the error that
   * rejected it. Called once, before the session releases anything.
   */
  ended(error: VringError | undefined): void;
}

/**
 * The vhost-user request state machine of one control connection. It owns the socket, the
 * mapped memory, the rings' eventfds and a running {@link DeviceQueuePair} per queue pair,
 * and releases them all on {@link VhostUserSession.close}. Each queue pair starts and stops
 * on its own: a front-end with VIRTIO_NET_F_MQ enables its extra pairs with
 * SET_VRING_ENABLE whenever it likes (DPDK's virtio_user does so after DRIVER_OK, when its
 * port starts), and vrings beyond the configured pairs are refused like any other bad index.
 * @internal
 */
export class VhostUserSession {
  readonly #socket: FdSocket;
  readonly #options: ResolvedPortOptions;
  readonly #handlers: SessionHandlers;
  readonly #rings: RingSetup[];
  #features: bigint | undefined;
  #protocolFeatures = 0n;
  #status = 0n;
  #memory: MappedMemory | undefined;
  /** The in-flight record (INFLIGHT_SHMFD): made by GET_INFLIGHT_FD, or handed back. */
  #inflight: InflightRegion | undefined;
  /** An explicit reply's fds (GET_INFLIGHT_FD's record), sent with the reply. */
  #replyFds: readonly number[] = [];
  #regionsAdded = 0;
  /** The running data path of each queue pair, by index. */
  readonly #pairs: Array<DeviceQueuePair | undefined> = [];
  #done = false;

  /** Starts serving the control connection `socket`. */
  constructor(socket: FdSocket, options: ResolvedPortOptions, handlers: SessionHandlers) {
    this.#socket = socket;
    this.#options = options;
    this.#handlers = handlers;
    this.#rings = freshRings(VRINGS_PER_PAIR * options.queuePairs);
    void this.#serve();
  }

  /** The negotiated virtio features, once SET_FEATURES arrived. */
  get features(): bigint | undefined {
    return this.#features;
  }

  /** Regions the front-end added one at a time (ADD_MEM_REG). */
  get regionsAdded(): number {
    return this.#regionsAdded;
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
    this.#rings.splice(0, this.#rings.length, ...freshRings(this.#rings.length));
    this.#memory?.close();
    this.#memory = undefined;
    this.#inflight?.close();
    this.#inflight = undefined;
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
        maxVrings: this.#rings.length,
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
      const fds = this.#replyFds;
      this.#replyFds = [];
      await this.#socket.send(reply, fds);
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
        if (this.#pairs.some(Boolean) && this.#features !== m.payload) {
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
        return encodeReply(R.GET_QUEUE_NUM, BigInt(this.#options.queuePairs));
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
        this.#stopIfRunning(m.payload.index);
        this.#rings[m.payload.index]!.num = m.payload.num;
        return undefined;
      case R.SET_VRING_BASE:
        this.#stopIfRunning(m.payload.index);
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
        this.#stopIfRunning(m.payload.index);
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
        this.#stopIfRunning(m.payload.index);
        const ring = this.#rings[m.payload.index]!;
        const base = ring.base;
        closeRingFds(ring);
        this.#rings[m.payload.index] = { ...freshRing(), base, num: ring.num, addr: ring.addr };
        return encodeReply(R.GET_VRING_BASE, { index: m.payload.index, num: base });
      }
      case R.SET_VRING_KICK: {
        this.#stopIfRunning(m.payload.index);
        const ring = this.#rings[m.payload.index]!;
        if (ring.kickFd !== undefined) closeFds([ring.kickFd]);
        ring.kickFd = m.payload.fd;
        ring.kicked = true;
        return undefined;
      }
      case R.SET_VRING_CALL: {
        // A new call fd for a running ring is legal (QEMU does it); the data path restarts
        // with it once the message is answered.
        this.#stopIfRunning(m.payload.index);
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
        if (m.payload.num === 0) this.#stopIfRunning(m.payload.index);
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
      case R.GET_INFLIGHT_FD: {
        this.#requireInflight('GET_INFLIGHT_FD');
        // A new record each time (the front-end asks after a device reset); the old one is
        // dropped, so repeated requests cannot pile up memfds (CVE-2020-10726).
        this.#stopIfRunning();
        const record = InflightRegion.create(m.payload.numQueues, m.payload.queueSize);
        this.#inflight?.close();
        this.#inflight = record;
        const { frame, fds } = encodeReplyWithFds(R.GET_INFLIGHT_FD, record.area());
        this.#replyFds = fds;
        return frame;
      }
      case R.GET_MAX_MEM_SLOTS:
        this.#requireMemSlots('GET_MAX_MEM_SLOTS');
        return encodeReply(R.GET_MAX_MEM_SLOTS, BigInt(MAX_MEM_SLOTS));
      case R.ADD_MEM_REG: {
        this.#requireMemSlots('ADD_MEM_REG');
        const memory = this.#memory ?? MappedMemory.empty();
        checkAddedRegion(memory, m.payload, this.#options.maxPeerMemory);
        const grown = memory.withRegion(m.payload, this.#options.requireSealedMemory);
        closeFds(m.fds);
        // The rings restart on the new table (the native memory table is fixed per start).
        this.#stopIfRunning();
        this.#memory = grown;
        this.#regionsAdded++;
        return undefined;
      }
      case R.REM_MEM_REG: {
        this.#requireMemSlots('REM_MEM_REG');
        const memory = this.#memory;
        const r = m.payload;
        const index =
          memory?.regions.findIndex(
            (mapped) =>
              mapped.guestAddress === r.guestPhysAddr &&
              mapped.userAddress === r.userspaceAddr &&
              BigInt(mapped.region.size) === r.memorySize,
          ) ?? -1;
        if (!memory || index < 0) {
          throw protocolError(
            'unknown-region',
            `REM_MEM_REG: no region of ${r.memorySize} bytes at guest 0x${r.guestPhysAddr.toString(16)}`,
          );
        }
        // An fd the spec lets come along is closed unused (by #handle when refused).
        closeFds(m.fds);
        this.#stopIfRunning();
        this.#memory = memory.withoutRegion(index);
        memory.regions[index]!.region.close();
        return undefined;
      }
      case R.SET_INFLIGHT_FD: {
        this.#requireInflight('SET_INFLIGHT_FD');
        // Mapped before anything changes, so a refused record leaves the rings as they were;
        // the mapping holds its own duplicate of the fd.
        const record = InflightRegion.adopt(m.payload, this.#options.requireSealedMemory);
        closeFds(m.fds);
        this.#stopIfRunning();
        this.#inflight?.close();
        this.#inflight = record;
        return undefined;
      }
    }
  }

  #requireMemSlots(name: string): void {
    if ((this.#protocolFeatures & VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) === 0n) {
      throw protocolError('not-negotiated', `${name} without PROTOCOL_F_CONFIGURE_MEM_SLOTS`);
    }
  }

  #requireInflight(name: string): void {
    if ((this.#protocolFeatures & VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) === 0n) {
      throw protocolError('not-negotiated', `${name} without PROTOCOL_F_INFLIGHT_SHMFD`);
    }
    // The record is kept for split rings only: refused at the request (SET_INFLIGHT_FD is
    // NACKed when an ack was asked for), not later when the rings start and nothing is left
    // but ending the port.
    if (((this.#features ?? 0n) & VIRTIO_F_RING_PACKED) !== 0n) {
      throw protocolError('inflight-packed', `${name}: no in-flight record for packed rings`);
    }
  }

  /**
   * The in-flight record queue pair `index` starts with, checked against it: the record must
   * cover the pair's two vrings (a front-end driving fewer pairs than we offer asks for a
   * record of its own pairs only), laid out for the size the rings have.
   */
  #inflightFor(
    index: number,
    queueSize: number,
  ): { record: InflightRegion; rx: number; tx: number } | undefined {
    const record = this.#inflight;
    if (!record) return undefined;
    const tx = VRINGS_PER_PAIR * index + 1;
    if (record.numQueues <= tx || record.queueSize !== queueSize) {
      throw protocolError(
        'inflight-mismatch',
        `the in-flight record covers ${record.numQueues} queues of ${record.queueSize}, ` +
          `queue pair ${index} needs vrings ${tx - 1} and ${tx} of ${queueSize}`,
      );
    }
    return { record, rx: record.queueOffset(tx - 1), tx: record.queueOffset(tx) };
  }

  /** Starts the data path of each queue pair once everything it needs is there. */
  #startIfReady(): void {
    for (let index = 0; index < this.#rings.length / VRINGS_PER_PAIR; index++) {
      if (this.#done) return;
      if (!this.#pairs[index] && this.#ready(index)) this.#start(index);
    }
  }

  #start(index: number): void {
    const memory = this.#memory!;
    const rx = this.#rings[VRINGS_PER_PAIR * index]!;
    const tx = this.#rings[VRINGS_PER_PAIR * index + 1]!;
    if (rx.num !== tx.num) {
      throw protocolError(
        'ring-size-mismatch',
        `queue pair ${index}: vring sizes differ: ${rx.num} and ${tx.num}`,
      );
    }
    const features = this.#features ?? 0n;
    const inflight = this.#inflightFor(index, rx.num!);
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
          inOrder: (features & VIRTIO_F_IN_ORDER) !== 0n,
          packed: (features & VIRTIO_F_RING_PACKED) !== 0n,
          rxBase: resyncBase(memory, rx, features),
          txBase: resyncBase(memory, tx, features),
          rxKickFd: rx.kickFd,
          txKickFd: tx.kickFd,
          rxCallFd: rx.callFd,
          txCallFd: tx.callFd,
          inflight: inflight && {
            region: inflight.record.region,
            rxOffset: inflight.rx,
            txOffset: inflight.tx,
          },
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
    this.#pairs[index] = pair;
    this.#handlers.started(pair, index);
  }

  /** Whether queue pair `index` has everything a device needs. */
  #ready(index: number): boolean {
    if (this.#features === undefined || !this.#memory) return false;
    const needStatus = (this.#protocolFeatures & VHOST_USER_PROTOCOL_F_STATUS) !== 0n;
    if (needStatus && (this.#status & VIRTIO_STATUS_DRIVER_OK) === 0n) return false;
    const first = VRINGS_PER_PAIR * index;
    return this.#rings
      .slice(first, first + VRINGS_PER_PAIR)
      .every((r) => r.num !== undefined && r.addr !== undefined && r.kicked && r.enabled);
  }

  /**
   * Stops the data path of the queue pair vring `ring` belongs to, or of every pair without
   * `ring` (rings keep their setup); the next base is where it stopped.
   */
  #stopIfRunning(ring?: number): void {
    if (ring === undefined) {
      for (let index = 0; index < this.#pairs.length; index++) this.#stopPair(index);
    } else {
      this.#stopPair(Math.floor(ring / VRINGS_PER_PAIR));
    }
  }

  #stopPair(index: number): void {
    const pair = this.#pairs[index];
    if (!pair) return;
    const bases = pair.ringBases();
    if (bases) {
      this.#rings[VRINGS_PER_PAIR * index]!.base = bases.rx;
      this.#rings[VRINGS_PER_PAIR * index + 1]!.base = bases.tx;
    }
    this.#handlers.stopped(pair, index);
    this.#pairs[index] = undefined;
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
    // A reset device starts afresh: the front-end asks for a new record.
    this.#inflight?.close();
    this.#inflight = undefined;
  }
}

/**
 * Refuses a region ADD_MEM_REG cannot add to `memory`: one past the last slot, one that
 * overlaps a region there in either address space, or one that takes the regions over
 * `limit` bytes. Checked before anything is mapped.
 */
function checkAddedRegion(memory: MappedMemory, region: MemoryRegion, limit: number): void {
  if (memory.regions.length >= MAX_MEM_SLOTS) {
    throw protocolError('no-free-slot', `ADD_MEM_REG: all ${MAX_MEM_SLOTS} memory slots are used`);
  }
  const existing = memory.regions.map(asTableRegion);
  const other = existing.find((r) => regionsOverlap(region, r));
  if (other) {
    throw protocolError(
      'overlapping-regions',
      `ADD_MEM_REG: the region at guest 0x${region.guestPhysAddr.toString(16)} overlaps one ` +
        `at 0x${other.guestPhysAddr.toString(16)}`,
    );
  }
  checkMemoryLimit({ regions: [...existing, region] }, limit);
}

/** A mapped region as a memory table describes it (its fd is the mapping's business). */
function asTableRegion(mapped: MappedRegion): MemoryRegion {
  return {
    guestPhysAddr: mapped.guestAddress,
    userspaceAddr: mapped.userAddress,
    memorySize: BigInt(mapped.region.size),
    mmapOffset: 0n,
    fd: -1,
  };
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
