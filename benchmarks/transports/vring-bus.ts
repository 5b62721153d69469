// The @vring/ipc Bus, in each notification mode: pub/sub fan-out and RPC as an application
// using the bus gets them, codec, framing and routing included.
//
// The bus is hosted by the listener: it is `createBus` in the publisher's (fan-out) or the
// server's (RPC) process, which talks to it through its in-process client (`bus.connect()`),
// as a process that embeds the bus would. Fan-out: 4 processes (publisher + bus, 3
// subscribers). RPC: 2 processes (client; bus + echo server), each request crossing one
// ring each way (client ↔ bus), the server's hop in memory.
import type { NotificationMode } from '@vring/core';
import { type Bus, connectBus, createBus } from '@vring/ipc';
import { atMost, echoServer, FanoutCounter, publishFanout, rpcClient } from './fanout-rpc.js';
import { reportReady } from './measure.js';
import type { Payload } from './payload.js';
import type { PeerArgs, Transport } from './transport.js';
import { sendWindow, windowed } from './value-scenarios.js';

const DATA = 'bench.data';
/** Subscribers tell the publisher they are subscribed ('ready') and finished ('done'). */
const CONTROL = 'bench.control';

/** Resolves once `count` control messages `what` have arrived on `messages`. */
async function countControl(
  messages: AsyncIterator<{ value: unknown }>,
  what: string,
  count: number,
): Promise<void> {
  for (let seen = 0; seen < count; ) {
    const next = await messages.next();
    if (next.done) throw new Error(`bus closed while waiting for ${what}`);
    if (next.value.value === what) seen++;
  }
}

/** Resolves once the listener's own client is the only one left on `bus`. */
async function othersGone(bus: Bus): Promise<void> {
  while (bus.stats.clients > 1) await new Promise((resolve) => setTimeout(resolve, 5));
}

async function publisher(args: PeerArgs, mode: NotificationMode): Promise<void> {
  const bus = createBus(args.path, { notification: mode });
  const client = await bus.connect();
  const control = client.subscribe<string>(CONTROL, { policy: 'block' });
  await client.flush();
  reportReady();
  const subscribers = args.peers - 1;
  await countControl(control, 'ready', subscribers);
  const publish = windowed((value) => client.publish(DATA, value), sendWindow(args.size, 64));
  await publishFanout(publish, args, countControl(control, 'done', subscribers));
  await atMost(othersGone(bus), 1000);
  client.close();
  bus.close();
}

async function subscriber(args: PeerArgs, mode: NotificationMode): Promise<void> {
  const client = await connectBus(args.path, { notification: mode });
  const subscription = client.subscribe<Payload>(DATA, { policy: 'block' });
  await client.flush();
  await client.publish(CONTROL, 'ready');
  const counter = new FanoutCounter(args.index);
  for await (const { value } of subscription) {
    if (counter.onValue(value)) break;
  }
  await client.publish(CONTROL, 'done');
  await client.drain();
}

async function server(args: PeerArgs, mode: NotificationMode): Promise<void> {
  const bus = createBus(args.path, { notification: mode });
  const client = await bus.connect();
  const echo = echoServer();
  client.serve<Payload, Payload>('echo', echo.handle);
  await client.flush(); // the bus knows who serves `echo` before any request comes
  reportReady();
  await echo.ended;
  await atMost(othersGone(bus), 1000);
  client.close();
  bus.close();
}

async function caller(args: PeerArgs, mode: NotificationMode): Promise<void> {
  const client = await connectBus(args.path, { notification: mode });
  await rpcClient((value) => client.request('echo', value), args);
  client.close();
}

async function run(args: PeerArgs, mode: NotificationMode): Promise<void> {
  const listen = args.role === 'listen';
  switch (args.scenario) {
    case 'fanout':
      return listen ? publisher(args, mode) : subscriber(args, mode);
    case 'rpc':
      return listen ? server(args, mode) : caller(args, mode);
    default:
      throw new Error(`bus: no ${args.scenario} scenario`);
  }
}

export function vringBus(mode: NotificationMode): Transport {
  return {
    name: `bus-${mode}`,
    label: `vring Bus (hosted by publisher / server), ${mode}`,
    payload: 'msgpack',
    layout: { processes: 'pair' },
    scenarios: ['fanout', 'rpc'],
    run: (args) => run(args, mode),
  };
}
