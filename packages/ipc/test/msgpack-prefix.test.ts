// The bus vouches for the values it forwards with MsgpackPrefixReader.skipValue: whatever it
// accepts, every receiver's codec must decode. These pin down map keys, where the two once
// disagreed (found by the msgpack-prefix fuzz target, see docs/fuzzing.md).
import { VringError } from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MessageCodec } from '../src/message-codec.js';
import {
  checkHeaders,
  MAX_HEADER_COUNT,
  MAX_HEADER_NAME_BYTES,
  MAX_HEADERS_BYTES,
} from '../src/wire/headers.js';
import { MAX_VALUE_DEPTH } from '../src/wire/message-kinds.js';
import { MsgpackPrefixReader } from '../src/wire/msgpack-prefix.js';
import { RepeatedString } from '../src/wire/repeated-string.js';

const codec = new MessageCodec();

function vouch(bytes: number[]): void {
  const reader = new MsgpackPrefixReader(Uint8Array.from(bytes));
  reader.skipValue(MAX_VALUE_DEPTH);
  reader.end();
}

// {key: 1} for each kind of key, as raw msgpack: 0x81 = map of one pair, value 0x01.
const scalarKeys: Array<[string, number[]]> = [
  ['a fixstr', [0xa1, 0x6b]],
  ['a str 8', [0xd9, 0x01, 0x6b]],
  ['a positive fixint', [0x05]],
  ['a negative fixint', [0xff]],
  ['a uint 32', [0xce, 0, 0, 1, 0]],
  ['an int 64', [0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]],
  ['a float 64', [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]],
  ['nil', [0xc0]],
  ['true', [0xc3]],
];

// Keys the codec cannot make a property name of (msgpackr's undefined it could, as
// "undefined", but no sender of ours writes one: it is refused with the other extensions).
const refusedKeys: Array<[string, number[]]> = [
  ['an empty map', [0x80]],
  ['an array', [0x91, 0x01]],
  ['a map 16', [0xde, 0, 1, 0xa1, 0x6b, 0x01]],
  ['binary', [0xc4, 0x01, 0x00]],
  ['a timestamp', [0xd6, 0xff, 0, 0, 0, 0]],
  ["msgpackr's undefined", [0xd4, 0x00, 0x00]],
];

test('a map keyed by any scalar is vouched for, and the codec decodes it', () => {
  for (const [name, key] of scalarKeys) {
    const bytes = [0x81, ...key, 0x01];
    vouch(bytes);
    const value = codec.decode(Uint8Array.from(bytes)) as Record<string, number>;
    assert.equal(Object.values(value), [1], name);
  }
});

test('a map keyed by a container, binary or an extension is refused, at any depth', () => {
  for (const [name, key] of refusedKeys) {
    for (const bytes of [
      [0x81, ...key, 0x01],
      // nested: [1, {"k": {key: 1}}] and the same key after a valid pair
      [0x92, 0x01, 0x81, 0xa1, 0x6b, 0x81, ...key, 0x01],
      [0x82, 0xa1, 0x6b, 0x01, ...key, 0x01],
    ]) {
      try {
        vouch(bytes);
        assert.unreachable(`${name} as a key was vouched for`);
      } catch (error) {
        assert.instance(error, VringError, name);
        assert.is((error as VringError).code, 'ERR_VRING_PROTOCOL', name);
        assert.is((error as VringError).reason, 'bad-envelope', name);
      }
    }
  }
});

test('map values, and array elements, may still be anything plain', () => {
  for (const [name, item] of refusedKeys) {
    vouch([0x81, 0xa1, 0x6b, ...item]);
    vouch([0x92, ...item, ...item]);
    assert.not.throws(() => codec.decode(Uint8Array.from([0x81, 0xa1, 0x6b, ...item])), name);
  }
});

/** Walks `headers` as the bus does, then checks it stopped at their end. */
function vouchHeaders(bytes: Uint8Array): void {
  const reader = new MsgpackPrefixReader(bytes);
  reader.skipHeaders(MAX_HEADER_COUNT, MAX_HEADER_NAME_BYTES, MAX_HEADERS_BYTES);
  reader.end();
}

test('headers the client sends are headers the bus forwards, up to every bound', () => {
  const full = Object.fromEntries(
    Array.from({ length: MAX_HEADER_COUNT }, (_, i) => [`h${i}`.padEnd(200, 'n'), 'v']),
  );
  // The count at its most, long names, and one value near the byte bound.
  for (const headers of [
    { a: 'b' },
    {},
    full,
    { big: 'x'.repeat(16_000) },
    { ['n'.repeat(MAX_HEADER_NAME_BYTES)]: 'v' },
  ]) {
    assert.ok(checkHeaders(headers) || Object.keys(headers).length === 0);
    vouchHeaders(codec.encode(headers));
    assert.equal(codec.decode(codec.encode(headers)), headers);
  }
});

test('headers that are not a bounded map of strings are refused', () => {
  const refused: Array<[string, unknown]> = [
    ['an array', ['a', 'b']],
    ['a number value', { a: 1 }],
    ['a nil value', { a: null }],
    ['an empty name', { '': 'x' }],
    ['a name too long', { ['n'.repeat(MAX_HEADER_NAME_BYTES + 1)]: 'x' }],
    [
      'too many',
      Object.fromEntries(Array.from({ length: MAX_HEADER_COUNT + 1 }, (_, i) => [`h${i}`, ''])),
    ],
    ['too many bytes', { big: 'x'.repeat(MAX_HEADERS_BYTES) }],
  ];
  for (const [name, headers] of refused) {
    assert.throws(
      () => vouchHeaders(codec.encode(headers)),
      (e: VringError) => e.reason === 'bad-envelope',
      name,
    );
    assert.throws(
      () => checkHeaders(headers),
      (e: VringError) => e.reason === 'bad-headers',
      name,
    );
  }
  // A map that claims more entries than it holds.
  assert.throws(() => vouchHeaders(Uint8Array.from([0x82, 0xa1, 0x61, 0xa1, 0x62])), /truncated/);
});

test('one reader reset per message reads big-endian lengths and ids the way msgpack writes them', () => {
  const reader = new MsgpackPrefixReader();
  for (const [id, items] of [
    [7, 3],
    [0xfe, 20],
    [0x1234, 0x1234],
    [0xfedcba98, 0x10000],
  ] as const) {
    const bytes = codec.encode([id]);
    assert.is(reader.reset(bytes).arrayLength(), 1);
    assert.is(reader.uint(), id);
    reader.end();
    const header = codec.encode(new Array(items).fill(0)).subarray(0, items > 0xffff ? 5 : 3);
    assert.is(
      reader.reset(items > 15 ? header : codec.encode(new Array(items).fill(0))).arrayLength(),
      items,
    );
  }
  // Reset forgets the last message: a shorter one read next is not read past its end.
  reader.reset(codec.encode([1, 2, 3]));
  reader.arrayLength();
  reader.uint();
  reader.reset(Uint8Array.of(0x92, 0x01));
  assert.is(reader.arrayLength(), 2);
  assert.is(reader.uint(), 1);
  assert.throws(
    () => reader.uint(),
    (e: unknown) => e instanceof VringError && e.code === 'ERR_VRING_PROTOCOL',
  );
});

test('a repeated topic decodes to the same string until its bytes change, even where they were overwritten', () => {
  const repeated = new RepeatedString();
  const ring = Buffer.from('xxorders.euyy');
  const first = repeated.decode(ring, 2, 9);
  assert.is(first, 'orders.eu');
  assert.is(repeated.decode(Buffer.from('orders.eu'), 0, 9), first);
  // The ring buffer is reused for the next message: what was kept is a copy of its own.
  ring.write('orders.us', 2);
  assert.is(repeated.decode(ring, 2, 9), 'orders.us');
  assert.is(repeated.decode(Buffer.from('orders.eu'), 0, 9), 'orders.eu');
  const long = 'a'.repeat(RepeatedString.MAX_BYTES + 1);
  assert.is(repeated.decode(Buffer.from(long), 0, long.length), long);
  assert.is(repeated.decode(new TextEncoder().encode('héllo'), 0, 6), 'héllo');
});

test('a reader reset to a range of a buffer reads that range only, at the buffer’s own offsets', () => {
  // Two messages back to back, as in a frame: ["a", 1] then ["b", [2, 3]].
  const first = codec.encode(['a', 1]);
  const second = codec.encode(['b', [2, 3]]);
  const frame = Buffer.concat([first, second]);
  const reader = new MsgpackPrefixReader();

  reader.reset(frame, first.length, frame.length);
  assert.is(reader.arrayLength(), 2);
  assert.is(reader.string(16), 'b');
  const valueAt = reader.offset;
  reader.skipValue(MAX_VALUE_DEPTH);
  assert.is(valueAt, first.length + 3, "offsets are the buffer's");
  assert.equal([...frame.subarray(valueAt, reader.offset)], [0x92, 2, 3]);
  reader.end();

  // The first message ends where the range does: the bytes after it are not its.
  reader.reset(frame, 0, first.length);
  assert.is(reader.arrayLength(), 2);
  assert.is(reader.string(16), 'a');
  assert.is(reader.uint(), 1);
  reader.end();
  assert.equal([...reader.rest()], [], 'nothing is left of the range');

  // A value cut by the range's end is truncated, whatever follows in the buffer.
  reader.reset(frame, first.length, frame.length - 1);
  reader.arrayLength();
  reader.string(16);
  assert.throws(
    () => reader.skipValue(MAX_VALUE_DEPTH),
    (e: VringError) => e.code === 'ERR_VRING_PROTOCOL',
  );
});

test.run();
