// The copies the bus keeps of message bodies that must wait in send queues: one per message
// however many queues keep it, in buffers used again once every queue is done with them,
// and never while one still reads them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { dropKept, keptCopyOf } from '../src/link/borrowed-copy.js';

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

function body(bytes: number, fill: number): Uint8Array {
  return new Uint8Array(bytes).fill(fill);
}

test('the queues that keep one view in a turn share one copy of it', async () => {
  const view = body(64 * 1024, 1);
  const first = keptCopyOf(view);
  const second = keptCopyOf(view);
  assert.is(second, first, 'one copy for both queues');
  assert.is(first.users, 2);
  assert.ok(Buffer.from(view).equals(first.body), 'the bytes of the view');
  assert.is.not(first.body.buffer, view.buffer, 'a copy, not the view');
  dropKept(first);
  dropKept(second);
  await nextTurn();
});

test('a buffer every queue is done with carries the next large body; one still kept is never reused', async () => {
  const done = keptCopyOf(body(1024 * 1024, 2));
  dropKept(done);
  await nextTurn();
  const kept = keptCopyOf(body(1024 * 1024, 3));
  assert.is(kept.body.buffer, done.body.buffer, 'the free buffer is used again');
  await nextTurn();
  const other = keptCopyOf(body(1024 * 1024, 4));
  assert.is.not(other.body.buffer, kept.body.buffer, 'a buffer still kept is not handed out');
  assert.ok(
    kept.body.every((b) => b === 3),
    'what a queue keeps does not change',
  );
  assert.ok(other.body.every((b) => b === 4));
  dropKept(kept);
  dropKept(other);
  await nextTurn();
});

test('a body of another size takes a buffer that fits it, and small bodies a buffer of their own', async () => {
  const large = keptCopyOf(body(100_000, 5));
  assert.is(large.body.byteLength, 100_000);
  assert.ok(large.body.buffer.byteLength <= 125_000, 'at most a quarter larger');
  dropKept(large);
  await nextTurn();
  const small = keptCopyOf(body(100, 6));
  assert.is(small.pooled, undefined);
  assert.ok(small.body.every((b) => b === 6));
  dropKept(small);
});

test.run();
