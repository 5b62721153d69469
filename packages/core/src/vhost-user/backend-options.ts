/**
 * What a vhost-user back-end offers each front-end, and the options that shape a
 * `VhostUserPort`: checked once when the backend is created, so a bad option fails its
 * constructor instead of every connection.
 *
 * @packageDocumentation
 */

import {
  type EndpointOptions,
  type NotificationMode,
  notificationPolicy,
} from '../endpoint-options.js';
import { VringError } from '../errors.js';
import { type PeerLimitOptions, peerLimit } from '../peer-limits.js';
import {
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
  VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_STATUS,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MQ,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from './features.js';

/**
 * Virtio features a back-end offers unless {@link VhostUserPortOptions.features} says
 * otherwise: what DPDK's virtio_user and our own front-end use (VERSION_1, MRG_RXBUF,
 * INDIRECT_DESC, EVENT_IDX) plus PROTOCOL_FEATURES. No offloads: frames are delivered exactly
 * as sent. Add `VIRTIO_F_IN_ORDER` (bit 35) to offer in-order use of descriptors, which DPDK's
 * virtio_user takes by default (`in_order=1`); a port that negotiated it copies large frames
 * instead of holding them in place, since a held chain would go back out of order. Clear bits of it to offer less, e.g. `BACKEND_DEFAULT_FEATURES & ~(1n << 29n)`
 * for a back-end without EVENT_IDX.
 * @public
 */
export const BACKEND_DEFAULT_FEATURES =
  VIRTIO_F_VERSION_1 |
  VIRTIO_NET_F_MRG_RXBUF |
  VIRTIO_RING_F_INDIRECT_DESC |
  VIRTIO_RING_F_EVENT_IDX |
  VHOST_USER_F_PROTOCOL_FEATURES;

/**
 * Protocol features a back-end offers (not configurable): REPLY_ACK and STATUS, which DPDK
 * 22.11's front-end asks for, MQ, so GET_QUEUE_NUM can tell a front-end how many queue
 * pairs there are, INFLIGHT_SHMFD, so a front-end that keeps the in-flight record loses
 * nothing it made available when this back-end is killed, and CONFIGURE_MEM_SLOTS, so a
 * front-end can hand over more than 8 regions, one at a time.
 * @internal
 */
export const BACKEND_PROTOCOL_FEATURES =
  VHOST_USER_PROTOCOL_F_MQ |
  VHOST_USER_PROTOCOL_F_REPLY_ACK |
  VHOST_USER_PROTOCOL_F_STATUS |
  VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD |
  VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS;

/**
 * Most queue pairs a port can offer: DPDK's back-end has the same cap (and its front-end's
 * `queues=` devarg the same range).
 * @public
 */
export const VHOST_USER_MAX_QUEUE_PAIRS = 128;

/** Largest Ethernet frame (without the net header) a port moves by default. */
const DEFAULT_MAX_FRAME = 65535;

/** Options of each `VhostUserPort` a `VhostUserBackend` serves. @public */
export interface VhostUserPortOptions extends Pick<PeerLimitOptions, 'maxPeerMemory'> {
  /**
   * Virtio features to offer (default {@link BACKEND_DEFAULT_FEATURES}). VERSION_1 and
   * PROTOCOL_FEATURES are always added: the data path needs the 12-byte VERSION_1 net header,
   * and rings get SET_VRING_ENABLE semantics through PROTOCOL_FEATURES.
   */
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
  /**
   * Queue pairs a front-end may use, 1 to {@link VHOST_USER_MAX_QUEUE_PAIRS} (default 1).
   * Above 1 the port offers VIRTIO_NET_F_MQ and answers GET_QUEUE_NUM with this number; a
   * front-end enables the pairs it uses with SET_VRING_ENABLE, and each runs on its own
   * (see `VhostUserPort.queuePair`). There is no control queue: over vhost-user the
   * front-end's VIRTIO_NET_CTRL_MQ command never reaches the device (DPDK's virtio_user
   * answers it itself and turns it into SET_VRING_ENABLE messages).
   */
  queuePairs?: number | undefined;
  /**
   * Offer packed virtqueues (VIRTIO_F_RING_PACKED) as well as split ones (default false).
   * A front-end that accepts the bit (DPDK `virtio_user` with `packed_vq=1`) then runs on
   * packed rings; the others go on with split rings.
   */
  packedRings?: boolean | undefined;
}

/** {@link VhostUserPortOptions} checked, with every default filled in. @internal */
export interface ResolvedPortOptions {
  /** What GET_FEATURES answers. */
  readonly features: bigint;
  readonly maxFrame: number;
  readonly requireSealedMemory: boolean;
  /** Queue pairs a front-end may use. */
  readonly queuePairs: number;
  /** Bytes a front-end's memory table may add up to (`Infinity`: no cap). */
  readonly maxPeerMemory: number;
  /** Options of each DeviceQueuePair the port runs, with the notification mode resolved. */
  readonly endpoint: EndpointOptions & {
    readonly notification: NotificationMode;
    readonly spinMicros: number;
  };
}

/**
 * Checks port options and fills in defaults; the backend calls it once up front so a bad
 * option fails its constructor instead of every connection.
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a bad `maxFrame`, `maxPeerMemory`,
 * `queuePairs` or notification policy.
 * @internal
 */
export function resolvePortOptions(options: VhostUserPortOptions): ResolvedPortOptions {
  const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
  if (!Number.isInteger(maxFrame) || maxFrame < 1 || maxFrame > 1 << 30) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'maxFrame must be an integer in [1, 2^30]');
  }
  const queuePairs = options.queuePairs ?? 1;
  if (!Number.isInteger(queuePairs) || queuePairs < 1 || queuePairs > VHOST_USER_MAX_QUEUE_PAIRS) {
    throw new VringError(
      'ERR_VRING_INVALID_ARGUMENT',
      `queuePairs must be an integer in [1, ${VHOST_USER_MAX_QUEUE_PAIRS}]`,
    );
  }
  // The mode is resolved here, once: what the port reports (and a Link above it polls for)
  // is then what its device queue pairs do, default included.
  const spin = options.spinMicros !== undefined ? { spinMicros: options.spinMicros } : {};
  const { mode, spinNs } = notificationPolicy({
    ...(options.notification ? { notification: options.notification } : {}),
    ...spin,
  });
  const endpoint = { notification: mode, ...spin, spinMicros: spinNs / 1000 };
  return {
    features:
      (options.features ?? BACKEND_DEFAULT_FEATURES) |
      (options.packedRings ? VIRTIO_F_RING_PACKED : 0n) |
      VIRTIO_F_VERSION_1 |
      VHOST_USER_F_PROTOCOL_FEATURES |
      (queuePairs > 1 ? VIRTIO_NET_F_MQ : 0n),
    maxFrame,
    requireSealedMemory: options.requireSealedMemory ?? false,
    queuePairs,
    maxPeerMemory: peerLimit(options, 'maxPeerMemory'),
    endpoint,
  };
}
