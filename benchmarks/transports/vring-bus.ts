// The @vring/ipc Bus, in each notification mode: pub/sub fan-out and RPC as an application
// using the bus gets them, codec, framing and routing included. Two topologies:
//
// - hosted: the bus is `createBus` in the publisher's (fan-out) or the server's (RPC)
//   process, which talks to it through its in-process client (`bus.connect()`), as a
//   process that embeds the bus would. Fan-out 1 → N: N + 1 processes. RPC: 2 processes
//   (client; bus + echo server), each request crossing one ring each way (client ↔ bus),
//   the server's hop in memory.
// - standalone: the bus is a process of its own, `vring bus --socket P --notification M`
//   (the @vring/ipc command, started by the runner as the case's broker), and the
//   publisher / server attaches to it with `connectBus` like everyone else, as a broker
//   is used, with connectBus's defaults: direct routes on, so that after the first request
//   through the bus the client and the server talk over a queue pair of their own (two
//   rings per request). Fan-out: N + 2 processes. RPC: 3 processes.
//
// - relayed: standalone with direct routes turned off (RPC only): each request crosses four
//   rings (client → bus → server and back), the cost of the bus's hop.
//
// The bus and every client run in the same notification mode. A `packed` case has every
// client that attaches over the socket run packed rings (`ConnectBusOptions.packed`).
import type { NotificationMode } from '@vring/core';
import { type Bus, type BusClient, connectBus, createBus } from '@vring/ipc';
import { busMaxFrame } from './bus-frames.js';
import { Acks, atMost, echoServer, FanoutCounter, publishFanout, rpcClient } from './fanout-rpc.js';
import { reportIdle, reportProcessIdle, reportReady } from './measure.js';
import type { Payload } from './payload.js';
import { modeLabel, type PeerArgs, type Transport } from './transport.js';
import { sendWindow, windowed } from './value-scenarios.js';

type Topology = 'hosted' | 'standalone' | 'relayed';

/** What a transport's cases share: how the bus and its clients run. */
interface BusCase {
  /** The notification mode of the bus and of every client. */
  mode: NotificationMode;
  topology: Topology;
  /** Subscribers take a large value's binary parts as views (`ConnectBusOptions.views`). */
  zeroCopy: boolean;
  /** Socket clients run packed rings instead of split ones (`ConnectBusOptions.packed`). */
  packed: boolean;
}

const DATA = 'bench.data';
/** Subscribers acknowledge on it: once subscribed, then each SYNC and END marker. */
const CONTROL = 'bench.control';

/** Resolves once the listener's own client is the only one left on `bus`. */
async function othersGone(bus: Bus): Promise<void> {
  while (bus.stats.clients > 1) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** Where the bus is: the broker's socket when standalone, the run's own path when hosted. */
const busPath = (args: PeerArgs) => args.broker ?? args.path;

/** Connects a client of the case to its bus; `views` for a zero-copy case's subscribers. */
function connectClient(args: PeerArgs, c: BusCase, views = false): Promise<BusClient> {
  return connectBus(busPath(args), {
    notification: c.mode,
    ...(c.topology === 'relayed' && { directRoutes: false }),
    ...(c.packed && { packed: true }),
    ...(views && { views: true }),
    maxFrame: busMaxFrame(args.size),
  });
}

/**
 * The listener's client. Hosted, the bus is created here and `close` waits for the other
 * clients to leave first (the bus goes with this process); standalone, `close` waits for
 * `lastWord` (what tells that the others have all they need), at most a second.
 */
async function listenerClient(
  args: PeerArgs,
  c: BusCase,
): Promise<{ client: BusClient; close(lastWord: Promise<unknown>): Promise<void> }> {
  if (c.topology !== 'hosted') {
    const client = await connectClient(args, c);
    return {
      client,
      async close(lastWord) {
        await atMost(lastWord, 1000);
        client.close();
      },
    };
  }
  const bus = createBus(args.path, { notification: c.mode, maxFrame: busMaxFrame(args.size) });
  const client = await bus.connect({ maxFrame: busMaxFrame(args.size) });
  return {
    client,
    async close() {
      await atMost(othersGone(bus), 1000);
      client.close();
      bus.close();
    },
  };
}

/** Counts every message on `subscription` as an acknowledgement. */
function countAcks(subscription: AsyncIterable<unknown>, acks: Acks): void {
  void (async () => {
    try {
      for await (const _ack of subscription) acks.add();
    } catch {
      // Closed under the loop at the end of the run.
    }
  })();
}

async function publisher(args: PeerArgs, c: BusCase) {
  const { client, close } = await listenerClient(args, c);
  const acks = new Acks(args.peers - 1);
  countAcks(client.subscribe<string>(CONTROL, { policy: 'block' }), acks);
  await client.flush();
  reportReady();
  await acks.next(); // every subscriber is subscribed
  const publish = windowed((value) => client.publish(DATA, value), sendWindow(args.size, 64));
  await publishFanout(publish, args, acks);
  // Every subscriber has acknowledged END: nothing is left to deliver.
  await close(Promise.resolve());
}

async function subscriber(args: PeerArgs, c: BusCase): Promise<void> {
  const client = await connectClient(args, c, c.zeroCopy);
  const subscription = client.subscribe<Payload>(DATA, { policy: 'block' });
  await client.flush();
  const ack = () => client.publish(CONTROL, 'ack');
  await ack();
  const counter = new FanoutCounter(args.index, ack);
  for await (const { value } of subscription) {
    const last = counter.onValue(value);
    // Views mode: done with the value's memory, which goes back to the bus.
    if (c.zeroCopy) client.release(value);
    if (last) break;
  }
  await client.drain();
}

async function server(args: PeerArgs, c: BusCase) {
  const { client, close } = await listenerClient(args, c);
  const echo = echoServer(args.brokerPid);
  client.serve<Payload, Payload>('echo', echo.handle);
  // The client says "bye" once it has its last reply.
  const bye = client.subscribe<string>(CONTROL, { policy: 'block' });
  await client.flush(); // the bus knows who serves `echo` before any request comes
  reportReady();
  await echo.ended;
  await close(bye[Symbol.asyncIterator]().next());
}

async function caller(args: PeerArgs, c: BusCase): Promise<void> {
  const client = await connectClient(args, c);
  await rpcClient((value) => client.request('echo', value), args);
  await client.publish(CONTROL, 'bye');
  await client.drain();
  client.close();
}

/**
 * Idle: the listener's client and one other, each subscribed (the bus holds a route each
 * way), doing nothing for the measured stretch; the broker, standalone, is measured too.
 */
async function idleListener(args: PeerArgs, c: BusCase) {
  const { client, close } = await listenerClient(args, c);
  client.subscribe(DATA);
  const bye = client.subscribe<string>(CONTROL, { policy: 'block' });
  await client.flush();
  reportReady();
  await Promise.all([
    reportIdle('listen', args.seconds),
    args.brokerPid === undefined
      ? undefined
      : reportProcessIdle(args.brokerPid, 'broker', args.seconds),
  ]);
  await close(bye[Symbol.asyncIterator]().next());
}

async function idleConnector(args: PeerArgs, c: BusCase): Promise<void> {
  const client = await connectClient(args, c);
  client.subscribe(DATA);
  await client.flush();
  await reportIdle('connect', args.seconds);
  await client.publish(CONTROL, 'bye');
  await client.drain();
  client.close();
}

async function run(args: PeerArgs, c: BusCase): Promise<void> {
  const listen = args.role === 'listen';
  switch (args.scenario) {
    case 'fanout':
      return listen ? publisher(args, c) : subscriber(args, c);
    case 'rpc':
      return listen ? server(args, c) : caller(args, c);
    case 'idle':
      return listen ? idleListener(args, c) : idleConnector(args, c);
    default:
      throw new Error(`bus: no ${args.scenario} scenario`);
  }
}

/**
 * The Bus in notification `mode`, `hosted` or `standalone` (see above). Poll mode runs RPC
 * only: a fan-out's N + 1 processes each spinning a core of the two would measure the
 * scheduler. `zeroCopy` (fan-out only): subscribers take a large value's binary parts as
 * views of their receive buffers and release each once counted (`ConnectBusOptions.views`).
 * `packed`: the clients attached over the socket run packed rings, to set the two ring
 * formats side by side.
 */
export function vringBus(
  mode: NotificationMode,
  topology: Topology,
  variant: { zeroCopy?: boolean; packed?: boolean } = {},
): Transport {
  const { zeroCopy = false, packed = false } = variant;
  const c: BusCase = { mode, topology, zeroCopy, packed };
  // createBus, `vring bus` and connectBus default to adaptive.
  const what = {
    hosted: 'hosted by publisher / server',
    standalone: 'standalone `vring bus`',
    relayed: 'standalone `vring bus`, direct routes off',
  }[topology];
  const kind = `${packed ? 'packed-' : ''}${zeroCopy ? 'zerocopy-' : ''}`;
  // Split rings are the default, so only packed ones say their format.
  const details = `${zeroCopy ? ', subscribers take views' : ''}${packed ? ', packed rings' : ''}`;
  return {
    name: topology === 'hosted' ? `bus-${kind}${mode}` : `bus-${topology}-${kind}${mode}`,
    label: `vring Bus (${what}${details}), ${modeLabel(mode, 'adaptive')}`,
    payload: 'msgpack',
    layout:
      topology === 'hosted'
        ? { processes: 'pair' }
        : { processes: 'pair', broker: { kind: 'vring-bus', notification: mode } },
    // Direct routes serve requests only.
    scenarios: zeroCopy
      ? ['fanout']
      : mode === 'poll' || topology === 'relayed'
        ? ['rpc']
        : ['fanout', 'rpc', 'idle'],
    run: (args) => run(args, c),
  };
}
