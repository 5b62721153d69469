// Channel across processes over vhost-user: a VirtioUser frontend in this process, a
// VhostUserBackend in a child whose ports echo every value. Values of many shapes and sizes
// (some fragmented over hundreds of frames) come back equal and in order.
import { VirtioUser } from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, spawnScript } from '../../../test-support/index.js';
import { Channel } from '../src/index.js';

const MAX_FRAME = 9216; // VirtioUser's default maxMessage: both sides cut frames to it

function value(i: number): unknown {
  switch (i % 5) {
    case 0:
      return i;
    case 1:
      return `message ${i}`;
    case 2:
      return { i, list: [i, i + 1, { nested: true }], text: 'x'.repeat(i % 300) };
    case 3:
      return Buffer.alloc(i % 4000, i & 0xff);
    default:
      return [null, true, -i, 1.5];
  }
}

test('values sent through a VirtioUser to a backend process come back equal and in order', async () => {
  const path = socketPath('backend');
  const child = spawnScript(new URL('./fixtures/channel-echo-backend.ts', import.meta.url), [
    path,
    String(MAX_FRAME),
  ]);
  try {
    assert.is(await child.line(), 'ready');
    const port = await VirtioUser.open(path);
    const channel = new Channel<unknown>(port, { maxFrame: MAX_FRAME });
    const big = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
    const values = Array.from({ length: 5000 }, (_, i) => (i % 1000 === 999 ? big : value(i)));
    const sending = Promise.all(values.map((v) => channel.send(v)));
    for (let i = 0; i < values.length; i++) {
      const got = await channel.receive();
      const expected = values[i];
      if (Buffer.isBuffer(expected))
        assert.ok(Buffer.from(got as Uint8Array).equals(expected), `value ${i}`);
      else assert.equal(got, expected, `value ${i}`);
    }
    await sending;
    channel.close();
    assert.is(await channel.closed, undefined);
  } finally {
    child.kill('SIGTERM');
    await child.exited;
  }
});

test.run();
