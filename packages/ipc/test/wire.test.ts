// The IPC wire format: messages cut into Ethernet frames and put back together, and every
// way a peer's frames can be wrong.
import { MessageBatch, VringError } from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Fragmenter, OutgoingMessage } from '../src/wire/fragmenter.js';
import {
  DEFAULT_MAC,
  ETHERTYPE_VRING,
  FLAG_FIRST,
  FLAG_LAST,
  FLAG_MORE,
  FRAME_HEADER_BYTES,
  RECORD_HEADER_BYTES,
  WIRE_VERSION,
  writeFrameHeader,
} from '../src/wire/frame-header.js';
import { Reassembler, type ReassemblerLimits } from '../src/wire/reassembler.js';

interface Received {
  kind: number;
  stream: number;
  /** As handed over: a view of the frame unless `owned`. */
  view: Uint8Array;
  /** A copy taken during the call. */
  body: Buffer;
  owned: boolean;
}

/** A reassembler whose messages land in `out` (copied at once: a view is valid only then). */
function collector(limits?: ReassemblerLimits): { r: Reassembler; out: Received[] } {
  const out: Received[] = [];
  const r = new Reassembler((kind, data, start, end, owned, stream) => {
    const view = data.subarray(start, end);
    out.push({ kind, stream, view, body: Buffer.from(view), owned });
  }, limits);
  return { r, out };
}

function body(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** Sends `messages` through batches of `batchBytes`, feeding every frame to a reassembler. */
function transfer(messages: OutgoingMessage[], maxFrame: number, batchBytes: number): Received[] {
  const fragmenter = new Fragmenter({ maxFrame });
  const batch = new MessageBatch({ bytes: batchBytes, messages: 64 });
  const { r: reassembler, out } = collector();
  let pending = [...messages];
  while (pending.length > 0) {
    batch.clear();
    // One round: every unfinished message gets frames into this batch in turn.
    for (const m of pending) fragmenter.write(batch, m);
    assert.ok(batch.count > 0, 'every round moves at least one frame');
    for (const frame of batch) {
      assert.ok(frame.byteLength <= maxFrame, 'no frame exceeds maxFrame');
      reassembler.push(frame);
    }
    pending = pending.filter((m) => !m.done);
  }
  return out;
}

function frame(
  header: { kind?: number; flags: number; stream?: number; totalLength: number; offset: number },
  chunk: Uint8Array,
): Buffer {
  const f = Buffer.alloc(FRAME_HEADER_BYTES + chunk.byteLength);
  writeFrameHeader(f, { kind: 1, stream: 7, ...header });
  f.set(chunk, FRAME_HEADER_BYTES);
  return f;
}

function rejects(fn: () => unknown, code: string, reason?: string): void {
  try {
    fn();
  } catch (error) {
    assert.instance(error, VringError);
    assert.is((error as VringError).code, code);
    if (reason) assert.is((error as VringError).reason, reason);
    return;
  }
  assert.unreachable(`expected ${code}${reason ? ` (${reason})` : ''}`);
}

test('frames are valid Ethernet: locally administered MACs, EtherType 0x88B5, then the vring header', () => {
  const f = frame({ flags: FLAG_FIRST | FLAG_LAST, totalLength: 3, offset: 0 }, Buffer.from('abc'));
  assert.equal([...f.subarray(0, 6)], [...DEFAULT_MAC]);
  assert.is(f[0]! & 0x02, 0x02, 'locally administered');
  assert.is(f[0]! & 0x01, 0, 'unicast');
  assert.is(f.readUInt16BE(12), ETHERTYPE_VRING);
  assert.is(f[14], WIRE_VERSION, 'wire version');
  assert.is(WIRE_VERSION, 2);
  const { r, out } = collector();
  r.push(f);
  assert.equal(
    out.map((m) => ({ kind: m.kind, stream: m.stream, body: m.body.toString() })),
    [{ kind: 1, stream: 7, body: 'abc' }],
  );
});

test('whole messages written one after another share a frame, up to maxFrame', () => {
  const fragmenter = new Fragmenter({ maxFrame: 200 });
  const batch = new MessageBatch({ bytes: 4096, messages: 16 });
  const sent = Array.from({ length: 10 }, (_, i) => new OutgoingMessage(3, i + 1, body(40, i)));
  for (const m of sent) assert.ok(fragmenter.write(batch, m));
  // 30 + 40, then 16 + 40 per record: three records make 182 bytes, a fourth would pass 200.
  assert.equal([...batch.lengths.subarray(0, batch.count)], [182, 182, 182, 70]);
  const first = batch.data.subarray(0, 182);
  assert.is(first.readUInt16LE(16) & FLAG_MORE, FLAG_MORE, 'the first record says another follows');
  const second = FRAME_HEADER_BYTES + 40;
  assert.is(first.readUInt16LE(second + 2), FLAG_FIRST | FLAG_LAST | FLAG_MORE);
  const third = second + RECORD_HEADER_BYTES + 40;
  assert.is(first.readUInt16LE(third + 2), FLAG_FIRST | FLAG_LAST, 'the last record does not');
  const { r, out } = collector();
  for (const frame of batch) r.push(frame);
  assert.equal(
    out.map((m) => m.stream),
    sent.map((m) => m.stream),
  );
  for (const [i, m] of out.entries()) assert.ok(m.body.equals(body(40, i)), `message ${i}`);
});

test('a body written in place at bodyOffset becomes a record: in the open frame, or moved to a new one', () => {
  const fragmenter = new Fragmenter({ maxFrame: 200 });
  const batch = new MessageBatch({ bytes: 4096, messages: 16 });
  const put = (stream: number, length: number): boolean => {
    const at = fragmenter.bodyOffset(batch);
    batch.data.set(body(length, stream), at);
    return fragmenter.commitWhole(batch, 5, stream, length);
  };
  assert.is(fragmenter.bodyOffset(batch), FRAME_HEADER_BYTES, 'the first body starts a frame');
  assert.ok(put(1, 40));
  assert.is(fragmenter.bodyOffset(batch), 70 + RECORD_HEADER_BYTES, 'then joins the open frame');
  assert.ok(put(2, 40));
  // 126 bytes so far: a 60-byte body would make 202, so it moves to a frame of its own.
  assert.ok(put(3, 60));
  assert.equal([...batch.lengths.subarray(0, batch.count)], [126, 90]);
  assert.not.ok(put(4, 171), 'a body longer than one frame is refused');
  assert.equal([...batch.lengths.subarray(0, batch.count)], [126, 90], 'and changes nothing');
  const { r, out } = collector();
  for (const frame of batch) r.push(frame);
  assert.equal(
    out.map((m) => [m.kind, m.stream, m.body.byteLength]),
    [
      [5, 1, 40],
      [5, 2, 40],
      [5, 3, 60],
    ],
  );
  for (const m of out) assert.ok(m.body.equals(body(m.body.byteLength, m.stream)));
});

test('a body over one frame written at bodyOffset is cut into frames where it lies', () => {
  for (const opened of [false, true]) {
    const fragmenter = new Fragmenter({ maxFrame: 100 });
    const batch = new MessageBatch({ bytes: 4096, messages: 16 });
    // With a frame open the body is written 16 bytes in, and the first chunk moves too.
    if (opened) assert.ok(fragmenter.appendWhole(batch, 1, 1, body(10, 1)));
    const sent = body(250, 7);
    batch.data.set(sent, fragmenter.bodyOffset(batch));
    assert.not.ok(fragmenter.commitWhole(batch, 2, 9, sent.byteLength));
    assert.ok(fragmenter.commitFragments(batch, 2, 9, sent.byteLength));
    // 70 body bytes per 100-byte frame: 70 + 70 + 70 + 40.
    assert.equal(
      [...batch.lengths.subarray(0, batch.count)],
      [...(opened ? [40] : []), 100, 100, 100, 70],
    );
    const { r, out } = collector();
    for (const frame of batch) r.push(frame);
    const got = out.at(-1)!;
    assert.is(got.kind, 2);
    assert.is(got.stream, 9);
    assert.ok(got.body.equals(sent), `intact (${opened ? 'after an open frame' : 'alone'})`);
    // Nothing packs into a fragment's frame.
    assert.ok(fragmenter.appendWhole(batch, 1, 2, body(10, 2)));
    assert.is(batch.lengths[batch.count - 1], 40);
  }
  const fragmenter = new Fragmenter({ maxFrame: 100 });
  const small = new MessageBatch({ bytes: 300, messages: 16 });
  small.data.set(body(250, 3), fragmenter.bodyOffset(small));
  assert.not.ok(fragmenter.commitFragments(small, 2, 1, 250), 'four frames need 370 bytes');
  assert.is(small.count, 0, 'and the batch is unchanged');
});

test('a fragmented message starts a frame of its own; whole ones pack after it ends', () => {
  const fragmenter = new Fragmenter({ maxFrame: 100 });
  const batch = new MessageBatch({ bytes: 4096, messages: 16 });
  fragmenter.write(batch, new OutgoingMessage(1, 1, body(10, 1)));
  fragmenter.write(batch, new OutgoingMessage(1, 2, body(150, 2)));
  fragmenter.write(batch, new OutgoingMessage(1, 3, body(10, 3)));
  fragmenter.write(batch, new OutgoingMessage(1, 4, body(10, 4)));
  // [1], [2: 70 B], [2: 70 B], [2: last 10 B], [3, 4]: nothing packs after a fragment.
  assert.equal([...batch.lengths.subarray(0, batch.count)], [40, 100, 100, 40, 66]);
  const { r, out } = collector();
  for (const frame of batch) r.push(frame);
  assert.equal(
    out.map((m) => [m.stream, m.body.byteLength]),
    [
      [1, 10],
      [2, 150],
      [3, 10],
      [4, 10],
    ],
  );
});

for (const size of [0, 1, 1483, 1484, 1485, 3 * 1484, 1024 * 1024 + 17]) {
  test(`a ${size}-byte message survives fragmentation at 1514-byte frames byte for byte`, () => {
    const sent = body(size, size);
    const [got, ...rest] = transfer([new OutgoingMessage(9, 42, sent)], 1514, 64 * 1024);
    assert.is(rest.length, 0);
    assert.ok(got);
    assert.is(got.kind, 9);
    assert.is(got.stream, 42);
    assert.ok(got.body.equals(sent));
  });
}

test('a message continues across batches from where the full batch stopped it', () => {
  const fragmenter = new Fragmenter({ maxFrame: 1000 });
  const message = new OutgoingMessage(1, 1, body(10_000, 3));
  const batch = new MessageBatch({ bytes: 2500, messages: 64 });
  assert.is(fragmenter.write(batch, message), false);
  assert.is(batch.count, 2, 'two 1000-byte frames fit a 2500-byte batch');
  assert.is(message.offset, 2 * (1000 - FRAME_HEADER_BYTES));
  assert.is(message.done, false);
});

test('fragments of several messages interleave and each message comes back whole', () => {
  const big = new OutgoingMessage(2, 1, body(200_000, 1));
  const small = Array.from(
    { length: 20 },
    (_, i) => new OutgoingMessage(3, 100 + i, body(50 + i, i)),
  );
  const got = transfer([big, ...small], 1514, 16 * 1024);
  assert.is(got.length, 21);
  // The small ones are not held up behind the big one: all arrive before it completes.
  assert.is(got[got.length - 1]!.stream, 1);
  for (const m of got) {
    const expected = m.stream === 1 ? body(200_000, 1) : body(50 + m.stream - 100, m.stream - 100);
    assert.ok(m.body.equals(expected), `stream ${m.stream}`);
  }
});

test('a single-frame body is handed over without a copy; a fragmented one in its own buffer', () => {
  const { r, out } = collector();
  const single = frame(
    { flags: FLAG_FIRST | FLAG_LAST, totalLength: 2, offset: 0 },
    Buffer.from('hi'),
  );
  r.push(single);
  const got = out[0]!;
  assert.is(got.view.buffer, single.buffer, 'view of the frame');
  assert.is(got.owned, false);
  r.push(frame({ flags: FLAG_FIRST, stream: 8, totalLength: 4, offset: 0 }, Buffer.from('ab')));
  assert.is(out.length, 1, 'nothing until the last fragment');
  r.push(frame({ flags: FLAG_LAST, stream: 8, totalLength: 4, offset: 2 }, Buffer.from('cd')));
  const done = out[1]!;
  assert.is(done.body.toString(), 'abcd');
  assert.is(done.owned, true);
  assert.is(r.pendingMessages, 0);
  assert.is(r.pendingBytes, 0);
});

const badHeaders: Array<[string, () => Buffer, string]> = [
  [
    'a frame shorter than the header',
    () => Buffer.alloc(FRAME_HEADER_BYTES - 1),
    'frame-too-short',
  ],
  [
    'another EtherType',
    () => {
      const f = frame({ flags: 3, totalLength: 1, offset: 0 }, Buffer.from('x'));
      f.writeUInt16BE(0x0800, 12);
      return f;
    },
    'not-vring-ethertype',
  ],
  [
    'another wire version (1, which had no packed records)',
    () => {
      const f = frame({ flags: 3, totalLength: 1, offset: 0 }, Buffer.from('x'));
      f[14] = 1;
      return f;
    },
    'unsupported-version',
  ],
  [
    'kind 0',
    () => frame({ kind: 0, flags: 3, totalLength: 1, offset: 0 }, Buffer.from('x')),
    'bad-kind',
  ],
  [
    'reserved flag bits',
    () => frame({ flags: 3 | 0x80, totalLength: 1, offset: 0 }, Buffer.from('x')),
    'reserved-flags',
  ],
  [
    'a chunk past the total length',
    () => frame({ flags: 1, totalLength: 4, offset: 2 }, Buffer.from('xyz')),
    'fragment-out-of-bounds',
  ],
  [
    'a first fragment not at offset 0',
    () => frame({ flags: 1, totalLength: 8, offset: 2 }, Buffer.from('xy')),
    'first-fragment-offset',
  ],
  [
    'a last fragment ending early',
    () => frame({ flags: 2, totalLength: 8, offset: 2 }, Buffer.from('xy')),
    'last-fragment-short',
  ],
  [
    'an empty fragment of a non-empty message',
    () => frame({ flags: 1, totalLength: 8, offset: 0 }, Buffer.alloc(0)),
    'empty-fragment',
  ],
  [
    'FLAG_MORE on a fragment (only whole messages share a frame)',
    () => frame({ flags: FLAG_FIRST | FLAG_MORE, totalLength: 40, offset: 0 }, body(20, 0)),
    'packed-fragment',
  ],
  [
    'FLAG_MORE with no room left for the next record',
    () => frame({ flags: 7, totalLength: 4, offset: 0 }, body(4 + RECORD_HEADER_BYTES - 1, 0)),
    'packed-record-overruns',
  ],
  [
    'a packed record claiming more bytes than the frame has',
    () => frame({ flags: 7, totalLength: 1000, offset: 0 }, body(40, 0)),
    'packed-record-overruns',
  ],
  [
    'a record after FLAG_MORE with a bad header',
    () => {
      const f = frame({ flags: 7, totalLength: 2, offset: 0 }, Buffer.alloc(2 + 16 + 1));
      // The second record: version 2, kind 0.
      f[FRAME_HEADER_BYTES + 2] = WIRE_VERSION;
      return f;
    },
    'bad-kind',
  ],
];

for (const [what, make, reason] of badHeaders) {
  test(`${what} is ERR_VRING_PROTOCOL (${reason})`, () => {
    rejects(() => collector().r.push(make()), 'ERR_VRING_PROTOCOL', reason);
  });
}

test('a fragment of a stream that never started is rejected', () => {
  rejects(
    () => collector().r.push(frame({ flags: 0, totalLength: 8, offset: 2 }, Buffer.from('xy'))),
    'ERR_VRING_PROTOCOL',
    'fragment-without-start',
  );
});

test('a stream started twice, fragments out of order, or a changed length are rejected', () => {
  const start = () => frame({ flags: FLAG_FIRST, totalLength: 8, offset: 0 }, Buffer.from('ab'));
  let r = collector().r;
  r.push(start());
  rejects(() => r.push(start()), 'ERR_VRING_PROTOCOL', 'stream-restarted');
  r = collector().r;
  r.push(start());
  rejects(
    () => r.push(frame({ flags: 0, totalLength: 8, offset: 4 }, Buffer.from('ef'))),
    'ERR_VRING_PROTOCOL',
    'fragment-out-of-order',
  );
  r = collector().r;
  r.push(start());
  rejects(
    () => r.push(frame({ flags: 0, totalLength: 9, offset: 2 }, Buffer.from('cd'))),
    'ERR_VRING_PROTOCOL',
    'fragment-mismatch',
  );
});

test('a message above maxMessage is ERR_VRING_OVERSIZED_MESSAGE before anything is allocated', () => {
  const { r } = collector({ maxMessage: 1000 });
  rejects(
    () => r.push(frame({ flags: FLAG_FIRST, totalLength: 1001, offset: 0 }, Buffer.from('x'))),
    'ERR_VRING_OVERSIZED_MESSAGE',
  );
  assert.is(r.pendingBytes, 0);
});

test('a flood of started messages hits maxStreams or maxPendingBytes, so memory stays bounded', () => {
  const { r } = collector({ maxMessage: 1 << 20, maxStreams: 4 });
  for (let s = 0; s < 4; s++)
    r.push(frame({ flags: FLAG_FIRST, stream: s, totalLength: 10, offset: 0 }, Buffer.from('x')));
  rejects(
    () =>
      r.push(frame({ flags: FLAG_FIRST, stream: 9, totalLength: 10, offset: 0 }, Buffer.from('x'))),
    'ERR_VRING_PROTOCOL',
    'too-many-streams',
  );
  const { r: budget } = collector({ maxMessage: 1 << 20, maxPendingBytes: 1 << 20 });
  budget.push(
    frame({ flags: FLAG_FIRST, stream: 1, totalLength: 1 << 20, offset: 0 }, Buffer.from('x')),
  );
  rejects(
    () =>
      budget.push(
        frame({ flags: FLAG_FIRST, stream: 2, totalLength: 1, offset: 0 }, Buffer.from('x')),
      ),
    'ERR_VRING_PROTOCOL',
    'pending-bytes-exceeded',
  );
  assert.is(budget.pendingBytes, 1 << 20);
  budget.clear();
  assert.is(budget.pendingBytes, 0);
});

test('bad fragmenter arguments are ERR_VRING_INVALID_ARGUMENT', () => {
  rejects(() => new Fragmenter({ maxFrame: FRAME_HEADER_BYTES }), 'ERR_VRING_INVALID_ARGUMENT');
  rejects(() => new OutgoingMessage(0, 1, Buffer.alloc(1)), 'ERR_VRING_INVALID_ARGUMENT');
  rejects(() => new OutgoingMessage(1, -1, Buffer.alloc(1)), 'ERR_VRING_INVALID_ARGUMENT');
});

test.run();
