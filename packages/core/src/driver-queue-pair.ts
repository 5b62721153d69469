import { EventFd } from './event-fd.js';
import { native } from './native.js';
import type { QueuePairDescriptor } from './queue-pair-descriptor.js';
import { toHex } from './queue-pair-descriptor.js';
import {
  type EndpointOptions,
  type NativeQueuePairEnd,
  notificationPolicy,
  QueuePairEnd,
} from './queue-pair-end.js';
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
}

interface NativeDriverInfo {
  rx: { desc: bigint; avail: bigint; used: bigint };
  tx: { desc: bigint; avail: bigint; used: bigint };
  bytes: number;
}

interface NativeDriverClass {
  new (
    region: unknown,
    offset: number,
    guestBase: bigint,
    config: object,
    rxKickFd: number | undefined,
    txKickFd: number | undefined,
  ): NativeQueuePairEnd & { info(): NativeDriverInfo };
}

const NativeDriverQueuePair = native.DriverQueuePair as NativeDriverClass;

/**
 * The driver (virtio-user frontend) end of a virtio-net queue pair: it owns the shared
 * region that holds both rings and every packet buffer, and the eventfds. Hand
 * {@link DriverQueuePair.share} to the peer, which attaches with
 * {@link DeviceQueuePair.attach}.
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

  private constructor(
    handle: NativeQueuePairEnd & { info(): NativeDriverInfo },
    region: SharedRegion,
    kick: EventFd,
    call: EventFd,
    config: Required<Omit<QueuePairOptions, keyof EndpointOptions>>,
    options: EndpointOptions,
  ) {
    super(handle, config.maxMessage, [call], [call, kick, region], options);
    this.region = region;
    this.#kick = kick;
    this.#call = call;
    const info = handle.info();
    this.#descriptor = {
      version: 1,
      queueSize: config.queueSize,
      bufferSize: config.bufferSize,
      maxMessage: config.maxMessage,
      eventIdx: config.eventIdx,
      guestAddress: toHex(region.address),
      regionSize: region.size,
      rx: { desc: toHex(info.rx.desc), avail: toHex(info.rx.avail), used: toHex(info.rx.used) },
      tx: { desc: toHex(info.tx.desc), avail: toHex(info.tx.avail), used: toHex(info.tx.used) },
    };
  }

  /** Creates the region, both rings (receive buffers posted) and the kick/call eventfds. */
  static create(options: QueuePairOptions = {}): DriverQueuePair {
    notificationPolicy(options);
    const config = {
      queueSize: options.queueSize ?? 256,
      bufferSize: options.bufferSize ?? 2048,
      maxMessage: options.maxMessage ?? 65536,
      eventIdx: options.eventIdx ?? true,
    };
    const nativeConfig = { ...config, mergeable: true };
    const bytes = requiredBytes(nativeConfig);
    const region = SharedRegion.create(bytes, { name: 'vring-queue-pair' });
    const cleanup: Array<{ close(): void }> = [region];
    try {
      const kick = new EventFd();
      cleanup.push(kick);
      const call = new EventFd();
      cleanup.push(call);
      const handle = new NativeDriverQueuePair(
        region.handle,
        0,
        region.address,
        nativeConfig,
        kick.fd,
        kick.fd,
      );
      return new DriverQueuePair(handle, region, kick, call, config, options);
    } catch (error) {
      for (const r of cleanup) r.close();
      throw error;
    }
  }

  /**
   * What the device end needs: a JSON-safe descriptor and the fds `[region, kick, call]`.
   * The fds stay owned by this pair (send them; do not close them).
   */
  share(): { descriptor: QueuePairDescriptor; fds: number[] } {
    return { descriptor: this.#descriptor, fds: [this.region.fd, this.#kick.fd, this.#call.fd] };
  }
}

/** Region bytes a queue pair of this geometry needs (validates the geometry). */
const requiredBytes = native.queuePairBytes as (config: object) => number;
