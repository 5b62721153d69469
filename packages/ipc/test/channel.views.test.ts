// Channel `views` mode across processes: binary values that are views of the peer's shared
// memory, held until released. A receiver that never releases holds the sender back until
// the sender's deadline, without corrupting anything; views outlive a peer killed with
// SIGKILL and its memory is unmapped once they are collected.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  DeviceQueuePair,
  DriverQueuePair,
  FdServer,
  FdSocket,
  type QueuePairDescriptor,
  VringError,
} from '@vring/core';
import { unpack } from 'msgpackr';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { collectGarbage, socketPath, spawnScript } from '../../../test-support/index.js';
import { Channel } from '../src/index.js';

type Value = { seq: number; body: Uint8Array };
const digest = (bytes: Uint8Array) => createHash('sha1').update(bytes).digest('hex');
const KiB = 1024;

function body(seq: number, size = 200 * KiB): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((Math.imul(seq + 1, 2654435761) + i) >>> 0, i);
  return b;
}

/** Shared-memory mappings of memfds in this process. */
function memfdMappings(): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes('/memfd:')).length;
}

test('a receiver that never releases its views holds the sender back until its deadline; nothing is corrupted', async () => {
  const path = socketPath('views');
  const child = spawnScript(new URL('./fixtures/channel-view-holder.ts', import.meta.url), [path], {
    stdin: 'pipe',
    killAfterMs: 60_000,
  });
  try {
    assert.is(await child.line(), 'ready');
    const socket = await FdSocket.connect(path);
    const driver = DriverQueuePair.create({
      queueSize: 64,
      bufferSize: 16 * KiB, // a 1 MiB transmit area: about four values in flight
      maxMessage: 512 * KiB,
      lifeline: socket,
    });
    const { descriptor, fds } = driver.share();
    await socket.send(Buffer.from(JSON.stringify(descriptor)), fds);
    await socket.receive();
    const channel = new Channel<Value>(driver);
    let sent = 0;
    let failure: unknown;
    for (; sent < 20; sent++) {
      try {
        await channel.send({ seq: sent, body: body(sent) }, { timeout: 400 });
      } catch (error) {
        failure = error;
        break;
      }
    }
    assert.instance(failure, VringError);
    assert.is((failure as VringError).code, 'ERR_VRING_TIMEOUT');
    assert.ok(sent >= 2 && sent <= 8, `${sent} values went before the ring was full`);
    for (let seq = 0; seq < sent; seq++) {
      assert.is(await child.line(), `got ${seq} ${digest(body(seq))}`);
    }
    child.process.stdin!.write('check\n');
    assert.is(await child.line(), 'intact yes');
    // Released, the memory goes back to the sender, which goes on (the timed-out value was
    // withdrawn: it never arrives).
    child.process.stdin!.write('release\n');
    assert.is(await child.line(), 'released');
    for (let seq = 100; seq < 106; seq++) {
      await channel.send({ seq, body: body(seq) }, { timeout: 10_000 });
      assert.is(await child.line(), `got ${seq} ${digest(body(seq))}`);
    }
    channel.close();
    socket.close();
    assert.is(await child.exited, 0);
  } finally {
    child.kill();
  }
});

test('views of a peer killed with SIGKILL stay readable, and its memory is unmapped once they are collected', async () => {
  const path = socketPath('views-kill');
  const server = await FdServer.listen(path);
  await collectGarbage(); // what earlier tests left unreachable goes first
  const before = memfdMappings();
  const count = 4;
  const child = spawnScript(
    new URL('./fixtures/channel-view-sender.ts', import.meta.url),
    [path, String(count), String(256 * KiB)],
    { killAfterMs: 60_000 },
  );
  let socket: FdSocket | undefined;
  try {
    socket = await server.accept();
    server.close();
    const { data, fds } = await socket.receive();
    const end = DeviceQueuePair.attach(JSON.parse(data.toString()) as QueuePairDescriptor, fds, {
      lifeline: socket,
    });
    let channel: Channel<Value> | undefined = new Channel<Value>(end, { views: true });
    await socket.send(Buffer.from('attached'));
    let values: Value[] | undefined = [];
    for (let i = 0; i < count; i++) values.push(await channel.receive());
    const sums: string[] = [];
    for (let i = 0; i < count; i++) sums.push((await child.line()).split(' ')[2]!);
    assert.is(await child.line(), 'sent');
    assert.ok(memfdMappings() > before, 'the peer memory is mapped');

    child.kill('SIGKILL');
    await child.exited;
    const closed = await channel.closed;
    assert.is(closed?.code, 'ERR_VRING_PEER_DISCONNECTED');
    // The peer is gone; the memory it sent is still there, unchanged.
    for (let i = 0; i < count; i++) assert.is(digest(values[i]!.body), sums[i], `value ${i}`);
    assert.ok(memfdMappings() > before, 'held views keep the mapping');

    values = undefined;
    channel = undefined;
    socket.close();
    socket = undefined;
    unpack(Buffer.from([0xc0])); // msgpackr keeps its last source until the next decode
    await collectGarbage(10);
    assert.is(memfdMappings(), before, 'the mapping is gone once nothing views it');
  } finally {
    child.kill();
    socket?.close();
  }
});

test.run();
