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
import { Acks, atMost, echoServer, FanoutCounter, publishFanout, rpcClient } from './fanout-rpc.js';
import { reportReady } from './measure.js';
import type { Payload } from './payload.js';
import type { PeerArgs, Transport } from './transport.js';
import { sendWindow, windowed } from './value-scenarios.js';

const DATA = 'bench.data';
/** Subscribers acknowledge on it: once subscribed, then each SYNC and END marker. */
const CONTROL = 'bench.control';

/** Resolves once the listener's own client is the only one left on `bus`. */
async function othersGone(bus: Bus): Promise<void> {
  while (bus.stats.clients > 1) await new Promise((resolve) => setTimeout(resolve, 5));
}

async function publisher(args: PeerArgs, mode: NotificationMode): Promise<void> {
  const bus = createBus(args.path, { notification: mode });
  const client = await bus.connect();
  const acks = new Acks(args.peers - 1);
  const control = client.subscribe<string>(CONTROL, { policy: 'block' });
  void (async () => {
    try {
      for await (const _ack of control) acks.add();
    } catch {
      // Closed under the loop at the end of the run.
    }
  })();
  await client.flush();
  reportReady();
  await acks.next(); // every subscriber is subscribed
  const publish = windowed((value) => client.publish(DATA, value), sendWindow(args.size, 64));
  await publishFanout(publish, args, acks);
  await atMost(othersGone(bus), 1000);
  client.close();
  bus.close();
}

async function subscriber(args: PeerArgs, mode: NotificationMode): Promise<void> {
  const client = await connectBus(args.path, { notification: mode });
  const subscription = client.subscribe<Payload>(DATA, { policy: 'block' });
  await client.flush();
  const ack = () => client.publish(CONTROL, 'ack');
  await ack();
  const counter = new FanoutCounter(args.index, ack);
  for await (const { value } of subscription) {
    if (counter.onValue(value)) break;
  }
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
