/**
 * @vring/core: shared memory regions, virtio split virtqueues, eventfds wired into the
 * event loop, fd-passing Unix sockets, and vhost-user on top of them (the `VirtioUser`
 * front-end and the `VhostUserBackend` back-end): the engine under vring's IPC. Every
 * transport implements {@link FramePort}.
 *
 * @module \@vring/core
 */

/** @internal */ export { yieldCpu } from './cpu-yield.js';
export { DeviceQueuePair } from './device-queue-pair.js';
export { DriverQueuePair, type QueuePairOptions } from './driver-queue-pair.js';
export type { EndpointOptions, NotificationMode } from './endpoint-options.js';
export { VringError, type VringErrorCode, type VringErrorOptions } from './errors.js';
export { EventFd } from './event-fd.js';
export { type ConnectionLimitOptions, FdServer, type FdServerOptions } from './fd-server.js';
export { type FdMessage, FdSocket, type FdSocketOptions } from './fd-socket.js';
export type { FrameLending, FramePolling, FramePort } from './frame-port.js';
export { InPlaceBatch, type InPlaceBatchOptions } from './in-place-batch.js';
export { MessageBatch, type MessageBatchOptions } from './message-batch.js';
export type {
  ConnectAccessOptions,
  ListenAccessOptions,
  PeerCredentials,
  PeerRefusal,
} from './peer-access.js';
export {
  DEFAULT_PEER_LIMITS,
  type PeerLimitOptions,
  type PeerLimitReason,
} from './peer-limits.js';
/** @internal */ export { pooledCopy, pooledCopyWantsTurn } from './pooled-copy.js';
export type { QueuePairDescriptor, RingAddressesDescriptor } from './queue-pair-descriptor.js';
export {
  QueuePairEnd,
  type QueuePairStats,
  type WaitOptions,
  type WaitSendableOptions,
} from './queue-pair-end.js';
export {
  type AcceptQueuePairOptions,
  acceptQueuePair,
  offerQueuePair,
  type QueuePairHandshakeOptions,
} from './queue-pair-handshake.js';
export type { ReconnectOptions } from './reconnect-backoff.js';
export { type MapRegionOptions, SharedRegion } from './shared-region.js';
export { VhostUserBackend, type VhostUserBackendOptions } from './vhost-user/backend.js';
export {
  BACKEND_DEFAULT_FEATURES,
  VHOST_USER_MAX_QUEUE_PAIRS,
  type VhostUserPortOptions,
} from './vhost-user/backend-options.js';
export { VhostUserPort, type VhostUserPortStats } from './vhost-user/backend-port.js';
export {
  VIRTIO_USER_MAX_QUEUE_PAIRS,
  VirtioUser,
  type VirtioUserEvent,
  type VirtioUserOptions,
} from './vhost-user/virtio-user.js';
/** @internal */ export { WaiterQueue } from './waiter-queue.js';
