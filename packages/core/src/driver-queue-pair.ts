import { type EndpointOptions, notificationPolicy } from './endpoint-options.js';
import { EventFd } from './event-fd.js';
import { native } from './native.js';
import type { QueuePairDescriptor } from './queue-pair-descriptor.js';
import { toHex } from './queue-pair-descriptor.js';
import { type NativeQueuePairEnd, QueuePairEnd } from './queue-pair-end.js';
import { SharedRegion } from './shared-region.js';

/** Geometry of a queue pair, chosen by the driver. @public */
export interface QueuePairOptions extends EndpointOptions {
  /** Descriptors per queue: a power of two, 2..32768. Default 256. */
  queueSize?: number;
  /** Bytes per packet buffer (multiple of 8, 64..1 MiB). Default 2048: a full Ethernet frame fits. */
  bufferSize?: number;
  /** Largest message in bytes. Default 65536. Must fit in `queueSize` buffers. */
  maxMessage?: number;
  /** Use VIRTIO_RING_F_EVENT_IDX notification suppression (default true). */
  eventIdx?: boolean;
  /**
   * Lay both queues out as packed rings (VIRTIO_F_RING_PACKED) instead of split rings
   * (default false). The descriptor from {@link DriverQueuePair.share} carries the format,
   * so the device end attaches either kind.
   */
  packed?: boolean;
}

interface NativeDriverInfo {
  rx: { desc: bigint; avail: bigint; used: bigint };
  tx: { desc: bigint; avail: bigint; used: bigint };
  bytes: number;
}

/** The native driver end: a queue pair end with its ring addresses and packed resumption. */
type NativeDriverEnd = NativeQueuePairEnd & {
  info(): NativeDriverInfo;
  prepareResume(): { rx: number; tx: number };
};

interface NativeDriverClass {
  new (
    region: unknown,
    offset: number,
    guestBase: bigint,
    config: object,
    rxKickFd: number | undefined,
    txKickFd: number | undefined,
  ): NativeDriverEnd;
}

const NativeDriverQueuePair = native.DriverQueuePair as NativeDriverClass;

/** How the rings of a vhost-user queue pair are used, as negotiated. */
interface RingFormat {
  /** VIRTIO_F_IN_ORDER. */
  readonly inOrder: boolean;
  /** VIRTIO_F_RING_PACKED. */
  readonly packed: boolean;
}

/**
 * The driver (virtio-user frontend) end of a virtio-net queue pair: it owns the shared
 * region that holds both rings and every packet buffer, and the eventfds. Hand
 * {@link DriverQueuePair.share} to the peer, which attaches with
 * {@link DeviceQueuePair.attach}; over a Unix socket, {@link offerQueuePair} and
 * {@link acceptQueuePair} do that handshake.
 *
 * @example
 * ```ts
 * const pair = DriverQueuePair.create({ queueSize: 256 });
 * const { descriptor, fds } = pair.share();
 * await socket.send(Buffer.from(JSON.stringify(descriptor)), fds);
 * await pair.send(Buffer.from('hello'));
 * ```
 * @public
 */
export class DriverQueuePair extends QueuePairEnd {
  /** The region holding the rings and buffers. */
  readonly region: SharedRegion;
  readonly #descriptor: QueuePairDescriptor;
  readonly #kick: EventFd;
  readonly #call: EventFd;
  // Only for vhost-user: a second kick eventfd so each vring has its own (undefined: the
  // one `#kick` serves both queues).
  readonly #txKick: EventFd | undefined;

  private constructor(
    handle: NativeDriverEnd,
    region: SharedRegion,
    kick: EventFd,
    call: EventFd,
    config: Required<Omit<QueuePairOptions, keyof EndpointOptions | 'packed'>>,
    packed: boolean,
    options: EndpointOptions,
    txKick?: EventFd,
  ) {
    super(
      handle,
      config.maxMessage,
      [call],
      txKick ? [call, kick, txKick, region] : [call, kick, region],
      options,
    );
    this.region = region;
    this.#kick = kick;
    this.#call = call;
    this.#txKick = txKick;
    const info = handle.info();
    this.#descriptor = {
      version: packed ? 2 : 1,
      queueSize: config.queueSize,
      bufferSize: config.bufferSize,
      maxMessage: config.maxMessage,
      eventIdx: config.eventIdx,
      packed,
      guestAddress: toHex(region.address),
      regionSize: region.size,
      rx: { desc: toHex(info.rx.desc), avail: toHex(info.rx.avail), used: toHex(info.rx.used) },
      tx: { desc: toHex(info.tx.desc), avail: toHex(info.tx.avail), used: toHex(info.tx.used) },
    };
  }

  /** Creates the region, both rings (receive buffers posted) and the kick/call eventfds. */
  static create(options: QueuePairOptions = {}): DriverQueuePair {
    return DriverQueuePair.#build(options, true, options.eventIdx ?? true, false, {
      inOrder: false,
      packed: options.packed ?? false,
    });
  }

  /**
   * The queue pair a vhost-user front-end (VirtioUser) drives: each vring gets its own kick
   * eventfd, as SET_VRING_KICK is per vring, and mergeable receive buffers and EVENT_IDX
   * follow what the back-end negotiated instead of being always on. Without mergeable
   * buffers every buffer must hold a whole frame plus the 12-byte header, so `bufferSize`
   * is raised to fit `maxMessage`. With `inOrder` (VIRTIO_F_IN_ORDER) descriptors go out
   * in ring order and a used entry may stand for a batch of chains; `packed` lays both
   * queues out as packed rings (VIRTIO_F_RING_PACKED).
   * @internal
   */
  static createForVhostUser(
    options: QueuePairOptions & {
      mergeable: boolean;
      eventIdx: boolean;
      inOrder?: boolean;
      packed?: boolean;
    },
  ): DriverQueuePair {
    return DriverQueuePair.#build(options, options.mergeable, options.eventIdx, true, {
      inOrder: options.inOrder ?? false,
      packed: options.packed ?? false,
    });
  }

  static #build(
    options: QueuePairOptions,
    mergeable: boolean,
    eventIdx: boolean,
    kickPerVring: boolean,
    format: RingFormat,
  ): DriverQueuePair {
    notificationPolicy(options);
    const maxMessage = options.maxMessage ?? 65536;
    const minBuffer = mergeable ? 64 : Math.ceil((maxMessage + 12) / 8) * 8;
    const config = {
      queueSize: options.queueSize ?? 256,
      bufferSize: mergeable
        ? (options.bufferSize ?? 2048)
        : Math.max(options.bufferSize ?? 2048, minBuffer),
      maxMessage,
      eventIdx,
    };
    const nativeConfig = { ...config, mergeable, ...format };
    const bytes = requiredBytes(nativeConfig);
    const region = SharedRegion.create(bytes, { name: 'vring-queue-pair' });
    const cleanup: Array<{ close(): void }> = [region];
    try {
      const kick = new EventFd();
      cleanup.push(kick);
      const txKick = kickPerVring ? new EventFd() : undefined;
      if (txKick) cleanup.push(txKick);
      const call = new EventFd();
      cleanup.push(call);
      const handle = new NativeDriverQueuePair(
        region.handle,
        0,
        region.address,
        nativeConfig,
        kick.fd,
        (txKick ?? kick).fd,
      );
      return new DriverQueuePair(
        handle,
        region,
        kick,
        call,
        config,
        format.packed,
        options,
        txKick,
      );
    } catch (error) {
      for (const r of cleanup) r.close();
      throw error;
    }
  }

  /**
   * Packed rings only, once the old back-end is gone: takes what it returned, writes every
   * chain it had not returned again as available from the first slot not yet returned used
   * (the old back-end wrote used descriptors over some of them), and gives that slot as the
   * ring base (slot | wrap counter << 15) a new back-end resumes each queue from.
   * @internal
   */
  prepareResume(): { rx: number; tx: number } {
    return (this.handle as NativeDriverEnd).prepareResume();
  }

  /**
   * The eventfds per vring for vhost-user's SET_VRING_KICK/CALL: queue 0 (receive) and
   * queue 1 (transmit). Both vrings share one call eventfd: the driver end waits on one
   * doorbell whichever ring progressed. Owned by this pair (send them; do not close them).
   * @internal
   */
  vringFds(): { kick: [number, number]; call: [number, number] } {
    const txKick = this.#txKick ?? this.#kick;
    return { kick: [this.#kick.fd, txKick.fd], call: [this.#call.fd, this.#call.fd] };
  }

  /**
   * What the device end needs: a JSON-safe descriptor and the fds `[region, kick, call]`.
   * The fds stay owned by this pair (send them; do not close them).
   */
  share(): {
    /** Geometry and ring addresses, for the device end's {@link DeviceQueuePair.attach}. */
    descriptor: QueuePairDescriptor;
    /** `[region, kick, call]`, to send alongside the descriptor. */
    fds: number[];
  } {
    return { descriptor: this.#descriptor, fds: [this.region.fd, this.#kick.fd, this.#call.fd] };
  }
}

/** Region bytes a queue pair of this geometry needs (validates the geometry). */
const requiredBytes = native.queuePairBytes as (config: object) => number;
