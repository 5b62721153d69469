// vhost-user control messages: round trips of every supported request and reply, the exact
// bytes that DPDK 22.11 (virtio_user and net_vhost) and a minimal front-end put on the wire,
// and the control-channel bad inputs that can be judged from one message alone — each refused
// with ERR_VRING_PROTOCOL and a stable reason, its fds closed
// (docs/architecture.md#what-a-peer-may-never-do-to-us).
import { closeSync, fstatSync, openSync, readdirSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EventFd } from '../src/event-fd.js';
import {
  checkAccepted,
  checkProtocolFeatureDependencies,
  describeFeatures,
  featureNames,
  negotiate,
  requireFeatures,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_STATUS,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from '../src/vhost-user/features.js';
import {
  type DecodeOptions,
  decodeHeader,
  decodeReply,
  decodeRequest,
  type VhostUserRejectReason,
  type VhostUserRequestMessage,
} from '../src/vhost-user/message-decoder.js';
import {
  encodeAck,
  encodeReply,
  encodeReplyWithFds,
  encodeRequest,
} from '../src/vhost-user/message-encoder.js';
import {
  VhostUserRequest as R,
  type RequestPayloads,
  type SupportedRequest,
} from '../src/vhost-user/message-layout.js';
import { isVringError, throwsVring } from './fixtures/vring-assert.js';

// ---- helpers ----

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function openFd(): number {
  return openSync('/dev/null', 'r');
}

function openFds(n: number): number[] {
  return Array.from({ length: n }, openFd);
}

function isClosed(fd: number): boolean {
  try {
    fstatSync(fd);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EBADF';
  }
}

function assertAllClosed(fds: readonly number[], context: string): void {
  for (const fd of fds) assert.ok(isClosed(fd), `${context}: fd ${fd} still open`);
}

function closeAll(fds: readonly number[]): void {
  for (const fd of fds) closeSync(fd);
}

/** A frame from parts: the header is written here so size fields can be made to lie. */
function frame(request: number, flags: number, payload: Buffer, size = payload.length): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt32LE(request, 0);
  header.writeUInt32LE(flags, 4);
  header.writeUInt32LE(size, 8);
  return Buffer.concat([header, payload]);
}

function u64(value: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(value);
  return b;
}

function state(index: number, num: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(index, 0);
  b.writeUInt32LE(num, 4);
  return b;
}

interface RawRegion {
  gpa: bigint;
  size: bigint;
  uva: bigint;
  offset: bigint;
}

function memTable(regions: RawRegion[], count = regions.length): Buffer {
  const b = Buffer.alloc(8 + 32 * regions.length);
  b.writeUInt32LE(count, 0);
  for (const [i, r] of regions.entries()) {
    b.writeBigUInt64LE(r.gpa, 8 + 32 * i);
    b.writeBigUInt64LE(r.size, 16 + 32 * i);
    b.writeBigUInt64LE(r.uva, 24 + 32 * i);
    b.writeBigUInt64LE(r.offset, 32 + 32 * i);
  }
  return b;
}

function vringAddr(
  index: number,
  flags: number,
  desc: bigint,
  used: bigint,
  avail: bigint,
): Buffer {
  const b = Buffer.alloc(40);
  b.writeUInt32LE(index, 0);
  b.writeUInt32LE(flags, 4);
  b.writeBigUInt64LE(desc, 8);
  b.writeBigUInt64LE(used, 16);
  b.writeBigUInt64LE(avail, 24);
  return b;
}

const REGION: RawRegion = { gpa: 0x100000000n, size: 0x800000n, uva: 0x7e0000000000n, offset: 0n };

/**
 * Feeds `bytes` with `fdCount` fresh fds to the request decoder, expects a rejection with
 * `reason`, and checks every fd was closed by the decoder.
 */
function rejects(
  bytes: Uint8Array,
  fdCount: number,
  reason: VhostUserRejectReason,
  options: DecodeOptions = {},
): void {
  const fds = openFds(fdCount);
  const error = throwsVring(() => decodeRequest(bytes, fds, options), 'ERR_VRING_PROTOCOL', reason);
  assert.is(error.reason, reason, error.message);
  assertAllClosed(fds, reason);
}

function rejectsReply(
  bytes: Uint8Array,
  fdCount: number,
  request: SupportedRequest,
  reason: VhostUserRejectReason,
): void {
  const fds = openFds(fdCount);
  const error = throwsVring(() => decodeReply(bytes, fds, request), 'ERR_VRING_PROTOCOL', reason);
  assert.is(error.reason, reason, error.message);
  assertAllClosed(fds, reason);
}

/** Decodes a valid request with fresh fds, hands the message to `check`, then closes the fds. */
function accepts(
  bytes: Uint8Array,
  fdCount: number,
  check: (m: VhostUserRequestMessage, fds: number[]) => void,
  options: DecodeOptions = {},
): void {
  const fds = openFds(fdCount);
  try {
    const message = decodeRequest(bytes, fds, options);
    assert.equal(message.fds, fds);
    check(message, fds);
  } finally {
    closeAll(fds);
  }
}

// ---- round trips ----

const SAMPLES: { [K in SupportedRequest]: (fds: number[]) => RequestPayloads[K] } = {
  [R.GET_FEATURES]: () => undefined,
  [R.SET_FEATURES]: () => 0xffff_ffff_ffff_ffffn,
  [R.SET_OWNER]: () => undefined,
  [R.RESET_OWNER]: () => undefined,
  [R.SET_MEM_TABLE]: (fds) => ({
    regions: [
      {
        guestPhysAddr: 0n,
        memorySize: 0x1000n,
        userspaceAddr: 0x7f00_0000_0000n,
        mmapOffset: 0n,
        fd: fds[0]!,
      },
      {
        guestPhysAddr: 0x1_0000_0000n,
        memorySize: 0x20_0000n,
        userspaceAddr: 0x7f00_1000_0000n,
        mmapOffset: 0x1000n,
        fd: fds[1]!,
      },
    ],
  }),
  [R.SET_VRING_NUM]: () => ({ index: 1, num: 32768 }),
  [R.SET_VRING_ADDR]: () => ({
    index: 255,
    flags: 1,
    descUser: 0xffff_ffff_ffff_fff0n,
    usedUser: 0x1000n,
    availUser: 0x2002n,
    log: 0x1234_5678_9abc_def0n,
  }),
  [R.SET_VRING_BASE]: () => ({ index: 0, num: 0xffff }),
  [R.GET_VRING_BASE]: () => ({ index: 3, num: 0 }),
  [R.SET_VRING_KICK]: (fds) => ({ index: 7, fd: fds[0] }),
  [R.SET_VRING_CALL]: () => ({ index: 2, fd: undefined }),
  [R.SET_VRING_ERR]: (fds) => ({ index: 0, fd: fds[0] }),
  [R.GET_PROTOCOL_FEATURES]: () => undefined,
  [R.SET_PROTOCOL_FEATURES]: () => 0x10009n,
  [R.GET_QUEUE_NUM]: () => undefined,
  [R.SET_VRING_ENABLE]: () => ({ index: 1, num: 1 }),
  [R.SET_STATUS]: () => 0xfn,
  [R.GET_STATUS]: () => undefined,
  [R.GET_INFLIGHT_FD]: () => ({
    mmapSize: 0n,
    mmapOffset: 0n,
    numQueues: 2,
    queueSize: 256,
    fd: undefined,
  }),
  [R.SET_INFLIGHT_FD]: (fds) => ({
    mmapSize: 8320n,
    mmapOffset: 0n,
    numQueues: 2,
    queueSize: 256,
    fd: fds[0],
  }),
  [R.GET_MAX_MEM_SLOTS]: () => undefined,
  [R.ADD_MEM_REG]: (fds) => ({
    guestPhysAddr: 0x1_0000_0000n,
    memorySize: 0x20_0000n,
    userspaceAddr: 0x7f00_1000_0000n,
    mmapOffset: 0x1000n,
    fd: fds[0]!,
  }),
  [R.REM_MEM_REG]: () => ({
    guestPhysAddr: 0x1_0000_0000n,
    memorySize: 0x20_0000n,
    userspaceAddr: 0x7f00_1000_0000n,
    mmapOffset: 0n,
    fd: undefined,
  }),
};

test('every supported request round-trips through encode and decode, with and without NEED_REPLY', () => {
  for (const key of Object.keys(SAMPLES)) {
    const request = Number(key) as SupportedRequest;
    for (const needReply of [false, true]) {
      const fds = openFds(2);
      try {
        const payload = (SAMPLES[request] as (fds: number[]) => RequestPayloads[SupportedRequest])(
          fds,
        );
        const encoded = encodeRequest(request, payload as never, { needReply });
        assert.is(encoded.frame.readUInt32LE(0), request);
        assert.is(encoded.frame.readUInt32LE(4), needReply ? 0x9 : 0x1);
        assert.is(encoded.frame.readUInt32LE(8), encoded.frame.length - 12);
        const decoded = decodeRequest(encoded.frame, encoded.fds);
        assert.is(decoded.request, request);
        assert.is(decoded.needReply, needReply);
        assert.equal(decoded.payload, payload, `payload of request ${request}`);
        assert.equal(decoded.fds, encoded.fds);
        // The encoder must never close or otherwise consume the caller's fds.
        for (const fd of fds) assert.not.ok(isClosed(fd));
      } finally {
        closeAll(fds);
      }
    }
  }
});

test('every reply body and the REPLY_ACK round-trip; replies always carry flags 0x5', () => {
  const cases: [SupportedRequest, unknown][] = [
    [R.GET_FEATURES, 0xd7c66e7cbn],
    [R.GET_PROTOCOL_FEATURES, 0x10cbfn],
    [R.GET_QUEUE_NUM, 128n],
    [R.GET_STATUS, 0xbn],
    [R.GET_VRING_BASE, { index: 1, num: 0x803c }],
    [R.SET_MEM_TABLE, 0n],
    [R.SET_VRING_NUM, 1n],
    [R.SET_STATUS, 0n],
  ];
  for (const [request, payload] of cases) {
    const bytes = encodeReply(request, payload as never);
    assert.is(bytes.readUInt32LE(4), 0x5);
    assert.equal(decodeReply(bytes, [], request), payload);
  }
  // GET_INFLIGHT_FD's reply is the 24-byte area with the record's fd.
  const [fd] = openFds(1);
  try {
    const area = { mmapSize: 8320n, mmapOffset: 0n, numQueues: 2, queueSize: 256, fd };
    const reply = encodeReplyWithFds(R.GET_INFLIGHT_FD, area);
    assert.is(reply.frame.length, 12 + 24);
    assert.equal(reply.fds, [fd]);
    assert.equal(decodeReply(reply.frame, [...reply.fds], R.GET_INFLIGHT_FD), area);
  } finally {
    closeAll([fd!]);
  }
  // A NACK for a request id we do not even decode, as DPDK sends for request 99 + NEED_REPLY.
  assert.is(encodeAck(99, 1n).toString('hex'), '630000000500000008000000' + '0100000000000000');
});

// ---- bytes DPDK 22.11's virtio_user and net_vhost exchange, as captured on the socket ----

test("DPDK virtio_user's fd-less requests decode to their payloads and re-encode byte for byte", () => {
  const fixtures: [string, SupportedRequest, boolean, unknown][] = [
    ['030000000100000000000000', R.SET_OWNER, false, undefined],
    ['010000000100000000000000', R.GET_FEATURES, false, undefined],
    ['0f0000000100000000000000', R.GET_PROTOCOL_FEATURES, false, undefined],
    ['100000000100000008000000 0900010000000000', R.SET_PROTOCOL_FEATURES, false, 0x10009n],
    ['020000000100000008000000 0080005009000000', R.SET_FEATURES, false, 0x950008000n],
    ['270000000900000008000000 0b00000000000000', R.SET_STATUS, true, 0xbn],
    ['280000000100000000000000', R.GET_STATUS, false, undefined],
    ['080000000100000008000000 0000000000010000', R.SET_VRING_NUM, false, { index: 0, num: 256 }],
    ['080000000100000008000000 0100000000010000', R.SET_VRING_NUM, false, { index: 1, num: 256 }],
    ['0a0000000100000008000000 0000000000000000', R.SET_VRING_BASE, false, { index: 0, num: 0 }],
    ['0a0000000100000008000000 0100000000000000', R.SET_VRING_BASE, false, { index: 1, num: 0 }],
    [
      '090000000100000028000000 000000000000000000e05d200100000000005e200100000000f05d20010000000000000000000000',
      R.SET_VRING_ADDR,
      false,
      {
        index: 0,
        flags: 0,
        descUser: 0x1205de000n,
        usedUser: 0x1205e0000n,
        availUser: 0x1205df000n,
        log: 0n,
      },
    ],
    [
      '090000000100000028000000 010000000000000000905d200100000000b05d200100000000a05d20010000000000000000000000',
      R.SET_VRING_ADDR,
      false,
      {
        index: 1,
        flags: 0,
        descUser: 0x1205d9000n,
        usedUser: 0x1205db000n,
        availUser: 0x1205da000n,
        log: 0n,
      },
    ],
    ['120000000100000008000000 0000000001000000', R.SET_VRING_ENABLE, false, { index: 0, num: 1 }],
    ['120000000100000008000000 0100000001000000', R.SET_VRING_ENABLE, false, { index: 1, num: 1 }],
    ['120000000100000008000000 0100000000000000', R.SET_VRING_ENABLE, false, { index: 1, num: 0 }],
    ['0b0000000100000008000000 0000000000000000', R.GET_VRING_BASE, false, { index: 0, num: 0 }],
  ];
  for (const [raw, request, needReply, payload] of fixtures) {
    const bytes = hex(raw);
    const message = decodeRequest(bytes);
    assert.is(message.request, request, raw);
    assert.is(message.needReply, needReply, raw);
    assert.equal(message.payload, payload, raw);
    const again = encodeRequest(request, payload as never, { needReply });
    assert.is(again.frame.toString('hex'), bytes.toString('hex'));
  }
});

test('GET_VRING_BASE with a non-zero reserved num, as DPDK virtio_user sends it, is tolerated', () => {
  const message = decodeRequest(hex('0b0000000100000008000000 01000000406d0000'));
  assert.is(message.request, R.GET_VRING_BASE);
  assert.equal(message.payload, { index: 1, num: 27968 });
});

test("DPDK virtio_user's SET_VRING_CALL / SET_VRING_KICK decode with the eventfd that came with them", () => {
  const calls: [string, number, number][] = [
    ['0d0000000100000008000000 0000000000000000', R.SET_VRING_CALL, 0],
    ['0d0000000100000008000000 0100000000000000', R.SET_VRING_CALL, 1],
    ['0c0000000100000008000000 0000000000000000', R.SET_VRING_KICK, 0],
    ['0c0000000100000008000000 0100000000000000', R.SET_VRING_KICK, 1],
  ];
  for (const [raw, request, index] of calls) {
    const eventFd = new EventFd();
    try {
      const message = decodeRequest(hex(raw), [eventFd.fd]);
      assert.is(message.request, request);
      assert.equal(message.payload, { index, fd: eventFd.fd });
      assert.equal(message.fds, [eventFd.fd]);
    } finally {
      eventFd.close();
    }
  }
});

test("DPDK virtio_user's SET_MEM_TABLE (one 512 MiB /memfd:nohuge region, GPA = UVA) round-trips", () => {
  const raw =
    '050000000900000028000000 010000000000000000a0630001000000000000200000000000a06300010000000000000000000000';
  accepts(hex(raw), 1, (message, fds) => {
    assert.is(message.request, R.SET_MEM_TABLE);
    assert.ok(message.needReply);
    assert.equal(message.payload, {
      regions: [
        {
          guestPhysAddr: 0x10063a000n,
          memorySize: 0x20000000n,
          userspaceAddr: 0x10063a000n,
          mmapOffset: 0n,
          fd: fds[0],
        },
      ],
    });
    const again = encodeRequest(R.SET_MEM_TABLE, message.payload as RequestPayloads[5], {
      needReply: true,
    });
    assert.is(again.frame.toString('hex'), raw.replace(/\s+/g, ''));
    assert.equal(again.fds, fds);
  });
});

test("net_vhost's replies decode (features, protocol features, status, acks, vring base)", () => {
  assert.is(
    decodeReply(hex('010000000500000008000000 cbe7667c0d000000'), [], R.GET_FEATURES),
    0xd7c66e7cbn,
  );
  assert.is(
    decodeReply(hex('0f0000000500000008000000 bf0c010000000000'), [], R.GET_PROTOCOL_FEATURES),
    0x10cbfn,
  );
  assert.is(decodeReply(hex('270000000500000008000000 0000000000000000'), [], R.SET_STATUS), 0n);
  assert.is(decodeReply(hex('280000000500000008000000 0b00000000000000'), [], R.GET_STATUS), 0xbn);
  assert.is(decodeReply(hex('050000000500000008000000 0000000000000000'), [], R.SET_MEM_TABLE), 0n);
  assert.equal(
    decodeReply(hex('0b0000000500000008000000 00000000406d0000'), [], R.GET_VRING_BASE),
    { index: 0, num: 27968 },
  );
  // Our back-end's replies must be byte-identical to net_vhost's.
  assert.is(
    encodeReply(R.GET_FEATURES, 0xd7c66e7cbn).toString('hex'),
    '010000000500000008000000cbe7667c0d000000',
  );
  assert.is(
    encodeReply(R.GET_VRING_BASE, { index: 1, num: 27968 }).toString('hex'),
    '0b000000050000000800000001000000406d0000',
  );
});

// ---- bytes of a minimal front-end: EVENT_IDX, NEED_REPLY on every request, GPA ≠ UVA ----

test('SET_FEATURES 0x160000000 with NEED_REPLY, and its ack, decode', () => {
  const message = decodeRequest(hex('020000000900000008000000 0000006001000000'));
  assert.is(message.request, R.SET_FEATURES);
  assert.ok(message.needReply);
  assert.is(
    message.payload,
    VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES | VIRTIO_RING_F_EVENT_IDX,
  );
  assert.is(decodeReply(hex('020000000500000008000000 0000000000000000'), [], R.SET_FEATURES), 0n);
});

test('SET_MEM_TABLE with GPA 0x100000000 ≠ UVA 0x7e0000000000, 8 MiB, decodes', () => {
  const raw =
    '050000000900000028000000 01000000000000000000000001000000000080000000000000000000007e00000000000000000000';
  accepts(hex(raw), 1, (message, fds) => {
    assert.equal(message.payload, {
      regions: [
        {
          guestPhysAddr: 0x100000000n,
          memorySize: 0x800000n,
          userspaceAddr: 0x7e0000000000n,
          mmapOffset: 0n,
          fd: fds[0],
        },
      ],
    });
  });
});

test('SET_VRING_ADDR with the used ring right after avail+event (not page aligned) decodes', () => {
  const message = decodeRequest(
    hex(
      '090000000900000028000000 010000000000000000200000007e000008320000007e000000300000007e00000000000000000000',
    ),
  );
  assert.is(message.request, R.SET_VRING_ADDR);
  assert.ok(message.needReply);
  assert.equal(message.payload, {
    index: 1,
    flags: 0,
    descUser: 0x7e0000002000n,
    usedUser: 0x7e0000003208n,
    availUser: 0x7e0000003000n,
    log: 0n,
  });
});

test('a GET_VRING_BASE reply after 70,000 packets (0x1170) and a SET_VRING_NUM ack decode', () => {
  assert.equal(
    decodeReply(hex('0b0000000500000008000000 0100000070110000'), [], R.GET_VRING_BASE),
    { index: 1, num: 0x1170 },
  );
  assert.is(decodeReply(hex('080000000500000008000000 0000000000000000'), [], R.SET_VRING_NUM), 0n);
});

// ---- control-channel bad input ----

test('a header shorter than 12 bytes is refused and its fds closed', () => {
  rejects(hex('0300000001000000'), 1, 'short-header');
  assert.is(
    throwsVring(() => decodeHeader(new Uint8Array(11)), 'ERR_VRING_PROTOCOL').reason,
    'short-header',
  );
});

test('a frame whose length disagrees with its header (EOF mid-payload) is refused', () => {
  rejects(frame(R.SET_FEATURES, 1, Buffer.alloc(4), 8), 0, 'size-mismatch');
  rejects(frame(R.SET_FEATURES, 1, Buffer.alloc(12), 8), 1, 'size-mismatch');
});

test('size 0x10000 (and 4 GiB) is refused from the header alone, before any payload', () => {
  rejects(frame(R.SET_FEATURES, 1, Buffer.alloc(0), 0x10000), 1, 'oversized-message');
  const header = frame(R.SET_MEM_TABLE, 1, Buffer.alloc(0), 0xffffffff);
  assert.is(
    throwsVring(() => decodeHeader(header), 'ERR_VRING_PROTOCOL').reason,
    'oversized-message',
  );
});

test('a size that is not exact for the request is refused', () => {
  rejects(frame(R.SET_VRING_NUM, 1, Buffer.alloc(4)), 0, 'bad-size');
  rejects(frame(R.SET_VRING_NUM, 1, Buffer.alloc(16)), 0, 'bad-size');
  rejects(frame(R.GET_FEATURES, 1, Buffer.alloc(8)), 0, 'bad-size');
  rejects(frame(R.SET_VRING_ADDR, 1, Buffer.alloc(32)), 0, 'bad-size');
  rejects(frame(R.SET_VRING_KICK, 1, Buffer.alloc(4)), 1, 'bad-size');
  // A memory table whose size disagrees with its own region count.
  rejects(frame(R.SET_MEM_TABLE, 1, memTable([REGION, REGION], 1)), 1, 'bad-size');
  rejects(frame(R.SET_MEM_TABLE, 1, Buffer.alloc(4)), 0, 'bad-size');
  // A reply of the wrong size.
  rejectsReply(frame(R.GET_FEATURES, 5, Buffer.alloc(4)), 0, R.GET_FEATURES, 'bad-size');
});

test('version ≠ 1 is refused', () => {
  for (const flags of [0x0, 0x2, 0x3])
    rejects(frame(R.SET_OWNER, flags, Buffer.alloc(0)), 1, 'bad-version');
});

test('reserved flag bits are refused', () => {
  rejects(frame(R.SET_OWNER, 0x11, Buffer.alloc(0)), 0, 'reserved-flags');
  rejects(frame(R.SET_FEATURES, 0x80000001, u64(0n)), 1, 'reserved-flags');
});

test('REPLY set on a request is refused', () => {
  rejects(frame(R.GET_FEATURES, 0x5, Buffer.alloc(0)), 1, 'reply-flag-on-request');
});

test('a reply whose flags are not exactly 0x5, or that answers another request, is refused', () => {
  rejectsReply(frame(R.GET_FEATURES, 0x1, u64(1n)), 0, R.GET_FEATURES, 'bad-reply-flags');
  rejectsReply(frame(R.GET_FEATURES, 0xd, u64(1n)), 1, R.GET_FEATURES, 'bad-reply-flags');
  rejectsReply(frame(R.GET_FEATURES, 0x6, u64(1n)), 0, R.GET_FEATURES, 'bad-version');
  rejectsReply(frame(R.GET_PROTOCOL_FEATURES, 0x5, u64(1n)), 1, R.GET_FEATURES, 'reply-mismatch');
  rejectsReply(frame(R.GET_FEATURES, 0x5, u64(1n)), 1, R.GET_FEATURES, 'unexpected-fds');
  rejectsReply(
    frame(R.GET_VRING_BASE, 0x5, state(300, 0)),
    0,
    R.GET_VRING_BASE,
    'vring-index-out-of-range',
  );
});

test('an unknown request id is refused with and without NEED_REPLY, its fds closed', () => {
  rejects(frame(99, 0x1, Buffer.alloc(0)), 0, 'unknown-request');
  rejects(frame(99, 0x9, u64(0n)), 2, 'unknown-request');
  rejects(frame(0, 0x1, Buffer.alloc(0)), 1, 'unknown-request');
  // The header alone still decodes, so a back-end can NACK it when NEED_REPLY was set.
  assert.equal(decodeHeader(frame(99, 0x9, u64(0n))), { request: 99, flags: 0x9, size: 8 });
});

test('known but unsupported requests (SET_LOG_BASE, SET_BACKEND_REQ_FD) are refused and their fds closed', () => {
  rejects(frame(R.SET_LOG_BASE, 0x1, Buffer.alloc(16)), 1, 'unsupported-request');
  rejects(frame(R.SET_BACKEND_REQ_FD, 0x1, Buffer.alloc(0)), 1, 'unsupported-request');
});

test('in-flight areas: fds on GET_INFLIGHT_FD, none on SET_INFLIGHT_FD, a size other than 24, 0 or too many queues, a queue size not a power of two, an end past 2^63 are refused', () => {
  const area = (numQueues: number, queueSize: number, size = 0n, offset = 0n): Buffer => {
    const b = Buffer.alloc(24);
    b.writeBigUInt64LE(size, 0);
    b.writeBigUInt64LE(offset, 8);
    b.writeUInt16LE(numQueues, 16);
    b.writeUInt16LE(queueSize, 18);
    return b;
  };
  rejects(frame(R.GET_INFLIGHT_FD, 0x1, area(2, 256)), 1, 'unexpected-fds');
  rejects(frame(R.SET_INFLIGHT_FD, 0x1, area(2, 256, 8320n)), 0, 'missing-fds');
  rejects(frame(R.SET_INFLIGHT_FD, 0x1, area(2, 256, 8320n)), 2, 'unexpected-fds');
  rejects(frame(R.SET_INFLIGHT_FD, 0x1, Buffer.alloc(16)), 1, 'bad-size');
  rejects(frame(R.GET_INFLIGHT_FD, 0x1, Buffer.alloc(32)), 0, 'bad-size');
  rejects(frame(R.SET_INFLIGHT_FD, 0x1, area(0, 256, 64n)), 1, 'bad-inflight-area');
  rejects(frame(R.GET_INFLIGHT_FD, 0x1, area(257, 256)), 0, 'bad-inflight-area');
  rejects(frame(R.SET_INFLIGHT_FD, 0x1, area(2, 100, 8320n)), 1, 'bad-inflight-area');
  rejects(frame(R.SET_INFLIGHT_FD, 0x1, area(2, 0, 8320n)), 1, 'bad-inflight-area');
  rejects(frame(R.SET_INFLIGHT_FD, 0x1, area(2, 256, 8320n, 1n << 63n)), 1, 'region-overflow');
  // The per-connection vring count bounds the queue count too.
  const fds = openFds(1);
  const error = throwsVring(
    () => decodeRequest(frame(R.SET_INFLIGHT_FD, 0x1, area(4, 256, 16640n)), fds, { maxVrings: 2 }),
    'ERR_VRING_PROTOCOL',
    'bad-inflight-area',
  );
  assert.is(error.reason, 'bad-inflight-area');
  assertAllClosed(fds, 'bad-inflight-area');
});

test('single regions: ADD_MEM_REG needs exactly one fd, REM_MEM_REG takes none or one; a size other than 40, an empty region, overflowing arithmetic are refused', () => {
  const region = (size: bigint, gpa = 0x1000n, offset = 0n): Buffer => {
    const b = Buffer.alloc(40);
    b.writeBigUInt64LE(gpa, 8);
    b.writeBigUInt64LE(size, 16);
    b.writeBigUInt64LE(0x7f00_0000_0000n, 24);
    b.writeBigUInt64LE(offset, 32);
    return b;
  };
  rejects(frame(R.ADD_MEM_REG, 0x1, region(0x1000n)), 0, 'missing-fds');
  rejects(frame(R.ADD_MEM_REG, 0x1, region(0x1000n)), 2, 'unexpected-fds');
  rejects(frame(R.REM_MEM_REG, 0x1, region(0x1000n)), 2, 'unexpected-fds');
  rejects(frame(R.ADD_MEM_REG, 0x1, Buffer.alloc(32)), 1, 'bad-size');
  rejects(frame(R.ADD_MEM_REG, 0x1, region(0n)), 1, 'empty-region');
  rejects(
    frame(R.ADD_MEM_REG, 0x1, region(0x1000n, 0xffff_ffff_ffff_f000n + 8n)),
    1,
    'region-overflow',
  );
  rejects(frame(R.ADD_MEM_REG, 0x1, region(0x1000n, 0x1000n, 1n << 63n)), 1, 'region-overflow');
  // An fd with REM_MEM_REG is accepted (older QEMU sends one) and left to the receiver to close.
  accepts(frame(R.REM_MEM_REG, 0x1, region(0x1000n)), 1, (m, fds) => {
    assert.is(m.request, R.REM_MEM_REG);
    assert.equal(m.fds, fds);
  });
  accepts(frame(R.REM_MEM_REG, 0x1, region(0x1000n)), 0, (m) => assert.equal(m.fds, []));
});

test('extra fds on an fd-less request are refused and closed', () => {
  rejects(frame(R.GET_FEATURES, 0x1, Buffer.alloc(0)), 1, 'unexpected-fds');
  rejects(frame(R.SET_VRING_NUM, 0x1, state(0, 256)), 3, 'unexpected-fds');
});

test('2 fds on SET_VRING_KICK, or the NOFD bit with an fd, are refused and closed', () => {
  rejects(frame(R.SET_VRING_KICK, 0x1, u64(0n)), 2, 'unexpected-fds');
  rejects(frame(R.SET_VRING_CALL, 0x9, u64(0x100n)), 1, 'unexpected-fds');
});

test('a missing fd (KICK without NOFD, a table with fewer fds than regions) is refused', () => {
  rejects(frame(R.SET_VRING_KICK, 0x1, u64(1n)), 0, 'missing-fds');
  rejects(
    frame(R.SET_MEM_TABLE, 0x1, memTable([REGION, { ...REGION, gpa: 0n, uva: 0x1000n }])),
    1,
    'missing-fds',
  );
  rejects(frame(R.SET_MEM_TABLE, 0x1, memTable([REGION])), 2, 'unexpected-fds');
});

test('more than 8 fds with one message are refused and all closed', () => {
  rejects(frame(R.SET_VRING_KICK, 0x1, u64(0n)), 9, 'too-many-fds');
  rejectsReply(frame(R.GET_FEATURES, 0x5, u64(0n)), 9, R.GET_FEATURES, 'too-many-fds');
});

test('eventfds that came with a rejected KICK are closed too', () => {
  const a = new EventFd();
  const b = new EventFd();
  // EventFd owns its fd; hand the decoder duplicates-by-number the way a socket would deliver
  // them, then check the numbers are gone. The wrappers are closed afterwards regardless.
  const fds = [a.fd, b.fd];
  const error = throwsVring(
    () => decodeRequest(frame(R.SET_VRING_KICK, 1, u64(0n)), fds),
    'ERR_VRING_PROTOCOL',
  );
  assert.is(error.reason, 'unexpected-fds');
  assertAllClosed(fds, 'eventfds');
  for (const e of [a, b]) {
    try {
      e.close();
    } catch {
      // its fd is already gone: the decoder closed it, which is what this test checks
    }
  }
});

test('a flood of rejected fd-carrying messages does not grow the fd table', () => {
  const before = readdirSync('/proc/self/fd').length;
  for (let i = 0; i < 2000; i++) {
    const fds = openFds(3);
    try {
      decodeRequest(frame(R.SET_VRING_NUM, 1, state(0, 256)), fds);
      assert.unreachable('accepted');
    } catch (error) {
      isVringError(error, 'ERR_VRING_PROTOCOL');
    }
  }
  assert.is(readdirSync('/proc/self/fd').length, before);
});

test('vring index ≥ max (300, 256, and beyond a per-connection limit) is refused', () => {
  rejects(frame(R.SET_VRING_NUM, 0x9, state(300, 256)), 0, 'vring-index-out-of-range');
  rejects(frame(R.SET_VRING_BASE, 0x1, state(256, 0)), 0, 'vring-index-out-of-range');
  rejects(frame(R.GET_VRING_BASE, 0x1, state(0xffffffff, 0)), 0, 'vring-index-out-of-range');
  rejects(frame(R.SET_VRING_ENABLE, 0x1, state(0x10000, 1)), 0, 'vring-index-out-of-range');
  rejects(
    frame(R.SET_VRING_ADDR, 0x1, vringAddr(256, 0, 0n, 0n, 0n)),
    0,
    'vring-index-out-of-range',
  );
  rejects(frame(R.SET_VRING_KICK, 0x1, u64(2n)), 1, 'vring-index-out-of-range', { maxVrings: 2 });
  rejects(frame(R.SET_VRING_NUM, 0x1, state(2, 256)), 0, 'vring-index-out-of-range', {
    maxVrings: 2,
  });
});

test('a vring index hidden in the reserved high bits of the file payload is refused', () => {
  rejects(frame(R.SET_VRING_KICK, 0x1, u64(0x200n)), 1, 'reserved-bits');
  rejects(frame(R.SET_VRING_CALL, 0x1, u64(0x1_0000_0000n)), 1, 'reserved-bits');
  rejects(frame(R.SET_VRING_ERR, 0x1, u64(1n << 63n)), 1, 'reserved-bits');
});

test('SET_VRING_NUM 0, non-power-of-two on split, > 32768 is refused; packed allows any ≤ 32768', () => {
  for (const num of [0, 300, 65536, 0x80000000]) {
    rejects(frame(R.SET_VRING_NUM, 0x9, state(0, num)), 0, 'bad-ring-size');
  }
  rejects(frame(R.SET_VRING_NUM, 0x1, state(0, 32769)), 0, 'bad-ring-size', { ringPacked: true });
  const message = decodeRequest(frame(R.SET_VRING_NUM, 0x1, state(0, 300)), [], {
    ringPacked: true,
  });
  assert.equal(message.payload, { index: 0, num: 300 });
});

test('misaligned ring addresses and reserved vring-address flags are refused', () => {
  rejects(
    frame(R.SET_VRING_ADDR, 1, vringAddr(0, 0, 0x1008n, 0x3000n, 0x2000n)),
    0,
    'misaligned-ring',
  );
  rejects(
    frame(R.SET_VRING_ADDR, 1, vringAddr(0, 0, 0x1000n, 0x3002n, 0x2000n)),
    0,
    'misaligned-ring',
  );
  rejects(
    frame(R.SET_VRING_ADDR, 1, vringAddr(0, 0, 0x1000n, 0x3000n, 0x2001n)),
    0,
    'misaligned-ring',
  );
  // A 2-aligned avail ring is fine for split but not for a packed driver area.
  decodeRequest(frame(R.SET_VRING_ADDR, 1, vringAddr(0, 0, 0x1000n, 0x3000n, 0x2002n)));
  rejects(
    frame(R.SET_VRING_ADDR, 1, vringAddr(0, 0, 0x1000n, 0x3000n, 0x2002n)),
    0,
    'misaligned-ring',
    {
      ringPacked: true,
    },
  );
  rejects(
    frame(R.SET_VRING_ADDR, 1, vringAddr(0, 2, 0x1000n, 0x3000n, 0x2000n)),
    0,
    'reserved-bits',
  );
});

test('SET_MEM_TABLE with 0 or more than 8 regions is refused and its fds closed', () => {
  rejects(frame(R.SET_MEM_TABLE, 0x9, memTable([])), 1, 'region-count');
  const nine = Array.from({ length: 9 }, (_, i) => ({
    ...REGION,
    gpa: BigInt(i) << 32n,
    uva: BigInt(i) << 40n,
  }));
  rejects(frame(R.SET_MEM_TABLE, 0x9, memTable(nine)), 1, 'region-count');
  rejects(frame(R.SET_MEM_TABLE, 0x9, memTable(nine)), 8, 'region-count');
  // A count of 9 regions with a body of one: refused for the count, not the size.
  rejects(frame(R.SET_MEM_TABLE, 0x9, memTable([REGION], 9)), 1, 'region-count');
});

test('region arithmetic that overflows u64 (gpa, uva) or off_t (mmap_offset) is refused', () => {
  const max = (1n << 64n) - 1n;
  rejects(
    frame(R.SET_MEM_TABLE, 9, memTable([{ ...REGION, gpa: max - 0xfffn }])),
    1,
    'region-overflow',
  );
  rejects(frame(R.SET_MEM_TABLE, 9, memTable([{ ...REGION, uva: max }])), 1, 'region-overflow');
  rejects(
    frame(R.SET_MEM_TABLE, 9, memTable([{ ...REGION, offset: max - 0x1000n }])),
    1,
    'region-overflow',
  );
  rejects(
    frame(R.SET_MEM_TABLE, 9, memTable([{ ...REGION, offset: 1n << 63n }])),
    1,
    'region-overflow',
  );
  rejects(frame(R.SET_MEM_TABLE, 9, memTable([{ ...REGION, size: max }])), 1, 'region-overflow');
  // The very top of the address space is reachable without wrapping.
  accepts(
    frame(R.SET_MEM_TABLE, 9, memTable([{ ...REGION, gpa: max - 0x7fffffn, uva: 0n }])),
    1,
    (m) => {
      assert.is(m.request, R.SET_MEM_TABLE);
    },
  );
});

test('empty and overlapping regions are refused', () => {
  rejects(frame(R.SET_MEM_TABLE, 9, memTable([{ ...REGION, size: 0n }])), 1, 'empty-region');
  const second = { ...REGION, gpa: REGION.gpa + 0x7ff000n, uva: 0x1000n };
  rejects(frame(R.SET_MEM_TABLE, 9, memTable([REGION, second])), 2, 'overlapping-regions');
  const sameUva = { ...REGION, gpa: 0n, uva: REGION.uva + 0x1000n };
  rejects(frame(R.SET_MEM_TABLE, 9, memTable([REGION, sameUva])), 2, 'overlapping-regions');
  const adjacent = { ...REGION, gpa: REGION.gpa + REGION.size, uva: REGION.uva + REGION.size };
  accepts(frame(R.SET_MEM_TABLE, 9, memTable([REGION, adjacent])), 2, (m) => {
    assert.is(m.request === R.SET_MEM_TABLE && m.payload.regions.length, 2);
  });
});

test('SET_VRING_ENABLE other than 0/1, a split base wider than 16 bits, a status wider than a byte are refused', () => {
  rejects(frame(R.SET_VRING_ENABLE, 1, state(0, 2)), 0, 'bad-enable-value');
  rejects(frame(R.SET_VRING_BASE, 1, state(0, 0x10000)), 0, 'reserved-bits');
  decodeRequest(frame(R.SET_VRING_BASE, 1, state(0, 0x8000_803c)), [], { ringPacked: true });
  rejects(frame(R.SET_STATUS, 9, u64(0x100n)), 0, 'reserved-bits');
});

test('SET_FEATURES with an un-offered bit (33) is a protocol error; a missing required bit a feature mismatch', () => {
  const offered = 0xd7c66e7cbn;
  checkAccepted(offered, 0x950008000n, 'virtio');
  const error = throwsVring(
    () => checkAccepted(offered, 0x950008000n | VIRTIO_F_ACCESS_PLATFORM, 'virtio'),
    'ERR_VRING_PROTOCOL',
  );
  assert.is(error.reason, 'unoffered-features');
  assert.match(error.message, 'ACCESS_PLATFORM');
  const mismatch = throwsVring(
    () => requireFeatures(0x40000000n, VIRTIO_F_VERSION_1, 'virtio'),
    'ERR_VRING_FEATURE_MISMATCH',
  );
  assert.is(mismatch.reason, 'missing-required-features');
  assert.match(mismatch.message, 'VERSION_1');
  requireFeatures(0x150000000n, VIRTIO_F_VERSION_1, 'virtio');
});

test('INBAND_NOTIFICATIONS without BACKEND_REQ + REPLY_ACK is refused', () => {
  const error = throwsVring(
    () =>
      checkProtocolFeatureDependencies(
        VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS | VHOST_USER_PROTOCOL_F_REPLY_ACK,
      ),
    'ERR_VRING_PROTOCOL',
  );
  assert.is(error.reason, 'protocol-feature-dependency');
  checkProtocolFeatureDependencies(0x10009n);
});

// ---- encoding refuses what decoding would refuse, without touching the caller's fds ----

test('encodeRequest refuses messages a receiver would reject, and values that do not fit the wire', () => {
  const fd = openFd();
  try {
    const cases: [() => unknown, string | undefined][] = [
      [() => encodeRequest(R.SET_VRING_NUM, { index: 0, num: 300 }), 'bad-ring-size'],
      [() => encodeRequest(R.SET_VRING_KICK, { index: 256, fd }), undefined],
      [() => encodeRequest(R.SET_VRING_NUM, { index: -1, num: 256 }), undefined],
      [() => encodeRequest(R.SET_FEATURES, 1n << 64n), undefined],
      [() => encodeRequest(R.SET_FEATURES, -1n), undefined],
      [() => encodeRequest(R.SET_MEM_TABLE, { regions: [] }), 'region-count'],
      [
        () =>
          encodeRequest(R.SET_MEM_TABLE, {
            regions: [{ guestPhysAddr: 0n, memorySize: 0n, userspaceAddr: 0n, mmapOffset: 0n, fd }],
          }),
        'empty-region',
      ],
    ];
    for (const [fn, reason] of cases) {
      const error = throwsVring(fn, 'ERR_VRING_INVALID_ARGUMENT');
      if (reason !== undefined) assert.is(error.reason, reason);
    }
    assert.not.ok(isClosed(fd), 'encodeRequest must not close the caller’s fd');
  } finally {
    closeSync(fd);
  }
});

// ---- feature words ----

test("negotiation by intersection reproduces the feature words DPDK 22.11's virtio_user sends net_vhost", () => {
  // virtio_user asks for MQ|REPLY_ACK|STATUS of net_vhost's 0x10cbf → 0x10009.
  const wantedProtocol =
    VHOST_USER_PROTOCOL_F_MQ | VHOST_USER_PROTOCOL_F_REPLY_ACK | VHOST_USER_PROTOCOL_F_STATUS;
  assert.is(negotiate(0x10cbfn, wantedProtocol), 0x10009n);
  const wanted =
    VIRTIO_NET_F_MRG_RXBUF |
    VIRTIO_RING_F_INDIRECT_DESC |
    VHOST_USER_F_PROTOCOL_FEATURES |
    VIRTIO_F_VERSION_1 |
    VIRTIO_F_IN_ORDER |
    VIRTIO_F_ACCESS_PLATFORM;
  // ACCESS_PLATFORM is not offered, so it drops out: 0x950008000 is what virtio_user sends.
  assert.is(negotiate(0xd7c66e7cbn, wanted), 0x950008000n);
});

test('feature words describe themselves by name, unknown bits included', () => {
  assert.equal(featureNames(0x950008000n), [
    'MRG_RXBUF',
    'INDIRECT_DESC',
    'PROTOCOL_FEATURES',
    'VERSION_1',
    'IN_ORDER',
  ]);
  assert.equal(featureNames(0x10009n, 'protocol'), ['MQ', 'REPLY_ACK', 'STATUS']);
  assert.is(describeFeatures((1n << 63n) | 1n), '0x8000000000000001 [CSUM|bit63]');
});

test.run();
