// In-flight recovery (vhost-user INFLIGHT_SHMFD) between our two roles, each a real process:
// a VirtioUser that keeps the in-flight record streams numbered frames to a back-end process
// that echoes them, holding some chains out of order; the back-end is killed with SIGKILL
// mid-stream and a new process takes its place. Every frame the front-end made available
// comes back exactly once: the chains the killed back-end held are taken again by the new
// one from the record, nothing it had returned is taken twice.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type Child,
  killChildren,
  socketPath,
  spawnScript,
  until,
} from '../../../test-support/index.js';
import { SharedRegion } from '../src/shared-region.js';
import {
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VIRTIO_F_VERSION_1,
} from '../src/vhost-user/features.js';
import { InflightRegion, inflightQueueBytes } from '../src/vhost-user/inflight-region.js';
import { type InflightArea, VhostUserRequest as R } from '../src/vhost-user/message-layout.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { echoBackend, frame } from './fixtures/echo-backend.js';
import {
  createDriver,
  dpdkHandshake,
  RawVhostUserClient,
} from './fixtures/vhost-user-raw-client.js';

const BACKEND = new URL('./fixtures/holding-echo-backend.ts', import.meta.url);

test.after.each(() => killChildren('SIGKILL'));

/** Frames of 9000 bytes are held in place by the back-end; 100-byte ones are echoed at once. */
const sizeOf = (seq: number): number => (seq % 3 === 0 ? 100 : 9000);

function startBackend(path: string, ...options: string[]): Child {
  return spawnScript(BACKEND, [path, ...options], {
    name: 'holding-echo-backend',
    killAfterMs: 60_000,
  });
}

/** The `holding N` counts the back-end printed, in order. */
function holdings(child: Child): number[] {
  return [...child.stdout().matchAll(/^holding (\d+)$/gm)].map((m) => Number(m[1]));
}

test('a back-end killed mid-stream and restarted loses none of the frames the front-end made available, and repeats none', async () => {
  const path = socketPath('inf17-inflight');
  const opening = VirtioUser.open(path, {
    server: true,
    inflight: true,
    // One buffer holds a whole 9000-byte frame, so the back-end can read it in place.
    bufferSize: 16384,
    queueSize: 256,
  });
  // The first back-end freezes on the chains it holds once 60 frames are echoed.
  let child = startBackend(path, '--freeze-after', '60');
  const user = await opening;
  try {
    assert.ok(
      (user.protocolFeatures & VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) !== 0n,
      'INFLIGHT_SHMFD negotiated',
    );
    const total = 600;
    const seen = new Map<number, number>();
    let received = 0;
    let arrived: () => void = () => {};
    const allArrived = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const receiving = (async () => {
      for await (const f of user) {
        const seq = f.readUInt32BE(14);
        assert.ok(f.equals(frame(seq, sizeOf(seq))), `frame ${seq} came back intact`);
        seen.set(seq, (seen.get(seq) ?? 0) + 1);
        received++;
        if (seen.size === total) arrived();
      }
    })();
    const frames = Array.from({ length: total }, (_, seq) => frame(seq, sizeOf(seq)));
    const sending = (async () => {
      // In slices, so the back-end is mid-stream (not done) when it is killed.
      for (let at = 0; at < total; at += 50) await user.send(frames.slice(at, at + 50));
    })();
    // Awaited below; if an assertion fails first, closing the front-end ends both loops with
    // ERR_VRING_CLOSED, which must not turn into an unhandled rejection that hides the failure.
    receiving.catch(() => {});
    sending.catch(() => {});

    // Kill the back-end while it sits on held chains: once it has echoed 60 frames and frozen
    // on the batch it reported holding last (it does nothing else after that).
    const first = child;
    await first.waitFor(/^frozen$/m);
    const held = holdings(first).at(-1)!;
    first.kill('SIGKILL');
    assert.is(await first.exited, 'SIGKILL');
    const beforeRestart = received;

    child = startBackend(path);
    await Promise.race([
      allArrived,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`only ${seen.size} of ${total} frames`)), 20_000).unref(),
      ),
    ]);
    await sending;
    const again = Number((await child.waitFor(/^resubmitted (\d+)$/m))[1]);

    assert.is(user.connections, 2, 'the front-end reconnected once');
    assert.ok(beforeRestart < total, 'the back-end was killed mid-stream');
    assert.is(again, held, 'the new back-end took again exactly the chains the killed one held');
    const missing = frames.map((_, seq) => seq).filter((seq) => !seen.has(seq));
    assert.equal(missing, [], 'no frame lost');
    const repeated = [...seen].filter(([, count]) => count > 1).map(([seq]) => seq);
    assert.equal(repeated, [], 'no frame echoed twice');
    assert.is(received, total);
    user.close();
    await receiving;
  } finally {
    user.close();
    child.kill('SIGTERM');
  }
});

// ---- hostile SET_INFLIGHT_FD ----

/** Two queues of 256: what our back-end's rings need. */
const RECORD_BYTES = 2 * inflightQueueBytes(256);

function area(fd: number, changes: Partial<InflightArea> = {}): InflightArea {
  return {
    mmapSize: BigInt(RECORD_BYTES),
    mmapOffset: 0n,
    numQueues: 2,
    queueSize: 256,
    fd,
    ...changes,
  };
}

/** SET_OWNER, features, and protocol features with REPLY_ACK and (unless told not to) INFLIGHT_SHMFD. */
async function negotiate(client: RawVhostUserClient, inflight = true): Promise<void> {
  await client.request(R.SET_OWNER, undefined);
  await client.request(R.GET_FEATURES, undefined);
  const offered = (await client.request(R.GET_PROTOCOL_FEATURES, undefined)) as bigint;
  const wanted =
    VHOST_USER_PROTOCOL_F_REPLY_ACK | (inflight ? VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD : 0n);
  await client.request(R.SET_PROTOCOL_FEATURES, offered & wanted);
  await client.request(R.SET_FEATURES, VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES);
}

interface NackCase {
  name: string;
  record: (region: SharedRegion) => InflightArea;
  reason: string;
  inflight?: boolean;
  /** Bytes of the record's file (default three pages: room for a good record). */
  fileBytes?: number;
}

const nackCases: NackCase[] = [
  {
    name: 'a file smaller than the record (fstat)',
    record: (small) => area(small.fd),
    reason: 'bad-region',
    fileBytes: 4096,
  },
  {
    name: 'an mmap_size smaller than two queues of 256 need',
    record: (r) => area(r.fd, { mmapSize: BigInt(RECORD_BYTES - 64) }),
    reason: 'bad-inflight-area',
  },
  {
    name: 'an mmap_offset that is not 64-byte aligned',
    record: (r) => area(r.fd, { mmapOffset: 8n }),
    reason: 'bad-inflight-area',
  },
  {
    name: 'an mmap_offset past the end of the file',
    record: (r) => area(r.fd, { mmapOffset: 1n << 20n }),
    reason: 'bad-region',
  },
  {
    name: 'more queues than the back-end has vrings',
    record: (r) => area(r.fd, { numQueues: 3 }),
    reason: 'bad-inflight-area',
  },
  {
    name: 'a queue size that is not a power of two',
    record: (r) => area(r.fd, { queueSize: 100 }),
    reason: 'bad-inflight-area',
  },
  {
    name: 'INFLIGHT_SHMFD not negotiated',
    record: (r) => area(r.fd),
    reason: 'not-negotiated',
    inflight: false,
  },
];

test('SET_INFLIGHT_FD with a record that cannot be right is NACKed with NEED_REPLY and the connection stays', async () => {
  const h = echoBackend(socketPath('inf17-backend'));
  try {
    for (const c of nackCases) {
      const client = new RawVhostUserClient(h.path);
      const region = SharedRegion.create(c.fileBytes ?? 3 * 4096);
      try {
        await negotiate(client, c.inflight ?? true);
        const ack = await sendInflight(client, c.record(region));
        assert.is(ack, 1n, `${c.name}: NACKed`);
        assert.is(
          await client.request(R.GET_FEATURES, undefined).then((f) => typeof f),
          'bigint',
          `${c.name}: the connection stays`,
        );
        assert.is(h.errors.length, 0, `${c.name}: not a port error`);
      } finally {
        client.close();
        region.close();
      }
    }
  } finally {
    h.backend.close();
  }
});

test('SET_INFLIGHT_FD refused without NEED_REPLY, or a record that does not fit the rings, ends the port with a typed error', async () => {
  const h = echoBackend(socketPath('inf17-backend'));
  const cases: Array<{
    name: string;
    reason: string;
    run: (c: RawVhostUserClient) => Promise<void>;
  }> = [
    {
      name: 'a file smaller than the record, no NEED_REPLY',
      reason: 'bad-region',
      run: async (client) => {
        const small = SharedRegion.create(4096);
        try {
          await negotiate(client);
          await sendInflight(client, area(small.fd), false);
        } finally {
          small.close();
        }
      },
    },
    {
      name: 'a record for queues of 128 given to rings of 256',
      reason: 'inflight-mismatch',
      run: (client) => handshakeWith(client, InflightRegion.create(2, 128)),
    },
    {
      name: 'a record whose version the front-end overwrote',
      reason: 'inflight-version',
      run: (client) => {
        const record = InflightRegion.create(2, 256);
        record.region.write(8, Buffer.from([2, 0]));
        return handshakeWith(client, record);
      },
    },
    {
      name: 'a record whose used index is a whole queue ahead of the ring',
      reason: 'inflight-used-index',
      run: (client) => {
        const record = InflightRegion.create(2, 256);
        const header = Buffer.alloc(16);
        header.writeUInt16LE(1, 8); // version
        header.writeUInt16LE(256, 10); // desc_num
        header.writeUInt16LE(1000, 14); // used_idx
        record.region.write(record.queueOffset(1), header);
        return handshakeWith(client, record);
      },
    },
  ];
  try {
    for (const c of cases) {
      const client = new RawVhostUserClient(h.path);
      const before = h.errors.length;
      try {
        await c.run(client).catch(() => undefined);
        await until(() => h.errors.length > before, c.name);
        const { error } = h.errors[h.errors.length - 1]!;
        assert.is(error.code, 'ERR_VRING_PROTOCOL', `${c.name}: ${error.message}`);
        assert.is(error.reason, c.reason, `${c.name}: ${error.message}`);
        const closed = await client.socket.closed;
        assert.ok(
          closed === undefined || closed.code === 'ERR_VRING_PEER_DISCONNECTED',
          `${c.name}: the back-end closed the connection`,
        );
      } finally {
        client.close();
      }
    }
  } finally {
    h.backend.close();
  }
});

/** The whole handshake with `record` handed over before the memory table. */
async function handshakeWith(client: RawVhostUserClient, record: InflightRegion): Promise<void> {
  const driver = createDriver();
  try {
    await dpdkHandshake(client, driver, {
      extraProtocol: VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD,
      inflight: record.area(),
    });
    await client.socket.closed;
  } finally {
    driver.close();
    record.close();
  }
}

/** Sends SET_INFLIGHT_FD as raw bytes (our encoder refuses to build hostile ones). */
async function sendInflight(
  client: RawVhostUserClient,
  a: InflightArea,
  needReply = true,
): Promise<bigint | undefined> {
  const frame = Buffer.alloc(12 + 24);
  frame.writeUInt32LE(R.SET_INFLIGHT_FD, 0);
  frame.writeUInt32LE(needReply ? 0x9 : 0x1, 4);
  frame.writeUInt32LE(24, 8);
  frame.writeBigUInt64LE(a.mmapSize, 12);
  frame.writeBigUInt64LE(a.mmapOffset, 20);
  frame.writeUInt16LE(a.numQueues, 28);
  frame.writeUInt16LE(a.queueSize, 30);
  await client.raw(frame, a.fd === undefined ? [] : [a.fd]);
  if (!needReply) return undefined;
  const reply = await client.socket.receive();
  return reply.data.readBigUInt64LE(12);
}

test.run();
