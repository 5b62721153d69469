// Link: the message layer under Channel and the bus. What its owners rely on beyond what the
// Channel and bus tests show.
import { DeviceQueuePair, DriverQueuePair, MessageBatch } from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InProcessTransport } from '../src/bus/in-process-transport.js';
import { Link } from '../src/link/link.js';

test('resume() never delivers inside the caller: messages waiting in the ring come a turn later', async () => {
  const driver = DriverQueuePair.create({ notification: 'adaptive' });
  const { descriptor, fds } = driver.share();
  const device = DeviceQueuePair.attach(descriptor, fds, { notification: 'adaptive' });
  const got: number[] = [];
  const sender = new Link(driver, { maxFrame: 1514, maxMessage: 1 << 20, onMessage() {} });
  const receiver = new Link(device, {
    maxFrame: 1514,
    maxMessage: 1 << 20,
    onMessage: (kind) => got.push(kind),
  });
  for (let kind = 1; kind <= 3; kind++) await sender.sendValue(kind, { kind });
  // A router resumes a port in the middle of its own bookkeeping (the bus's hold/release of
  // publishers): routing that port's messages right there would re-enter it.
  receiver.resume();
  assert.equal(got, [], 'nothing delivered during resume()');
  const until = Date.now() + 2000;
  while (got.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 1));
  assert.equal(got, [1, 2, 3]);
  sender.close();
  receiver.close();
});

test('a turn of sends to a peer in this thread leaves as one frame: nothing is written ahead', async () => {
  const [near, far] = InProcessTransport.pair(9216, 256);
  const link = new Link(near, { maxFrame: 9216, maxMessage: 1 << 20, onMessage() {} });
  const sent = [1, 2, 3].map((kind) => link.sendValue(kind, { kind }));
  await Promise.all(sent);
  const batch = new MessageBatch();
  await far.receive(batch);
  // Written through, the first would have gone alone (two frames); the peer would read it
  // alone in a microtask and route it alone.
  assert.is(batch.count, 1);
  link.close();
});

test.run();
