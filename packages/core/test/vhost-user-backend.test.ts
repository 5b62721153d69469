// VhostUserBackend against a hand-rolled front-end (the DPDK 22.11 handshake over a raw
// framed socket, memory and rings from a DriverQueuePair): frames echo both ways with exact
// content, a replayed handshake after GET_VRING_BASE restarts the rings, every control-channel
// bad input we refuse (docs/architecture.md#what-a-peer-may-never-do-to-us) closes only its own
// connection with a typed error while a healthy port keeps echoing, and a flood of hostile
// connections leaks no fd or mapping.
import { createConnection } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { collectGarbage, socketPath, spawnScript, until } from '../../../test-support/index.js';
import { echoPort } from '../src/cli/echo.js';
import type { VringError } from '../src/errors.js';
import { EventFd } from '../src/event-fd.js';
import { FdServer } from '../src/fd-server.js';
import { VHOST_USER_FRAMING } from '../src/fd-socket.js';
import { MessageBatch } from '../src/message-batch.js';
import { SharedRegion } from '../src/shared-region.js';
import { VhostUserBackend } from '../src/vhost-user/backend.js';
import type { VhostUserPort } from '../src/vhost-user/backend-port.js';
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX } from '../src/vhost-user/features.js';
import { VhostUserRequest as R } from '../src/vhost-user/message-layout.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { type EchoBackend, echoBackend, frame, roundTrip } from './fixtures/echo-backend.js';
import { msg, u32, u64 } from './fixtures/raw-frames.js';
import {
  createDriver,
  dpdkHandshake,
  RawVhostUserClient,
} from './fixtures/vhost-user-raw-client.js';
import { mappingCounts, openFdCount } from './fixtures/vring-assert.js';

type Harness = EchoBackend;

async function attach(path: string, options: { eventIdx?: boolean } = {}) {
  const driver = createDriver(options);
  const client = new RawVhostUserClient(path);
  await dpdkHandshake(client, driver, options);
  return { driver, client };
}

test('a DPDK-style front-end: handshake, then frames echo both ways with exact content', async () => {
  const h = echoBackend();
  const { driver, client } = await attach(h.path);
  await until(() => h.ports[0]?.live === true);
  const port = h.ports[0]!;
  const features = port.features!;
  assert.ok((features & VIRTIO_F_VERSION_1) !== 0n);
  assert.ok((features & VIRTIO_RING_F_EVENT_IDX) !== 0n);
  await roundTrip(driver, 2000);
  const stats = port.stats;
  assert.is(stats.framesReceived, 2000);
  assert.is(stats.framesSent, 2000);
  assert.is(stats.dropped, 0);
  assert.is(h.errors.length, 0);
  client.close();
  await port.closed;
  driver.close();
  h.backend.close();
});

test('without EVENT_IDX the rings use the NO_NOTIFY / NO_INTERRUPT flags and still echo', async () => {
  const h = echoBackend();
  const { driver, client } = await attach(h.path, { eventIdx: false });
  await until(() => h.ports[0]?.live === true);
  assert.is(h.ports[0]!.features! & VIRTIO_RING_F_EVENT_IDX, 0n);
  await roundTrip(driver, 500);
  client.close();
  driver.close();
  h.backend.close();
});

for (const eventIdx of [true, false]) {
  test(`GET_VRING_BASE stops the rings; a replayed handshake with base 0 resumes from used->idx (EVENT_IDX ${eventIdx})`, async () => {
    const h = echoBackend();
    const { driver, client } = await attach(h.path, { eventIdx });
    await until(() => h.ports[0]?.live === true);
    const port = h.ports[0]!;
    await roundTrip(driver, 300);
    await client.request(R.SET_VRING_ENABLE, { index: 0, num: 0 });
    await client.request(R.SET_VRING_ENABLE, { index: 1, num: 0 });
    const rx = await client.request(R.GET_VRING_BASE, { index: 0, num: 0 });
    // DPDK's virtio_user puts its previous reply in the reserved num; the backend ignores it.
    const tx = await client.request(R.GET_VRING_BASE, { index: 1, num: 300 });
    // Receive buffers: a 4000 or 9000 B frame takes several 2 KiB buffers (MRG_RXBUF).
    assert.is(rx?.index, 0);
    assert.ok(rx!.num > 300, `rx base ${rx!.num} counts buffers`);
    assert.equal(tx, { index: 1, num: 300 });
    assert.is(port.live, false);
    // The handshake again, as DPDK's virtio_user replays it: no SET_OWNER, and SET_VRING_BASE 0
    // although 300 were used (the backend resumes from used->idx).
    await dpdkHandshake(client, driver, { replay: true, eventIdx });
    await until(() => port.live);
    await roundTrip(driver, 300, 300);
    assert.is(port.stats.starts, 2);
    assert.is(port.stats.framesReceived, 600);
    assert.is(h.errors.length, 0);
    client.close();
    driver.close();
    h.backend.close();
  });
}

test('many ports at once, each echoing only its own frames', async () => {
  const h = echoBackend();
  const peers = await Promise.all([1, 2, 3, 4].map(() => attach(h.path)));
  await until(() => h.ports.length === 4 && h.ports.every((p) => p.live));
  await Promise.all(peers.map(({ driver }, i) => roundTrip(driver, 500, i * 10000)));
  for (const port of h.ports) assert.is(port.stats.framesReceived, 500);
  for (const { driver, client } of peers) {
    client.close();
    driver.close();
  }
  h.backend.close();
});

test('client mode: connects with backoff to a listening front-end, and again after it leaves', async () => {
  const path = socketPath();
  const ports: VhostUserPort[] = [];
  const backend = new VhostUserBackend(path, {
    client: true,
    retryInitialMs: 10,
    retryMaxMs: 50,
    onPort: (port) => {
      ports.push(port);
      void echoPort(port);
    },
  });
  // Nobody listens yet: the backend retries until the front-end appears.
  await new Promise((r) => setTimeout(r, 60));
  const server = FdServer.listenFramed(path, VHOST_USER_FRAMING);
  for (let round = 0; round < 2; round++) {
    const client = new RawVhostUserClient(await server.accept());
    const driver = createDriver();
    await dpdkHandshake(client, driver);
    await until(() => ports[round]?.live === true);
    await roundTrip(driver, 200, round * 1000);
    client.close(); // the front-end goes away; the backend reconnects
    driver.close();
    await ports[round]!.closed;
  }
  backend.close();
  server.close();
});

test('a front-end that breaks its transmit ring gets a typed error and only its port closes', async () => {
  const h = echoBackend();
  const healthy = await attach(h.path);
  const hostile = await attach(h.path);
  await until(() => h.ports.length === 2 && h.ports.every((p) => p.live));
  const { descriptor, fds } = hostile.driver.share();
  // avail->idx of the transmit queue jumps by 1000 on a 256-entry queue: more than the
  // driver can have made available since the device last looked.
  const at = Number(BigInt(descriptor.tx.avail) - BigInt(descriptor.guestAddress)) + 2;
  const idx = Buffer.alloc(2);
  idx.writeUInt16LE(1000);
  hostile.driver.region.write(at, idx);
  const kick = EventFd.fromFd(fds[1]!);
  kick.signal();
  kick.close();
  const closed = await h.ports[1]!.closed;
  assert.is(closed?.code, 'ERR_VRING_BAD_RING');
  assert.is(closed?.reason, 'avail-index-jump');
  assert.is(h.errors.length, 1);
  assert.is(h.errors[0]!.error, closed);
  // Its control connection was closed with it.
  assert.is((await hostile.client.socket.closed)?.code, 'ERR_VRING_PEER_DISCONNECTED');
  await roundTrip(healthy.driver, 100);
  for (const peer of [healthy, hostile]) {
    peer.client.close();
    peer.driver.close();
  }
  h.backend.close();
});

test('our VirtioUser front-end against the backend, in both socket modes', async () => {
  for (const serverMode of [false, true]) {
    const path = socketPath();
    const ports: VhostUserPort[] = [];
    const onPort = (port: VhostUserPort) => {
      ports.push(port);
      void echoPort(port);
    };
    // Server-mode VirtioUser listens first; the backend then connects as a client.
    const opening = VirtioUser.open(path, { server: serverMode });
    const backend = new VhostUserBackend(path, { client: serverMode, retryInitialMs: 10, onPort });
    const frontend = await opening;
    const sent = Array.from({ length: 300 }, (_, i) => frame(i, 60 + ((i * 97) % 1455)));
    const sending = frontend.send(sent);
    let got = 0;
    while (got < sent.length) {
      for (const view of await frontend.receive()) {
        assert.ok(view.equals(sent[got]!), `frame ${got} intact (server mode ${serverMode})`);
        got++;
      }
    }
    await sending;
    assert.is(ports[0]!.stats.framesReceived, 300);
    frontend.close();
    backend.close();
  }
});

test('trySend fills the front-end receive buffers it can; waitSendable says when more will fit', async () => {
  const path = socketPath();
  let reported: VhostUserPort | undefined;
  const backend = new VhostUserBackend(path, {
    onPort: (p) => {
      reported = p;
    },
  });
  const frontend = await VirtioUser.open(path, { queueSize: 64 });
  const port = await until(() => reported, 'the backend to report the port');
  const batch = new MessageBatch({ messages: 200 });
  for (let i = 0; i < 200; i++) batch.push(frame(i, 100));
  // The front-end posted 64 receive buffers: no more frames go until it reads.
  let sent = 0;
  for (let tries = 0; sent < 64 && tries < 1000; tries++) {
    sent += port.trySend(batch, sent);
    if (sent < 64) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.is(sent, 64);
  assert.is(port.trySend(batch, sent), 0, 'nothing more fits');
  const sendable = port.waitSendable();
  const received = await frontend.receive();
  assert.is(received.count, 64);
  await sendable;
  assert.ok(port.trySend(batch, sent) > 0, 'room again once the front-end has read');
  frontend.close();
  backend.close();
  await port.closed;
  assert.throws(() => port.trySend(batch), /closed|went away/);
});

test('vring echo in its own process: echoes, prints one line per port on SIGINT, exits 0', async () => {
  const path = socketPath();
  const child = spawnScript(new URL('./fixtures/echo-process.ts', import.meta.url), [path], {
    stderr: 'capture',
  });
  await child.waitFor(/listening on/);
  const peers = [await attach(path), await attach(path)];
  await roundTrip(peers[0]!.driver, 100);
  await roundTrip(peers[1]!.driver, 200);
  child.kill('SIGINT');
  assert.is(await child.exited, 0, child.output());
  const out = child.output();
  assert.match(out, /port 1 \(open\): received 100 frames \d+ B, sent 100 frames/);
  assert.match(out, /port 2 \(open\): received 200 frames \d+ B, sent 200 frames/);
  for (const { driver, client } of peers) {
    client.close();
    driver.close();
  }
});

// ---- control-channel bad input ----
// Each case is numbered by the kind of fault, with a letter for each further variant:
// 1–2 framing (a short or truncated message, an oversized one), 3 a payload of the wrong size,
// 4 header version and flags, 5 unknown and unsupported requests, 6 fds too many or missing,
// 7 a flood of valid requests before a bad one, 8 vring index, 9 ring size, 10 ring addresses,
// 11 memory tables, 12–13 log and inflight requests the backend never offers, 14 features
// un-offered, changed while running, or used without being negotiated.

interface BadCase {
  name: string;
  /** Messages leading up to the bad one (a valid prefix). */
  setup?: (c: RawVhostUserClient) => Promise<void>;
  send?: (c: RawVhostUserClient, fds: FdsWithCleanup) => Promise<void>;
  /** Raw bytes for a plain stream socket, which is then half-closed (no fds possible). */
  stream?: Buffer;
  reason: string;
}

interface Fds {
  event(): number;
  memfd(size: number, seal?: boolean): number;
}

const negotiate = async (c: RawVhostUserClient) => {
  await c.request(R.SET_OWNER, undefined);
  await c.request(R.GET_FEATURES, undefined);
  await c.request(R.SET_FEATURES, VIRTIO_F_VERSION_1 | (1n << 30n));
};
const withMemory = async (c: RawVhostUserClient, fds: Fds) => {
  await negotiate(c);
  await c.request(R.SET_MEM_TABLE, {
    regions: [
      {
        guestPhysAddr: 0x100000n,
        memorySize: 0x10000n,
        userspaceAddr: 0x100000n,
        mmapOffset: 0n,
        fd: fds.memfd(0x10000),
      },
    ],
  });
};

const cases: BadCase[] = [
  // 1, 1b and 2 are not whole frames, so they go through a plain stream socket.
  {
    name: '1. header shorter than 12 bytes, then EOF',
    stream: Buffer.from([1, 0, 0, 0, 1, 0]),
    reason: 'short-message',
  },
  {
    name: '1b. EOF in the middle of the payload',
    stream: Buffer.concat([u32(R.SET_FEATURES, 1, 8), Buffer.alloc(3)]),
    reason: 'short-message',
  },
  { name: '2. size 0x10000', stream: u32(R.GET_FEATURES, 1, 0x10000), reason: 'oversized-message' },
  {
    name: '3. state payload of 4 bytes',
    send: (c) => c.raw(msg(R.SET_VRING_NUM, 1, u32(0))),
    reason: 'bad-size',
  },
  {
    name: '3b. GET_FEATURES with a payload',
    send: (c) => c.raw(msg(R.GET_FEATURES, 1, u64(0n))),
    reason: 'bad-size',
  },
  { name: '4. version 2', send: (c) => c.raw(msg(R.GET_FEATURES, 2)), reason: 'bad-version' },
  {
    name: '4b. REPLY flag on a request',
    send: (c) => c.raw(msg(R.GET_FEATURES, 5)),
    reason: 'reply-flag-on-request',
  },
  {
    name: '4c. reserved flag bits',
    send: (c) => c.raw(msg(R.GET_FEATURES, 0x101)),
    reason: 'reserved-flags',
  },
  { name: '5. unknown request 99', send: (c) => c.raw(msg(99, 1)), reason: 'unknown-request' },
  {
    // With NEED_REPLY it is NACKed instead (vhost-user-backend.reply-ack.test.ts).
    name: '5b. unknown request 99 with a payload',
    send: (c) => c.raw(msg(99, 1, u64(7n))),
    reason: 'unknown-request',
  },
  {
    name: '5c. known but unsupported request (SET_LOG_FD)',
    send: (c, f) => c.raw(msg(R.SET_LOG_FD, 1), [f.event()]),
    reason: 'unsupported-request',
  },
  {
    name: '6. an fd with GET_FEATURES',
    send: (c, f) => c.raw(msg(R.GET_FEATURES, 1), [f.event()]),
    reason: 'unexpected-fds',
  },
  {
    name: '6b. two fds with SET_VRING_KICK',
    send: (c, f) => c.raw(msg(R.SET_VRING_KICK, 1, u64(0n)), [f.event(), f.event()]),
    reason: 'unexpected-fds',
  },
  {
    name: '6c. NOFD bit plus an fd on SET_VRING_CALL',
    send: (c, f) => c.raw(msg(R.SET_VRING_CALL, 1, u64(0x100n)), [f.event()]),
    reason: 'unexpected-fds',
  },
  {
    name: '6d. SET_VRING_KICK without its fd',
    send: (c) => c.raw(msg(R.SET_VRING_KICK, 1, u64(0n))),
    reason: 'missing-fds',
  },
  {
    name: '7. SET_VRING_NUM flood, then a bad one',
    send: async (c) => {
      for (let i = 0; i < 200; i++) await c.request(R.SET_VRING_NUM, { index: 0, num: 256 });
      await c.raw(msg(R.SET_VRING_NUM, 1, u32(0, 300)));
    },
    reason: 'bad-ring-size',
  },
  {
    name: '7b. SET_VRING_CALL flood, each with a fresh eventfd, then a bad one',
    send: async (c, f) => {
      for (let i = 0; i < 20; i++)
        await c.request(R.SET_VRING_CALL, { index: i % 2, fd: f.event() });
      await c.raw(msg(R.SET_VRING_NUM, 1, u32(0, 300)));
    },
    reason: 'bad-ring-size',
  },
  {
    name: '7c. SET_MEM_TABLE flood (each replaces the last mapping), then a bad one',
    send: async (c, f) => {
      for (let i = 0; i < 20; i++) {
        await c.request(R.SET_MEM_TABLE, {
          regions: [
            {
              guestPhysAddr: 0n,
              memorySize: 0x10000n,
              userspaceAddr: 0n,
              mmapOffset: 0n,
              fd: f.memfd(0x10000),
            },
          ],
        });
      }
      await c.raw(msg(R.SET_VRING_NUM, 1, u32(0, 300)));
    },
    reason: 'bad-ring-size',
  },
  {
    name: '8. vring index 300',
    send: (c) => c.raw(msg(R.SET_VRING_NUM, 1, u32(300, 256))),
    reason: 'vring-index-out-of-range',
  },
  {
    name: '8b. vring index 2 (one queue pair)',
    send: (c) => c.raw(msg(R.SET_VRING_BASE, 1, u32(2, 0))),
    reason: 'vring-index-out-of-range',
  },
  {
    name: '8c. vring index in the high bits of a file payload',
    send: (c, f) => c.raw(msg(R.SET_VRING_KICK, 1, u64(0x10000n)), [f.event()]),
    reason: 'reserved-bits',
  },
  {
    name: '9. SET_VRING_NUM 0',
    send: (c) => c.raw(msg(R.SET_VRING_NUM, 1, u32(0, 0))),
    reason: 'bad-ring-size',
  },
  {
    name: '9b. SET_VRING_NUM 300',
    send: (c) => c.raw(msg(R.SET_VRING_NUM, 1, u32(0, 300))),
    reason: 'bad-ring-size',
  },
  {
    name: '9c. SET_VRING_NUM 65536',
    send: (c) => c.raw(msg(R.SET_VRING_NUM, 1, u32(0, 65536))),
    reason: 'bad-ring-size',
  },
  {
    name: '10. SET_VRING_ADDR before SET_MEM_TABLE',
    setup: negotiate,
    send: (c) =>
      c
        .request(R.SET_VRING_ADDR, {
          index: 0,
          flags: 0,
          descUser: 0x1000n,
          usedUser: 0x3000n,
          availUser: 0x2000n,
          log: 0n,
        })
        .then(() => {}),
    reason: 'no-memory-table',
  },
  {
    name: '10b. ring outside every region',
    send: async (c, f) => {
      await withMemory(c, f);
      await c.request(R.SET_VRING_ADDR, {
        index: 0,
        flags: 0,
        descUser: 0x900000n,
        usedUser: 0x102000n,
        availUser: 0x101000n,
        log: 0n,
      });
    },
    reason: 'ring-outside-memory',
  },
  {
    name: '10c. ring straddling the region end',
    send: async (c, f) => {
      await withMemory(c, f);
      await c.request(R.SET_VRING_NUM, { index: 0, num: 256 });
      await c.request(R.SET_VRING_NUM, { index: 1, num: 256 });
      // The descriptor table (4 KiB) starts 1 KiB before the end of the region.
      await c.request(R.SET_VRING_ADDR, {
        index: 0,
        flags: 0,
        descUser: 0x10fc00n,
        usedUser: 0x102000n,
        availUser: 0x101000n,
        log: 0n,
      });
      await c.request(R.SET_VRING_ADDR, {
        index: 1,
        flags: 0,
        descUser: 0x104000n,
        usedUser: 0x106000n,
        availUser: 0x105000n,
        log: 0n,
      });
      for (const index of [0, 1]) {
        await c.request(R.SET_VRING_KICK, { index, fd: f.event() });
        await c.request(R.SET_VRING_CALL, { index, fd: f.event() });
        await c.request(R.SET_VRING_ENABLE, { index, num: 1 });
      }
    },
    reason: 'bad-ring-setup',
  },
  {
    name: '10d. misaligned ring address',
    send: (c) =>
      c.raw(
        msg(
          R.SET_VRING_ADDR,
          1,
          Buffer.concat([u32(0, 0), u64(0x1008n), u64(0x3000n), u64(0x2000n), u64(0n)]),
        ),
      ),
    reason: 'misaligned-ring',
  },
  {
    name: '11. nregions 9',
    send: (c) => c.raw(msg(R.SET_MEM_TABLE, 1, Buffer.concat([u32(9, 0), Buffer.alloc(32 * 9)]))),
    reason: 'region-count',
  },
  {
    name: '11b. nregions 2 with 1 fd',
    send: (c, f) =>
      c.raw(
        msg(
          R.SET_MEM_TABLE,
          1,
          Buffer.concat([
            u32(2, 0),
            u64(0n),
            u64(0x1000n),
            u64(0n),
            u64(0n),
            u64(0x10000n),
            u64(0x1000n),
            u64(0x10000n),
            u64(0n),
          ]),
        ),
        [f.memfd(0x1000)],
      ),
    reason: 'missing-fds',
  },
  {
    name: '11c. mmap_offset + size overflow',
    send: (c, f) =>
      c.raw(
        msg(
          R.SET_MEM_TABLE,
          1,
          Buffer.concat([u32(1, 0), u64(0n), u64(0x1000n), u64(0n), u64(0xfffffffffffff000n)]),
        ),
        [f.memfd(0x1000)],
      ),
    reason: 'region-overflow',
  },
  {
    name: '11d. region larger than the file',
    send: (c, f) =>
      c
        .request(R.SET_MEM_TABLE, {
          regions: [
            {
              guestPhysAddr: 0n,
              memorySize: 0x100000n,
              userspaceAddr: 0n,
              mmapOffset: 0n,
              fd: f.memfd(0x1000),
            },
          ],
        })
        .then(() => {}),
    reason: 'bad-region',
  },
  {
    name: '11e. overlapping regions',
    send: (c, f) =>
      c.raw(
        msg(
          R.SET_MEM_TABLE,
          1,
          Buffer.concat([
            u32(2, 0),
            u64(0n),
            u64(0x2000n),
            u64(0n),
            u64(0n),
            u64(0x1000n),
            u64(0x2000n),
            u64(0x10000n),
            u64(0n),
          ]),
        ),
        [f.memfd(0x2000), f.memfd(0x2000)],
      ),
    reason: 'overlapping-regions',
  },
  {
    name: '11f. a region that is not a memfd',
    send: (c, f) =>
      c
        .request(R.SET_MEM_TABLE, {
          regions: [
            { guestPhysAddr: 0n, memorySize: 8n, userspaceAddr: 0n, mmapOffset: 0n, fd: f.event() },
          ],
        })
        .then(() => {}),
    reason: 'bad-region',
  },
  {
    name: '12. SET_LOG_BASE (LOG_SHMFD never offered)',
    send: (c, f) =>
      c.raw(msg(R.SET_LOG_BASE, 1, Buffer.concat([u64(0xffffffffffffffffn), u64(1n)])), [
        f.memfd(0x1000),
      ]),
    reason: 'unsupported-request',
  },
  {
    name: '13. SET_INFLIGHT_FD for 65535 queues of size 0',
    send: (c, f) =>
      c.raw(
        msg(R.SET_INFLIGHT_FD, 1, Buffer.concat([u64(0x1000n), u64(0n), u32(0xffff), u32(0)])),
        [f.memfd(0x1000)],
      ),
    reason: 'bad-inflight-area',
  },
  {
    name: '14. SET_FEATURES with un-offered bit 33',
    send: (c) => c.request(R.SET_FEATURES, VIRTIO_F_VERSION_1 | (1n << 33n)).then(() => {}),
    reason: 'unoffered-features',
  },
  {
    name: '14b. SET_PROTOCOL_FEATURES with un-offered LOG_SHMFD',
    send: (c) => c.request(R.SET_PROTOCOL_FEATURES, 1n << 1n).then(() => {}),
    reason: 'unoffered-features',
  },
  {
    name: '14c. features changed while running',
    send: async (c, f) => {
      const driver = createDriver();
      try {
        await dpdkHandshake(c, driver);
        await c.request(R.SET_FEATURES, VIRTIO_F_VERSION_1 | (1n << 30n));
      } finally {
        f.adopt(driver);
      }
    },
    reason: 'features-changed',
  },
  {
    name: '14d. SET_STATUS without PROTOCOL_F_STATUS',
    send: (c) => c.request(R.SET_STATUS, 0xbn).then(() => {}),
    reason: 'not-negotiated',
  },
];

type FdsWithCleanup = Fds & { adopt(d: { close(): void }): void; closeAll(): void };

function fdFactory(): FdsWithCleanup {
  const owned: Array<{ close(): void }> = [];
  return {
    event() {
      const e = new EventFd();
      owned.push(e);
      return e.fd;
    },
    memfd(size: number) {
      const r = SharedRegion.create(size, { name: 'hostile' });
      owned.push(r);
      return r.fd;
    },
    adopt(d) {
      owned.push(d);
    },
    closeAll() {
      for (const o of owned.splice(0)) o.close();
    },
  };
}

async function runStreamCase(h: Harness, bytes: Buffer): Promise<VringError> {
  const before = h.errors.length;
  const socket = createConnection(h.path);
  socket.on('error', () => undefined);
  socket.end(bytes);
  await new Promise((resolve) => socket.once('close', resolve));
  await until(() => h.errors.length > before);
  return h.errors[h.errors.length - 1]!.error;
}

async function runBadCase(h: Harness, c: BadCase): Promise<VringError> {
  if (c.stream) return runStreamCase(h, c.stream);
  const before = h.errors.length;
  const client = new RawVhostUserClient(h.path);
  const fds = fdFactory();
  try {
    await c.setup?.(client);
    await c.send!(client, fds).catch(() => undefined); // the backend may close before replying
    const error = await client.socket.closed;
    // The socket closed from the backend's side, not ours (unless the case closed it).
    assert.ok(
      error === undefined || error.code === 'ERR_VRING_PEER_DISCONNECTED',
      `${c.name}: closed by the peer`,
    );
    await until(() => h.errors.length > before);
    return h.errors[h.errors.length - 1]!.error;
  } finally {
    client.close();
    fds.closeAll();
  }
}

test('control-channel bad input closes only that connection, with a typed error, while a healthy port keeps echoing', async () => {
  const h = echoBackend();
  const healthy = await attach(h.path);
  await until(() => h.ports[0]?.live === true);
  let seq = 0;
  for (const c of cases) {
    const error = await runBadCase(h, c);
    assert.is(error.code, 'ERR_VRING_PROTOCOL', `${c.name}: ${error.message}`);
    assert.is(error.reason, c.reason, `${c.name}: ${error.message}`);
    // The healthy port is unaffected, frame for frame.
    seq += 20;
    await roundTrip(healthy.driver, 20, seq);
  }
  assert.ok(h.ports[0]!.live, 'the healthy port is still live');
  assert.is(h.backend.ports.size, 1, 'every hostile port was closed');
  healthy.client.close();
  healthy.driver.close();
  h.backend.close();
});

test('a GET_VRING_BASE with a non-zero reserved num, as DPDK virtio_user sends, is tolerated', async () => {
  const h = echoBackend();
  const client = new RawVhostUserClient(h.path);
  await client.request(R.SET_OWNER, undefined);
  const reply = await client.request(R.GET_VRING_BASE, { index: 1, num: 27968 });
  assert.equal(reply, { index: 1, num: 0 });
  assert.is(h.errors.length, 0);
  client.close();
  h.backend.close();
});

test('10,000 hostile connections leave fds and memfd mappings unchanged', async () => {
  const h = echoBackend();
  const healthy = await attach(h.path);
  await until(() => h.ports[0]?.live === true);
  const hostile = cases.filter(
    (c) => !c.setup && !c.name.startsWith('7.') && !c.name.startsWith('14c'),
  );
  // Warm up: first use of each path allocates caches that are not leaks.
  for (const c of hostile) await runBadCase(h, c);
  await collectGarbage();
  const fdsBefore = openFdCount();
  const mapsBefore = mappingCounts();
  const heapBefore = process.memoryUsage().heapUsed;
  const rounds = Number(process.env.VRING_HOSTILE_CONNECTIONS ?? 10000);
  let errors = 0;
  h.errors.length = 0;
  for (let i = 0; i < rounds; i++) {
    await runBadCase(h, hostile[i % hostile.length]!);
    errors += h.errors.length;
    // The test keeps no closed port or error alive, so the heap shows what the backend keeps.
    h.errors.length = 0;
    h.ports.length = 1;
  }
  await collectGarbage();
  const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
  console.log(`  ${rounds} hostile connections: heap ${(heapGrowth / 1024).toFixed(0)} KiB`);
  // A leak of even one small object per connection would show as megabytes here.
  assert.ok(heapGrowth < 4 * 1024 * 1024, `heap grew by ${heapGrowth} bytes`);
  assert.is(openFdCount(), fdsBefore, 'fd count unchanged');
  assert.equal(mappingCounts().memfd, mapsBefore.memfd, 'memfd mappings unchanged');
  const mapsAfter = mappingCounts();
  assert.ok(
    mapsAfter.named <= mapsBefore.named,
    `named mappings did not grow: ${mapsBefore.named} -> ${mapsAfter.named}`,
  );
  await roundTrip(healthy.driver, 50);
  assert.is(errors, rounds, 'every hostile connection was reported');
  healthy.client.close();
  healthy.driver.close();
  h.backend.close();
});

test.run();
