// REPLY_ACK on the back-end (docs/architecture.md#what-a-refused-request-does): a refused
// request that asked for an ack (NEED_REPLY) gets a NACK and the connection stays, so the
// front-end can go on and traffic flows; a refused request whose refusal leaves the port
// unusable, or whose frame cannot be trusted, still ends the connection with a typed error.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { until } from '../../../test-support/index.js';
import { EventFd } from '../src/event-fd.js';
import { SharedRegion } from '../src/shared-region.js';
import { VHOST_USER_PROTOCOL_F_REPLY_ACK, VIRTIO_F_VERSION_1 } from '../src/vhost-user/features.js';
import { VhostUserRequest as R } from '../src/vhost-user/message-layout.js';
import { echoBackend, roundTrip } from './fixtures/echo-backend.js';
import { ackOf, nackThenHandshake } from './fixtures/nack-then-handshake.js';
import { msg, u32, u64 } from './fixtures/raw-frames.js';
import {
  createDriver,
  dpdkHandshake,
  RawVhostUserClient,
} from './fixtures/vhost-user-raw-client.js';
import { openFdCount } from './fixtures/vring-assert.js';

const VERSION = 1;
const NEED_REPLY = 0x8;

interface NackCase {
  name: string;
  request: number;
  send: (c: RawVhostUserClient, fd: () => number) => Promise<void>;
}

// Each is refused before it changes anything, so the session can go on.
const nackCases: NackCase[] = [
  {
    name: 'an unknown request',
    request: 99,
    send: (c) => c.raw(msg(99, VERSION | NEED_REPLY, u64(7n))),
  },
  {
    name: 'an unsupported request with an fd (SET_LOG_FD)',
    request: R.SET_LOG_FD,
    send: (c, fd) => c.raw(msg(R.SET_LOG_FD, VERSION | NEED_REPLY), [fd()]),
  },
  {
    name: 'SET_VRING_NUM for vring 2 of one queue pair',
    request: R.SET_VRING_NUM,
    send: (c) => c.raw(msg(R.SET_VRING_NUM, VERSION | NEED_REPLY, u32(2, 256))),
  },
  {
    name: 'SET_VRING_NUM 300 (not a power of two)',
    request: R.SET_VRING_NUM,
    send: (c) => c.raw(msg(R.SET_VRING_NUM, VERSION | NEED_REPLY, u32(0, 300))),
  },
  {
    name: 'SET_VRING_KICK without its fd',
    request: R.SET_VRING_KICK,
    send: (c) => c.raw(msg(R.SET_VRING_KICK, VERSION | NEED_REPLY, u64(0n))),
  },
  {
    name: 'SET_FEATURES with un-offered bit 33',
    request: R.SET_FEATURES,
    send: (c) =>
      c.raw(msg(R.SET_FEATURES, VERSION | NEED_REPLY, u64(VIRTIO_F_VERSION_1 | (1n << 33n)))),
  },
  {
    name: 'SET_PROTOCOL_FEATURES with un-offered LOG_SHMFD',
    request: R.SET_PROTOCOL_FEATURES,
    send: (c) => c.raw(msg(R.SET_PROTOCOL_FEATURES, VERSION | NEED_REPLY, u64(1n << 1n))),
  },
  {
    name: 'SET_VRING_ADDR before SET_MEM_TABLE',
    request: R.SET_VRING_ADDR,
    send: (c) =>
      c.raw(
        msg(
          R.SET_VRING_ADDR,
          VERSION | NEED_REPLY,
          Buffer.concat([u32(0, 0), u64(0x1000n), u64(0x3000n), u64(0x2000n), u64(0n)]),
        ),
      ),
  },
];

test('each refused request that asked for an ack gets a NACK; the same connection then completes the handshake and echoes', async () => {
  const h = echoBackend();
  const client = new RawVhostUserClient(h.path);
  const driver = createDriver();
  const events: EventFd[] = [];
  const fd = () => {
    const e = new EventFd();
    events.push(e);
    return e.fd;
  };
  try {
    await client.request(R.SET_OWNER, undefined);
    // Twice: the first round may open fds once for good (the same as other tests warm up).
    let fdsBefore = 0;
    for (const round of [0, 1]) {
      if (round === 1) fdsBefore = openFdCount() - events.length;
      for (const c of nackCases) {
        await c.send(client, fd);
        assert.is(await ackOf(client.socket, c.request), 1n, `${c.name}: NACKed`);
      }
    }
    // The backend runs in this process: every fd it received with a NACKed request is
    // closed, so only the sender's own eventfds remain.
    assert.is(openFdCount(), fdsBefore + events.length, 'no received fd kept');
    assert.is(h.errors.length, 0, 'no refusal ended the port');
    await dpdkHandshake(client, driver, { replay: true });
    await roundTrip(driver, 50);
    assert.is(h.ports.length, 1, 'one port, the same connection throughout');
    assert.ok(h.ports[0]!.live);
  } finally {
    client.close();
    driver.close();
    for (const e of events) e.close();
    h.backend.close();
  }
});

test('a NACKed request while the rings run leaves them running: frames echo before and after', async () => {
  const h = echoBackend();
  const client = new RawVhostUserClient(h.path);
  const driver = createDriver();
  try {
    await dpdkHandshake(client, driver);
    await until(() => h.ports[0]?.live === true);
    await roundTrip(driver, 30);
    // Features changed while running, and a ring moved outside every region.
    await client.raw(msg(R.SET_FEATURES, VERSION | NEED_REPLY, u64(VIRTIO_F_VERSION_1)));
    assert.is(await ackOf(client.socket, R.SET_FEATURES), 1n);
    await client.raw(
      msg(
        R.SET_VRING_ADDR,
        VERSION | NEED_REPLY,
        Buffer.concat([u32(0, 0), u64(0x10n << 40n), u64(0x3000n), u64(0x2000n), u64(0n)]),
      ),
    );
    assert.is(await ackOf(client.socket, R.SET_VRING_ADDR), 1n);
    await roundTrip(driver, 30, 30);
    assert.is(h.errors.length, 0);
    assert.ok(h.ports[0]!.live);
  } finally {
    client.close();
    driver.close();
    h.backend.close();
  }
});

interface EndCase {
  name: string;
  send: (c: RawVhostUserClient, region: SharedRegion) => Promise<void>;
  reason: string;
}

// Refusals that end the connection although NEED_REPLY was set.
const endCases: EndCase[] = [
  {
    name: 'SET_MEM_TABLE whose region is larger than its file (the port would have no memory)',
    send: (c, region) =>
      c
        .request(
          R.SET_MEM_TABLE,
          {
            regions: [
              {
                guestPhysAddr: 0n,
                memorySize: 0x100000n,
                userspaceAddr: 0n,
                mmapOffset: 0n,
                fd: region.fd,
              },
            ],
          },
          true,
        )
        .then(() => {}),
    reason: 'bad-region',
  },
  {
    name: 'GET_STATUS without PROTOCOL_F_STATUS (its answer is a body, not an ack)',
    send: (c) => c.raw(msg(R.GET_STATUS, VERSION | NEED_REPLY)),
    reason: 'not-negotiated',
  },
  {
    name: 'version 2 (the header, NEED_REPLY bit included, cannot be trusted)',
    send: (c) => c.raw(msg(R.SET_OWNER, 2 | NEED_REPLY)),
    reason: 'bad-version',
  },
];

test('refusals that leave the port unusable end the connection with a typed error, NEED_REPLY or not', async () => {
  const h = echoBackend();
  for (const c of endCases) {
    const client = new RawVhostUserClient(h.path);
    const region = SharedRegion.create(0x1000, { name: 'reply-ack' });
    const before = h.errors.length;
    try {
      await client.request(R.SET_OWNER, undefined);
      await c.send(client, region).catch(() => undefined);
      const closed = await client.socket.closed;
      assert.ok(
        closed === undefined || closed.code === 'ERR_VRING_PEER_DISCONNECTED',
        `${c.name}: the back-end closed the connection`,
      );
      await until(() => h.errors.length > before);
      const { error } = h.errors[h.errors.length - 1]!;
      assert.is(error.code, 'ERR_VRING_PROTOCOL', `${c.name}: ${error.message}`);
      assert.is(error.reason, c.reason, `${c.name}: ${error.message}`);
    } finally {
      client.close();
      region.close();
    }
  }
  h.backend.close();
});

test('our front-end connection: a NACK is ERR_VRING_PROTOCOL (nack), and the handshake then completes on the same connection', async () => {
  const h = echoBackend();
  const driver = createDriver();
  const { negotiated, socket } = await nackThenHandshake(h.path, driver);
  try {
    assert.is.not(negotiated.protocolFeatures & VHOST_USER_PROTOCOL_F_REPLY_ACK, 0n);
    await roundTrip(driver, 50);
    assert.is(h.errors.length, 0);
    assert.is(h.ports.length, 1, 'one port, the same connection throughout');
    assert.is.not(h.ports[0]!.protocolFeatures & VHOST_USER_PROTOCOL_F_REPLY_ACK, 0n);
  } finally {
    socket.close();
    driver.close();
    h.backend.close();
  }
});

test.run();
