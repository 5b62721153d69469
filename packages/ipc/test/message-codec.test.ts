// The codec encodes straight into send batches through msgpackr's shared output buffer; these
// say it writes exactly what msgpackr's own pack writes, and never into anyone else's result.
import { Packr, pack, unpack } from 'msgpackr';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MessageCodec } from '../src/message-codec.js';

const plain = new Packr({ useRecords: false });
const sample = {
  id: 1_000_000,
  ts: 1_700_000_000_000.5,
  name: 'sensor-7',
  data: Buffer.alloc(34, 0xab),
};

test('encodeInto writes at any offset exactly the bytes pack writes, and returns the end', () => {
  const codec = new MessageCodec();
  const expected = plain.pack(sample);
  const data = Buffer.alloc(64 * 1024, 0xee);
  for (let at = 0; at < 24; at++) {
    data.fill(0xee);
    const end = codec.encodeInto(sample, data, at);
    assert.is(end, at + expected.byteLength, `end at offset ${at}`);
    assert.ok(data.subarray(at, end).equals(expected), `bytes at offset ${at}`);
    assert.ok(
      data.subarray(0, at).every((b) => b === 0xee),
      `nothing before offset ${at} is touched`,
    );
  }
});

test("other packers' results survive encodes into a batch, and theirs never land in it", () => {
  const codec = new MessageCodec();
  const data = Buffer.alloc(64 * 1024, 0);
  const before = pack({ kept: 'before', n: 1 });
  const beforeCopy = Buffer.from(before);
  let at = 0;
  const results: Array<[Buffer, Buffer]> = [];
  for (let i = 0; i < 200; i++) {
    at = codec.encodeInto({ i, filler: 'x'.repeat(i % 50) }, data, at);
    // A packer in between, as an application would use msgpackr itself.
    const theirs = plain.pack({ theirs: i });
    assert.not.ok(theirs.buffer === data.buffer, 'a foreign pack never lands in the batch');
    results.push([theirs, Buffer.from(theirs)]);
  }
  assert.ok(before.equals(beforeCopy), 'a result taken before is intact');
  for (const [i, [theirs, copy]] of results.entries()) {
    assert.ok(theirs.equals(copy), `foreign result ${i} is intact`);
  }
  // And the batch holds the 200 values back to back.
  let offset = 0;
  for (let i = 0; i < 200; i++) {
    const value = unpack(
      data.subarray(offset, offset + plain.pack({ i, filler: 'x'.repeat(i % 50) }).length),
    );
    assert.equal(value, { i, filler: 'x'.repeat(i % 50) });
    offset += plain.pack(value).length;
  }
});

test('a value that does not fit the room left is encoded on its own, into overflow', () => {
  const codec = new MessageCodec();
  const data = Buffer.alloc(8 * 1024, 0xee);
  const big = { blob: Buffer.alloc(20 * 1024, 7), tail: 'end' };
  assert.is(codec.encodeInto(big, data, 100), -1);
  assert.ok(codec.overflow?.equals(plain.pack(big)), 'overflow holds the whole encoding');
  // Near the end of the buffer, even a small value goes to overflow.
  assert.is(codec.encodeInto(sample, data, data.length - 100), -1);
  assert.ok(codec.overflow?.equals(plain.pack(sample)));
  const kept = codec.overflow;
  assert.is(codec.encodeInto(sample, data, 0), plain.pack(sample).length);
  assert.ok(kept?.equals(plain.pack(sample)), "an overflow buffer stays the caller's");
});

test('a value msgpack cannot encode throws, and encoding carries on correctly afterwards', () => {
  const codec = new MessageCodec();
  const data = Buffer.alloc(16 * 1024);
  assert.throws(() => codec.encodeInto({ bad: 2n ** 70n }, data, 8));
  const end = codec.encodeInto(sample, data, 8);
  assert.ok(data.subarray(8, end).equals(plain.pack(sample)));
  const theirs = plain.pack({ after: true });
  assert.not.ok(theirs.buffer === data.buffer);
  assert.equal(unpack(theirs), { after: true });
});

test('a body in ring memory decodes to values that no later write to that memory changes, at every size', () => {
  const codec = new MessageCodec();
  for (const size of [16, 200, 4 * 1024, 8 * 1024, 64 * 1024, 1024 * 1024]) {
    const value = { seq: size, name: 'sensor-7', data: Buffer.alloc(size, 0x5a) };
    const encoded = plain.pack(value);
    // The body as it lies in a ring: somewhere inside a larger area.
    const ring = Buffer.alloc(encoded.byteLength + 100, 0xee);
    encoded.copy(ring, 40);
    const decoded = codec.decode(ring, 40, 40 + encoded.byteLength) as typeof value;
    ring.fill(0x11); // the peer rewrites its memory
    assert.is(decoded.seq, size);
    assert.is(decoded.name, 'sensor-7');
    assert.ok(Buffer.isBuffer(decoded.data), `a Node Buffer at ${size} B`);
    assert.is(decoded.data.byteLength, size);
    assert.ok(
      decoded.data.every((b) => b === 0x5a),
      `the binary value of ${size} B keeps its bytes`,
    );
    assert.not.ok(decoded.data.buffer === ring.buffer, `no view of the ring at ${size} B`);
  }
});

test.run();
