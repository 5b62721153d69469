// VirtioUser's control side against a scripted back-end in this process (no DPDK needed):
// the exact request sequence of the DPDK 22.11 dialect with and without REPLY_ACK/STATUS,
// the memory table and ring addresses it hands over, refusals (missing VERSION_1, a NACK, a
// back-end that never answers), and the replay after a reconnect: SET_VRING_BASE carries
// the device's used index, and a back-end that changed features fails the handle for good.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, until } from '../../../test-support/index.js';
import { FdServer } from '../src/fd-server.js';
import { type FdSocket, VHOST_USER_FRAMING } from '../src/fd-socket.js';
import { SharedRegion } from '../src/shared-region.js';
import {
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD,
  VHOST_USER_PROTOCOL_F_STATUS,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_RING_F_EVENT_IDX,
} from '../src/vhost-user/features.js';
import {
  closeFds,
  decodeRequest,
  type VhostUserRequestMessage,
} from '../src/vhost-user/message-decoder.js';
import { encodeAck, encodeReply, encodeReplyWithFds } from '../src/vhost-user/message-encoder.js';
import {
  type InflightArea,
  type MemoryTable,
  VhostUserRequest as R,
  requestName,
  type VringAddress,
  type VringState,
} from '../src/vhost-user/message-layout.js';
import { VirtioUser, type VirtioUserEvent } from '../src/vhost-user/virtio-user.js';
import { isVringError, openFdCount, rejectsVring } from './fixtures/vring-assert.js';

// The feature words DPDK 22.11's net_vhost offers in reply to GET_FEATURES and
// GET_PROTOCOL_FEATURES.
const NET_VHOST_FEATURES = 0xd7c66e7cbn;
const NET_VHOST_PROTOCOL = 0x10cbfn;

const cleanup: Array<{ close(): void }> = [];

test.after.each(() => {
  for (const c of cleanup.splice(0).reverse()) c.close();
});

interface Script {
  features?: bigint;
  protocolFeatures?: bigint;
  /** Answer NEED_REPLY on this request with ack 1. */
  nack?: number;
  /** Never answer this request. */
  silent?: number;
  /** Called with the region fd of SET_MEM_TABLE before it is closed. */
  onMemory?: (table: MemoryTable) => void;
  /** Answer GET_INFLIGHT_FD with this area and a fresh memfd of `fileBytes`. */
  inflight?: { area: Omit<InflightArea, 'fd'>; fileBytes: number };
}

interface Recorded {
  request: number;
  flags: number;
  payload: VhostUserRequestMessage['payload'];
  fds: number;
}

/**
 * Plays a vhost-user back-end on `socket` until the device would be ready (DRIVER_OK, or
 * the last SET_VRING_ENABLE / KICK without STATUS) or the front-end hangs up; returns every
 * request it saw. Received fds are closed at once: only their count matters here.
 */
async function serve(socket: FdSocket, script: Script = {}): Promise<Recorded[]> {
  const features = script.features ?? NET_VHOST_FEATURES;
  const seen: Recorded[] = [];
  let status = 0n;
  let negotiated = 0n;
  let protocol = 0n;
  for (;;) {
    let frame: { data: Buffer; fds: number[] };
    try {
      frame = await socket.receive();
    } catch {
      return seen;
    }
    const m = decodeRequest(frame.data, frame.fds);
    seen.push({ request: m.request, flags: m.flags, payload: m.payload, fds: m.fds.length });
    if (m.request === R.SET_MEM_TABLE) script.onMemory?.(m.payload);
    closeFds(m.fds);
    if (m.request === script.silent) continue;
    const reply = (frame: Buffer) => socket.send(frame);
    switch (m.request) {
      case R.GET_FEATURES:
        await reply(encodeReply(R.GET_FEATURES, features));
        break;
      case R.GET_PROTOCOL_FEATURES:
        await reply(
          encodeReply(R.GET_PROTOCOL_FEATURES, script.protocolFeatures ?? NET_VHOST_PROTOCOL),
        );
        break;
      case R.GET_STATUS:
        await reply(encodeReply(R.GET_STATUS, status));
        break;
      case R.GET_INFLIGHT_FD: {
        const file = SharedRegion.create(script.inflight!.fileBytes);
        try {
          const { frame, fds } = encodeReplyWithFds(R.GET_INFLIGHT_FD, {
            ...script.inflight!.area,
            fd: file.fd,
          });
          await socket.send(frame, fds);
        } finally {
          file.close();
        }
        break;
      }
      default:
        if (m.needReply) await reply(encodeAck(m.request, m.request === script.nack ? 1n : 0n));
    }
    if (m.request === R.SET_FEATURES) negotiated = m.payload;
    if (m.request === R.SET_PROTOCOL_FEATURES) protocol = m.payload;
    if (m.request === R.SET_STATUS) status = m.payload;
    const statusOn = (protocol & VHOST_USER_PROTOCOL_F_STATUS) !== 0n;
    const enableOn = (negotiated & VHOST_USER_F_PROTOCOL_FEATURES) !== 0n;
    const last = (request: number) =>
      m.request === request && (m.payload as VringState).index === 1;
    if (statusOn ? (status & 4n) !== 0n : enableOn ? last(R.SET_VRING_ENABLE) : false) {
      return seen;
    }
    if (!statusOn && !enableOn && m.request === R.SET_VRING_KICK) {
      if ((m.payload as { index: number }).index === 1) return seen;
    }
  }
}

function listen(path: string): FdServer {
  const server = FdServer.listenFramed(path, VHOST_USER_FRAMING);
  cleanup.push(server);
  return server;
}

function names(seen: Recorded[]): string[] {
  return seen.map((r) => `${requestName(r.request)}${r.flags === 0x9 ? '+ack' : ''}`);
}

test('handshake with net_vhost features: the DPDK 22.11 dialect, acked after SET_PROTOCOL_FEATURES', async () => {
  const path = socketPath();
  const server = listen(path);
  const opening = VirtioUser.open(path);
  const socket = await server.accept();
  cleanup.push(socket);
  let memory: MemoryTable | undefined;
  const seen = await serve(socket, {
    onMemory: (t) => {
      memory = t;
    },
  });
  const port = await opening;
  cleanup.push(port);
  const ring = (r: string) => [
    `SET_VRING_NUM${r}`,
    `SET_VRING_BASE${r}`,
    `SET_VRING_ADDR${r}`,
    `SET_VRING_CALL${r}`,
    `SET_VRING_KICK${r}`,
  ];
  assert.equal(names(seen), [
    'SET_OWNER',
    'GET_FEATURES',
    'GET_PROTOCOL_FEATURES',
    'SET_PROTOCOL_FEATURES',
    'SET_FEATURES+ack',
    'SET_STATUS+ack',
    'GET_STATUS',
    'SET_MEM_TABLE+ack',
    ...ring('+ack'),
    ...ring('+ack'),
    'SET_VRING_ENABLE+ack',
    'SET_VRING_ENABLE+ack',
    'SET_STATUS+ack',
  ]);
  const payload = (name: string, index = 0) =>
    seen.filter((r) => requestName(r.request) === name)[index]!.payload;
  // DPDK's virtio_user asks for MQ|REPLY_ACK|STATUS and gets 0x10009 from net_vhost.
  assert.is(payload('SET_PROTOCOL_FEATURES'), 0x10009n);
  // net_vhost offers IN_ORDER, which the VirtioUser takes by default.
  assert.is(
    payload('SET_FEATURES'),
    VIRTIO_F_VERSION_1 |
      VHOST_USER_F_PROTOCOL_FEATURES |
      VIRTIO_NET_F_MRG_RXBUF |
      VIRTIO_RING_F_EVENT_IDX |
      VIRTIO_F_IN_ORDER,
  );
  assert.is(port.features, payload('SET_FEATURES'));
  assert.is(payload('SET_STATUS', 0), 0xbn);
  assert.is(payload('SET_STATUS', 1), 0xfn);
  // One region, GPA = UVA, holding both rings; KICK, CALL and the table carry one fd each.
  assert.ok(memory);
  assert.is(memory.regions.length, 1);
  const region = memory.regions[0]!;
  assert.is(region.guestPhysAddr, region.userspaceAddr);
  assert.is(region.mmapOffset, 0n);
  for (const index of [0, 1]) {
    const addr = payload('SET_VRING_ADDR', index) as VringAddress;
    assert.is(addr.index, index);
    for (const [at, bytes] of [
      [addr.descUser, 16 * 256],
      [addr.availUser, 6 + 2 * 256],
      [addr.usedUser, 6 + 8 * 256],
    ] as const) {
      assert.ok(at >= region.userspaceAddr, 'ring inside the region');
      assert.ok(at + BigInt(bytes) <= region.userspaceAddr + region.memorySize);
    }
    assert.equal(payload('SET_VRING_NUM', index), { index, num: 256 });
    assert.equal(payload('SET_VRING_BASE', index), { index, num: 0 });
  }
  for (const r of seen) {
    const withFd = [R.SET_MEM_TABLE, R.SET_VRING_KICK, R.SET_VRING_CALL] as number[];
    assert.is(r.fds, withFd.includes(r.request) ? 1 : 0, requestName(r.request));
  }
  assert.ok(port.connected);
  assert.is(port.connections, 1);
});

test('a back-end without PROTOCOL_FEATURES: no protocol features, no enable, no acks', async () => {
  const path = socketPath();
  const server = listen(path);
  const opening = VirtioUser.open(path, { mergeable: false, eventIdx: false });
  const socket = await server.accept();
  cleanup.push(socket);
  const seen = await serve(socket, { features: VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF });
  const port = await opening;
  cleanup.push(port);
  assert.equal(names(seen).slice(0, 4), [
    'SET_OWNER',
    'GET_FEATURES',
    'SET_FEATURES',
    'SET_MEM_TABLE',
  ]);
  assert.not.ok(names(seen).includes('SET_VRING_ENABLE'));
  // mergeable: false was asked for, so only VERSION_1 is set although MRG_RXBUF was offered.
  assert.is(port.features, VIRTIO_F_VERSION_1);
});

test('a back-end without VERSION_1 is refused with ERR_VRING_FEATURE_MISMATCH, nothing leaks', async () => {
  const path = socketPath();
  const server = listen(path);
  const before = openFdCount();
  const opening = VirtioUser.open(path);
  const socket = await server.accept();
  cleanup.push(socket);
  const serving = serve(socket, { features: VHOST_USER_F_PROTOCOL_FEATURES });
  const error = await rejectsVring(opening, 'ERR_VRING_FEATURE_MISMATCH');
  assert.match(error.message, /VERSION_1/);
  await serving;
  socket.close();
  assert.is(openFdCount(), before);
});

test('a NACKed SET_MEM_TABLE fails that connection; client mode retries and succeeds', async () => {
  const path = socketPath();
  const server = listen(path);
  const events: VirtioUserEvent[] = [];
  const opening = VirtioUser.open(path, { onEvent: (e) => events.push(e) });
  const first = await server.accept();
  cleanup.push(first);
  await serve(first, { nack: R.SET_MEM_TABLE });
  const second = await server.accept();
  cleanup.push(second);
  await serve(second);
  const port = await opening;
  cleanup.push(port);
  assert.equal(
    events.map((e) => e.type),
    ['handshake-failed', 'connected'],
  );
  const failed = events[0] as { error: unknown };
  const e = isVringError(failed.error, 'ERR_VRING_PROTOCOL');
  assert.is(e.reason, 'nack');
  assert.match(e.message, /SET_MEM_TABLE/);
});

test('in-flight record: a reply whose file is too small or laid out for other queues fails that handshake; a good one is handed to every back-end after', async () => {
  const path = socketPath();
  const server = listen(path);
  const events: VirtioUserEvent[] = [];
  const opening = VirtioUser.open(path, { inflight: true, onEvent: (e) => events.push(e) });
  const protocolFeatures = NET_VHOST_PROTOCOL | VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD;
  const good = { mmapSize: 8320n, mmapOffset: 0n, numQueues: 2, queueSize: 256 };
  const replies = [
    { area: good, fileBytes: 4096 }, // the record would run past the end of its file
    { area: { ...good, numQueues: 1 }, fileBytes: 3 * 4096 },
    { area: good, fileBytes: 3 * 4096 },
  ];
  const sessions: Recorded[][] = [];
  let connected: FdSocket | undefined;
  for (const inflight of replies) {
    const socket = await server.accept();
    cleanup.push(socket);
    sessions.push(await serve(socket, { protocolFeatures, inflight }));
    if (inflight === replies.at(-1)) connected = socket;
    else socket.close();
  }
  const port = await opening;
  cleanup.push(port);
  assert.equal(
    events.map((e) => e.type),
    ['handshake-failed', 'handshake-failed', 'connected'],
  );
  for (const failed of events.slice(0, 2) as Array<{ error: unknown }>) {
    assert.is(isVringError(failed.error, 'ERR_VRING_PROTOCOL').reason, 'bad-inflight-area');
  }
  // The kept record goes to the back-end before the memory table, acked, with its fd.
  const third = names(sessions[2]!);
  assert.ok(
    third.indexOf('GET_INFLIGHT_FD') < third.indexOf('SET_INFLIGHT_FD+ack') &&
      third.indexOf('SET_INFLIGHT_FD+ack') < third.indexOf('SET_MEM_TABLE+ack'),
    third.join(' '),
  );
  // A new back-end gets the same record back, and is not asked for another.
  connected!.close();
  const next = await server.accept();
  cleanup.push(next);
  const replay = await serve(next, { protocolFeatures });
  assert.not.ok(names(replay).includes('GET_INFLIGHT_FD'));
  const set = replay.find((r) => r.request === R.SET_INFLIGHT_FD)!;
  assert.equal(set.payload, { ...good, fd: (set.payload as InflightArea).fd });
  assert.is(set.fds, 1);
});

test('a back-end that never answers times out with ERR_VRING_TIMEOUT', async () => {
  const path = socketPath();
  const server = listen(path);
  const events: VirtioUserEvent[] = [];
  const controller = new AbortController();
  const opening = VirtioUser.open(path, {
    replyTimeoutMs: 50,
    signal: controller.signal,
    onEvent: (e) => {
      events.push(e);
      controller.abort(new Error('give up'));
    },
  });
  const socket = await server.accept();
  cleanup.push(socket);
  void serve(socket, { silent: R.GET_FEATURES });
  const error = await opening.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.is((error as Error).message, 'give up');
  const failed = events[0] as { type: string; error: unknown };
  assert.is(failed.type, 'handshake-failed');
  isVringError(failed.error, 'ERR_VRING_TIMEOUT');
});

test('reconnect: the replay sets each ring base to the device used index', async () => {
  const path = socketPath();
  let server = listen(path);
  const events: VirtioUserEvent[] = [];
  const opening = VirtioUser.open(path, { onEvent: (e) => events.push(e), retryMaxMs: 50 });
  const first = await server.accept();
  let table: MemoryTable | undefined;
  let region: SharedRegion | undefined;
  const seen1 = await serve(first, {
    onMemory: (t) => {
      table = t;
      region = SharedRegion.fromFd(t.regions[0]!.fd);
    },
  });
  const port = await opening;
  cleanup.push(port);
  assert.ok(table && region);
  cleanup.push(region);
  // As a device that had used 5 transmit buffers and 3 receive buffers: write used->idx.
  const usedOf = (index: number) =>
    Number(
      (seen1.filter((r) => r.request === R.SET_VRING_ADDR)[index]!.payload as VringAddress)
        .usedUser - table!.regions[0]!.userspaceAddr,
    );
  region.write(usedOf(0) + 2, Buffer.from([3, 0]));
  region.write(usedOf(1) + 2, Buffer.from([5, 0]));
  // The back-end restarts: a new listener on the same path, the old connection dropped.
  server.close();
  first.close();
  server = listen(path);
  const second = await server.accept();
  cleanup.push(second);
  const seen2 = await serve(second);
  const bases = seen2.filter((r) => r.request === R.SET_VRING_BASE).map((r) => r.payload);
  assert.equal(bases, [
    { index: 0, num: 3 },
    { index: 1, num: 5 },
  ]);
  // Same memory, same rings: the replay hands over the same table and addresses.
  const addresses = (seen: Recorded[]) =>
    seen.filter((r) => r.request === R.SET_VRING_ADDR).map((r) => r.payload);
  assert.equal(addresses(seen2), addresses(seen1));
  await until(() => port.connections === 2, 'the second connection');
  assert.equal(
    events.map((e) => e.type),
    ['connected', 'disconnected', 'connected'],
  );
  assert.ok(port.connected);
});

test('reconnect to a back-end that dropped a negotiated feature fails the handle for good', async () => {
  const path = socketPath();
  const server = listen(path);
  const opening = VirtioUser.open(path, { retryMaxMs: 50 });
  const first = await server.accept();
  await serve(first);
  const port = await opening;
  cleanup.push(port);
  first.close();
  const second = await server.accept();
  cleanup.push(second);
  void serve(second, { features: NET_VHOST_FEATURES & ~VIRTIO_RING_F_EVENT_IDX });
  const error = await port.closed;
  isVringError(error, 'ERR_VRING_FEATURE_MISMATCH');
  await rejectsVring(port.send(Buffer.alloc(60)), 'ERR_VRING_FEATURE_MISMATCH');
});

test('client mode retries until the back-end listens; close() releases every fd', async () => {
  const path = socketPath();
  const before = openFdCount();
  const opening = VirtioUser.open(path, { retryInitialMs: 5, retryMaxMs: 20 });
  // Nobody listens yet: the first attempts fail with ENOENT and are retried.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const server = listen(path);
  const socket = await server.accept();
  await serve(socket);
  const port = await opening;
  assert.ok(port.connected);
  port.close();
  socket.close();
  server.close();
  assert.is(await port.closed, undefined);
  assert.is(openFdCount(), before);
});

test('server mode: listens at once, serves a connecting back-end, close() removes the socket', async () => {
  const { existsSync } = await import('node:fs');
  const { FdSocket } = await import('../src/fd-socket.js');
  const path = socketPath();
  const opening = VirtioUser.open(path, { server: true });
  assert.ok(existsSync(path), 'the socket exists as soon as open() is called');
  const socket = FdSocket.connectFramed(path, VHOST_USER_FRAMING);
  cleanup.push(socket);
  await serve(socket);
  const port = await opening;
  assert.ok(port.server);
  port.close();
  assert.is(await port.closed, undefined);
  assert.not.ok(existsSync(path));
  await rejectsVring(port.receive(), 'ERR_VRING_CLOSED');
});

test.run();
