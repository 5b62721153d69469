// Bus clients on packed rings (ConnectBusOptions.packed): a packed and a split client, each in
// a process of its own, exchange values of 64 B to 2 MiB through a bus process by
// publish/subscribe and RPC, checked by content, and the bus reports each one's format; a
// bus started with `packed: false` refuses a packed client with a typed error instead of
// running it on split rings, also when it is the bus a packed client reconnects to.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Child, rejection, socketPath, spawnScript } from '../../../test-support/index.js';
import { connectBus, createBus } from '../src/index.js';
import { startBus } from './fixtures/bus-harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Frames that carry a 1 MiB value whole (the value and its envelope). */
const MIB_FRAME = MiB + 256;
/** One frame, frame edges, whole 64 KiB and 1 MiB frames, and values cut into many frames. */
const SIZES = [64, 9216 - 80, 9216, 64 * KiB, 300 * KiB, MiB, 2 * MiB];

function spawnFixture(name: string, args: string[], options = {}): Child {
  return spawnScript(new URL(`./fixtures/${name}`, import.meta.url), args, options);
}

test('a packed and a split client in processes of their own: pub/sub and RPC of 64 B to 2 MiB both ways, intact; the bus reports each format', async () => {
  const path = socketPath('bus-packed');
  const bus = spawnFixture('bus-process.ts', [path, JSON.stringify({ maxFrame: MIB_FRAME })]);
  const peers: Child[] = [];
  try {
    // The peers start with the bus (each waits for it to listen): the packed one takes 1 MiB
    // frames (values up to 1 MiB cross whole); the split one the default 9 KiB (larger values
    // are cut into frames at the bus and reassembled).
    const setups = [
      { id: 'p', peer: 's', packed: true, maxFrame: MIB_FRAME },
      { id: 's', peer: 'p', packed: false, maxFrame: 9216 },
    ];
    for (const setup of setups) {
      const args = JSON.stringify({ path, ...setup, sizes: SIZES });
      peers.push(spawnFixture('bus-format-peer.ts', [args], { stdin: 'pipe' }));
    }
    assert.is(await bus.line(), 'ready');
    for (const p of peers) assert.is(await p.line(), 'ready');

    const observer = await connectBus(path, { directRoutes: false });
    const before = await observer.busReport();
    const ringsByPid = new Map(before.clients.map((c) => [c.pid, c.rings]));
    assert.is(ringsByPid.get(peers[0]!.process.pid), 'packed', 'the packed peer runs packed rings');
    assert.is(ringsByPid.get(peers[1]!.process.pid), 'split', 'the split peer runs split rings');
    assert.is(before.clients.length, 3);

    for (const p of peers) p.process.stdin!.write('go\n');
    const results = await Promise.all(peers.map(async (p) => JSON.parse(await p.line())));
    for (const [i, r] of results.entries()) {
      const who = setups[i]!.packed ? 'packed peer' : 'split peer';
      assert.equal(
        r,
        { received: SIZES.length, bad: 0, outOfOrder: 0, echoed: SIZES.length, echoBad: 0 },
        who,
      );
    }
    const after = await observer.busReport();
    const byPid = new Map(after.clients.map((c) => [c.pid, c]));
    for (const p of peers) {
      const c = byPid.get(p.process.pid)!;
      assert.is(c.published, SIZES.length, 'published through the bus');
      assert.is(c.delivered, SIZES.length, 'delivered through the bus');
      assert.is(c.requestsSent, SIZES.length, 'requests through the bus, none on a direct route');
      assert.is(c.requestsServed, SIZES.length);
    }
    for (const p of peers) p.process.stdin!.write('bye\n');
    for (const p of peers) assert.is(await p.exited, 0);
    observer.close();
  } finally {
    for (const p of peers) p.kill();
    bus.kill('SIGTERM');
    await bus.exited;
  }
});

test('a bus with packed: false refuses a packed client (ERR_VRING_FEATURE_MISMATCH, packed-refused) and runs split ones', async () => {
  const h = startBus({ packed: false });
  try {
    const error = await rejection(h.connect({ packed: true, signal: AbortSignal.timeout(5000) }));
    assert.is(error.code, 'ERR_VRING_FEATURE_MISMATCH');
    assert.is(error.reason, 'packed-refused');
    const split = await h.connect();
    assert.is(await split.request('$vring.stats', null).then(() => 'answered'), 'answered');
    // The refused client is gone: the one client left is the split one.
    const { clients } = h.bus.report();
    assert.equal(
      clients.map((c) => c.rings),
      ['split'],
    );
  } finally {
    await h.close();
  }
});

test('a packed client on an embedded bus: views of large values, direct routes on packed queue pairs; an in-process client reports no rings', async () => {
  const h = startBus({ maxFrame: 256 * KiB });
  try {
    const packed = await h.connect({ packed: true, maxFrame: 256 * KiB, views: true });
    const split = await h.connect();
    const local = await h.bus.connect();
    split.serve<Uint8Array, number>('sum', (bytes) => bytes.reduce((a, b) => a + b, 0));
    const sub = packed.subscribe<Uint8Array>('big');
    await packed.flush();
    await split.flush();
    const value = Buffer.alloc(200 * KiB, 3);
    await local.publish('big', value);
    const got = (await sub.next()).value!.value;
    assert.ok(Buffer.from(got).equals(value), 'the value, whole');
    packed.release(got);
    // The first request goes through the bus, which offers a direct route; the later ones
    // take it: a queue pair the packed client lays out packed.
    for (let i = 0; i < 5; i++) {
      assert.is(await packed.request('sum', value.subarray(0, 1000 + i)), 3 * (1000 + i));
    }
    const report = h.bus.report();
    assert.equal(
      report.clients.map((c) => c.rings),
      [undefined, 'packed', 'split'],
      'by id: the in-process client (negative) first',
    );
    assert.ok(report.clients[2]!.requestsServed < 5, 'some requests went on the direct route');
  } finally {
    await h.close();
  }
});

test('a packed client whose bus comes back refusing packed rings fails for good (features-changed)', async () => {
  const path = socketPath('bus-packed-restart');
  const first = createBus(path, { onError: () => {} });
  const client = await connectBus(path, { packed: true, directRoutes: false });
  first.close();
  await first.closed;
  const second = createBus(path, { packed: false, onError: () => {} });
  try {
    const error = await client.closed;
    assert.is(error?.code, 'ERR_VRING_FEATURE_MISMATCH');
    assert.is(error?.reason, 'features-changed');
  } finally {
    client.close();
    second.close();
    await second.closed;
  }
});

test.run();
