import { type EndpointOptions, notificationPolicy } from './endpoint-options.js';
import { VringError } from './errors.js';
import { EventFd } from './event-fd.js';
import { native } from './native.js';
import { parseQueuePairDescriptor, type QueuePairDescriptor } from './queue-pair-descriptor.js';
import { type NativeQueuePairEnd, QueuePairEnd } from './queue-pair-end.js';
import { SharedRegion } from './shared-region.js';

interface NativeDeviceClass {
  new (
    regions: Array<{ region: unknown; guestAddress: bigint; userAddress: bigint }>,
    rx: { desc: bigint; avail: bigint; used: bigint },
    tx: { desc: bigint; avail: bigint; used: bigint },
    config: object,
    rxBase: number,
    txBase: number,
    rxCallFd: number | undefined,
    txCallFd: number | undefined,
  ): NativeDeviceEnd;
}

/** The native device handle also reports where each ring stands. */
type NativeDeviceEnd = NativeQueuePairEnd & {
  info(): { rxLastAvail: number; txLastAvail: number };
  trackInflight(region: unknown, rxOffset: number, txOffset: number): number;
};

const NativeDeviceQueuePair = native.DeviceQueuePair as NativeDeviceClass;

/** A packed ring's base (slot | wrap counter << 15) before its first lap. */
const PACKED_RING_START = 0x8000;

/** Ring addresses in the driver's ring (userspace) address space. @internal */
export interface VhostUserRingAddresses {
  desc: bigint;
  avail: bigint;
  used: bigint;
}

/**
 * What a vhost-user back-end learnt from its front-end's SET_MEM_TABLE and SET_VRING_*
 * messages: everything {@link DeviceQueuePair.fromVhostUser} needs. The fds are borrowed
 * (duplicated inside); regions stay owned by the caller.
 * @internal
 */
export interface VhostUserQueuePairState {
  /** Mapped regions with their guest-physical (descriptor) and userspace (ring) bases. */
  regions: ReadonlyArray<{ region: SharedRegion; guestAddress: bigint; userAddress: bigint }>;
  /** Queue 0: the device writes frames into the driver's receive buffers. */
  rx: VhostUserRingAddresses;
  /** Queue 1: the device reads the frames the driver transmits. */
  tx: VhostUserRingAddresses;
  queueSize: number;
  /** Largest frame (without the 12-byte net header) either direction may carry. */
  maxMessage: number;
  eventIdx: boolean;
  mergeable: boolean;
  /**
   * VIRTIO_F_IN_ORDER was negotiated: chains go back in the order they came, so large
   * frames are copied instead of held in place.
   */
  inOrder?: boolean;
  /** VIRTIO_F_RING_PACKED: packed rings; the bases are then slot | wrap counter << 15. */
  packed: boolean;
  rxBase: number;
  txBase: number;
  /** Kick eventfds; `undefined` = the driver never kicks (the end then polls). */
  rxKickFd: number | undefined;
  txKickFd: number | undefined;
  /** Call eventfds; `undefined` = the driver polls the used rings. */
  rxCallFd: number | undefined;
  txCallFd: number | undefined;
  /**
   * The in-flight record (INFLIGHT_SHMFD) and where each queue's part starts in it; the
   * bases are then taken from it and the used rings. Borrowed: the pair maps it too.
   */
  inflight?: { region: SharedRegion; rxOffset: number; txOffset: number } | undefined;
}

/**
 * The device (vhost-user backend) end of a queue pair that lives in a peer's memory. It
 * maps the peer's region and checks everything the peer writes into the rings: a peer
 * that writes garbage breaks the queue with `ERR_VRING_BAD_RING`, never this process.
 * Over a Unix socket, {@link acceptQueuePair} receives, attaches and answers in one call.
 *
 * @example
 * ```ts
 * // The peer of DriverQueuePair's example: the descriptor and fds arrive over an FdSocket.
 * const socket = await FdSocket.connect('/tmp/pair.sock');
 * const { data, fds } = await socket.receive();
 * const pair = DeviceQueuePair.attach(JSON.parse(data.toString()), fds);
 * for (const fd of fds) closeSync(fd); // attach duplicated them
 * for await (const message of pair) console.log(message.toString()); // 'hello'
 * ```
 * @public
 */
export class DeviceQueuePair extends QueuePairEnd {
  /** Descriptors per ring, as the driver laid them out (a packed ring's need not be a power of two). */
  readonly queueSize: number;
  #resubmitted = 0;

  private constructor(
    handle: NativeQueuePairEnd,
    maxMessage: number,
    queueSize: number,
    kicks: EventFd[],
    owned: Array<{ close(): void }>,
    options: EndpointOptions,
  ) {
    super(handle, maxMessage, kicks, owned, options);
    this.queueSize = queueSize;
  }

  /**
   * Builds a device end from vhost-user state (see {@link VhostUserQueuePairState}). Without
   * a kick fd on either ring nothing would ever wake the end, so it polls then.
   * @internal
   */
  static fromVhostUser(
    state: VhostUserQueuePairState,
    options: EndpointOptions = {},
  ): DeviceQueuePair {
    const polled = state.rxKickFd === undefined || state.txKickFd === undefined;
    const endOptions: EndpointOptions = polled ? { ...options, notification: 'poll' } : options;
    notificationPolicy(endOptions);
    const owned: Array<{ close(): void }> = [];
    try {
      const kicks: EventFd[] = [];
      for (const fd of [state.rxKickFd, state.txKickFd]) {
        if (fd === undefined) continue;
        const kick = EventFd.fromFd(fd);
        owned.push(kick);
        kicks.push(kick);
      }
      // The device never allocates buffers; bufferSize only sizes the "enough receive
      // buffers posted" wakeup, so a typical mbuf size when buffers merge, else a whole frame.
      const whole = Math.ceil((state.maxMessage + 12) / 8) * 8;
      const spread = Math.ceil((state.maxMessage + 12) / state.queueSize / 8) * 8;
      const bufferSize = state.mergeable ? Math.max(2048, spread) : whole;
      const handle = new NativeDeviceQueuePair(
        state.regions.map((r) => ({
          region: r.region.handle,
          guestAddress: r.guestAddress,
          userAddress: r.userAddress,
        })),
        state.rx,
        state.tx,
        {
          queueSize: state.queueSize,
          bufferSize,
          maxMessage: state.maxMessage,
          eventIdx: state.eventIdx,
          mergeable: state.mergeable,
          inOrder: state.inOrder ?? false,
          packed: state.packed,
        },
        state.rxBase,
        state.txBase,
        state.rxCallFd,
        state.txCallFd,
      );
      let resubmitted = 0;
      if (state.inflight) {
        try {
          const { region, rxOffset, txOffset } = state.inflight;
          resubmitted = handle.trackInflight(region.handle, rxOffset, txOffset);
        } catch (error) {
          handle.close();
          throw error;
        }
      }
      const pair = new DeviceQueuePair(
        handle,
        state.maxMessage,
        state.queueSize,
        kicks,
        owned,
        endOptions,
      );
      pair.#resubmitted = resubmitted;
      return pair;
    } catch (error) {
      for (const r of owned) r.close();
      throw error;
    }
  }

  /**
   * Chains a killed device had taken and not returned, which this one takes again first
   * (from the in-flight record it started with; 0 without one).
   * @internal
   */
  get resubmitted(): number {
    return this.#resubmitted;
  }

  /**
   * The next avail index each ring would process (vhost-user GET_VRING_BASE), or
   * `undefined` once the end is closed.
   * @internal
   */
  ringBases(): { rx: number; tx: number } | undefined {
    try {
      const info = (this.handle as NativeDeviceEnd).info();
      return { rx: info.rxLastAvail, tx: info.txLastAvail };
    } catch {
      return undefined;
    }
  }

  /**
   * Attaches to the queue pair a {@link DriverQueuePair} shared: `descriptor` as received
   * (it is validated, so pass what came off the wire) and the fds `[region, kick, call]`.
   * The fds are duplicated: the caller still owns (and should close) the ones it passed.
   */
  static attach(
    descriptor: QueuePairDescriptor | unknown,
    fds: readonly number[],
    options: EndpointOptions = {},
  ): DeviceQueuePair {
    notificationPolicy(options);
    const owned: Array<{ close(): void }> = [];
    try {
      const d = parseQueuePairDescriptor(descriptor);
      if (fds.length !== 3) {
        throw new VringError(
          'ERR_VRING_PROTOCOL',
          `expected 3 fds (region, kick, call), got ${fds.length}`,
        );
      }
      const region = SharedRegion.fromFd(fds[0]!, { size: d.regionSize });
      owned.push(region);
      const kick = EventFd.fromFd(fds[1]!);
      owned.push(kick);
      const call = EventFd.fromFd(fds[2]!);
      owned.push(call);
      const handle = new NativeDeviceQueuePair(
        [{ region: region.handle, guestAddress: d.guestAddress, userAddress: d.guestAddress }],
        d.rx,
        d.tx,
        {
          queueSize: d.queueSize,
          bufferSize: d.bufferSize,
          maxMessage: d.maxMessage,
          eventIdx: d.eventIdx,
          mergeable: true,
          packed: d.packed,
        },
        // Both rings start fresh: slot 0, and for packed rings wrap counter 1.
        d.packed ? PACKED_RING_START : 0,
        d.packed ? PACKED_RING_START : 0,
        call.fd,
        call.fd,
      );
      return new DeviceQueuePair(handle, d.maxMessage, d.queueSize, [kick], owned, options);
    } catch (error) {
      for (const r of owned) r.close();
      throw error;
    }
  }
}
