/**
 * @vring/ipc: msgpack messages between Node.js processes over vring shared memory.
 *
 * @packageDocumentation
 */
export {
  Channel,
  type ChannelOptions,
  type ChannelTransport,
  type ChannelWaitOptions,
} from './channel.js';
