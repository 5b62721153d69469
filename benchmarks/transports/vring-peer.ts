// One side of a vring benchmark run. The listening side is the device (it attaches to the
// rings it is handed); the connecting side is the driver (it creates the queue pair).
// Prints one JSON line with its measurement, if it measures anything.
import {
  DeviceQueuePair,
  DriverQueuePair,
  FdServer,
  FdSocket,
  MessageBatch,
  type NotificationMode,
  type QueuePairDescriptor,
  type QueuePairEnd,
} from '@vring/core';
import { measureIdle, percentiles, report } from './measure.js';
import type { PeerArgs } from './peer-args.js';

async function open(
  args: PeerArgs,
): Promise<{ end: QueuePairEnd; socket: FdSocket; close(): void }> {
  const notification = args.mode as NotificationMode;
  if (args.role === 'listen') {
    const server = await FdServer.listen(args.path);
    report({ ready: true });
    const socket = await server.accept();
    server.close();
    const { data, fds } = await socket.receive();
    const descriptor = JSON.parse(data.toString()) as QueuePairDescriptor;
    const end = DeviceQueuePair.attach(descriptor, fds, { notification, lifeline: socket });
    await socket.send(Buffer.from('attached'));
    return {
      end,
      socket,
      close: () => {
        end.close();
        socket.close();
      },
    };
  }
  const socket = await FdSocket.connect(args.path);
  const end = DriverQueuePair.create({ notification, lifeline: socket, queueSize: 1024 });
  const { descriptor, fds } = end.share();
  await socket.send(Buffer.from(JSON.stringify(descriptor)), fds);
  await socket.receive(); // the device is attached: from here on nothing is set-up cost
  return {
    end,
    socket,
    close: () => {
      end.close();
      socket.close();
    },
  };
}

function fullBatch(size: number): MessageBatch {
  const batch = new MessageBatch({ bytes: 1024 * 1024, messages: 256 });
  const message = Buffer.alloc(size, 0xab);
  while (batch.push(message)) {}
  return batch;
}

/** Sender of the one-way run: full batches for `seconds`, then a 1-byte end marker. */
async function sendFor(end: QueuePairEnd, size: number, seconds: number): Promise<void> {
  const batch = fullBatch(size);
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    for (let i = 0; i < 16; i++) await end.sendBatch(batch);
  }
  await end.send(Buffer.alloc(1));
}

/** Receiver of the one-way run: counts from the first message to the end marker. */
async function receiveAll(end: QueuePairEnd, size: number): Promise<void> {
  const batch = new MessageBatch({ bytes: 1024 * 1024, messages: 1024 });
  let messages = 0;
  let bytes = 0;
  let first = 0;
  for (;;) {
    await end.receive(batch);
    if (first === 0) first = performance.now();
    for (let i = 0; i < batch.count; i++) {
      const length = batch.lengths[i]!;
      if (length !== size) {
        const seconds = (performance.now() - first) / 1000;
        report({ messages, bytes, seconds, notifications: end.stats.notificationsSent });
        return;
      }
      messages++;
      bytes += length;
    }
  }
}

async function pingClient(end: QueuePairEnd, size: number, count: number, warmup: number) {
  const ping = new MessageBatch({ bytes: size, messages: 1 });
  ping.push(Buffer.alloc(size, 0xcd));
  const pong = new MessageBatch({ bytes: 64 * 1024, messages: 16 });
  const samples = new Float64Array(count);
  for (let i = 0; i < warmup + count; i++) {
    const t0 = process.hrtime.bigint();
    await end.sendBatch(ping);
    await end.receive(pong);
    if (i >= warmup) samples[i - warmup] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  report({ ...percentiles(samples), count });
  await end.send(Buffer.alloc(0)); // tells the echo side to stop
}

async function pingServer(end: QueuePairEnd): Promise<void> {
  const batch = new MessageBatch({ bytes: 64 * 1024, messages: 16 });
  for (;;) {
    await end.receive(batch);
    if (batch.lengths[0] === 0) return;
    await end.sendBatch(batch);
  }
}

export async function runVring(args: PeerArgs): Promise<void> {
  const { end, socket, close } = await open(args);
  switch (args.scenario) {
    case 'oneway':
      if (args.role === 'connect') await sendFor(end, args.size, args.seconds);
      else await receiveAll(end, args.size);
      break;
    case 'pingpong':
      if (args.role === 'connect') await pingClient(end, args.size, args.count, args.warmup);
      else await pingServer(end);
      break;
    case 'idle': {
      // Both sides wait for a message that never comes; the listening side measures itself.
      const waiting = end.receive().catch(() => {});
      if (args.role === 'listen') {
        report(await measureIdle(args.seconds));
        await socket.send(Buffer.from('done'));
      } else {
        await socket.receive();
      }
      close();
      await waiting;
      return;
    }
  }
  // Let the last message reach the peer before the rings go away.
  if (args.role === 'connect') await socket.receive().catch(() => {});
  close();
}
