// NATS core as a peer of the vring Bus: a `nats-server` (Debian's package, 2.9) that the
// runner starts for each run as the case's broker, on a free loopback port
// (`-a 127.0.0.1 -p PORT`: no monitoring, cluster or JetStream listener), and the `nats`
// npm client (nats-io's official Node client). Every message is the standard msgpack value
// (payload.ts) packed with msgpackr, as on the other msgpack rows: NATS moves bytes.
//
// Fan-out: the publisher publishes on one subject, each subscriber's subscription takes
// it in a callback (the client's fastest delivery path). NATS core has no backpressure
// from subscribers to a publisher: a subscriber that falls behind has its messages pile up
// in the server until it is cut off as a slow consumer. So that nothing is dropped, as
// with the Bus's `block` subscriptions and the sockets' `drain`, each subscriber returns
// credits (how many messages it has had, every quarter window) and the publisher stays at
// most a window (4096 messages, at most 4 MiB) ahead of the slowest; credits are 1 message
// in 1024 at 64 B. Markers are acknowledged on a control subject, as on the Bus.
//
// RPC: `request` / `respond` through the server (the client's shared reply inbox), with
// `noAsyncTraces` (the client's documented setting for request/reply speed) and a 30 s
// timeout, which no request comes near.
import { execFileSync } from 'node:child_process';
import { Packr, Unpackr } from 'msgpackr';
import type { NatsConnection } from 'nats';
import { NATS_SERVER_MISSING, natsServerPath } from './brokers.js';
import { Acks, echoServer, FanoutCounter, publishFanout, rpcClient } from './fanout-rpc.js';
import { perBurst, reportReady } from './measure.js';
import { type Payload, packerOptions } from './payload.js';
import type { PeerArgs, Transport } from './transport.js';

const DATA = 'bench.data';
/** Subscribers say 'ack' (subscribed, SYNC, END) and 'got <index> <count>' (credits). */
const CONTROL = 'bench.control';
const ECHO = 'bench.echo';

async function open(args: PeerArgs): Promise<NatsConnection> {
  const { connect } = await import('nats');
  if (!args.broker) throw new Error('nats: the case has no nats-server address');
  return connect({
    servers: args.broker,
    name: `bench-${args.role}-${args.index}`,
    reconnect: false,
    noAsyncTraces: true,
  });
}

/** Waits until the server has everything this connection sent, then closes it. */
async function closeFlushed(nc: NatsConnection): Promise<void> {
  await nc.flush();
  await nc.close();
}

/** Messages a subscriber may be behind the publisher, and how often it says how far it is. */
function creditWindow(size: number): { window: number; every: number } {
  const window = perBurst(size, 4096);
  return { window, every: Math.max(1, window >> 2) };
}

async function publisher(args: PeerArgs): Promise<void> {
  const nc = await open(args);
  const subscribers = args.peers - 1;
  const acks = new Acks(subscribers);
  const { window } = creditWindow(args.size);
  const got = new Array<number>(subscribers).fill(0);
  let slowest = 0;
  let sent = 0;
  let wake: (() => void) | undefined;
  nc.subscribe(CONTROL, {
    callback: (_error, msg) => {
      const text = msg.string();
      if (text === 'ack') return acks.add();
      const [, index, count] = text.split(' ');
      got[Number(index) - 1] = Number(count);
      slowest = Math.min(...got);
      if (wake && sent - slowest < window) {
        const w = wake;
        wake = undefined;
        w();
      }
    },
  });
  await nc.flush();
  reportReady();
  await acks.next(); // every subscriber is subscribed
  const packr = new Packr(packerOptions);
  const publish = (value: Payload) => {
    nc.publish(DATA, packr.pack(value));
    if (++sent - slowest < window) return undefined;
    return new Promise<void>((resolve) => {
      wake = resolve;
    });
  };
  await publishFanout(publish, args, acks);
  await nc.close();
}

async function subscriber(args: PeerArgs): Promise<void> {
  const nc = await open(args);
  const unpackr = new Unpackr(packerOptions);
  const { every } = creditWindow(args.size);
  const counter = new FanoutCounter(args.index, () => nc.publish(CONTROL, 'ack'));
  let received = 0;
  nc.subscribe(DATA, {
    callback: (_error, msg) => {
      counter.onValue(unpackr.unpack(msg.data) as Payload);
      if (++received % every === 0) nc.publish(CONTROL, `got ${args.index} ${received}`);
    },
  });
  await nc.flush(); // the server has the subscription
  nc.publish(CONTROL, 'ack');
  await counter.ended;
  await closeFlushed(nc); // with the END acknowledgement
}

async function server(args: PeerArgs): Promise<void> {
  const nc = await open(args);
  const packr = new Packr(packerOptions);
  const unpackr = new Unpackr(packerOptions);
  const echo = echoServer(args.brokerPid);
  nc.subscribe(ECHO, {
    callback: (_error, msg) => {
      msg.respond(packr.pack(echo.handle(unpackr.unpack(msg.data) as Payload)));
    },
  });
  await nc.flush(); // the server has the subscription before any request comes
  reportReady();
  await echo.ended;
  await closeFlushed(nc); // with the END reply
}

async function client(args: PeerArgs): Promise<void> {
  const nc = await open(args);
  const packr = new Packr(packerOptions);
  const unpackr = new Unpackr(packerOptions);
  await rpcClient(async (value) => {
    const reply = await nc.request(ECHO, packr.pack(value), { timeout: 30_000 });
    return unpackr.unpack(reply.data) as Payload;
  }, args);
  await nc.close();
}

async function run(args: PeerArgs): Promise<void> {
  const listen = args.role === 'listen';
  switch (args.scenario) {
    case 'fanout':
      return listen ? publisher(args) : subscriber(args);
    case 'rpc':
      return listen ? server(args) : client(args);
    default:
      throw new Error(`nats: no ${args.scenario} scenario`);
  }
}

/** "nats-server v2.9.10", read once, for the row label. */
function serverVersion(): string {
  const path = natsServerPath();
  if (!path) return 'nats-server';
  try {
    const out = execFileSync(path, ['--version'], { encoding: 'utf8', timeout: 5000 });
    return out.replace(/^nats-server:\s*/, 'nats-server ').trim();
  } catch {
    return 'nats-server';
  }
}

let label: string | undefined;

export const nats: Transport = {
  name: 'nats',
  // Asked by the runner only (peers never read it), so the binary runs once per suite.
  get label() {
    label ??= `NATS core (${serverVersion()}, \`nats\` client)`;
    return label;
  },
  payload: 'msgpack',
  layout: { processes: 'pair', broker: { kind: 'nats-server' } },
  scenarios: ['fanout', 'rpc'],
  unavailable: async () => (natsServerPath() ? undefined : NATS_SERVER_MISSING),
  run,
};
