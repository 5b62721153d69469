// Large frames over vhost-user without a copy through a batch: a VirtioUser (front-end)
// writes a frame where its back-end reads it and reads frames in its own receive buffers;
// a VhostUserPort (back-end) reads a frame in the front-end's memory and writes one from two
// places (a header of its own and a body read elsewhere) with one copy. Frames read in place
// are held until released, small ones are copied, and a back-end never writes in place.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, until } from '../../../test-support/index.js';
import type { DriverQueuePair } from '../src/driver-queue-pair.js';
import { InPlaceBatch } from '../src/in-place-batch.js';
import { VhostUserBackend } from '../src/vhost-user/backend.js';
import type { VhostUserPort } from '../src/vhost-user/backend-port.js';
import { VhostUserRequest as R } from '../src/vhost-user/message-layout.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import {
  createDriver,
  dpdkHandshake,
  RawVhostUserClient,
} from './fixtures/vhost-user-raw-client.js';
import { rejectsVring } from './fixtures/vring-assert.js';

const MAX_FRAME = 64 * 1024;

interface Pair {
  backend: VhostUserBackend;
  port: VhostUserPort;
  user: VirtioUser;
  close(): void;
}

async function connected(): Promise<Pair> {
  const path = socketPath('lending');
  const ports: VhostUserPort[] = [];
  const backend = new VhostUserBackend(path, {
    maxFrame: MAX_FRAME,
    onPort: (port) => ports.push(port),
  });
  const user = await VirtioUser.open(path, { maxMessage: MAX_FRAME, queueSize: 256 });
  await until(() => ports[0]?.live === true);
  const port = ports[0]!;
  return {
    backend,
    port,
    user,
    close() {
      user.close();
      backend.close();
    },
  };
}

function patterned(size: number, seed: number): Buffer {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

/** The frames of `batch`, copied out. */
function framesOf(batch: InPlaceBatch): Buffer[] {
  const frames: Buffer[] = [];
  for (let i = 0; i < batch.count; i++) {
    frames.push(Buffer.from(batch.dataOf(i).subarray(batch.startOf(i), batch.endOf(i))));
  }
  return frames;
}

async function receiveInPlace(
  port: {
    waitReceivable(): Promise<void>;
    lending: { tryReceiveInPlace(b: InPlaceBatch): number };
  },
  batch: InPlaceBatch,
): Promise<number> {
  for (;;) {
    const n = port.lending.tryReceiveInPlace(batch);
    if (n > 0) return n;
    await port.waitReceivable();
  }
}

test('a frame the front-end writes in place is read in place by the back-end, held until released', async () => {
  const p = await connected();
  try {
    const lending = p.user.lending;
    assert.ok(lending.writesInPlace);
    const body = patterned(40_000, 1);
    const room = lending.reserve(body.length);
    assert.ok(room, 'room in the transmit area');
    assert.ok(room!.length >= body.length);
    body.copy(room!);
    lending.commit(body.length);
    const batch = new InPlaceBatch({ scratchBytes: MAX_FRAME });
    assert.is(await receiveInPlace(p.port, batch), 1);
    assert.is(batch.held, 1, 'the frame lies in the front-end memory, not in the scratch');
    assert.is.not(batch.dataOf(0), batch.scratch);
    assert.ok(framesOf(batch)[0]!.equals(body));
    p.port.lending.release(1);
    // Given back: the next frame goes through the same way.
    await p.user.send(patterned(20_000, 2));
    assert.is(await receiveInPlace(p.port, batch), 1);
    assert.ok(framesOf(batch)[0]!.equals(patterned(20_000, 2)));
    p.port.lending.release(batch.held);
    assert.is(p.port.stats.framesReceived, 2);
  } finally {
    p.close();
  }
});

test('a frame the back-end sends from a head and a body arrives whole, read in place by the front-end', async () => {
  const p = await connected();
  try {
    const head = Buffer.from('routing fields of the back-end');
    const body = patterned(50_000, 3);
    assert.ok(p.port.lending.trySendJoined(head, body));
    const batch = new InPlaceBatch({ scratchBytes: MAX_FRAME });
    assert.is(await receiveInPlace(p.user, batch), 1);
    assert.is(batch.held, 1, 'read in the receive buffers it arrived in');
    assert.ok(framesOf(batch)[0]!.equals(Buffer.concat([head, body])));
    p.user.lending.release(1);
    assert.is(p.port.stats.framesSent, 1);
    assert.is(p.port.stats.bytesSent, head.length + body.length);
  } finally {
    p.close();
  }
});

test('small frames are copied into the scratch buffer, not held', async () => {
  const p = await connected();
  try {
    await p.user.send([patterned(100, 4), patterned(2000, 5)]);
    const batch = new InPlaceBatch({ scratchBytes: MAX_FRAME });
    let frames: Buffer[] = [];
    while (frames.length < 2) {
      await receiveInPlace(p.port, batch);
      assert.is(batch.held, 0);
      frames = frames.concat(framesOf(batch));
    }
    assert.ok(frames[0]!.equals(patterned(100, 4)));
    assert.ok(frames[1]!.equals(patterned(2000, 5)));
  } finally {
    p.close();
  }
});

test('a back-end never writes in place, and a joined frame beyond maxFrame is refused whole', async () => {
  const p = await connected();
  try {
    const lending = p.port.lending;
    assert.is(lending.writesInPlace, false);
    assert.is(lending.reserve(1024), undefined);
    assert.throws(
      () => lending.commit(10),
      (e: Error & { code?: string }) => {
        return e.code === 'ERR_VRING_INVALID_ARGUMENT';
      },
    );
    assert.throws(
      () => lending.trySendJoined(Buffer.alloc(100), Buffer.alloc(MAX_FRAME)),
      (e: Error & { code?: string }) => e.code === 'ERR_VRING_OVERSIZED_MESSAGE',
    );
    // Nothing went: the next frame is the first the front-end sees.
    assert.ok(lending.trySendJoined(Buffer.from('a'), Buffer.from('b')));
    const got = await p.user.receive();
    assert.is(got.count, 1);
    assert.is(Buffer.from(got.data.subarray(0, got.lengths[0]!)).toString(), 'ab');
  } finally {
    p.close();
  }
});

test('a closed port refuses joined frames with ERR_VRING_CLOSED', async () => {
  const p = await connected();
  p.port.close();
  try {
    await rejectsVring(
      (async () => p.port.lending.trySendJoined(Buffer.from('a'), Buffer.from('b')))(),
      'ERR_VRING_CLOSED',
    );
  } finally {
    p.close();
  }
});

/** The transmit ring's used index: how many frames the device has given back to `driver`. */
function returnedToDriver(driver: DriverQueuePair): number {
  const used = BigInt(driver.share().descriptor.tx.used);
  return driver.region.read(Number(used - driver.region.address) + 2, 2).readUInt16LE(0);
}

test('frames held when the front-end stops the rings go back to it first; their later release leaves the new rings alone', async () => {
  const path = socketPath('lending');
  const ports: VhostUserPort[] = [];
  const backend = new VhostUserBackend(path, { onPort: (port) => ports.push(port) });
  const driver = createDriver();
  const client = new RawVhostUserClient(path);
  try {
    await dpdkHandshake(client, driver);
    await until(() => ports[0]?.live === true);
    const port = ports[0]!;
    const batch = new InPlaceBatch({ scratchBytes: 65536 });
    await driver.send(patterned(20_000, 6));
    assert.is(await receiveInPlace(port, batch), 1);
    assert.is(batch.held, 1);
    assert.is(returnedToDriver(driver), 0, 'held: not given back yet');
    // The front-end stops the rings (as DPDK's virtio_user does before a restart).
    await client.request(R.SET_VRING_ENABLE, { index: 0, num: 0 });
    await client.request(R.SET_VRING_ENABLE, { index: 1, num: 0 });
    await client.request(R.GET_VRING_BASE, { index: 0, num: 0 });
    assert.equal(await client.request(R.GET_VRING_BASE, { index: 1, num: 0 }), {
      index: 1,
      num: 1,
    });
    assert.is(port.live, false);
    assert.is(returnedToDriver(driver), 1, 'given back when the rings stopped');
    await dpdkHandshake(client, driver, { replay: true });
    await until(() => port.live);
    await driver.send(patterned(30_000, 7));
    const again = new InPlaceBatch({ scratchBytes: 65536 });
    assert.is(await receiveInPlace(port, again), 1);
    assert.ok(framesOf(again)[0]!.equals(patterned(30_000, 7)));
    // The reader releases the old frame late: nothing of the new rings goes back for it.
    port.release(1);
    assert.is(returnedToDriver(driver), 1);
    port.release(1);
    assert.is(returnedToDriver(driver), 2);
  } finally {
    client.close();
    driver.close();
    backend.close();
  }
});

test.run();
