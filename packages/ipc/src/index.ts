/**
 * @vring/ipc: msgpack messages between Node.js processes over vring shared memory: a
 * point-to-point {@link Channel}, a {@link Bus} for pub/sub and RPC among many processes.
 *
 * @module \@vring/ipc
 */

export { type FramePort, VringError, type VringErrorCode } from '@vring/core';
export { Bus, type BusOptions, createBus } from './bus/bus.js';
export {
  BusClient,
  type BusClientEvent,
  type ConnectBusOptions,
  connectBus,
  type PublishOptions,
} from './bus/bus-client.js';
export type { BusReport, BusStats, ClientStats, SubjectStats } from './bus/bus-stats.js';
export {
  ERROR_HEADER,
  NatsBridge,
  type NatsBridgeOptions,
  type NatsBridgeStats,
  ORIGIN_HEADER,
  RPC_QUEUE,
} from './bus/nats-bridge.js';
export {
  Channel,
  type ChannelOptions,
  type ChannelSendOptions,
  type ChannelWaitOptions,
} from './channel.js';
export type { Replies, RequestManyOptions } from './rpc/replies.js';
export type { RequestOptions } from './rpc/requester.js';
export type { RequestContext, RpcHandler, Service } from './rpc/responder.js';
export {
  type BackpressurePolicy,
  type BusMessage,
  type SubscribeOptions,
  Subscription,
} from './subscription.js';
export type { MessageHeaders } from './wire/headers.js';
export type { BusFeature } from './wire/message-kinds.js';
