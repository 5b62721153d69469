// Ordering: by default one topic's messages keep their order and a large message does not
// hold up the others, so a small message on another topic may overtake it; with
// `ordering: 'publisher'`, everything a client publishes arrives in publish order, as on
// one NATS connection. The case that showed it: an end marker published after 20,000
// messages overtook the last ones of a topic, stuck behind a 1 MiB message.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnScript } from '../../../test-support/index.js';
import type { BusMessage } from '../src/index.js';
import { startBus } from './fixtures/bus-harness.js';

const COUNT = 20_000;

/** Runs the publisher process in `ordering` and returns what the subscriber got, in order. */
async function publishAndReceive(ordering: 'topic' | 'publisher'): Promise<number[]> {
  const h = startBus();
  const publisher = { kill: () => {} };
  try {
    const subscriber = await h.connect();
    const sub = subscriber.subscribe<{ seq: number }>('o.>', { highWaterMark: COUNT * 2 });
    await subscriber.flush();
    const child = spawnScript(new URL('./fixtures/bus-ordered-publisher.ts', import.meta.url), [
      h.path,
      ordering,
      String(COUNT),
    ]);
    publisher.kill = () => child.kill();
    const received: number[] = [];
    for (let i = 0; i <= COUNT; i++) {
      const { value } = (await sub.next()) as IteratorResult<BusMessage<{ seq: number }>>;
      received.push(value!.value.seq);
    }
    assert.is(await child.line(), 'done');
    assert.is(await child.exited, 0);
    return received;
  } finally {
    publisher.kill();
    await h.close();
  }
}

/** Whether each topic's messages (seq mod 5; the marker is the last seq) came in order. */
function inOrderPerTopic(received: number[]): boolean {
  const last = new Map<number, number>();
  for (const seq of received) {
    const topic = seq === COUNT ? -1 : seq % 5;
    if ((last.get(topic) ?? -1) > seq) return false;
    last.set(topic, seq);
  }
  return true;
}

test("with ordering 'publisher', the end marker arrives after every message before it", async () => {
  const received = await publishAndReceive('publisher');
  assert.is(received.length, COUNT + 1);
  assert.is(received.at(-1), COUNT, 'the marker is last');
  const outOfOrder = received.findIndex((seq, i) => i > 0 && seq < received[i - 1]!);
  assert.is(outOfOrder, -1, 'every message in publish order, across topics');
});

test('by default, each topic keeps its order and small messages overtake the large one', async () => {
  const received = await publishAndReceive('topic');
  assert.is(received.length, COUNT + 1, 'nothing lost');
  assert.ok(inOrderPerTopic(received), 'each topic in publish order');
  const large = COUNT - 60;
  assert.ok(
    received.indexOf(COUNT) < received.indexOf(large),
    'the marker overtook the 1 MiB message (which a large message must not hold up)',
  );
});

test('an ordering that is neither is refused', async () => {
  const h = startBus();
  try {
    const error = await h.connect({ ordering: 'global' as 'topic' }).then(
      () => undefined,
      (e: { code?: string }) => e,
    );
    assert.is(error?.code, 'ERR_VRING_INVALID_ARGUMENT');
  } finally {
    await h.close();
  }
});

test.run();
