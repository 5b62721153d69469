// Inbox: the hand-off from a link's reader to whoever consumes (Channel, Subscription):
// order, who is served first, the block and drop policies, and how it ends.
import { VringError } from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Inbox, type InboxObserver } from '../src/inbox.js';

function observer<T>(got: T[], events: string[] = []): InboxObserver<T> & { closed: boolean } {
  return {
    closed: false,
    next: (value) => got.push(value),
    error: (error) => events.push(`error ${(error as Error).message}`),
    complete: () => events.push('complete'),
  };
}

test('values held are taken in arrival order; undefined is a value', async () => {
  const inbox = new Inbox<number | undefined>({ highWaterMark: 10 });
  inbox.push(1);
  inbox.push(undefined);
  inbox.push(3);
  assert.is(inbox.length, 3);
  assert.equal(await inbox.next(), { done: false, value: 1 });
  assert.equal(await inbox.next(), { done: false, value: undefined });
  assert.is(inbox.take(), 3);
  assert.is(inbox.length, 0);
});

test('a waiting next() takes the value before attached observers; observers take turns', async () => {
  const inbox = new Inbox<number>({ highWaterMark: 10 });
  const a: number[] = [];
  const b: number[] = [];
  inbox.attach(observer(a));
  inbox.attach(observer(b));
  const waiting = inbox.next();
  for (let i = 1; i <= 5; i++) inbox.push(i);
  assert.equal(await waiting, { done: false, value: 1 });
  assert.equal(a, [2, 4]);
  assert.equal(b, [3, 5]);
  assert.is(inbox.length, 0, 'nothing held while someone consumes');
});

test('attach() hands over what is held first; a detached observer takes no more', () => {
  const inbox = new Inbox<number>({ highWaterMark: 10 });
  inbox.push(1);
  inbox.push(2);
  const got: number[] = [];
  const detach = inbox.attach(observer(got));
  inbox.push(3);
  detach!();
  inbox.push(4);
  assert.equal(got, [1, 2, 3]);
  assert.is(inbox.length, 1);
});

test('block: full at the high-water mark (count or bytes), room again at half', () => {
  const events: boolean[] = [];
  const inbox = new Inbox<number>({
    highWaterMark: 4,
    highWaterBytes: 100,
    onFull: (full) => events.push(full),
  });
  for (let i = 0; i < 3; i++) inbox.push(i, 1);
  assert.equal(events, []);
  inbox.push(3, 1);
  assert.equal(events, [true], 'full at 4 values');
  inbox.push(4, 1);
  assert.is(inbox.length, 5, 'block never loses a value');
  inbox.take();
  inbox.take();
  inbox.take();
  assert.equal(events, [true], 'still full at half (2 of 4)');
  inbox.take();
  assert.equal(events, [true, false], 'room again below half');
  inbox.take();
  inbox.push(0, 100);
  assert.equal(events, [true, false, true], 'full at 100 bytes, whatever the count');
});

test('drop: a full inbox discards new values and counts them; a waiting consumer still gets one', async () => {
  const inbox = new Inbox<number>({
    highWaterMark: 2,
    policy: 'drop',
    onFull: () => assert.unreachable(),
  });
  for (let i = 0; i < 5; i++) inbox.push(i);
  assert.is(inbox.length, 2);
  assert.is(inbox.dropped, 3);
  assert.is(inbox.take(), 0);
  assert.is(inbox.take(), 1);
  const waiting = inbox.next();
  inbox.push(9);
  assert.equal(await waiting, { done: false, value: 9 });
});

test('end(): values held are still taken, then done; with an error, next() rejects and observers error', async () => {
  const clean = new Inbox<number>({ highWaterMark: 10 });
  clean.push(1);
  const events: string[] = [];
  clean.end(undefined);
  clean.push(2);
  assert.equal(await clean.next(), { done: false, value: 1 });
  assert.equal(await clean.next(), { done: true, value: undefined });
  assert.is(clean.attach(observer([], events)), undefined);
  assert.equal(events, ['complete']);

  const failed = new Inbox<number>({ highWaterMark: 10 });
  const waiting = failed.next();
  const got: number[] = [];
  failed.attach(observer(got, events));
  failed.end(new VringError('ERR_VRING_PROTOCOL', 'bad peer'));
  await waiting.then(
    () => assert.unreachable(),
    (error: VringError) => assert.is(error.code, 'ERR_VRING_PROTOCOL'),
  );
  assert.equal(events, ['complete', 'error bad peer']);
  await failed.next().then(
    () => assert.unreachable(),
    (error: VringError) => assert.is(error.message, 'bad peer'),
  );
});

test('an aborted next() takes nothing; onDemand tells when someone starts or stops waiting', async () => {
  let demand = 0;
  const inbox = new Inbox<number>({ highWaterMark: 10, onDemand: () => demand++ });
  const controller = new AbortController();
  const aborted = inbox.next(controller.signal);
  assert.is(inbox.consumers, 1);
  controller.abort(new Error('stop'));
  await aborted.then(
    () => assert.unreachable(),
    (error: Error) => assert.is(error.message, 'stop'),
  );
  assert.is(inbox.consumers, 0);
  inbox.push(7);
  assert.is(inbox.length, 1, 'the value waits for the next consumer');
  assert.is(demand, 2, 'once when the wait began, once when it was aborted');
  await inbox.next(AbortSignal.abort()).catch(() => {});
  assert.is(inbox.length, 1, 'an already aborted wait takes nothing either');
});

test.run();
