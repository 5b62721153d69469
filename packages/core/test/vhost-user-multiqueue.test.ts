// Multiqueue between our own two roles: a VirtioUser with queuePairs 2 on a VhostUserBackend
// with queuePairs 2 keeps each pair's frames on that pair, both ways; a front-end asking for
// more pairs than a back-end has is refused at open; and a vring index beyond the configured
// pairs, from a hostile front-end, is NACKed when it asked for an ack and ends only that
// connection when it did not.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, until } from '../../../test-support/index.js';
import { echoPort } from '../src/cli/echo.js';
import { VhostUserBackend } from '../src/vhost-user/backend.js';
import type { VhostUserPort } from '../src/vhost-user/backend-port.js';
import {
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VIRTIO_NET_F_MQ,
} from '../src/vhost-user/features.js';
import { VhostUserRequest as R } from '../src/vhost-user/message-layout.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { ackOf } from './fixtures/nack-then-handshake.js';
import { echoThroughQueuePair } from './fixtures/queue-pair-echo.js';
import { msg, u32 } from './fixtures/raw-frames.js';
import { RawVhostUserClient } from './fixtures/vhost-user-raw-client.js';
import { rejectsVring } from './fixtures/vring-assert.js';

const VERSION = 1;
const NEED_REPLY = 0x8;

/** A backend with `queuePairs` pairs whose every pair echoes what arrives on it. */
function multiqueueEcho(queuePairs: number) {
  const path = socketPath('mq17');
  const ports: VhostUserPort[] = [];
  const errors: string[] = [];
  const backend = new VhostUserBackend(path, {
    queuePairs,
    onPort: (port) => {
      ports.push(port);
      for (let pair = 0; pair < port.queuePairs; pair++) void echoPort(port.queuePair(pair));
    },
    onError: (error) => errors.push(`${error.code} ${error.reason ?? ''}`),
  });
  return { path, ports, errors, backend };
}

test('VirtioUser and VhostUserBackend with 2 queue pairs: each pair echoes its own frames', async () => {
  const h = multiqueueEcho(2);
  const user = await VirtioUser.open(h.path, { queuePairs: 2 });
  try {
    assert.is.not(user.features & VIRTIO_NET_F_MQ, 0n, 'MQ negotiated');
    await until(() => h.ports[0]?.queuePair(1).live === true);
    const results = await Promise.all(
      [0, 1].map((pair) =>
        echoThroughQueuePair(user.queuePair(pair), pair, {
          count: 2000,
          window: 64,
          timeoutMs: 20_000,
        }),
      ),
    );
    for (const [pair, result] of results.entries()) {
      assert.equal(result.problems, [], `pair ${pair}`);
      assert.is(result.intact, 2000);
    }
    const port = h.ports[0]!;
    // Each pair's counters count its own frames (warm-up probes included).
    assert.ok(port.queuePair(0).stats.framesReceived >= 2000);
    assert.ok(port.queuePair(1).stats.framesReceived >= 2000);
    user.close();
    assert.is(await port.queuePair(1).closed, undefined, 'every pair closes with the connection');
    assert.equal(h.errors, []);
  } finally {
    user.close();
    h.backend.close();
  }
});

test('a VirtioUser asking for more queue pairs than the back-end has is refused at open', async () => {
  for (const [pairs, reason] of [
    [2, 'missing-required-features'], // one pair: MQ is not offered at all
    [4, 'too-few-queue-pairs'], // GET_QUEUE_NUM says 3
  ] as const) {
    const h = multiqueueEcho(pairs === 2 ? 1 : 3);
    try {
      const error = await rejectsVring(
        VirtioUser.open(h.path, { queuePairs: pairs }),
        'ERR_VRING_FEATURE_MISMATCH',
      );
      assert.is(error.reason, reason);
    } finally {
      h.backend.close();
    }
  }
});

test('queue pair counts and queue sizes outside their range are refused before anything connects', async () => {
  for (const queuePairs of [0, 9, 1.5]) {
    await rejectsVring(
      VirtioUser.open(socketPath('mq17'), { queuePairs }),
      'ERR_VRING_INVALID_ARGUMENT',
    );
  }
  // Packed rings may have any size in virtio 1.1; our queue pairs still need powers of two,
  // which is said up front rather than after a handshake.
  for (const queueSize of [100, 1, 65536, 2.5]) {
    await rejectsVring(
      VirtioUser.open(socketPath('mq17'), { queueSize, packedRings: true }),
      'ERR_VRING_INVALID_ARGUMENT',
    );
  }
  for (const queuePairs of [0, 129]) {
    assert.throws(
      () => new VhostUserBackend(socketPath('mq17'), { queuePairs }),
      (e: Error & { code?: string }) => e.code === 'ERR_VRING_INVALID_ARGUMENT',
    );
  }
  const h = multiqueueEcho(2);
  const user = await VirtioUser.open(h.path, { queuePairs: 2 });
  try {
    await until(() => h.ports.length === 1);
    for (const index of [2, -1, 0.5]) {
      assert.throws(() => user.queuePair(index), /queue pair/);
      assert.throws(() => h.ports[0]!.queuePair(index), /queue pair/);
    }
  } finally {
    user.close();
    h.backend.close();
  }
});

test('GET_QUEUE_NUM reports the pairs; a vring beyond them is NACKed with NEED_REPLY, ends the connection without', async () => {
  const h = multiqueueEcho(2);
  const client = new RawVhostUserClient(h.path);
  try {
    await client.request(R.SET_OWNER, undefined);
    await client.request(
      R.SET_PROTOCOL_FEATURES,
      VHOST_USER_PROTOCOL_F_MQ | VHOST_USER_PROTOCOL_F_REPLY_ACK,
    );
    assert.is(await client.request(R.GET_QUEUE_NUM, undefined), 2n);
    // Vrings 0..3 belong to the two pairs; 4 is the first beyond them.
    await client.raw(msg(R.SET_VRING_NUM, VERSION | NEED_REPLY, u32(3, 256)));
    assert.is(await ackOf(client.socket, R.SET_VRING_NUM), 0n, 'vring 3 exists');
    await client.raw(msg(R.SET_VRING_NUM, VERSION | NEED_REPLY, u32(4, 256)));
    assert.is(await ackOf(client.socket, R.SET_VRING_NUM), 1n, 'vring 4 is NACKed');
    assert.equal(h.errors, [], 'a NACK ends nothing');
    await client.raw(msg(R.SET_VRING_BASE, VERSION, u32(4, 0)));
    await until(() => h.errors.length === 1);
    assert.equal(h.errors, ['ERR_VRING_PROTOCOL vring-index-out-of-range']);
    assert.ok(h.ports[0]!.closed instanceof Promise);
    assert.is((await h.ports[0]!.queuePair(1).closed)?.reason, 'vring-index-out-of-range');
  } finally {
    client.close();
    h.backend.close();
  }
});

test.run();
