// VhostUserBackend against front-ends that write hostile rings: descriptor loops, indices out
// of range, zero-length and out-of-bounds buffers, malformed indirect tables, a readable
// descriptor after a writable one, chains shorter than the net header and avail->idx jumps
// (docs/architecture.md#what-a-peer-may-never-do-to-us), and on packed rings buffer ids out
// of range, chains longer than the ring or running into slots not made available, and
// indirect descriptors inside a chain. Each hostile front-end completes a valid DPDK-style handshake,
// then writes a broken transmit ring into its own shared memory and kicks it through the real
// kick eventfd. The backend must report ERR_VRING_BAD_RING with the native reason, close only
// that connection, keep a healthy front-end echoing exact frames, and release every fd and
// mapping of the hostile connections.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { collectGarbage, until } from '../../../test-support/index.js';
import { DriverQueuePair } from '../src/driver-queue-pair.js';
import type { VringError } from '../src/errors.js';
import { EventFd } from '../src/event-fd.js';
import { VIRTIO_F_RING_PACKED, VIRTIO_RING_F_INDIRECT_DESC } from '../src/vhost-user/features.js';
import {
  VhostUserRequest as R,
  type ReplyPayload,
  type RequestPayloads,
  type SupportedRequest,
} from '../src/vhost-user/message-layout.js';
import { type EchoBackend, echoBackend, frame, roundTrip } from './fixtures/echo-backend.js';
import {
  createDriver,
  dpdkHandshake,
  RawVhostUserClient,
} from './fixtures/vhost-user-raw-client.js';
import { mappingCounts, openFdCount } from './fixtures/vring-assert.js';

const QUEUE_SIZE = 256;
const F_NEXT = 1;
const F_WRITE = 2;
const F_INDIRECT = 4;

type Harness = EchoBackend;

/** The DPDK-style front-end, asking for INDIRECT_DESC too, so indirect tables are legal. */
class IndirectClient extends RawVhostUserClient {
  override request<Q extends SupportedRequest>(
    request: Q,
    payload: RequestPayloads[Q],
    needReply = false,
  ): Promise<ReplyPayload<Q> | undefined> {
    const wanted =
      request === R.SET_FEATURES
        ? (((payload as bigint) | VIRTIO_RING_F_INDIRECT_DESC) as RequestPayloads[Q])
        : payload;
    return super.request(request, wanted, needReply);
  }
}

/** Hands `driver` to the backend through `client` and waits for its live port. */
async function attachWith(
  h: Harness,
  driver: DriverQueuePair,
  client: RawVhostUserClient,
  feature: bigint,
) {
  const before = h.ports.length;
  await dpdkHandshake(client, driver);
  await until(() => h.ports.length > before && h.ports[h.ports.length - 1]!.live, 'a live port');
  const port = h.ports[h.ports.length - 1]!;
  assert.is.not(port.features! & feature, 0n, `feature 0x${feature.toString(16)} negotiated`);
  return { driver, client, port };
}

function attach(h: Harness) {
  const driver = createDriver({ queueSize: QUEUE_SIZE });
  return attachWith(h, driver, new IndirectClient(h.path), VIRTIO_RING_F_INDIRECT_DESC);
}

/** A descriptor as the driver writes it: addr is an absolute guest address. */
interface Desc {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}

function encodeDescs(descs: readonly Desc[]): Buffer {
  const out = Buffer.alloc(16 * descs.length);
  descs.forEach((d, i) => {
    out.writeBigUInt64LE(d.addr, i * 16);
    out.writeUInt32LE(d.len, i * 16 + 8);
    out.writeUInt16LE(d.flags, i * 16 + 12);
    out.writeUInt16LE(d.next, i * 16 + 14);
  });
  return out;
}

/** Where a hostile front-end may write: its region's guest address, size and a scratch area. */
interface Layout {
  guest: bigint;
  size: number;
  /** A 16-byte-aligned guest address of 4 KiB at the end of the region, off the rings. */
  scratch: bigint;
}

interface RingCase {
  name: string;
  reason: string;
  /** Descriptors written at the start of the transmit descriptor table. */
  descs?: (l: Layout) => Desc[];
  /** Head written into avail->ring[0] (default 0). */
  head?: number;
  /** New avail->idx (default 1: one chain made available). */
  availIdx?: number;
  /** Bytes written into the region at a guest address (e.g. an indirect table). */
  extra?: (l: Layout) => { at: bigint; bytes: Buffer };
}

const ok = (l: Layout, over: Partial<Desc> = {}): Desc => ({
  addr: l.scratch,
  len: 64,
  flags: 0,
  next: 0,
  ...over,
});

const cases: RingCase[] = [
  {
    name: 'head index from the avail ring ≥ Q',
    head: QUEUE_SIZE,
    reason: 'head-out-of-range',
  },
  {
    name: 'head index 0xffff',
    head: 0xffff,
    reason: 'head-out-of-range',
  },
  {
    name: 'next ≥ Q',
    descs: (l) => [ok(l, { flags: F_NEXT, next: QUEUE_SIZE })],
    reason: 'next-out-of-range',
  },
  {
    name: 'descriptor loop 0 → 1 → 0',
    descs: (l) => [ok(l, { flags: F_NEXT, next: 1 }), ok(l, { flags: F_NEXT, next: 0 })],
    reason: 'descriptor-loop',
  },
  {
    name: 'descriptor pointing at itself',
    descs: (l) => [ok(l, { flags: F_NEXT, next: 0 })],
    reason: 'descriptor-loop',
  },
  {
    name: 'zero-length descriptor with a bogus address',
    descs: () => [{ addr: 0xdead_beef_0000n, len: 0, flags: 0, next: 0 }],
    reason: 'zero-length-descriptor',
  },
  {
    name: 'zero-length descriptor inside memory',
    descs: (l) => [ok(l, { len: 0 })],
    reason: 'zero-length-descriptor',
  },
  {
    name: 'buffer just past the end of the memory table',
    descs: (l) => [ok(l, { addr: l.guest + BigInt(l.size) })],
    reason: 'buffer-out-of-bounds',
  },
  {
    name: 'buffer straddling the end of the region',
    descs: (l) => [ok(l, { addr: l.guest + BigInt(l.size) - 32n, len: 64 })],
    reason: 'buffer-out-of-bounds',
  },
  {
    name: 'buffer below the region (guest address 0)',
    descs: () => [{ addr: 0n, len: 64, flags: 0, next: 0 }],
    reason: 'buffer-out-of-bounds',
  },
  {
    name: 'address + len overflowing u64',
    descs: () => [{ addr: 0xffff_ffff_ffff_fff0n, len: 0x20, flags: 0, next: 0 }],
    reason: 'buffer-out-of-bounds',
  },
  {
    name: 'huge length (0xffffffff) from inside the region',
    descs: (l) => [ok(l, { addr: l.guest, len: 0xffff_ffff })],
    reason: 'buffer-out-of-bounds',
  },
  {
    name: 'indirect table length not a multiple of 16',
    descs: (l) => [ok(l, { flags: F_INDIRECT, len: 24 })],
    reason: 'indirect-bad-length',
  },
  {
    name: 'indirect table of length 0',
    descs: (l) => [ok(l, { flags: F_INDIRECT, len: 0 })],
    reason: 'indirect-bad-length',
  },
  {
    name: 'indirect table with more entries than the queue',
    descs: (l) => [ok(l, { flags: F_INDIRECT, len: 16 * (QUEUE_SIZE + 1) })],
    reason: 'indirect-too-large',
  },
  {
    name: 'indirect table outside memory',
    descs: (l) => [ok(l, { addr: l.guest + BigInt(l.size) + 4096n, flags: F_INDIRECT, len: 32 })],
    reason: 'indirect-out-of-bounds',
  },
  {
    name: 'indirect table address + len overflowing u64',
    descs: () => [{ addr: 0xffff_ffff_ffff_fff0n, len: 32, flags: F_INDIRECT, next: 0 }],
    reason: 'indirect-out-of-bounds',
  },
  {
    name: 'nested indirect',
    descs: (l) => [ok(l, { addr: l.scratch + 1024n, flags: F_INDIRECT, len: 32 })],
    extra: (l) => ({
      at: l.scratch + 1024n,
      bytes: encodeDescs([ok(l, { flags: F_INDIRECT, len: 16 }), ok(l, {})]),
    }),
    reason: 'nested-indirect',
  },
  {
    name: 'INDIRECT together with NEXT',
    descs: (l) => [
      ok(l, { addr: l.scratch + 1024n, flags: F_INDIRECT | F_NEXT, len: 32, next: 1 }),
      ok(l),
    ],
    extra: (l) => ({ at: l.scratch + 1024n, bytes: encodeDescs([ok(l), ok(l)]) }),
    reason: 'indirect-with-next',
  },
  {
    name: 'indirect chain whose next leaves the table',
    descs: (l) => [ok(l, { addr: l.scratch + 1024n, flags: F_INDIRECT, len: 32 })],
    extra: (l) => ({
      at: l.scratch + 1024n,
      bytes: encodeDescs([ok(l, { flags: F_NEXT, next: 2 }), ok(l)]),
    }),
    reason: 'next-out-of-range',
  },
  {
    name: 'indirect chain that loops inside its table',
    descs: (l) => [ok(l, { addr: l.scratch + 1024n, flags: F_INDIRECT, len: 32 })],
    extra: (l) => ({
      at: l.scratch + 1024n,
      bytes: encodeDescs([ok(l, { flags: F_NEXT, next: 1 }), ok(l, { flags: F_NEXT, next: 0 })]),
    }),
    reason: 'descriptor-loop',
  },
  {
    name: 'indirect table entry outside memory',
    descs: (l) => [ok(l, { addr: l.scratch + 1024n, flags: F_INDIRECT, len: 16 })],
    extra: (l) => ({
      at: l.scratch + 1024n,
      bytes: encodeDescs([ok(l, { addr: l.guest + BigInt(l.size) })]),
    }),
    reason: 'buffer-out-of-bounds',
  },
  {
    name: 'device-readable descriptor after a writable one',
    descs: (l) => [ok(l, { flags: F_WRITE | F_NEXT, next: 1 }), ok(l)],
    reason: 'readable-after-writable',
  },
  {
    name: 'transmitted chain shorter than the 12-byte net header',
    descs: (l) => [ok(l, { len: 8 })],
    reason: 'shorter-than-header',
  },
  {
    name: 'transmitted chain with only a device-writable buffer',
    descs: (l) => [ok(l, { flags: F_WRITE })],
    reason: 'shorter-than-header',
  },
  {
    name: 'transmitted message longer than the port maximum (65535 B after the header)',
    descs: (l) => [ok(l, { addr: l.guest, len: 12 + 65536 })],
    reason: 'message-too-large',
  },
  {
    name: 'avail->idx jumping by more than Q',
    descs: (l) => [ok(l)],
    availIdx: QUEUE_SIZE + 1,
    reason: 'avail-index-jump',
  },
  {
    name: 'avail->idx jumping to 0xffff',
    availIdx: 0xffff,
    reason: 'avail-index-jump',
  },
];

/** Writes `c`'s descriptors, avail entry and avail->idx into `driver`'s transmit ring and kicks. */
function writeRing(driver: DriverQueuePair, c: Omit<RingCase, 'name' | 'reason'>): void {
  const { descriptor, fds } = driver.share();
  const guest = BigInt(descriptor.guestAddress);
  const size = descriptor.regionSize;
  const layout: Layout = { guest, size, scratch: guest + BigInt(size - 4096) };
  const at = (address: bigint) => Number(address - guest);
  const extra = c.extra?.(layout);
  if (extra) driver.region.write(at(extra.at), extra.bytes);
  const descs = c.descs?.(layout);
  if (descs) driver.region.write(at(BigInt(descriptor.tx.desc)), encodeDescs(descs));
  const avail = at(BigInt(descriptor.tx.avail));
  const head = Buffer.alloc(2);
  head.writeUInt16LE(c.head ?? 0);
  driver.region.write(avail + 4, head); // avail->ring[0]
  const idx = Buffer.alloc(2);
  idx.writeUInt16LE(c.availIdx ?? 1);
  driver.region.write(avail + 2, idx); // avail->idx, last, as a driver publishes
  const kick = EventFd.fromFd(fds[1]!);
  kick.signal();
  kick.close();
}

/**
 * Attaches a front-end, breaks its transmit ring as `c` says, kicks, and returns the error
 * the backend reported for it (after checking that only its connection was closed).
 */
async function runHostile(h: Harness, c: RingCase): Promise<VringError> {
  const errorsBefore = h.errors.length;
  const { driver, client, port } = await attach(h);
  try {
    writeRing(driver, c);
    const closed = await port.closed;
    assert.ok(closed, `${c.name}: the port closed with an error`);
    // The control connection was closed from the backend's side.
    const socketError = await client.socket.closed;
    assert.is(socketError?.code, 'ERR_VRING_PEER_DISCONNECTED', `${c.name}: control socket`);
    await until(() => h.errors.length > errorsBefore);
    assert.is(h.errors.length, errorsBefore + 1, `${c.name}: exactly one error reported`);
    const reported = h.errors[h.errors.length - 1]!;
    assert.is(reported.port, port, `${c.name}: reported for the hostile port`);
    assert.is(
      reported.error,
      closed,
      `${c.name}: the reported error is the one the port closed with`,
    );
    return closed!;
  } finally {
    client.close();
    driver.close();
  }
}

test('the backend offers INDIRECT_DESC, so the indirect cases are reachable', async () => {
  const h = echoBackend();
  const client = new RawVhostUserClient(h.path);
  const offered = await client.request(R.GET_FEATURES, undefined);
  assert.is(typeof offered, 'bigint');
  assert.is.not((offered as bigint) & VIRTIO_RING_F_INDIRECT_DESC, 0n, 'INDIRECT_DESC offered');
  client.close();
  h.backend.close();
});

// The control: chains that differ from the hostile ones only in their flaw are accepted,
// so each rejection below is for the flaw it names, not for the shape of the test's rings.
const PAYLOAD = 100;
const wellFormed: Array<{ name: string; ring: Omit<RingCase, 'name' | 'reason'> }> = [
  {
    name: 'header and frame in one descriptor',
    ring: {
      descs: (l) => [ok(l, { addr: l.scratch + 2048n - 12n, len: 12 + PAYLOAD })],
    },
  },
  {
    name: 'header and frame in a chain of two',
    ring: {
      descs: (l) => [
        ok(l, { addr: l.scratch, len: 12, flags: F_NEXT, next: 1 }),
        ok(l, { addr: l.scratch + 2048n, len: PAYLOAD }),
      ],
    },
  },
  {
    name: 'header and frame in an indirect table',
    ring: {
      descs: (l) => [ok(l, { addr: l.scratch + 1024n, flags: F_INDIRECT, len: 32 })],
      extra: (l) => ({
        at: l.scratch + 1024n,
        bytes: encodeDescs([
          ok(l, { addr: l.scratch, len: 12, flags: F_NEXT, next: 1 }),
          ok(l, { addr: l.scratch + 2048n, len: PAYLOAD }),
        ]),
      }),
    },
  },
];

test('well-formed hand-written chains (direct, chained, indirect) are accepted and echoed', async () => {
  const h = echoBackend();
  for (const { name, ring } of wellFormed) {
    const { driver, client, port } = await attach(h);
    const { descriptor } = driver.share();
    const scratch = descriptor.regionSize - 4096;
    const sent = frame(7, PAYLOAD);
    driver.region.write(scratch, Buffer.alloc(12)); // virtio_net_hdr_v1: no offloads
    driver.region.write(scratch + 2048 - 12, Buffer.alloc(12));
    driver.region.write(scratch + 2048, sent);
    writeRing(driver, ring);
    const batch = await driver.receive();
    assert.is(batch.count, 1, `${name}: one frame echoed`);
    for (const view of batch) assert.ok(view.equals(sent), `${name}: echoed intact`);
    assert.is(port.stats.framesReceived, 1, name);
    assert.ok(port.live, `${name}: the port is still live`);
    client.close();
    driver.close();
    await port.closed;
  }
  assert.is(h.errors.length, 0, 'no error reported');
  h.backend.close();
});

test('every hostile ring closes only its own connection with ERR_VRING_BAD_RING and its reason; a healthy front-end keeps echoing', async () => {
  const h = echoBackend();
  const healthy = await attach(h);
  let seq = 0;
  await roundTrip(healthy.driver, 20, seq);
  for (const c of cases) {
    const error = await runHostile(h, c);
    assert.is(error.code, 'ERR_VRING_BAD_RING', `${c.name}: ${error.message}`);
    assert.is(error.reason, c.reason, `${c.name}: ${error.message}`);
    assert.is(error.name, 'VringError');
    seq += 20;
    await roundTrip(healthy.driver, 20, seq);
    assert.ok(healthy.port.live, `${c.name}: the healthy port is still live`);
  }
  assert.is(h.backend.ports.size, 1, 'every hostile port was closed and forgotten');
  assert.is(
    h.errors.length,
    cases.length,
    'one error per hostile connection, none for the healthy one',
  );
  assert.is(healthy.port.stats.dropped, 0);
  healthy.client.close();
  healthy.driver.close();
  h.backend.close();
});

test('~200 hostile connections leave the fd count and memfd mappings where they started', async () => {
  const h = echoBackend();
  const healthy = await attach(h);
  // Warm up: the first use of each path may allocate caches that are not leaks.
  for (const c of cases) await runHostile(h, c);
  await collectGarbage();
  const fdsBefore = openFdCount();
  const memfdBefore = mappingCounts().memfd;
  const rounds = Math.ceil(200 / cases.length) * cases.length;
  h.errors.length = 0;
  h.ports.length = 1;
  let reported = 0;
  for (let i = 0; i < rounds; i++) {
    const c = cases[i % cases.length]!;
    const error = await runHostile(h, c);
    assert.is(error.reason, c.reason, c.name);
    reported += h.errors.length;
    h.errors.length = 0;
    h.ports.length = 1;
    if (i % cases.length === cases.length - 1) await roundTrip(healthy.driver, 10, 100_000 + i);
  }
  await collectGarbage();
  assert.is(reported, rounds, 'every hostile connection was reported');
  assert.is(openFdCount(), fdsBefore, 'fd count back to its starting value');
  assert.is(mappingCounts().memfd, memfdBefore, 'memfd mappings back to their starting value');
  assert.is(h.backend.ports.size, 1);
  await roundTrip(healthy.driver, 50, 200_000);
  healthy.client.close();
  healthy.driver.close();
  h.backend.close();
});

// --- packed rings -------------------------------------------------------------------

const F_AVAIL_WRAP1 = 0x80; // AVAIL = 1, USED = 0: available in the first lap

/**
 * A DPDK-style front-end asking for packed rings (and INDIRECT_DESC); bases 0x8000, and
 * each vring's own kick eventfd (a vhost-user queue pair has one per vring).
 */
class PackedClient extends IndirectClient {
  constructor(
    path: string,
    private readonly kicks: [number, number],
  ) {
    super(path);
  }

  override request<Q extends SupportedRequest>(
    request: Q,
    payload: RequestPayloads[Q],
    needReply = false,
  ): Promise<ReplyPayload<Q> | undefined> {
    let wanted = payload;
    if (request === R.SET_FEATURES) {
      wanted = ((payload as bigint) | VIRTIO_F_RING_PACKED) as RequestPayloads[Q];
    } else if (request === R.SET_VRING_BASE) {
      wanted = { ...(payload as object), num: 0x8000 } as RequestPayloads[Q];
    } else if (request === R.SET_VRING_KICK) {
      const { index } = payload as { index: number };
      wanted = { index, fd: this.kicks[index]! } as RequestPayloads[Q];
    }
    return super.request(request, wanted, needReply);
  }
}

function attachPacked(h: Harness) {
  const driver = DriverQueuePair.createForVhostUser({
    queueSize: QUEUE_SIZE,
    bufferSize: 2048,
    maxMessage: 65535,
    mergeable: true,
    eventIdx: true,
    packed: true,
    notification: 'event',
  });
  const client = new PackedClient(h.path, driver.vringFds().kick);
  return attachWith(h, driver, client, VIRTIO_F_RING_PACKED);
}

/** A packed descriptor: addr, len, buffer id, flags (AVAIL/USED bits included). */
interface PackedDesc {
  addr: bigint;
  len: number;
  id: number;
  flags: number;
}

interface PackedCase {
  name: string;
  reason: string;
  /** Descriptors written from slot 0 of the transmit ring (slot 0's flags last). */
  descs: (l: Layout) => PackedDesc[];
  extra?: (l: Layout) => { at: bigint; bytes: Buffer };
}

const avail = (l: Layout, over: Partial<PackedDesc> = {}): PackedDesc => ({
  addr: l.scratch,
  len: 64,
  id: 0,
  ...over,
  flags: F_AVAIL_WRAP1 | (over.flags ?? 0),
});

const packedCases: PackedCase[] = [
  {
    name: 'buffer id equal to the queue size',
    descs: (l) => [avail(l, { id: QUEUE_SIZE })],
    reason: 'buffer-id-out-of-range',
  },
  {
    name: 'a chain over every slot of the ring',
    descs: (l) => Array.from({ length: QUEUE_SIZE }, () => avail(l, { flags: F_NEXT })),
    reason: 'chain-too-long',
  },
  {
    name: 'a chain running into a slot marked for the next lap',
    descs: (l) => [avail(l, { flags: F_NEXT }), { addr: l.scratch, len: 64, id: 0, flags: 0x8000 }],
    reason: 'chain-not-available',
  },
  {
    name: 'buffer beyond the end of the region',
    descs: (l) => [avail(l, { addr: l.guest + BigInt(l.size) - 8n })],
    reason: 'buffer-out-of-bounds',
  },
  {
    name: 'zero-length descriptor',
    descs: (l) => [avail(l, { len: 0 })],
    reason: 'zero-length-descriptor',
  },
  {
    name: 'indirect descriptor inside a chain',
    descs: (l) => [
      avail(l, { flags: F_NEXT }),
      avail(l, { addr: l.scratch + 1024n, len: 32, flags: F_INDIRECT }),
    ],
    reason: 'indirect-in-chain',
  },
  {
    name: 'indirect table of 24 bytes',
    descs: (l) => [avail(l, { addr: l.scratch + 1024n, len: 24, flags: F_INDIRECT })],
    reason: 'indirect-bad-length',
  },
  {
    name: 'indirect table holding an indirect descriptor',
    descs: (l) => [avail(l, { addr: l.scratch + 1024n, len: 32, flags: F_INDIRECT })],
    extra: (l) => ({
      at: l.scratch + 1024n,
      bytes: encodePacked([
        { addr: l.scratch, len: 12, id: 0, flags: 0 },
        { addr: l.scratch + 1024n, len: 32, id: 0, flags: F_INDIRECT },
      ]),
    }),
    reason: 'nested-indirect',
  },
  {
    name: 'frame shorter than the net header',
    descs: (l) => [avail(l, { len: 8 })],
    reason: 'shorter-than-header',
  },
];

function encodePacked(descs: readonly PackedDesc[]): Buffer {
  const out = Buffer.alloc(16 * descs.length);
  descs.forEach((d, i) => {
    out.writeBigUInt64LE(d.addr, i * 16);
    out.writeUInt32LE(d.len, i * 16 + 8);
    out.writeUInt16LE(d.id, i * 16 + 12);
    out.writeUInt16LE(d.flags, i * 16 + 14);
  });
  return out;
}

/** Writes `c` into `driver`'s packed transmit ring, slot 0's flags last, and kicks. */
function writePackedRing(driver: DriverQueuePair, c: PackedCase): void {
  const { descriptor } = driver.share();
  const guest = BigInt(descriptor.guestAddress);
  const size = descriptor.regionSize;
  const layout: Layout = { guest, size, scratch: guest + BigInt(size - 4096) };
  const at = (address: bigint) => Number(address - guest);
  const extra = c.extra?.(layout);
  if (extra) driver.region.write(at(extra.at), extra.bytes);
  const bytes = encodePacked(c.descs(layout));
  const ring = at(BigInt(descriptor.tx.desc));
  driver.region.write(ring + 16, bytes.subarray(16));
  driver.region.write(ring, bytes.subarray(0, 14));
  driver.region.write(ring + 14, bytes.subarray(14, 16)); // publishes the chain
  const kick = EventFd.fromFd(driver.vringFds().kick[1]);
  kick.signal();
  kick.close();
}

test('every hostile packed ring closes only its own connection with its reason; a healthy packed front-end keeps echoing', async () => {
  const h = echoBackend(undefined, { packedRings: true });
  const healthy = await attachPacked(h);
  let seq = 0;
  await roundTrip(healthy.driver, 20, seq);
  for (const c of packedCases) {
    const errorsBefore = h.errors.length;
    const { driver, client, port } = await attachPacked(h);
    try {
      writePackedRing(driver, c);
      const closed = await port.closed;
      assert.is(closed?.code, 'ERR_VRING_BAD_RING', `${c.name}: ${closed?.message}`);
      assert.is(closed?.reason, c.reason, `${c.name}: ${closed?.message}`);
      await until(() => h.errors.length > errorsBefore);
      assert.is(h.errors[h.errors.length - 1]!.port, port, `${c.name}: reported for its port`);
    } finally {
      client.close();
      driver.close();
    }
    seq += 20;
    await roundTrip(healthy.driver, 20, seq);
    assert.ok(healthy.port.live, `${c.name}: the healthy port is still live`);
  }
  assert.is(h.errors.length, packedCases.length, 'one error per hostile connection');
  healthy.client.close();
  healthy.driver.close();
  h.backend.close();
});

test.run();
