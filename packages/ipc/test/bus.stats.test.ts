// The bus's counters: per client and per subject, read in process (Bus.report) and by any
// client through the bus itself ($vring.stats), and the names the bus reserves for itself.
import { lastValueFrom, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejection, until } from '../../../test-support/index.js';
import type { BusReport, Subscription } from '../src/index.js';
import { startBus } from './fixtures/bus-harness.js';

test('each client and each subject counts what it published, was delivered and requested', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const wide = await h.connect();
    const narrow = await h.connect();
    const wideSub = wide.subscribe<number>('prices.>');
    const narrowSub = narrow.subscribe<number>('prices.AAPL');
    narrow.serve<number, number>('double', (n) => n * 2);
    await wide.flush();
    await narrow.flush();
    for (let i = 0; i < 5; i++) await publisher.publish('prices.AAPL', i);
    for (let i = 0; i < 3; i++) await publisher.publish('prices.MSFT', i);
    assert.is(await publisher.request('double', 21), 42);
    assert.is(await publisher.request('double', 1), 2);
    await publisher.flush();
    for (let i = 0; i < 8; i++) await wideSub.next();
    for (let i = 0; i < 5; i++) await narrowSub.next();

    const report = h.bus.report();
    // In the order they connected: the bus numbers its clients so.
    const [p, w, n] = report.clients;
    assert.is(report.clients.length, 3);
    assert.equal([p!.published, w!.published, n!.published], [8, 0, 0], 'published, per publisher');
    assert.equal([p!.delivered, w!.delivered, n!.delivered], [0, 8, 5], 'delivered');
    assert.equal([p!.requestsSent, n!.requestsServed], [2, 2], 'requests sent and served');
    for (const c of report.clients) {
      assert.is(c.pid, process.pid, 'a socket client has the pid the kernel told');
      assert.is(c.uid, process.getuid!());
      assert.is(c.dropped, 0);
      assert.is(c.slowConsumer, 0);
    }
    assert.equal(report.subjects, [
      { subject: 'prices.AAPL', published: 5, delivered: 10, dropped: 0 },
      { subject: 'prices.MSFT', published: 3, delivered: 3, dropped: 0 },
    ]);
    assert.equal(report.otherSubjects, { published: 0, delivered: 0, dropped: 0 });
    assert.equal(report.totals, h.bus.stats);
    assert.is(report.totals.published, 8);
    assert.is(report.totals.delivered, 13);
  } finally {
    await h.close();
  }
});

test('any client reads the same counters through the bus: busReport, $vring.stats', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const reader = await h.connect();
    await publisher.publish('orders.new', { id: 1 });
    await publisher.flush();

    const viaBus = await reader.busReport();
    const local = h.bus.report();
    // The reader's own request is counted before the bus answers it.
    assert.is(viaBus.clients[1]!.requestsSent, 1);
    assert.equal(viaBus.subjects, local.subjects);
    assert.equal(viaBus.totals, local.totals);
    assert.equal(
      viaBus.clients.map((c) => c.id),
      local.clients.map((c) => c.id),
    );

    const plain = await reader.request<BusReport>('$vring.stats', null);
    assert.equal(plain.subjects, [
      { subject: 'orders.new', published: 1, delivered: 0, dropped: 0 },
    ]);
    const many = await lastValueFrom(
      reader.requestMany<BusReport>('$vring.stats', null).pipe(toArray()),
    );
    assert.is(many.length, 1, 'the bus answers a request-many once, then ends it');
    assert.is(many[0]!.clients[1]!.requestsSent, 3);

    const other = await rejection(reader.request('$vring.nothing', null));
    assert.is(other.code, 'ERR_VRING_NO_RESPONDERS');
  } finally {
    await h.close();
  }
});

test('a full subscriber: drops per client and subject, one slow-consumer event per filling', async () => {
  const h = startBus({ highWaterMark: 64 });
  try {
    const blocker = await h.connect();
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const subscriberStats = () => h.bus.report().clients[2]!;
    subscriber.subscribe<number>('d', { policy: 'drop' });

    // A block subscription it never reads stops it taking messages at 10: its ring fills,
    // then its queue at the bus; everything then published on 'd' is dropped there. Returns
    // the slow-consumer events counted while it filled (its reader may take a batch more
    // first, so the queue may fill, drain to half and fill again).
    let held: Subscription<number> | undefined;
    const fill = async () => {
      held = subscriber.subscribe<number>('hold', { highWaterMark: 10 });
      await subscriber.flush();
      for (let i = 0; i < 20_000; i++) void blocker.publish('hold', i);
      await until(() => subscriberStats().queued >= 64, 'the queue at the bus to fill');
      return subscriberStats().slowConsumer;
    };
    const dropMany = async () => {
      for (let i = 0; i < 5000; i++) void publisher.publish('d', i);
      await publisher.flush();
    };

    const filled = await fill();
    assert.ok(filled >= 1, 'filling is an event');
    await dropMany();
    assert.is(subscriberStats().slowConsumer, filled, 'staying full is the same event');
    assert.is(subscriberStats().dropped, 5000, 'every message on d was dropped');

    // Unsubscribed, it takes (and discards) what it had coming: the queue drains.
    held!.unsubscribe();
    await until(() => subscriberStats().queued === 0, 'the queue at the bus to drain');
    assert.is(subscriberStats().slowConsumer, filled, 'draining is no event');
    assert.ok((await fill()) > filled, 'filling again is a new event');
    await dropMany();
    assert.is(subscriberStats().dropped, 10_000);

    const report = h.bus.report();
    const d = report.subjects.find((s) => s.subject === 'd')!;
    assert.equal(d, { subject: 'd', published: 10_000, delivered: 0, dropped: 10_000 });
    assert.is(report.totals.dropped, 10_000);
  } finally {
    await h.close();
  }
});

test('names under $vring are the bus’s own: a client may not serve or publish on them', async () => {
  const h = startBus();
  try {
    const client = await h.connect();
    for (const name of ['$vring.stats', '$vring', '$vring.x.y']) {
      assert.throws(
        () => client.serve(name, () => 1),
        (e: { code?: string }) => e.code === 'ERR_VRING_INVALID_ARGUMENT',
        `serve ${name}`,
      );
      const error = await rejection(client.publish(name, 1));
      assert.is(error.code, 'ERR_VRING_INVALID_ARGUMENT', `publish ${name}`);
    }
    // Only the first token is reserved, and only spelled exactly.
    await client.publish('app.$vring', 1);
    await client.publish('$vringx', 1);
    const sub = client.subscribe('$vring.>');
    await client.flush();
    assert.ok(sub.active, 'subscribing under $vring is allowed');
    assert.ok(client.connected);
  } finally {
    await h.close();
  }
});

test('the subjects counted one by one are bounded; the rest are counted together', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const batch: Array<Promise<void>> = [];
    for (let i = 0; i < 4100; i++) batch.push(publisher.publish(`t.${i}`, i));
    await Promise.all(batch);
    await publisher.flush();
    const report = h.bus.report();
    assert.is(report.subjects.length, 4096);
    assert.is(report.otherSubjects.published, 4);
    assert.is(report.totals.published, 4100);
  } finally {
    await h.close();
  }
});

test.run();
