// OpenTelemetry: with an SDK registered, a client makes spans for publish, deliver, request
// and handle, and the W3C trace context travels in the headers, so the trace continues in
// the subscriber's and the responder's processes. Without an SDK it does nothing.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Child, spawnScript } from '../../../test-support/index.js';
import { startBus } from './fixtures/bus-harness.js';

interface ExportedSpan {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes: Record<string, unknown>;
  status: number;
}

// SpanKind of @opentelemetry/api.
const SERVER = 1;
const CLIENT = 2;
const PRODUCER = 3;
const CONSUMER = 4;

function spawnPeer(path: string, role: string): Child {
  return spawnScript(new URL('./fixtures/bus-traced-peer.ts', import.meta.url), [path, role]);
}

function only(spans: ExportedSpan[], name: string): ExportedSpan {
  const found = spans.filter((s) => s.name === name);
  assert.is(found.length, 1, `one span ${name} in ${JSON.stringify(spans.map((s) => s.name))}`);
  return found[0]!;
}

test('a publish and its delivery are one trace across processes', async () => {
  const h = startBus();
  const subscriber = spawnPeer(h.path, 'subscriber');
  let publisher: Child | undefined;
  try {
    assert.is(await subscriber.line(), 'ready');
    publisher = spawnPeer(h.path, 'publisher');
    const published = JSON.parse(await publisher.line()) as {
      spans: ExportedSpan[];
      refused: string;
    };
    assert.is(published.refused, 'ERR_VRING_INVALID_ARGUMENT', 'bad headers, traced');
    const received = JSON.parse(await subscriber.line()) as {
      headers: Record<string, string>;
      spans: ExportedSpan[];
    };
    const publish = only(published.spans, 'publish traced.t');
    const deliver = only(received.spans, 'deliver traced.t');
    assert.is(publish.kind, PRODUCER);
    assert.is(deliver.kind, CONSUMER);
    assert.is(publish.attributes['messaging.system'], 'vring');
    assert.is(publish.attributes['messaging.destination.name'], 'traced.t');
    assert.is(deliver.attributes['messaging.destination.name'], 'traced.t');
    assert.is(deliver.traceId, publish.traceId, 'the subscriber continues the trace');
    assert.is(deliver.parentSpanId, publish.spanId, 'delivery is a child of the publish');
    assert.is(received.headers.tenant, 'blue', "the publisher's own headers are kept");
    assert.match(received.headers.traceparent!, new RegExp(`^00-${publish.traceId}-`));
    assert.is(await publisher.exited, 0);
    assert.is(await subscriber.exited, 0);
  } finally {
    publisher?.kill();
    subscriber.kill();
    await h.close();
  }
});

test('a request and its handling are one trace across processes, the handler inside it', async () => {
  const h = startBus();
  const responder = spawnPeer(h.path, 'responder');
  let requester: Child | undefined;
  try {
    assert.is(await responder.line(), 'ready');
    requester = spawnPeer(h.path, 'requester');
    const asked = JSON.parse(await requester.line()) as { reply: string; spans: ExportedSpan[] };
    const answered = JSON.parse(await responder.line()) as {
      seen: { headers: Record<string, string>; active: string };
      spans: ExportedSpan[];
    };
    assert.is(asked.reply, 'ping');
    const request = only(asked.spans, 'request traced.echo');
    const handle = only(answered.spans, 'handle traced.echo');
    assert.is(request.kind, CLIENT);
    assert.is(handle.kind, SERVER);
    assert.is(handle.attributes['rpc.method'], 'traced.echo');
    assert.is(handle.traceId, request.traceId, 'the responder continues the trace');
    assert.is(handle.parentSpanId, request.spanId);
    assert.is(answered.seen.active, handle.spanId, 'the handler runs in its span');
    assert.ok(answered.seen.headers.traceparent, 'the handler sees the trace context');
    assert.is(await requester.exited, 0);
    assert.is(await responder.exited, 0);
  } finally {
    requester?.kill();
    responder.kill();
    await h.close();
  }
});

test('without an SDK registered, nothing is added to a message', async () => {
  // This process registers none: its clients make no spans and send no trace context.
  const h = startBus();
  try {
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const sub = subscriber.subscribe('t');
    subscriber.serve('echo', (_v, request) => request.headers ?? 'none');
    await subscriber.flush();
    await publisher.publish('t', 1);
    assert.not.ok('headers' in (await sub.next()).value!);
    assert.is(await publisher.request('echo', 1), 'none');
  } finally {
    await h.close();
  }
});

test.run();
