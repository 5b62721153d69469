// Raw Buffers through a vring queue pair, the way a throughput-minded user drives it: full
// MessageBatches (one native crossing per batch), in each notification mode. This is the
// floor under every vring layer above (Channel, Bus, RPC).
import { MessageBatch, type NotificationMode, type QueuePairEnd } from '@vring/core';
import { CpuMeter, perBurst, pingFor, report, reportIdle } from './measure.js';
import type { PeerArgs, Transport } from './transport.js';
import { openQueuePair } from './vring-connect.js';

// Data messages are args.size bytes (at least 64); these lengths are the markers.
const END = Buffer.alloc(1);
const WARM = Buffer.alloc(2);

function fullBatch(size: number): MessageBatch {
  const batch = new MessageBatch({ bytes: Math.max(1024 * 1024, size), messages: 256 });
  const message = Buffer.alloc(size, 0xab);
  while (batch.push(message)) {}
  return batch;
}

async function sendBatchesFor(end: QueuePairEnd, batch: MessageBatch, seconds: number) {
  const until = performance.now() + seconds * 1000;
  const burst = perBurst(batch.byteLength, 16);
  while (performance.now() < until) {
    for (let i = 0; i < burst; i++) await end.sendBatch(batch);
  }
}

async function send(end: QueuePairEnd, args: PeerArgs): Promise<void> {
  const batch = fullBatch(args.size);
  await sendBatchesFor(end, batch, args.warmupSeconds);
  await end.send(WARM);
  const cpu = new CpuMeter();
  await sendBatchesFor(end, batch, args.seconds);
  await end.send(END);
  cpu.report('sender');
  await end.receive(); // the receiver's END: everything arrived
}

async function receive(end: QueuePairEnd, args: PeerArgs): Promise<void> {
  const batch = new MessageBatch({ bytes: Math.max(1024 * 1024, args.size), messages: 1024 });
  const cpu = new CpuMeter();
  let messages = 0;
  let started = performance.now();
  for (;;) {
    await end.receive(batch);
    for (let i = 0; i < batch.count; i++) {
      const length = batch.lengths[i]!;
      if (length === args.size) {
        messages++;
      } else if (length === WARM.length) {
        messages = 0;
        started = performance.now();
        cpu.restart();
      } else if (length === END.length) {
        const seconds = (performance.now() - started) / 1000;
        cpu.report('receiver');
        report({ messages, bytes: messages * args.size, seconds });
        await end.send(END);
        return;
      }
    }
  }
}

async function ping(end: QueuePairEnd, args: PeerArgs): Promise<void> {
  const message = new MessageBatch({ bytes: args.size, messages: 1 });
  message.push(Buffer.alloc(args.size, 0xcd));
  const pong = new MessageBatch({ bytes: Math.max(64 * 1024, args.size), messages: 16 });
  await pingFor(
    async () => {
      await end.sendBatch(message);
      await end.receive(pong);
    },
    async () => {
      await end.send(WARM);
      await end.receive(pong);
    },
    args,
  );
  await end.send(END);
  await end.receive(pong);
}

async function pong(end: QueuePairEnd, size: number): Promise<void> {
  const batch = new MessageBatch({ bytes: Math.max(64 * 1024, size), messages: 16 });
  const cpu = new CpuMeter();
  for (;;) {
    await end.receive(batch);
    const first = batch.lengths[0];
    if (first === WARM.length) cpu.restart();
    await end.sendBatch(batch);
    if (first === END.length) {
      cpu.report('server');
      return;
    }
  }
}

/** Descriptors per queue (openQueuePair's default). */
const QUEUE_SIZE = 1024;

/** Bytes of virtio-net header in front of every message in the ring. */
const NET_HEADER = 12;

/**
 * The rings for messages of `size`: 1024 buffers of at least 2 KiB, grown (in whole cache
 * lines) until two messages fit, header included, so the sender fills one while the receiver
 * drains the other: 2112 bytes at 1 MiB. With 2 KiB buffers a 1 MiB message takes 513 of
 * them, two never fit, and the sides took turns, each copying while the other waited.
 * Above 1 MiB the ring holds one message (16 MiB: 32 KiB buffers, 32 MiB a ring): two would
 * make the ring alone as large as the L3 cache, and the copies then run slower than they
 * gain from overlapping (event mode went from about 200 to 160 msg/s).
 */
function geometry(size: number) {
  const bufferSize =
    size <= 1024 * 1024
      ? Math.ceil((2 * (size + NET_HEADER)) / QUEUE_SIZE / 64) * 64
      : Math.ceil((2 * size) / QUEUE_SIZE / 8) * 8;
  return {
    queueSize: QUEUE_SIZE,
    maxMessage: Math.max(65536, size),
    bufferSize: Math.max(2048, bufferSize),
  };
}

async function run(args: PeerArgs, mode: NotificationMode, packed: boolean): Promise<void> {
  const { end, socket, close } = await openQueuePair(args, mode, {
    ...geometry(args.size),
    packed,
  });
  const connect = args.role === 'connect';
  switch (args.scenario) {
    case 'oneway':
      await (connect ? send(end, args) : receive(end, args));
      break;
    case 'pingpong':
      await (connect ? ping(end, args) : pong(end, args.size));
      break;
    case 'idle': {
      // Both sides wait for a message that never comes, each measuring itself.
      const waiting = end.receive().catch(() => {});
      await reportIdle(args.role, args.seconds);
      await socket.send(Buffer.from('done'));
      await socket.receive();
      close();
      await waiting;
      return;
    }
    default:
      throw new Error(`vring: no ${args.scenario} scenario`);
  }
  // The driver side owns the memory: it waits for the device to hang up before unmapping.
  if (connect) await socket.receive().catch(() => {});
  close();
}

/** `packed`: packed rings instead of split ones, to set the two formats side by side. */
export function vringQueuePair(mode: NotificationMode, packed = false): Transport {
  return {
    name: packed ? `vring-packed-${mode}` : `vring-${mode}`,
    // Split rings are the default, so only packed ones say their format.
    label: `vring queue pair, ${packed ? 'packed rings, ' : ''}${mode}`,
    payload: 'raw',
    layout: { processes: 'pair' },
    scenarios: ['oneway', 'pingpong', 'idle'],
    run: (args) => run(args, mode, packed),
  };
}
