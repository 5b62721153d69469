// Subscription: a bus subscription as its consumer sees it, against a stand-in for the
// client connection that owns it.
import type { VringError } from '@vring/core';
import { take, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type SubscribeOptions,
  Subscription,
  type SubscriptionOwner,
} from '../src/subscription.js';

function subscription(options: SubscribeOptions = {}) {
  const calls: string[] = [];
  const owner: SubscriptionOwner = {
    setFull: (_, full) => calls.push(`full ${full}`),
    waitingChanged: () => calls.push('waiting'),
    unsubscribe: () => calls.push('unsubscribe'),
  };
  const sub = new Subscription<number>(1, 't', options, owner);
  return { sub, calls, deliver: (value: number) => sub.push({ topic: 't', value }, 8) };
}

test('observe() hands each message to the observer as it is delivered, held ones first', () => {
  const { sub, deliver } = subscription();
  deliver(1);
  const got: number[] = [];
  sub.observe().subscribe((m) => got.push(m.value));
  assert.equal(got, [1]);
  deliver(2);
  assert.equal(got, [1, 2], 'delivered within push(), no promise in between');
  assert.is(sub.pending, 0);
});

test('one consumer at a time: next() and a second observe() are refused while one takes', async () => {
  const { sub } = subscription();
  const observed = sub.observe().subscribe(() => {});
  const refused = await sub.next().catch((error: VringError) => error);
  assert.is((refused as VringError).code, 'ERR_VRING_INVALID_ARGUMENT');
  let second: unknown;
  sub.observe().subscribe({ error: (error) => (second = error) });
  assert.is((second as VringError).code, 'ERR_VRING_INVALID_ARGUMENT');
  assert.ok(sub.active, 'the refused consumer did not end the subscription');
  observed.unsubscribe();
});

test('unsubscribing from the Observable unsubscribes at the bus; ending the subscription completes it', () => {
  const first = subscription();
  const values: number[] = [];
  first.sub
    .observe()
    .pipe(take(2), toArray())
    .subscribe((v) => values.push(...v.map((m) => m.value)));
  first.deliver(1);
  first.deliver(2);
  assert.equal(values, [1, 2]);
  assert.ok(first.calls.includes('unsubscribe'), 'take(2) unsubscribed at the bus');
  assert.not.ok(first.sub.active);

  const second = subscription();
  let completed = false;
  second.sub.observe().subscribe({ complete: () => (completed = true) });
  second.sub.end(undefined);
  assert.ok(completed, 'the connection closing completes the Observable');
});

test('an observer keeps the process alive like a waiting next(): the owner is told', () => {
  const { sub, calls } = subscription();
  const observed = sub.observe().subscribe(() => {});
  assert.ok(sub.waiting);
  assert.equal(calls, ['waiting']);
  observed.unsubscribe();
  assert.not.ok(sub.waiting);
  assert.equal(calls, ['waiting', 'waiting', 'unsubscribe']);
});

test('block holds the connection back when full and releases it at half; drop counts its own and the bus drops', async () => {
  const blocking = subscription({ highWaterMark: 4 });
  for (let i = 0; i < 6; i++) blocking.deliver(i);
  assert.equal(blocking.calls, ['full true']);
  for (let i = 0; i < 5; i++) assert.equal((await blocking.sub.next()).value?.value, i);
  assert.equal(blocking.calls, ['full true', 'full false']);

  const dropping = subscription({ policy: 'drop', highWaterMark: 4 });
  for (let i = 0; i < 6; i++) dropping.deliver(i);
  dropping.sub.addDropped(10);
  assert.is(dropping.sub.pending, 4);
  assert.is(dropping.sub.dropped, 12);
  assert.equal(dropping.calls, []);
});

test.run();
