// Node `net` over a Unix domain socket, each message a frame with a 4-byte little-endian
// length prefix, written with one `socket.write` per message (the natural Node way),
// honouring backpressure, and read as a competent socket user reads it (frame-reader.ts:
// each byte copied at most once). Two transports: raw Buffers (`net`), and the standard
// msgpack value packed with msgpackr (`net-msgpack`). They are the baselines every ratio is
// taken against.
import { once } from 'node:events';
import { createConnection, createServer, type Socket } from 'node:net';
import { Packr, Unpackr } from 'msgpackr';
import { Acks, atMost, echoServer, FanoutCounter, publishFanout, rpcClient } from './fanout-rpc.js';
import { FrameReader, frame } from './frame-reader.js';
import { CpuMeter, perBurst, pingFor, report, reportIdle, reportReady } from './measure.js';
import { type Payload, packerOptions } from './payload.js';
import type { PeerArgs, Transport } from './transport.js';
import { type Endpoint, runValueScenario } from './value-scenarios.js';

async function open(args: PeerArgs): Promise<Socket> {
  if (args.role === 'listen') {
    const server = createServer();
    server.listen(args.path);
    await once(server, 'listening');
    reportReady();
    const [socket] = (await once(server, 'connection')) as [Socket];
    server.close();
    return socket;
  }
  const socket = createConnection(args.path);
  await once(socket, 'connect');
  return socket;
}

// Raw frames: the payload length tells data (args.size, at least 64) from the markers.
const END_FRAME = frame(Buffer.alloc(1));
const WARM_FRAME = frame(Buffer.alloc(2));
const isEnd = (b: Buffer) => b.length === 1;
const isWarm = (b: Buffer) => b.length === 2;

function onFrames(socket: Socket, handler: (payload: Buffer) => void): void {
  const reader = new FrameReader(handler);
  socket.on('data', (chunk: Buffer) => reader.push(chunk));
}

async function writeFor(socket: Socket, message: Buffer, seconds: number): Promise<void> {
  const until = performance.now() + seconds * 1000;
  const burst = perBurst(message.length, 256);
  while (performance.now() < until) {
    for (let i = 0; i < burst; i++) {
      if (!socket.write(message)) await once(socket, 'drain');
    }
  }
}

async function rawSend(socket: Socket, args: PeerArgs): Promise<void> {
  const ended = new Promise<void>((resolve) => onFrames(socket, () => resolve()));
  const message = frame(Buffer.alloc(args.size, 0xab));
  await writeFor(socket, message, args.warmupSeconds);
  socket.write(WARM_FRAME);
  const cpu = new CpuMeter();
  await writeFor(socket, message, args.seconds);
  socket.write(END_FRAME);
  cpu.report('sender');
  await ended;
}

async function rawReceive(socket: Socket, args: PeerArgs): Promise<void> {
  const cpu = new CpuMeter();
  let messages = 0;
  let started = performance.now();
  await new Promise<void>((resolve) =>
    onFrames(socket, (payload) => {
      if (payload.length === args.size) {
        messages++;
      } else if (isWarm(payload)) {
        messages = 0;
        started = performance.now();
        cpu.restart();
      } else if (isEnd(payload)) {
        const seconds = (performance.now() - started) / 1000;
        cpu.report('receiver');
        report({ messages, bytes: messages * args.size, seconds });
        socket.write(END_FRAME);
        resolve();
      }
    }),
  );
}

async function rawPing(socket: Socket, args: PeerArgs): Promise<void> {
  const message = frame(Buffer.alloc(args.size, 0xcd));
  let resolvePong: () => void = () => {};
  onFrames(socket, () => resolvePong());
  const roundTrip = (m: Buffer) =>
    new Promise<void>((resolve) => {
      resolvePong = resolve;
      socket.write(m);
    });
  await pingFor(
    () => roundTrip(message),
    () => roundTrip(WARM_FRAME),
    args,
  );
  await roundTrip(END_FRAME);
}

/** Echoes every frame (ping-pong server, and the `net` side of the vhost-user echo). */
function rawEcho(socket: Socket): Promise<void> {
  const cpu = new CpuMeter();
  return new Promise((resolve) => {
    onFrames(socket, (payload) => {
      if (isWarm(payload)) cpu.restart();
      if (isEnd(payload)) {
        cpu.report('server');
        resolve();
      }
      socket.write(frame(payload));
    });
  });
}

/** Frames in flight in the echo run: about what two 1024-entry rings hold. */
const ECHO_WINDOW = 2048;

/** Streams frames for `seconds` with at most ECHO_WINDOW unanswered, counting echoes. */
async function streamEcho(socket: Socket, args: PeerArgs): Promise<void> {
  const message = frame(Buffer.alloc(args.size, 0xab));
  let sent = 0;
  let echoed = 0;
  let wake: (() => void) | undefined;
  let ended!: () => void;
  const endEchoed = new Promise<void>((resolve) => {
    ended = resolve;
  });
  onFrames(socket, (payload) => {
    if (isEnd(payload)) ended();
    echoed++;
    if (wake && sent - echoed < ECHO_WINDOW / 2) {
      const w = wake;
      wake = undefined;
      w();
    }
  });
  const cpu = new CpuMeter();
  let started = 0;
  let counted = 0;
  const warmUntil = performance.now() + args.warmupSeconds * 1000;
  let until = Number.POSITIVE_INFINITY;
  while (performance.now() < until) {
    while (sent - echoed < ECHO_WINDOW) {
      sent++;
      if (!socket.write(message)) await once(socket, 'drain');
    }
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    if (started === 0 && performance.now() >= warmUntil) {
      started = performance.now();
      until = started + args.seconds * 1000;
      counted = echoed;
      cpu.restart();
    }
  }
  const seconds = (performance.now() - started) / 1000;
  cpu.report('client');
  report({ messages: echoed - counted, bytes: (echoed - counted) * args.size, seconds });
  socket.write(END_FRAME);
  await endEchoed;
}

async function runRaw(args: PeerArgs): Promise<void> {
  const socket = await open(args);
  const connect = args.role === 'connect';
  switch (args.scenario) {
    case 'oneway':
      await (connect ? rawSend(socket, args) : rawReceive(socket, args));
      break;
    case 'pingpong':
      await (connect ? rawPing(socket, args) : rawEcho(socket));
      break;
    case 'echo':
      await (connect ? streamEcho(socket, args) : rawEcho(socket));
      break;
    case 'idle': {
      const ended = new Promise<void>((resolve) => onFrames(socket, () => resolve()));
      await reportIdle(args.role, args.seconds);
      socket.write(END_FRAME);
      await ended;
      break;
    }
    default:
      throw new Error(`net: no ${args.scenario} scenario`);
  }
  // The listener waits for the connecting side to hang up, so nothing it wrote is lost.
  if (connect) socket.end();
  else await once(socket, 'end');
  socket.destroy();
}

function msgpackEndpoint(socket: Socket): Endpoint {
  const packr = new Packr(packerOptions);
  const unpackr = new Unpackr(packerOptions);
  const peerGone = once(socket, 'close');
  return {
    send(value) {
      // One write per message: a frame header and the packed value in one Buffer.
      const body = packr.pack(value);
      return socket.write(frame(body)) ? undefined : once(socket, 'drain').then(() => {});
    },
    onMessage(handler) {
      onFrames(socket, (body) => handler(unpackr.unpack(body) as Payload));
    },
    peerGone,
    close: () => socket.end(),
  };
}

/**
 * Fan-out without a broker: the publisher accepts every subscriber's connection, packs each
 * value once and writes the same frame to every socket, waiting for `drain` on any that is
 * full. The vring Bus of this scenario lives in the publisher's process too, so both have
 * the same processes and the same three process crossings per message.
 */
async function netPublisher(args: PeerArgs): Promise<void> {
  const subscribers = args.peers - 1;
  const server = createServer();
  server.listen(args.path);
  await once(server, 'listening');
  reportReady();
  const sockets: Socket[] = [];
  while (sockets.length < subscribers) {
    const [socket] = (await once(server, 'connection')) as [Socket];
    sockets.push(socket);
  }
  server.close();
  // Each subscriber acknowledges a marker with a frame.
  const acks = new Acks(subscribers);
  for (const socket of sockets) onFrames(socket, () => acks.add());
  const packr = new Packr(packerOptions);
  const publish = (value: Payload) => {
    const message = frame(packr.pack(value));
    let drained: Array<Promise<unknown>> | undefined;
    for (const socket of sockets) {
      if (socket.write(message)) continue;
      drained ??= [];
      drained.push(once(socket, 'drain'));
    }
    return drained && Promise.all(drained).then(() => {});
  };
  await publishFanout(publish, args, acks);
  await atMost(Promise.all(sockets.map((socket) => once(socket, 'close'))), 1000);
  for (const socket of sockets) socket.destroy();
}

async function netSubscriber(args: PeerArgs): Promise<void> {
  const socket = createConnection(args.path);
  await once(socket, 'connect');
  const unpackr = new Unpackr(packerOptions);
  const counter = new FanoutCounter(args.index, () => socket.write(END_FRAME));
  onFrames(socket, (body) => {
    counter.onValue(unpackr.unpack(body) as Payload);
  });
  await counter.ended;
  socket.end();
  await once(socket, 'close');
}

/** Echo server: each request `[id, value]` is unpacked and answered with `[id, value]` packed. */
async function netRpcServer(args: PeerArgs): Promise<void> {
  const socket = await open(args);
  const packr = new Packr(packerOptions);
  const unpackr = new Unpackr(packerOptions);
  const echo = echoServer();
  onFrames(socket, (body) => {
    const [id, value] = unpackr.unpack(body) as [number, Payload];
    socket.write(frame(packr.pack([id, echo.handle(value)])));
  });
  await echo.ended;
  await atMost(once(socket, 'end'), 1000);
  socket.destroy();
}

/** Client: requests `[id, value]` on one socket, replies matched by id. */
async function netRpcClient(args: PeerArgs): Promise<void> {
  const socket = await open(args);
  const packr = new Packr(packerOptions);
  const unpackr = new Unpackr(packerOptions);
  const pending = new Map<number, (value: Payload) => void>();
  let nextId = 1;
  onFrames(socket, (body) => {
    const [id, value] = unpackr.unpack(body) as [number, Payload];
    const resolve = pending.get(id);
    pending.delete(id);
    resolve?.(value);
  });
  await rpcClient(async (value) => {
    const id = nextId++;
    const reply = new Promise<Payload>((resolve) => pending.set(id, resolve));
    if (!socket.write(frame(packr.pack([id, value])))) await once(socket, 'drain');
    return reply;
  }, args);
  socket.end();
}

async function runMsgpack(args: PeerArgs): Promise<void> {
  const listen = args.role === 'listen';
  switch (args.scenario) {
    case 'fanout':
      return listen ? netPublisher(args) : netSubscriber(args);
    case 'rpc':
      return listen ? netRpcServer(args) : netRpcClient(args);
    default:
      return runValueScenario(msgpackEndpoint(await open(args)), args);
  }
}

export const netRaw: Transport = {
  name: 'net',
  label: 'net (Unix socket)',
  payload: 'raw',
  layout: { processes: 'pair' },
  scenarios: ['oneway', 'pingpong', 'echo', 'idle'],
  run: runRaw,
};

export const netMsgpack: Transport = {
  name: 'net-msgpack',
  label: 'net (Unix socket) msgpack',
  payload: 'msgpack',
  layout: { processes: 'pair' },
  scenarios: ['oneway', 'pingpong', 'idle', 'fanout', 'rpc'],
  run: runMsgpack,
};
