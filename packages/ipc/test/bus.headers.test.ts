// Headers: string names and values beside a message's value, on publish, request and reply.
// The bus forwards them as they came to clients that read them, and leaves them out for a
// client from before them; a message without headers is the same as before they existed.
import { VirtioUser } from '@vring/core';
import { lastValueFrom, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejection, until } from '../../../test-support/index.js';
import type { MessageHeaders } from '../src/index.js';
import { Link } from '../src/link/link.js';
import { MessageCodec } from '../src/message-codec.js';
import { Kind, ReplyStatus } from '../src/wire/message-kinds.js';
import { startBus } from './fixtures/bus-harness.js';

const codec = new MessageCodec();
const MAX_FRAME = 9216;

test('a subscriber gets the headers a message was published with, and none on one without', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const sub = subscriber.subscribe<string>('orders.>');
    await subscriber.flush();
    const headers = { 'trace-id': 'abc', 'content-type': 'text/plain', émoji: '✓' };
    await publisher.publish('orders.new', 'first', { headers });
    await publisher.publish('orders.new', 'second');
    await publisher.publish('orders.new', 'third', { headers: {} });
    const first = (await sub.next()).value!;
    assert.equal(first, { topic: 'orders.new', value: 'first', headers });
    const second = (await sub.next()).value!;
    assert.not.ok('headers' in second, 'a message without headers has no headers property');
    const third = (await sub.next()).value!;
    assert.not.ok('headers' in third, 'empty headers are not sent');
    assert.is(h.errors.length, 0);
  } finally {
    await h.close();
  }
});

test("a handler reads a request's headers, and its reply headers reach the requester", async () => {
  const h = startBus();
  try {
    const server = await h.connect();
    const client = await h.connect();
    server.serve<number, number>('double', (n, context) => {
      context.replyHeaders = { seen: context.headers?.tenant ?? 'none' };
      return n * 2;
    });
    server.serve<number, number>('count', async function* (n, context) {
      for (let i = 1; i <= n; i++) {
        context.replyHeaders = { index: String(i) };
        yield i;
      }
    });
    await server.flush();

    const replyHeaders: MessageHeaders[] = [];
    const onReplyHeaders = (headers: MessageHeaders) => replyHeaders.push(headers);
    assert.is(
      await client.request('double', 21, { headers: { tenant: 'blue' }, onReplyHeaders }),
      42,
    );
    assert.equal(replyHeaders, [{ seen: 'blue' }]);
    await client.request('double', 1, { onReplyHeaders });
    assert.equal(
      replyHeaders[1],
      { seen: 'none' },
      'no request headers: context.headers is undefined',
    );

    replyHeaders.length = 0;
    const streamed = await lastValueFrom(
      client.requestStream<number>('count', 3, { onReplyHeaders }).pipe(toArray()),
    );
    assert.equal(streamed, [1, 2, 3]);
    assert.equal(
      replyHeaders.slice(0, 3),
      [{ index: '1' }, { index: '2' }, { index: '3' }],
      'each streamed value carries the headers set before it',
    );

    const many = await lastValueFrom(
      client.requestMany<number>('double', 5, { headers: { tenant: 'red' } }).pipe(toArray()),
    );
    assert.equal(many, [10]);
    assert.is(h.errors.length, 0);
  } finally {
    await h.close();
  }
});

test('headers out of bounds are refused with a typed error, and the client stays usable', async () => {
  const h = startBus();
  try {
    const client = await h.connect();
    client.serve('echo', (v) => v);
    const cases: Array<[string, unknown]> = [
      ['a value that is not a string', { a: 1 }],
      ['an empty name', { '': 'x' }],
      ['65 headers', Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, 'v']))],
      ['more than 16 KiB', { big: 'x'.repeat(16 * 1024) }],
      ['an array', ['a']],
    ];
    for (const [what, headers] of cases) {
      const options = { headers: headers as MessageHeaders };
      const published = (await rejection(client.publish('t', 1, options))) as {
        code?: string;
        reason?: string;
      };
      assert.is(published.code, 'ERR_VRING_INVALID_ARGUMENT', what);
      assert.is(published.reason, 'bad-headers', what);
      const requested = (await rejection(client.request('echo', 1, options))) as {
        code?: string;
      };
      assert.is(requested.code, 'ERR_VRING_INVALID_ARGUMENT', what);
    }
    // A handler whose reply headers break the bounds answers with that error instead.
    client.serve('bad-reply', (_v, context) => {
      context.replyHeaders = { n: 1 } as unknown as MessageHeaders;
      return 1;
    });
    const replied = (await rejection(client.request('bad-reply', 1))) as { code?: string };
    assert.is(replied.code, 'ERR_VRING_INVALID_ARGUMENT');
    assert.is(await client.request('echo', 'still here'), 'still here');
    assert.ok(client.connected);
    assert.is(h.errors.length, 0);
  } finally {
    await h.close();
  }
});

test('a subscriber from before headers gets the message without them', async () => {
  const h = startBus();
  const device = await VirtioUser.open(h.path, { maxMessage: MAX_FRAME });
  // A client of the first version: it never sends FEATURES, and reads [sids, topic, value].
  const delivered: unknown[] = [];
  let greeted = false;
  const old = new Link(device, {
    maxFrame: MAX_FRAME,
    maxMessage: 1 << 20,
    syncKind: Kind.HELLO,
    onMessage: (kind, data, start, end) => {
      if (kind === Kind.HELLO) greeted = true;
      if (kind === Kind.DELIVER) delivered.push(codec.decode(data, start, end, false));
      if (kind === Kind.REQUEST) {
        const [id, , value] = codec.decode(data, start, end, false) as [number, string, number];
        old.postValue(Kind.REPLY, [id, ReplyStatus.VALUE, value + 1], id);
      }
    },
  });
  try {
    old.post(Kind.HELLO, codec.encode([1, MAX_FRAME]));
    old.resume();
    await until(() => greeted, "the bus's HELLO");
    old.post(Kind.SUBSCRIBE, codec.encode([1, 't', 0]));
    old.post(Kind.SERVE, codec.encode(['inc']));
    const publisher = await h.connect();
    // The SUBSCRIBE and SERVE are in place once the bus has answered a request to it.
    await until(
      async () => (await publisher.request('inc', 0).catch(() => undefined)) === 1,
      'the old client serving',
    );
    await publisher.publish('t', 7, { headers: { a: 'b' } });
    await until(() => delivered.length === 1, 'the delivery');
    assert.equal(delivered[0], [[1], 't', 7], 'three elements, as it has always read');
    assert.is(await publisher.request('inc', 1, { headers: { a: 'b' } }), 2);
    assert.is(h.errors.length, 0);
  } finally {
    old.close();
    device.close();
    await h.close();
  }
});

test.run();
