import { VringError } from './errors.js';
import { EventFd } from './event-fd.js';
import { native } from './native.js';
import { parseQueuePairDescriptor, type QueuePairDescriptor } from './queue-pair-descriptor.js';
import {
  type EndpointOptions,
  type NativeQueuePairEnd,
  notificationPolicy,
  QueuePairEnd,
} from './queue-pair-end.js';
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
  ): NativeQueuePairEnd;
}

const NativeDeviceQueuePair = native.DeviceQueuePair as NativeDeviceClass;

/**
 * The device (vhost-user backend) end of a queue pair that lives in a peer's memory. It
 * maps the peer's region and checks everything the peer writes into the rings: a peer
 * that writes garbage breaks the queue with `ERR_VRING_BAD_RING`, never this process.
 *
 * @public
 */
export class DeviceQueuePair extends QueuePairEnd {
  private constructor(
    handle: NativeQueuePairEnd,
    maxMessage: number,
    kick: EventFd,
    owned: Array<{ close(): void }>,
    options: EndpointOptions,
  ) {
    super(handle, maxMessage, [kick], owned, options);
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
        },
        0,
        0,
        call.fd,
        call.fd,
      );
      return new DeviceQueuePair(handle, d.maxMessage, kick, owned, options);
    } catch (error) {
      for (const r of owned) r.close();
      throw error;
    }
  }
}
