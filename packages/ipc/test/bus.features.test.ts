// The features a bus lists in its HELLO: a client uses queue groups, request-many and the
// bus's counters only with a bus that lists them, and refuses them with a typed error on an
// older bus instead of being disconnected by it; a client from before the list ignores it.
import { VirtioUser } from '@vring/core';
import { lastValueFrom } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejection, until } from '../../../test-support/index.js';
import { BusClient } from '../src/bus/bus-client.js';
import { InProcessTransport } from '../src/bus/in-process-transport.js';
import { Link } from '../src/link/link.js';
import { MessageCodec } from '../src/message-codec.js';
import { Kind } from '../src/wire/message-kinds.js';
import { startBus } from './fixtures/bus-harness.js';

const MAX_FRAME = 9216;
const codec = new MessageCodec();

test('the bus lists the features it supports in its HELLO', async () => {
  const h = startBus();
  try {
    const client = await h.connect();
    for (const feature of [
      'queue-groups',
      'request-many',
      'stats',
      'direct-routes',
      'headers',
    ] as const) {
      assert.ok(client.supports(feature), feature);
    }
  } finally {
    await h.close();
  }
});

test('a client from before the list reads the HELLO as it always did and carries on', async () => {
  const h = startBus();
  const device = await VirtioUser.open(h.path, { maxMessage: MAX_FRAME });
  // A client of the first version: it sends [1, maxFrame] and reads elements 0 and 1.
  const hellos: unknown[] = [];
  const old = new Link(device, {
    maxFrame: MAX_FRAME,
    maxMessage: 1 << 20,
    syncKind: Kind.HELLO,
    onMessage: (kind, data, start, end) => {
      if (kind === Kind.HELLO) hellos.push(codec.decode(data, start, end, false));
    },
  });
  try {
    const subscriber = await h.connect();
    const sub = subscriber.subscribe<number>('t');
    await subscriber.flush();
    old.post(Kind.HELLO, codec.encode([1, MAX_FRAME]));
    old.resume();
    await until(() => hellos.length === 1, "the bus's HELLO");
    const [version, frame, features] = hellos[0] as [unknown, unknown, unknown];
    assert.is(version, 1);
    assert.is(frame, MAX_FRAME);
    assert.equal(
      features,
      ['queue-groups', 'request-many', 'stats', 'direct-routes', 'headers'],
      'an extra, third element',
    );
    old.postValue(Kind.PUBLISH, ['t', 7], 1);
    assert.is((await sub.next()).value?.value, 7, 'its session works as before');
    assert.is(h.errors.length, 0);
  } finally {
    old.close();
    device.close();
    await h.close();
  }
});

test('on a bus from before the features, a client refuses them with a typed error and stays connected', async () => {
  // An older bus: it answers HELLO with [1, frame] alone, and records what it is sent.
  const [clientEnd, busEnd] = InProcessTransport.pair(MAX_FRAME, 256);
  const received: Array<{ kind: number; body: unknown }> = [];
  const olderBus: Link = new Link(busEnd, {
    maxFrame: MAX_FRAME,
    maxMessage: 1 << 20,
    syncKind: Kind.HELLO,
    onMessage: (kind, data, start, end) => {
      received.push({ kind, body: codec.decode(data, start, end, false) });
      if (kind === Kind.HELLO) olderBus.post(Kind.HELLO, codec.encode([1, MAX_FRAME]));
    },
  });
  olderBus.resume();
  const client = new BusClient(clientEnd, MAX_FRAME, {});
  try {
    await client.ready(undefined);
    const expectRefused = (error: unknown, feature: string) => {
      const e = error as { code?: string; reason?: string; data?: { feature?: string } };
      assert.is(e.code, 'ERR_VRING_FEATURE_MISMATCH', feature);
      assert.is(e.reason, 'missing-bus-feature');
      assert.is(e.data?.feature, feature);
      return true;
    };
    assert.not.ok(client.supports('queue-groups'));
    assert.throws(
      () => client.subscribe('jobs.*', { queue: 'workers' }),
      (e: unknown) => expectRefused(e, 'queue-groups'),
    );
    expectRefused(await rejection(lastValueFrom(client.requestMany('svc', 1))), 'request-many');
    expectRefused(await rejection(client.busReport()), 'stats');
    expectRefused(await rejection(client.publish('jobs.1', 1, { headers: { a: 'b' } })), 'headers');
    expectRefused(await rejection(client.request('svc', 1, { headers: { a: 'b' } })), 'headers');

    // What the older bus understands still works, and it never saw the new messages.
    client.subscribe('jobs.*');
    await client.publish('jobs.1', 1);
    await until(() => received.some((m) => m.kind === Kind.PUBLISH), 'the publish');
    assert.equal(
      received.map((m) => m.kind),
      [Kind.HELLO, Kind.SUBSCRIBE, Kind.PUBLISH],
    );
    assert.is((received[1]!.body as unknown[]).length, 3, 'a plain three-element SUBSCRIBE');
    assert.ok(client.connected);
    assert.not.ok(olderBus.done);
  } finally {
    client.close();
    olderBus.close();
  }
});

test.run();
