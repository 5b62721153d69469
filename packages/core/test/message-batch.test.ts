// MessageBatch: messages packed back to back in one buffer, with their lengths alongside.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MessageBatch } from '../src/index.js';
import { throwsVring } from './fixtures/vring-assert.js';

function contents(batch: MessageBatch): string[] {
  return [...batch].map((m) => m.toString());
}

test('a new batch is empty and has the default capacity of 256 KiB and 1024 messages', () => {
  const batch = new MessageBatch();
  assert.is(batch.count, 0);
  assert.is(batch.byteLength, 0);
  assert.is(batch.data.length, 256 * 1024);
  assert.is(batch.lengths.length, 1024);
  assert.equal([...batch], []);
});

test('the capacity options size the data buffer and the lengths array', () => {
  const batch = new MessageBatch({ bytes: 100, messages: 3 });
  assert.is(batch.data.length, 100);
  assert.is(batch.lengths.length, 3);
  const onlyBytes = new MessageBatch({ bytes: 10 });
  assert.is(onlyBytes.lengths.length, 1024);
  const onlyMessages = new MessageBatch({ messages: 2 });
  assert.is(onlyMessages.data.length, 256 * 1024);
});

test('push appends messages back to back and records their lengths', () => {
  const batch = new MessageBatch({ bytes: 64, messages: 8 });
  assert.ok(batch.push(Buffer.from('one')));
  assert.ok(batch.push(Buffer.from('three')));
  assert.ok(batch.push(new Uint8Array([0x21, 0x21])));
  assert.is(batch.count, 3);
  assert.is(batch.byteLength, 10);
  assert.equal([...batch.lengths.subarray(0, 3)], [3, 5, 2]);
  assert.is(batch.data.subarray(0, 10).toString(), 'onethree!!');
  assert.equal(contents(batch), ['one', 'three', '!!']);
});

test('push copies: changing the source afterwards does not change the batch', () => {
  const batch = new MessageBatch({ bytes: 16, messages: 2 });
  const source = Buffer.from('abc');
  batch.push(source);
  source.write('xyz');
  assert.equal(contents(batch), ['abc']);
});

test('push copies only the view it is given, not the whole underlying buffer', () => {
  const batch = new MessageBatch({ bytes: 16, messages: 2 });
  const backing = Buffer.from('0123456789');
  assert.ok(batch.push(backing.subarray(4, 7)));
  assert.is(batch.byteLength, 3);
  assert.equal(contents(batch), ['456']);
});

test('empty messages are messages: they count, take no bytes, and iterate as empty views', () => {
  const batch = new MessageBatch({ bytes: 4, messages: 4 });
  assert.ok(batch.push(Buffer.alloc(0)));
  assert.ok(batch.push(Buffer.from('ab')));
  assert.ok(batch.push(new Uint8Array(0)));
  assert.is(batch.count, 3);
  assert.is(batch.byteLength, 2);
  assert.equal(
    [...batch].map((m) => m.length),
    [0, 2, 0],
  );
});

test('push refuses a message that does not fit the remaining bytes, and nothing changes', () => {
  const batch = new MessageBatch({ bytes: 10, messages: 8 });
  assert.ok(batch.push(Buffer.from('1234567')));
  assert.is(batch.push(Buffer.from('abcd')), false);
  assert.is(batch.count, 1);
  assert.is(batch.byteLength, 7);
  assert.equal(contents(batch), ['1234567']);
  // What still fits is accepted, up to the last byte.
  assert.ok(batch.push(Buffer.from('abc')));
  assert.is(batch.byteLength, 10);
  assert.is(batch.push(Buffer.from('x')), false);
  // A full batch still takes empty messages while the message count allows.
  assert.ok(batch.push(Buffer.alloc(0)));
  assert.equal(contents(batch), ['1234567', 'abc', '']);
});

test('push refuses a message larger than the whole batch', () => {
  const batch = new MessageBatch({ bytes: 8, messages: 8 });
  assert.is(batch.push(Buffer.alloc(9)), false);
  assert.is(batch.count, 0);
  assert.is(batch.byteLength, 0);
});

test('push refuses messages beyond the message capacity, even empty ones', () => {
  const batch = new MessageBatch({ bytes: 1024, messages: 2 });
  assert.ok(batch.push(Buffer.from('a')));
  assert.ok(batch.push(Buffer.from('b')));
  assert.is(batch.push(Buffer.from('c')), false);
  assert.is(batch.push(Buffer.alloc(0)), false);
  assert.is(batch.count, 2);
  assert.is(batch.byteLength, 2);
  assert.equal(contents(batch), ['a', 'b']);
});

test('a batch with room for zero messages or zero bytes accepts accordingly', () => {
  const none = new MessageBatch({ bytes: 16, messages: 0 });
  assert.is(none.push(Buffer.alloc(0)), false);
  const zeroBytes = new MessageBatch({ bytes: 0, messages: 2 });
  assert.ok(zeroBytes.push(Buffer.alloc(0)));
  assert.is(zeroBytes.push(Buffer.from('x')), false);
  assert.is(zeroBytes.count, 1);
});

test('clear empties the batch and keeps its memory', () => {
  const batch = new MessageBatch({ bytes: 8, messages: 2 });
  const data = batch.data;
  const lengths = batch.lengths;
  batch.push(Buffer.from('1234'));
  batch.push(Buffer.from('5678'));
  batch.clear();
  assert.is(batch.count, 0);
  assert.is(batch.byteLength, 0);
  assert.equal([...batch], []);
  assert.is(batch.data, data);
  assert.is(batch.lengths, lengths);
  // The whole capacity is available again: all 8 bytes, then both message slots.
  assert.ok(batch.push(Buffer.from('abcdefgh')));
  assert.is(batch.push(Buffer.from('i')), false);
  assert.ok(batch.push(Buffer.alloc(0)));
  assert.is(batch.push(Buffer.alloc(0)), false);
  assert.equal(contents(batch), ['abcdefgh', '']);
});

test('iteration yields views of the messages in order, which alias the batch', () => {
  const batch = new MessageBatch({ bytes: 32, messages: 4 });
  batch.push(Buffer.from('first'));
  batch.push(Buffer.from('second'));
  const views = [...batch];
  assert.equal(
    views.map((v) => v.toString()),
    ['first', 'second'],
  );
  assert.is(views[0]!.buffer, batch.data.buffer);
  assert.is(views[1]!.byteOffset, batch.data.byteOffset + 5);
  // A view reflects later writes to the batch: it is valid only until the batch is refilled.
  batch.clear();
  batch.push(Buffer.from('FIRST'));
  assert.is(views[0]!.toString(), 'FIRST');
  // Buffer.from(view) is the documented way to keep a message.
  const kept = Buffer.from([...batch][0]!);
  batch.clear();
  batch.push(Buffer.from('other'));
  assert.is(kept.toString(), 'FIRST');
});

test('each iteration starts from the first message', () => {
  const batch = new MessageBatch({ bytes: 16, messages: 4 });
  batch.push(Buffer.from('a'));
  batch.push(Buffer.from('bc'));
  assert.equal(contents(batch), ['a', 'bc']);
  assert.equal(contents(batch), ['a', 'bc']);
});

test('filled records messages written straight into data and lengths (as a receive does)', () => {
  const batch = new MessageBatch({ bytes: 32, messages: 4 });
  batch.data.write('hello, world', 0);
  batch.lengths.set([5, 2, 5]);
  batch.filled(3);
  assert.is(batch.count, 3);
  assert.is(batch.byteLength, 12);
  assert.equal(contents(batch), ['hello', ', ', 'world']);
  // filled replaces what was there: it is not an append.
  batch.filled(1);
  assert.is(batch.count, 1);
  assert.is(batch.byteLength, 5);
  assert.equal(contents(batch), ['hello']);
  batch.filled(0);
  assert.is(batch.count, 0);
  assert.is(batch.byteLength, 0);
});

test('push after filled appends after the filled messages', () => {
  const batch = new MessageBatch({ bytes: 32, messages: 4 });
  batch.data.write('abc', 0);
  batch.lengths.set([3]);
  batch.filled(1);
  assert.ok(batch.push(Buffer.from('de')));
  assert.equal(contents(batch), ['abc', 'de']);
});

test('invalid capacities fail with ERR_VRING_INVALID_ARGUMENT (vring throws only VringError)', () => {
  for (const options of [
    { bytes: -1 },
    { bytes: Number.NaN },
    { bytes: 1.5 },
    { bytes: 2 ** 53 },
    { messages: -1 },
    { messages: 2.5 },
    { messages: Number.POSITIVE_INFINITY },
  ]) {
    throwsVring(
      () => new MessageBatch(options),
      'ERR_VRING_INVALID_ARGUMENT',
      JSON.stringify(options),
    );
  }
});

test('append reserves room for a message written in place, after those already there', () => {
  const batch = new MessageBatch({ bytes: 16, messages: 4 });
  batch.push(Buffer.from('ab'));
  const view = batch.append(3);
  assert.ok(view);
  view.write('xyz');
  assert.equal(contents(batch), ['ab', 'xyz']);
  assert.is(batch.byteLength, 5);
});

test('append returns undefined and changes nothing when bytes or message slots run out', () => {
  const batch = new MessageBatch({ bytes: 8, messages: 2 });
  assert.is(batch.append(9), undefined);
  assert.ok(batch.append(4));
  assert.ok(batch.append(0));
  assert.is(batch.append(1), undefined, 'no message slot left');
  assert.is(batch.count, 2);
  assert.is(batch.byteLength, 4);
});

test('append rejects a negative or fractional length with ERR_VRING_INVALID_ARGUMENT', () => {
  const batch = new MessageBatch({ bytes: 8, messages: 2 });
  throwsVring(() => batch.append(-1), 'ERR_VRING_INVALID_ARGUMENT');
  throwsVring(() => batch.append(1.5), 'ERR_VRING_INVALID_ARGUMENT');
});

test('appendAt reserves room like append and returns its offset in data, or -1 when full', () => {
  const batch = new MessageBatch({ bytes: 8, messages: 3 });
  batch.push(Buffer.from('ab'));
  const at = batch.appendAt(3);
  assert.is(at, 2);
  batch.data.write('xyz', at);
  assert.equal(contents(batch), ['ab', 'xyz']);
  assert.is(batch.appendAt(4), -1, 'not enough bytes');
  assert.is(batch.appendAt(3), 5);
  assert.is(batch.appendAt(0), -1, 'no message slot left');
  assert.is(batch.count, 3);
  throwsVring(() => new MessageBatch().appendAt(-1), 'ERR_VRING_INVALID_ARGUMENT');
  throwsVring(() => new MessageBatch().appendAt(1.5), 'ERR_VRING_INVALID_ARGUMENT');
});

test('extendLast grows the last message in place, or returns -1 when empty or full', () => {
  const batch = new MessageBatch({ bytes: 8, messages: 2 });
  assert.is(batch.extendLast(1), -1, 'no message to extend');
  batch.push(Buffer.from('ab'));
  const at = batch.extendLast(3);
  assert.is(at, 2);
  batch.data.write('cde', at);
  assert.equal(contents(batch), ['abcde']);
  assert.is(batch.extendLast(4), -1, 'not enough bytes');
  assert.is(batch.byteLength, 5);
  batch.push(Buffer.from('f'));
  assert.is(batch.extendLast(2), 6, 'the last message is the one that grows');
  batch.data.write('gh', 6);
  assert.equal(contents(batch), ['abcde', 'fgh']);
  throwsVring(() => batch.extendLast(-1), 'ERR_VRING_INVALID_ARGUMENT');
});

test.run();
