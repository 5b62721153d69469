// Every transport of the suite, in table order. A line loads its module only when a case
// needs it, so a transport whose native module cannot load here (zeromq) costs nothing to
// the others and is reported as unavailable.
import type { Transport } from './transport.js';

export const registry: Record<string, () => Promise<Transport>> = {
  net: async () => (await import('./net.js')).netRaw,
  'net-msgpack': async () => (await import('./net.js')).netMsgpack,
  'vring-event': async () => (await import('./vring-queue-pair.js')).vringQueuePair('event'),
  'vring-adaptive': async () => (await import('./vring-queue-pair.js')).vringQueuePair('adaptive'),
  'vring-poll': async () => (await import('./vring-queue-pair.js')).vringQueuePair('poll'),
  'vring-packed-adaptive': async () =>
    (await import('./vring-queue-pair.js')).vringQueuePair('adaptive', true),
  'channel-event': async () => (await import('./vring-channel.js')).vringChannel('event'),
  'channel-adaptive': async () => (await import('./vring-channel.js')).vringChannel('adaptive'),
  'channel-poll': async () => (await import('./vring-channel.js')).vringChannel('poll'),
  'channel-packed-adaptive': async () =>
    (await import('./vring-channel.js')).vringChannel('adaptive', false, true),
  'channel-zerocopy-event': async () =>
    (await import('./vring-channel.js')).vringChannel('event', true),
  'channel-zerocopy-poll': async () =>
    (await import('./vring-channel.js')).vringChannel('poll', true),
  'bus-event': async () => (await import('./vring-bus.js')).vringBus('event', 'hosted'),
  'bus-adaptive': async () => (await import('./vring-bus.js')).vringBus('adaptive', 'hosted'),
  'bus-poll': async () => (await import('./vring-bus.js')).vringBus('poll', 'hosted'),
  'bus-packed-event': async () =>
    (await import('./vring-bus.js')).vringBus('event', 'hosted', { packed: true }),
  'bus-packed-adaptive': async () =>
    (await import('./vring-bus.js')).vringBus('adaptive', 'hosted', { packed: true }),
  'bus-zerocopy-event': async () =>
    (await import('./vring-bus.js')).vringBus('event', 'hosted', { zeroCopy: true }),
  'bus-standalone-event': async () =>
    (await import('./vring-bus.js')).vringBus('event', 'standalone'),
  'bus-standalone-adaptive': async () =>
    (await import('./vring-bus.js')).vringBus('adaptive', 'standalone'),
  'bus-standalone-poll': async () =>
    (await import('./vring-bus.js')).vringBus('poll', 'standalone'),
  'bus-standalone-zerocopy-event': async () =>
    (await import('./vring-bus.js')).vringBus('event', 'standalone', { zeroCopy: true }),
  'bus-relayed-event': async () => (await import('./vring-bus.js')).vringBus('event', 'relayed'),
  'bus-relayed-adaptive': async () =>
    (await import('./vring-bus.js')).vringBus('adaptive', 'relayed'),
  'channel-rpc-event': async () =>
    (await import('./vring-channel-rpc.js')).vringChannelRpc('event'),
  'channel-rpc-adaptive': async () =>
    (await import('./vring-channel-rpc.js')).vringChannelRpc('adaptive'),
  'channel-rpc-poll': async () => (await import('./vring-channel-rpc.js')).vringChannelRpc('poll'),
  nats: async () => (await import('./nats.js')).nats,
  'vhost-user-event': async () => (await import('./vhost-user.js')).vhostUser('event'),
  'vhost-user-adaptive': async () => (await import('./vhost-user.js')).vhostUser('adaptive'),
  'vhost-user-poll': async () => (await import('./vhost-user.js')).vhostUser('poll'),
  'ipc-json': async () => (await import('./child-process.js')).childProcess('json'),
  'ipc-advanced': async () => (await import('./child-process.js')).childProcess('advanced'),
  zeromq: async () => (await import('./zeromq.js')).zeromq,
  worker: async () => (await import('./worker.js')).worker,
  'codec-pack': async () => (await import('./codec.js')).packOnly,
  'codec-roundtrip': async () => (await import('./codec.js')).packUnpack,
};

export async function loadTransport(name: string): Promise<Transport> {
  const load = registry[name];
  if (!load)
    throw new Error(`unknown transport ${name}; known: ${Object.keys(registry).join(', ')}`);
  return load();
}
