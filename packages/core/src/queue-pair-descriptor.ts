import { VringError } from './errors.js';

/** Ring addresses in the driver's address space, as hex strings (JSON has no 64-bit integers). @public */
export interface RingAddressesDescriptor {
  /** The descriptor table. */
  desc: string;
  /** The available ring (driver to device). */
  avail: string;
  /** The used ring (device to driver). */
  used: string;
}

/**
 * What a device end needs to attach to a driver's queue pair, besides its fds. Plain JSON,
 * sent over the fd-passing socket together with the fds `[region, kick, call]`.
 *
 * @public
 */
export interface QueuePairDescriptor {
  /**
   * Format of this descriptor; a device end refuses any other. 1: split rings (a device from
   * before packed rings knows only this one); 2: packed rings, so that such a device refuses
   * them instead of reading them as split.
   */
  version: 1 | 2;
  /** Descriptors per queue, as in {@link QueuePairOptions.queueSize}. */
  queueSize: number;
  /** Bytes per packet buffer, as in {@link QueuePairOptions.bufferSize}. */
  bufferSize: number;
  /** Largest message in bytes, as in {@link QueuePairOptions.maxMessage}. */
  maxMessage: number;
  /** Whether both rings use VIRTIO_RING_F_EVENT_IDX notification suppression. */
  eventIdx: boolean;
  /**
   * Whether both queues are packed rings (VIRTIO_F_RING_PACKED) rather than split rings:
   * true exactly with version 2 (a version 1 descriptor may leave it out).
   */
  packed: boolean;
  /** Address of the region's first byte in the driver's descriptors and ring addresses (hex). */
  guestAddress: string;
  /** Bytes of the shared region, which the device end maps whole. */
  regionSize: number;
  /** Queue 0: the device writes messages into the driver's receive buffers. */
  rx: RingAddressesDescriptor;
  /** Queue 1: the device reads the messages the driver sends. */
  tx: RingAddressesDescriptor;
}

function fail(what: string): never {
  throw new VringError('ERR_VRING_PROTOCOL', `invalid queue pair descriptor: ${what}`);
}

function hex(value: unknown, name: string): bigint {
  if (typeof value !== 'string' || !/^0x[0-9a-f]{1,16}$/i.test(value))
    fail(`${name} must be a 0x-prefixed 64-bit hex string`);
  return BigInt(value);
}

function uint(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    fail(`${name} must be a non-negative integer`);
  return value;
}

function ring(value: unknown, name: string): { desc: bigint; avail: bigint; used: bigint } {
  if (typeof value !== 'object' || value === null) fail(`${name} must be an object`);
  const r = value as Record<string, unknown>;
  return {
    desc: hex(r.desc, `${name}.desc`),
    avail: hex(r.avail, `${name}.avail`),
    used: hex(r.used, `${name}.used`),
  };
}

/**
 * Checks a descriptor received from a peer (anything may arrive) and converts addresses
 * to bigint. Range checks beyond shape happen natively against the mapped memory.
 * @internal
 */
export function parseQueuePairDescriptor(value: unknown) {
  if (typeof value !== 'object' || value === null) fail('not an object');
  const d = value as Record<string, unknown>;
  if (d.version !== 1 && d.version !== 2) fail(`unsupported version ${String(d.version)}`);
  if (typeof d.eventIdx !== 'boolean') fail('eventIdx must be a boolean');
  const packed = d.version === 2;
  if (d.packed !== packed && !(d.packed === undefined && !packed)) {
    fail(`packed must be ${packed} in a version ${d.version} descriptor`);
  }
  return {
    queueSize: uint(d.queueSize, 'queueSize'),
    bufferSize: uint(d.bufferSize, 'bufferSize'),
    maxMessage: uint(d.maxMessage, 'maxMessage'),
    eventIdx: d.eventIdx,
    packed,
    guestAddress: hex(d.guestAddress, 'guestAddress'),
    regionSize: uint(d.regionSize, 'regionSize'),
    rx: ring(d.rx, 'rx'),
    tx: ring(d.tx, 'tx'),
  };
}

/** @internal */
export function toHex(value: bigint): string {
  return `0x${value.toString(16)}`;
}
