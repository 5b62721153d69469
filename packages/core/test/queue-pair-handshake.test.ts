// offerQueuePair / acceptQueuePair: handing a queue pair over a Unix socket. The driver's
// pair is usable once the offer resolves; a peer that sends anything but a queue pair is
// refused with a typed error, and no fd it sent stays open.
import { closeSync } from 'node:fs';
import { setImmediate as nextLoopTurn } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejection, socketPath } from '../../../test-support/index.js';
import {
  acceptQueuePair,
  type DeviceQueuePair,
  EventFd,
  FdServer,
  FdSocket,
  offerQueuePair,
} from '../src/index.js';
import { openFdCount, rejectsVring } from './fixtures/vring-assert.js';

/** Two connected sockets: `driver` connected, `device` the accepted end. */
async function sockets(): Promise<{ driver: FdSocket; device: FdSocket; close(): void }> {
  const server = await FdServer.listen(socketPath('handshake'));
  const [driver, device] = await Promise.all([FdSocket.connect(server.path), server.accept()]);
  server.close();
  return {
    driver,
    device,
    close: () => {
      driver.close();
      device.close();
    },
  };
}

test('a pair offered over a socket carries messages as soon as the offer resolves', async () => {
  const { driver, device, close } = await sockets();
  let builtBeforeAck = false;
  const accepting = acceptQueuePair(device, {
    beforeAttached: () => {
      builtBeforeAck = true;
    },
  });
  const offered = await offerQueuePair(driver, { queueSize: 64 });
  const accepted = await accepting;
  assert.ok(builtBeforeAck, 'beforeAttached ran before the driver heard of the attach');
  await offered.send(Buffer.from('over the rings'));
  const batch = await accepted.receive();
  assert.equal(
    [...batch].map((m) => Buffer.from(m).toString()),
    ['over the rings'],
  );
  offered.close();
  accepted.close();
  close();
});

test('a descriptor that is not JSON is refused, and the fds that came with it are closed', async () => {
  const { driver, device, close } = await sockets();
  const before = openFdCount();
  const stray = [new EventFd(), new EventFd(), new EventFd()];
  await driver.send(
    Buffer.from('{not json'),
    stray.map((fd) => fd.fd),
  );
  for (const fd of stray) fd.close();
  await rejectsVring(acceptQueuePair(device), 'ERR_VRING_PROTOCOL', 'bad-handshake');
  await nextLoopTurn();
  assert.is(openFdCount(), before, 'no received fd is left open');
  close();
});

test('a descriptor without its three fds is refused', async () => {
  const { driver, device, close } = await sockets();
  await driver.send(Buffer.from(JSON.stringify({ version: 1 })));
  await rejectsVring(acceptQueuePair(device), 'ERR_VRING_PROTOCOL');
  close();
});

test('an offer answered by anything but "attached" fails, and its pair is closed', async () => {
  const { driver, device, close } = await sockets();
  const before = openFdCount();
  const offering = offerQueuePair(driver);
  const { fds } = await device.receive();
  await device.send(Buffer.from('no thanks'));
  await rejectsVring(offering, 'ERR_VRING_PROTOCOL', 'bad-handshake');
  for (const fd of fds) closeSync(fd);
  await nextLoopTurn();
  assert.is(openFdCount(), before, 'the refused pair released its memfd and eventfds');
  close();
});

test('a failing beforeAttached closes the pair and the driver hears nothing', async () => {
  const { driver, device, close } = await sockets();
  let made: DeviceQueuePair | undefined;
  const offering = offerQueuePair(driver, { signal: AbortSignal.timeout(200) });
  const accepting = acceptQueuePair(device, {
    beforeAttached: (pair) => {
      made = pair;
      throw new Error('cannot serve now');
    },
  });
  assert.match((await rejection(accepting)).message, /cannot serve now/);
  await rejectsVring(made!.send(Buffer.from('x')), 'ERR_VRING_CLOSED');
  assert.ok(await rejection(offering), 'the offer never completes');
  close();
});

test.run();
