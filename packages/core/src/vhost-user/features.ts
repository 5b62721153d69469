/**
 * Feature words of vhost-user: the virtio feature word (GET/SET_FEATURES) and the vhost-user
 * protocol feature word (GET/SET_PROTOCOL_FEATURES), plus the virtio device status byte that
 * closes the negotiation (FEATURES_OK, DRIVER_OK). Both words are 64-bit, so everything here
 * is a bigint: a JS number would silently lose bits 53–63.
 *
 * Negotiation is by intersection on both sides: a side never sets a bit the peer did not
 * offer, and a received word with an un-offered bit is a protocol violation (DPDK rejects
 * it too: `received invalid negotiated features`).
 *
 * @packageDocumentation
 */
import { VringError } from '../errors.js';

const bit = (n: number): bigint => 1n << BigInt(n);

// ---- virtio-net device feature bits (0–23 and 41+ are device-specific) ----

/** Device handles packets with partial checksum (TX checksum offload). */
export const VIRTIO_NET_F_CSUM = bit(0);
/** Driver handles packets with partial checksum (RX checksum offload). */
export const VIRTIO_NET_F_GUEST_CSUM = bit(1);
/** Offloads can be reconfigured through the control virtqueue. */
export const VIRTIO_NET_F_CTRL_GUEST_OFFLOADS = bit(2);
/** Device reports a maximum MTU. */
export const VIRTIO_NET_F_MTU = bit(3);
/** Device has a MAC address in its config space. */
export const VIRTIO_NET_F_MAC = bit(5);
/** Legacy GSO bit (deprecated). */
export const VIRTIO_NET_F_GSO = bit(6);
/** Driver can receive TSOv4. */
export const VIRTIO_NET_F_GUEST_TSO4 = bit(7);
/** Driver can receive TSOv6. */
export const VIRTIO_NET_F_GUEST_TSO6 = bit(8);
/** Driver can receive TSO with ECN. */
export const VIRTIO_NET_F_GUEST_ECN = bit(9);
/** Driver can receive UFO. */
export const VIRTIO_NET_F_GUEST_UFO = bit(10);
/** Device can receive TSOv4. */
export const VIRTIO_NET_F_HOST_TSO4 = bit(11);
/** Device can receive TSOv6. */
export const VIRTIO_NET_F_HOST_TSO6 = bit(12);
/** Device can receive TSO with ECN. */
export const VIRTIO_NET_F_HOST_ECN = bit(13);
/** Device can receive UFO. */
export const VIRTIO_NET_F_HOST_UFO = bit(14);
/** Driver can merge receive buffers (`num_buffers` in the header is meaningful). */
export const VIRTIO_NET_F_MRG_RXBUF = bit(15);
/** Config status field is available. */
export const VIRTIO_NET_F_STATUS = bit(16);
/** Control virtqueue is available. */
export const VIRTIO_NET_F_CTRL_VQ = bit(17);
/** RX mode (promiscuous, all-multicast) set through the control virtqueue. */
export const VIRTIO_NET_F_CTRL_RX = bit(18);
/** VLAN filtering set through the control virtqueue. */
export const VIRTIO_NET_F_CTRL_VLAN = bit(19);
/** Extra RX mode control support. */
export const VIRTIO_NET_F_CTRL_RX_EXTRA = bit(20);
/** Driver can send gratuitous packets. */
export const VIRTIO_NET_F_GUEST_ANNOUNCE = bit(21);
/** Device supports multiqueue with automatic receive steering. */
export const VIRTIO_NET_F_MQ = bit(22);
/** Set MAC address through the control virtqueue. */
export const VIRTIO_NET_F_CTRL_MAC_ADDR = bit(23);

// ---- transport / ring feature bits (24–40) ----

/** Legacy: notify even when the ring is empty. */
export const VIRTIO_F_NOTIFY_ON_EMPTY = bit(24);
/** vhost: dirty-page logging (live migration). */
export const VHOST_F_LOG_ALL = bit(26);
/** Legacy: any descriptor layout for headers. */
export const VIRTIO_F_ANY_LAYOUT = bit(27);
/** Indirect descriptor tables. */
export const VIRTIO_RING_F_INDIRECT_DESC = bit(28);
/** `used_event` / `avail_event` notification suppression. */
export const VIRTIO_RING_F_EVENT_IDX = bit(29);
/**
 * vhost-user reuses virtio bit 30: offered by a back-end that understands
 * GET/SET_PROTOCOL_FEATURES; when negotiated, rings start disabled until SET_VRING_ENABLE.
 */
export const VHOST_USER_F_PROTOCOL_FEATURES = bit(30);
/** VIRTIO 1.x (little-endian rings, 12-byte net header). */
export const VIRTIO_F_VERSION_1 = bit(32);
/** Addresses are IOVAs translated by an IOMMU (IOTLB messages). */
export const VIRTIO_F_ACCESS_PLATFORM = bit(33);
/** Packed virtqueue layout. */
export const VIRTIO_F_RING_PACKED = bit(34);
/** Buffers are used in the order they were made available. */
export const VIRTIO_F_IN_ORDER = bit(35);
/** Memory accesses need platform ordering. */
export const VIRTIO_F_ORDER_PLATFORM = bit(36);
/** Single-root I/O virtualization. */
export const VIRTIO_F_SR_IOV = bit(37);
/** Driver passes extra data in notifications. */
export const VIRTIO_F_NOTIFICATION_DATA = bit(38);
/** Device-provided notification config data. */
export const VIRTIO_F_NOTIF_CONFIG_DATA = bit(39);
/** Individual ring reset. */
export const VIRTIO_F_RING_RESET = bit(40);

// ---- vhost-user protocol feature bits (the second word) ----

/** GET_QUEUE_NUM and multiple queue pairs. */
export const VHOST_USER_PROTOCOL_F_MQ = bit(0);
/** SET_LOG_BASE carries a shared-memory fd. */
export const VHOST_USER_PROTOCOL_F_LOG_SHMFD = bit(1);
/** SEND_RARP after migration. */
export const VHOST_USER_PROTOCOL_F_RARP = bit(2);
/** NEED_REPLY may be set on any request; the back-end answers with a u64 ack. */
export const VHOST_USER_PROTOCOL_F_REPLY_ACK = bit(3);
/** NET_SET_MTU. */
export const VHOST_USER_PROTOCOL_F_NET_MTU = bit(4);
/** SET_BACKEND_REQ_FD: a socket for requests from the back-end to the front-end. */
export const VHOST_USER_PROTOCOL_F_BACKEND_REQ = bit(5);
/** SET_VRING_ENDIAN. */
export const VHOST_USER_PROTOCOL_F_CROSS_ENDIAN = bit(6);
/** Crypto sessions (vhost-crypto). */
export const VHOST_USER_PROTOCOL_F_CRYPTO_SESSION = bit(7);
/** Postcopy live migration (userfaultfd). */
export const VHOST_USER_PROTOCOL_F_PAGEFAULT = bit(8);
/** GET/SET_CONFIG. */
export const VHOST_USER_PROTOCOL_F_CONFIG = bit(9);
/** Back-end messages may carry fds. */
export const VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD = bit(10);
/** Host notifier areas. */
export const VHOST_USER_PROTOCOL_F_HOST_NOTIFIER = bit(11);
/** GET/SET_INFLIGHT_FD. */
export const VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD = bit(12);
/** RESET_DEVICE. */
export const VHOST_USER_PROTOCOL_F_RESET_DEVICE = bit(13);
/** In-band VRING_KICK / BACKEND_VRING_CALL instead of eventfds. */
export const VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS = bit(14);
/** GET_MAX_MEM_SLOTS / ADD_MEM_REG / REM_MEM_REG. */
export const VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS = bit(15);
/** SET/GET_STATUS. */
export const VHOST_USER_PROTOCOL_F_STATUS = bit(16);
/** Xen mmap flags in memory regions. */
export const VHOST_USER_PROTOCOL_F_XEN_MMAP = bit(17);
/** Shared objects (dma-buf). */
export const VHOST_USER_PROTOCOL_F_SHARED_OBJECT = bit(18);
/** Device state transfer. */
export const VHOST_USER_PROTOCOL_F_DEVICE_STATE = bit(19);

// ---- virtio device status byte (SET_STATUS / GET_STATUS payload) ----

/** Driver noticed the device. */
export const VIRTIO_STATUS_ACKNOWLEDGE = 1n;
/** Driver knows how to drive the device. */
export const VIRTIO_STATUS_DRIVER = 2n;
/** Driver is set up and ready to drive the device. */
export const VIRTIO_STATUS_DRIVER_OK = 4n;
/** Feature negotiation is complete. */
export const VIRTIO_STATUS_FEATURES_OK = 8n;
/** Device hit an error it cannot recover from. */
export const VIRTIO_STATUS_DEVICE_NEEDS_RESET = 64n;
/** Driver gave up on the device. */
export const VIRTIO_STATUS_FAILED = 128n;

const VIRTIO_NET_FEATURE_NAMES: ReadonlyMap<bigint, string> = new Map([
  [VIRTIO_NET_F_CSUM, 'CSUM'],
  [VIRTIO_NET_F_GUEST_CSUM, 'GUEST_CSUM'],
  [VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, 'CTRL_GUEST_OFFLOADS'],
  [VIRTIO_NET_F_MTU, 'MTU'],
  [VIRTIO_NET_F_MAC, 'MAC'],
  [VIRTIO_NET_F_GSO, 'GSO'],
  [VIRTIO_NET_F_GUEST_TSO4, 'GUEST_TSO4'],
  [VIRTIO_NET_F_GUEST_TSO6, 'GUEST_TSO6'],
  [VIRTIO_NET_F_GUEST_ECN, 'GUEST_ECN'],
  [VIRTIO_NET_F_GUEST_UFO, 'GUEST_UFO'],
  [VIRTIO_NET_F_HOST_TSO4, 'HOST_TSO4'],
  [VIRTIO_NET_F_HOST_TSO6, 'HOST_TSO6'],
  [VIRTIO_NET_F_HOST_ECN, 'HOST_ECN'],
  [VIRTIO_NET_F_HOST_UFO, 'HOST_UFO'],
  [VIRTIO_NET_F_MRG_RXBUF, 'MRG_RXBUF'],
  [VIRTIO_NET_F_STATUS, 'STATUS'],
  [VIRTIO_NET_F_CTRL_VQ, 'CTRL_VQ'],
  [VIRTIO_NET_F_CTRL_RX, 'CTRL_RX'],
  [VIRTIO_NET_F_CTRL_VLAN, 'CTRL_VLAN'],
  [VIRTIO_NET_F_CTRL_RX_EXTRA, 'CTRL_RX_EXTRA'],
  [VIRTIO_NET_F_GUEST_ANNOUNCE, 'GUEST_ANNOUNCE'],
  [VIRTIO_NET_F_MQ, 'MQ'],
  [VIRTIO_NET_F_CTRL_MAC_ADDR, 'CTRL_MAC_ADDR'],
  [VIRTIO_F_NOTIFY_ON_EMPTY, 'NOTIFY_ON_EMPTY'],
  [VHOST_F_LOG_ALL, 'LOG_ALL'],
  [VIRTIO_F_ANY_LAYOUT, 'ANY_LAYOUT'],
  [VIRTIO_RING_F_INDIRECT_DESC, 'INDIRECT_DESC'],
  [VIRTIO_RING_F_EVENT_IDX, 'EVENT_IDX'],
  [VHOST_USER_F_PROTOCOL_FEATURES, 'PROTOCOL_FEATURES'],
  [VIRTIO_F_VERSION_1, 'VERSION_1'],
  [VIRTIO_F_ACCESS_PLATFORM, 'ACCESS_PLATFORM'],
  [VIRTIO_F_RING_PACKED, 'RING_PACKED'],
  [VIRTIO_F_IN_ORDER, 'IN_ORDER'],
  [VIRTIO_F_ORDER_PLATFORM, 'ORDER_PLATFORM'],
  [VIRTIO_F_SR_IOV, 'SR_IOV'],
  [VIRTIO_F_NOTIFICATION_DATA, 'NOTIFICATION_DATA'],
  [VIRTIO_F_NOTIF_CONFIG_DATA, 'NOTIF_CONFIG_DATA'],
  [VIRTIO_F_RING_RESET, 'RING_RESET'],
]);

const PROTOCOL_FEATURE_NAMES: ReadonlyMap<bigint, string> = new Map([
  [VHOST_USER_PROTOCOL_F_MQ, 'MQ'],
  [VHOST_USER_PROTOCOL_F_LOG_SHMFD, 'LOG_SHMFD'],
  [VHOST_USER_PROTOCOL_F_RARP, 'RARP'],
  [VHOST_USER_PROTOCOL_F_REPLY_ACK, 'REPLY_ACK'],
  [VHOST_USER_PROTOCOL_F_NET_MTU, 'NET_MTU'],
  [VHOST_USER_PROTOCOL_F_BACKEND_REQ, 'BACKEND_REQ'],
  [VHOST_USER_PROTOCOL_F_CROSS_ENDIAN, 'CROSS_ENDIAN'],
  [VHOST_USER_PROTOCOL_F_CRYPTO_SESSION, 'CRYPTO_SESSION'],
  [VHOST_USER_PROTOCOL_F_PAGEFAULT, 'PAGEFAULT'],
  [VHOST_USER_PROTOCOL_F_CONFIG, 'CONFIG'],
  [VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD, 'BACKEND_SEND_FD'],
  [VHOST_USER_PROTOCOL_F_HOST_NOTIFIER, 'HOST_NOTIFIER'],
  [VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD, 'INFLIGHT_SHMFD'],
  [VHOST_USER_PROTOCOL_F_RESET_DEVICE, 'RESET_DEVICE'],
  [VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS, 'INBAND_NOTIFICATIONS'],
  [VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, 'CONFIGURE_MEM_SLOTS'],
  [VHOST_USER_PROTOCOL_F_STATUS, 'STATUS'],
  [VHOST_USER_PROTOCOL_F_XEN_MMAP, 'XEN_MMAP'],
  [VHOST_USER_PROTOCOL_F_SHARED_OBJECT, 'SHARED_OBJECT'],
  [VHOST_USER_PROTOCOL_F_DEVICE_STATE, 'DEVICE_STATE'],
]);

const MASK_64 = (1n << 64n) - 1n;

/** Which of the two feature words a value belongs to; they share bit numbers but not names. */
export type FeatureWord = 'virtio' | 'protocol';

function namesOf(word: bigint, names: ReadonlyMap<bigint, string>): string[] {
  const out: string[] = [];
  for (let n = 0; n < 64; n++) {
    const b = bit(n);
    if ((word & b) !== 0n) out.push(names.get(b) ?? `bit${n}`);
  }
  return out;
}

/**
 * Names of the bits set in a feature word, lowest bit first; bits without a name come out
 * as `bitN`, so nothing the peer sent is hidden from a log line.
 */
export function featureNames(word: bigint, kind: FeatureWord = 'virtio'): string[] {
  return namesOf(
    word & MASK_64,
    kind === 'virtio' ? VIRTIO_NET_FEATURE_NAMES : PROTOCOL_FEATURE_NAMES,
  );
}

/**
 * A feature word for error messages and logs: `0x950008000 [MRG_RXBUF|INDIRECT_DESC|…]`.
 */
export function describeFeatures(word: bigint, kind: FeatureWord = 'virtio'): string {
  return `0x${word.toString(16)} [${featureNames(word, kind).join('|')}]`;
}

/**
 * Negotiation by intersection: the bits both sides want. The front-end uses it to choose what
 * to SET from what the back-end offered; the back-end does not clamp what it receives but
 * refuses un-offered bits (see {@link checkAccepted}).
 */
export function negotiate(offered: bigint, wanted: bigint): bigint {
  return offered & wanted & MASK_64;
}

/**
 * Checks a feature word a peer SET against what we offered: setting a bit that was not
 * offered is a protocol violation, not something to clamp silently, because the peer would
 * then drive the rings in a mode we never agreed to (see
 * docs/architecture.md#what-a-peer-may-never-do-to-us).
 * @throws VringError `ERR_VRING_PROTOCOL` with reason `unoffered-features`.
 */
export function checkAccepted(offered: bigint, accepted: bigint, kind: FeatureWord): void {
  const extra = accepted & ~offered;
  if (extra !== 0n || accepted < 0n || accepted > MASK_64) {
    throw new VringError(
      'ERR_VRING_PROTOCOL',
      `peer set ${kind} features that were not offered: ${describeFeatures(extra, kind)}`,
      { reason: 'unoffered-features' },
    );
  }
}

/**
 * Checks that a negotiated word holds every bit this side cannot work without (e.g.
 * VERSION_1). A missing bit is not a malformed message — the peer is simply incapable — so it
 * gets its own code the application can match on.
 * @throws VringError `ERR_VRING_FEATURE_MISMATCH` with reason `missing-required-features`.
 */
export function requireFeatures(negotiated: bigint, required: bigint, kind: FeatureWord): void {
  const missing = required & ~negotiated;
  if (missing !== 0n) {
    throw new VringError(
      'ERR_VRING_FEATURE_MISMATCH',
      `peer lacks required ${kind} features: ${describeFeatures(missing, kind)}`,
      { reason: 'missing-required-features' },
    );
  }
}

/**
 * Checks dependencies inside a protocol feature word: the spec says a back-end should close
 * the connection when INBAND_NOTIFICATIONS arrives without BACKEND_REQ and REPLY_ACK, because
 * in-band calls need that back-end request socket, with acknowledgements, to be reliable.
 * @throws VringError `ERR_VRING_PROTOCOL` with reason `protocol-feature-dependency`.
 */
export function checkProtocolFeatureDependencies(word: bigint): void {
  const needs = VHOST_USER_PROTOCOL_F_BACKEND_REQ | VHOST_USER_PROTOCOL_F_REPLY_ACK;
  if ((word & VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS) !== 0n && (word & needs) !== needs) {
    throw new VringError(
      'ERR_VRING_PROTOCOL',
      `INBAND_NOTIFICATIONS needs BACKEND_REQ and REPLY_ACK: ${describeFeatures(word, 'protocol')}`,
      { reason: 'protocol-feature-dependency' },
    );
  }
}
