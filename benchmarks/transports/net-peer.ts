// One side of the baseline: Node `net` over a Unix domain socket, each message a frame with
// a 4-byte little-endian length prefix, written with one `socket.write` per message (the
// natural Node way), honouring backpressure.
import { once } from 'node:events';
import { createConnection, createServer, type Socket } from 'node:net';
import { measureIdle, percentiles, report } from './measure.js';
import type { PeerArgs } from './peer-args.js';

/** Splits a byte stream into frames, calling `onFrame` with each payload's length and bytes. */
class FrameReader {
  #pending: Buffer | undefined;

  constructor(private readonly onFrame: (payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    let data = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    let offset = 0;
    while (data.length - offset >= 4) {
      const length = data.readUInt32LE(offset);
      if (data.length - offset - 4 < length) break;
      this.onFrame(data.subarray(offset + 4, offset + 4 + length));
      offset += 4 + length;
    }
    data = data.subarray(offset);
    this.#pending = data.length > 0 ? Buffer.from(data) : undefined;
  }
}

function frame(size: number, fill: number): Buffer {
  const b = Buffer.alloc(4 + size, fill);
  b.writeUInt32LE(size, 0);
  return b;
}

async function open(args: PeerArgs): Promise<Socket> {
  if (args.role === 'listen') {
    const server = createServer();
    server.listen(args.path);
    await once(server, 'listening');
    report({ ready: true });
    const [socket] = (await once(server, 'connection')) as [Socket];
    server.close();
    return socket;
  }
  const socket = createConnection(args.path);
  await once(socket, 'connect');
  return socket;
}

async function sendFor(socket: Socket, size: number, seconds: number): Promise<void> {
  const message = frame(size, 0xab);
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    for (let i = 0; i < 256; i++) {
      if (!socket.write(message)) await once(socket, 'drain');
    }
  }
  socket.write(frame(1, 0));
}

function receiveAll(socket: Socket, size: number): Promise<void> {
  return new Promise((resolve) => {
    let messages = 0;
    let bytes = 0;
    let first = 0;
    const reader = new FrameReader((payload) => {
      if (first === 0) first = performance.now();
      if (payload.length !== size) {
        report({ messages, bytes, seconds: (performance.now() - first) / 1000 });
        socket.end();
        resolve();
        return;
      }
      messages++;
      bytes += payload.length;
    });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
  });
}

async function pingClient(socket: Socket, size: number, count: number, warmup: number) {
  const message = frame(size, 0xcd);
  const samples = new Float64Array(count);
  let resolvePong: () => void = () => {};
  const reader = new FrameReader(() => resolvePong());
  socket.on('data', (chunk: Buffer) => reader.push(chunk));
  for (let i = 0; i < warmup + count; i++) {
    const t0 = process.hrtime.bigint();
    const pong = new Promise<void>((resolve) => {
      resolvePong = resolve;
    });
    socket.write(message);
    await pong;
    if (i >= warmup) samples[i - warmup] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  report({ ...percentiles(samples), count });
  socket.end(frame(0, 0));
}

function pingServer(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const reader = new FrameReader((payload) => {
      if (payload.length === 0) {
        socket.end();
        resolve();
        return;
      }
      const out = Buffer.allocUnsafe(4 + payload.length);
      out.writeUInt32LE(payload.length, 0);
      payload.copy(out, 4);
      socket.write(out);
    });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
  });
}

/** Frames in flight in the echo run: about what two 1024-entry rings hold. */
const ECHO_WINDOW = 2048;

/** Streams frames for `seconds` with at most ECHO_WINDOW unanswered, counting echoes. */
async function streamEcho(socket: Socket, size: number, seconds: number): Promise<void> {
  const message = frame(size, 0xab);
  let sent = 0;
  let echoed = 0;
  let wake: (() => void) | undefined;
  const reader = new FrameReader(() => {
    echoed++;
    if (wake && sent - echoed < ECHO_WINDOW / 2) {
      const w = wake;
      wake = undefined;
      w();
    }
  });
  socket.on('data', (chunk: Buffer) => reader.push(chunk));
  const started = performance.now();
  let counted = 0;
  let first = 0;
  while (performance.now() - started < seconds * 1000) {
    while (sent - echoed < ECHO_WINDOW) {
      sent++;
      if (!socket.write(message)) await once(socket, 'drain');
    }
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    if (first === 0) {
      first = performance.now();
      counted = echoed;
    }
  }
  const elapsed = (performance.now() - first) / 1000;
  report({ messages: echoed - counted, bytes: (echoed - counted) * size, seconds: elapsed });
  socket.end(frame(0, 0));
}

export async function runNet(args: PeerArgs): Promise<void> {
  const socket = await open(args);
  switch (args.scenario) {
    case 'oneway':
      if (args.role === 'connect') {
        await sendFor(socket, args.size, args.seconds);
        await once(socket, 'end');
      } else {
        await receiveAll(socket, args.size);
      }
      break;
    case 'pingpong':
      if (args.role === 'connect') await pingClient(socket, args.size, args.count, args.warmup);
      else await pingServer(socket);
      break;
    case 'echo':
      if (args.role === 'connect') await streamEcho(socket, args.size, args.seconds);
      else await pingServer(socket);
      break;
    case 'idle':
      if (args.role === 'listen') {
        report(await measureIdle(args.seconds));
        socket.end();
      } else {
        socket.resume();
        await once(socket, 'end');
      }
      break;
  }
  socket.destroy();
}
