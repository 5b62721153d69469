// Messages of every size class, from one frame to beyond the default 64 MiB limit, cross a
// queue pair between two processes and come back with their content intact (each checked by
// a digest), in order, with small messages sent between the large ones.
import { createHash } from 'node:crypto';
import { DriverQueuePair, FdSocket } from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, spawnScript } from '../../../test-support/index.js';
import { Channel } from '../src/index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Above the default limit of 64 MiB: a Channel takes larger messages when told to. */
const MAX_MESSAGE = 96 * MiB;

/** Bytes that differ at every position (a counter per 32-bit word, seeded per message). */
function content(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed >>> 0;
  for (let i = 0; i + 4 <= size; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b.writeUInt32LE(x, i);
  }
  for (let i = size & ~3; i < size; i++) b[i] = (seed + i) & 0xff;
  return b;
}

function digest(bytes: Uint8Array): string {
  return createHash('sha1').update(bytes).digest('hex');
}

test('64 B to 80 MiB messages cross processes and return intact, in order, beside small ones', async () => {
  const path = socketPath('echo');
  const child = spawnScript(new URL('./fixtures/channel-echo-peer.ts', import.meta.url), [
    path,
    String(MAX_MESSAGE),
  ]);
  try {
    assert.is(await child.line(), 'ready');
    const socket = await FdSocket.connect(path);
    const driver = DriverQueuePair.create({ queueSize: 1024, lifeline: socket });
    const { descriptor, fds } = driver.share();
    await socket.send(Buffer.from(JSON.stringify(descriptor)), fds);
    await socket.receive();
    const channel = new Channel<{ seq: number; sum: string; body: Uint8Array }>(driver, {
      maxMessage: MAX_MESSAGE,
    });
    const sizes = [0, 64, KiB, 9 * KiB, 64 * KiB, 64 * KiB + 1, MiB, 16 * MiB, 80 * MiB];
    const sent: Array<{ seq: number; sum: string; body: Uint8Array }> = [];
    let seq = 0;
    for (const size of sizes) {
      for (const s of [size, 17]) {
        const body = content(s, seq + 1);
        sent.push({ seq: seq++, sum: digest(body), body });
      }
    }
    const sending = (async () => {
      for (const m of sent) await channel.send(m);
    })();
    for (const expected of sent) {
      const got = await channel.receive();
      assert.is(got.seq, expected.seq, 'in order');
      assert.is(got.body.byteLength, expected.body.byteLength, `length of message ${got.seq}`);
      assert.is(digest(got.body), expected.sum, `content of message ${got.seq}`);
    }
    await sending;
    channel.close();
    socket.close();
    assert.is(await child.exited, 0);
  } finally {
    child.kill();
  }
});

test.run();
