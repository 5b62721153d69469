// Queue pairs between real processes: a parent (driver) hands its region and eventfds to a
// child process (device) over an FdSocket, and streams of checked messages flow both ways.
import { closeSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { killChildren, rejection, socketPath, spawnScript } from '../../../test-support/index.js';
import { DeviceQueuePair, DriverQueuePair, FdServer, type NotificationMode } from '../src/index.js';
import { control, say } from './fixtures/control-messages.js';
import { receiveStream, sendStream } from './fixtures/stream-pump.js';

const PEER = new URL('./fixtures/queue-pair-peer.ts', import.meta.url);

// A failed assertion must not leave a child waiting for a "bye" that never comes.
test.after.each(() => killChildren('SIGTERM'));

async function startPeer(role: string, ...args: string[]) {
  const path = socketPath();
  const server = await FdServer.listen(path);
  const child = spawnScript(PEER, [role, path, ...args]);
  const socket = await server.accept();
  server.close();
  return { child, socket, exited: child.exited };
}

const MESSAGES = 1_000_000;

for (const mode of ['event', 'poll'] as NotificationMode[]) {
  test(`${mode} mode: ${MESSAGES} messages of random size each way arrive complete, in order, intact`, async () => {
    const { socket, exited } = await startPeer('echo-device', mode, String(MESSAGES), '11', '22');
    const pair = DriverQueuePair.create({ notification: mode, lifeline: socket, queueSize: 256 });
    const { descriptor, fds } = pair.share();
    await say(socket, { descriptor }, fds);
    assert.ok((await control(socket)).message.attached);
    const [received] = await Promise.all([
      receiveStream(pair, 22, MESSAGES),
      sendStream(pair, 11, MESSAGES),
    ]);
    assert.is(received, MESSAGES);
    const { message } = await control(socket);
    assert.is(message.received, MESSAGES);
    // 1,000,000 messages through a 256-entry ring wrap the 16-bit indices many times.
    assert.ok(pair.stats.messagesSent === MESSAGES && pair.stats.messagesReceived === MESSAGES);
    if (mode === 'poll') {
      // A polling device suppresses kicks. With EVENT_IDX its stale avail_event is crossed
      // once per 65536-entry wrap of each ring, so a handful remain out of a million sends.
      assert.ok(pair.stats.notificationsSent < 100, `${pair.stats.notificationsSent} kicks`);
    } else {
      // Event mode: notifications are suppressed while the peer is awake, so far fewer kicks
      // than messages.
      assert.ok(
        pair.stats.notificationsSent < MESSAGES / 10,
        `${pair.stats.notificationsSent} kicks`,
      );
    }
    await say(socket, { bye: true });
    assert.is(await exited, 0);
    pair.close();
    socket.close();
  });
}

test('a peer killed with SIGKILL mid-stream fails pending operations with ERR_VRING_PEER_DISCONNECTED', async () => {
  const { child, socket, exited } = await startPeer('sink-device');
  const pair = DriverQueuePair.create({ notification: 'event', lifeline: socket });
  const { descriptor, fds } = pair.share();
  await say(socket, { descriptor }, fds);
  // Handlers are attached up front: both operations fail while the test waits for the exit.
  const sendFailure = rejection(sendStream(pair, 1, Number.MAX_SAFE_INTEGER));
  const receiveFailure = rejection(pair.receive());
  await control(socket); // the child is 10,000 messages in
  child.kill('SIGKILL');
  assert.is(await exited, 'SIGKILL');
  assert.is((await sendFailure).code, 'ERR_VRING_PEER_DISCONNECTED');
  assert.is((await receiveFailure).code, 'ERR_VRING_PEER_DISCONNECTED');
  assert.is((await pair.closed)?.code, 'ERR_VRING_PEER_DISCONNECTED');
  socket.close();
});

test('a peer that sends a burst and leaves cleanly: everything it left in the ring is received in order, then ERR_VRING_PEER_DISCONNECTED', async () => {
  const BURST = 100;
  const { socket, exited } = await startPeer('burst-device', String(BURST));
  const pair = DriverQueuePair.create({ notification: 'event', lifeline: socket });
  const { descriptor, fds } = pair.share();
  await say(socket, { descriptor }, fds);
  assert.is((await control(socket)).message.sent, BURST);
  // Nothing has been received yet; wait until the peer is gone for good.
  assert.is(await exited, 0);
  const gone = await socket.closed;
  assert.is(gone?.code, 'ERR_VRING_PEER_DISCONNECTED');
  const received: string[] = [];
  while (received.length < BURST) {
    const batch = await pair.receive();
    for (const message of batch) received.push(message.toString());
  }
  assert.equal(
    received,
    Array.from({ length: BURST }, (_, i) => `burst ${i}`),
  );
  // Only once the ring is empty does the end report the peer's departure.
  assert.is((await rejection(pair.receive())).code, 'ERR_VRING_PEER_DISCONNECTED');
  assert.is((await pair.closed)?.code, 'ERR_VRING_PEER_DISCONNECTED');
  assert.is((await rejection(pair.send(Buffer.from('x')))).code, 'ERR_VRING_PEER_DISCONNECTED');
  socket.close();
});

/** A healthy round trip with a fresh child: the parent still works after an incident. */
async function healthyRoundTrip(): Promise<void> {
  const { socket, exited } = await startPeer('echo-device', 'adaptive', '2000', '5', '6');
  const pair = DriverQueuePair.create({ lifeline: socket });
  const { descriptor, fds } = pair.share();
  await say(socket, { descriptor }, fds);
  assert.ok((await control(socket)).message.attached);
  await Promise.all([receiveStream(pair, 6, 2000), sendStream(pair, 5, 2000)]);
  assert.is((await control(socket)).message.received, 2000);
  await say(socket, { bye: true });
  await exited;
  pair.close();
  socket.close();
}

for (const variant of ['used-index-jump', 'used-id-out-of-range', 'used-len-too-large']) {
  test(`a device that writes a bad used ring (${variant}) breaks that queue with ERR_VRING_BAD_RING; the parent carries on`, async () => {
    const { socket, exited } = await startPeer('hostile-device', variant);
    const pair = DriverQueuePair.create({ notification: 'event', lifeline: socket });
    const { descriptor, fds } = pair.share();
    const receiving = rejection(pair.receive());
    await say(socket, { descriptor }, fds);
    assert.is((await control(socket)).message.done, variant);
    const error = await receiving;
    assert.is(error.code, 'ERR_VRING_BAD_RING');
    assert.is(error.reason, variant);
    assert.is((await pair.closed)?.code, 'ERR_VRING_BAD_RING');
    // Later calls report the queue as unusable, with the original error.
    assert.is((await rejection(pair.send(Buffer.from('x')))).code, 'ERR_VRING_BAD_RING');
    await say(socket, { bye: true });
    await exited;
    socket.close();
    await healthyRoundTrip();
  });
}

const hostileDriverCases: Array<[string, string]> = [
  ['descriptor-loop', 'descriptor-loop'],
  ['head-out-of-range', 'head-out-of-range'],
  ['next-out-of-range', 'next-out-of-range'],
  ['buffer-outside-region', 'buffer-out-of-bounds'],
  ['huge-length', 'buffer-out-of-bounds'],
  ['avail-index-jump', 'avail-index-jump'],
];

for (const [variant, reason] of hostileDriverCases) {
  test(`a driver that writes garbage into its ring (${variant}) breaks that queue with ERR_VRING_BAD_RING; the parent carries on`, async () => {
    const { socket, exited } = await startPeer('hostile-driver', variant);
    const { message, fds } = await control(socket);
    const device = DeviceQueuePair.attach(message.descriptor, fds, {
      notification: 'event',
      lifeline: socket,
    });
    for (const fd of fds) closeSync(fd);
    const receiving = rejection(device.receive());
    await say(socket, { attached: true });
    assert.is((await control(socket)).message.done, variant);
    const error = await receiving;
    assert.is(error.code, 'ERR_VRING_BAD_RING');
    assert.is(error.reason, reason);
    await say(socket, { bye: true });
    await exited;
    socket.close();
    await healthyRoundTrip();
  });
}

test('a process that exits without closing its regions, queue pairs or eventfds exits promptly', async () => {
  const child = spawnScript(new URL('./fixtures/exit-without-close.ts', import.meta.url), [], {
    killAfterMs: 30_000,
  });
  assert.is(await child.exited, 0, 'exit status (SIGKILL: something kept it alive)');
  assert.match(child.output(), /moved 1 message/);
});

test.run();
