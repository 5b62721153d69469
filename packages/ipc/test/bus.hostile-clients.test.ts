// Clients that send the bus malformed frames: each is disconnected with a typed error naming
// what it broke, the bus keeps serving everyone else, and memory stays bounded however many
// try.
import { MessageBatch, VirtioUser, type VirtioUserEvent } from '@vring/core';
import { Packr } from 'msgpackr';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { collectGarbage, until } from '../../../test-support/index.js';
import { FLAG_FIRST, FLAG_LAST, FLAG_MORE, writeFrameHeader } from '../src/wire/frame-header.js';
import { Kind } from '../src/wire/message-kinds.js';
import { startBus } from './fixtures/bus-harness.js';

const packr = new Packr({ useRecords: false });
const MAX_FRAME = 9216;

interface RawFrame {
  kind: number;
  stream: number;
  flags?: number;
  totalLength?: number;
  offset?: number;
  body: Uint8Array;
  ethertype?: number;
}

function frames(batch: MessageBatch, list: RawFrame[]): MessageBatch {
  for (const f of list) {
    const frame = batch.append(30 + f.body.byteLength)!;
    writeFrameHeader(frame, {
      kind: f.kind,
      flags: f.flags ?? FLAG_FIRST | FLAG_LAST,
      stream: f.stream,
      totalLength: f.totalLength ?? f.body.byteLength,
      offset: f.offset ?? 0,
    });
    if (f.ethertype !== undefined) frame.writeUInt16BE(f.ethertype, 12);
    frame.set(f.body, 30);
  }
  return batch;
}

/** A message too large for one frame, as its two fragments. */
function inTwoFragments(kind: number, stream: number, body: Uint8Array): RawFrame[] {
  const half = body.byteLength >> 1;
  const totalLength = body.byteLength;
  return [
    { kind, stream, flags: FLAG_FIRST, totalLength, body: body.subarray(0, half) },
    { kind, stream, flags: FLAG_LAST, totalLength, offset: half, body: body.subarray(half) },
  ];
}

const hello: RawFrame = { kind: Kind.HELLO, stream: 1, body: packr.pack([1, MAX_FRAME]) };
const chunk = new Uint8Array(1000);

/** Each case: what the client sends after its HELLO, and the error the bus must report. */
const cases: Array<{ name: string; send: RawFrame[]; code: string; reason?: string }> = [
  {
    name: 'a frame that is not vring (EtherType)',
    send: [{ kind: Kind.PUBLISH, stream: 2, body: packr.pack(['t', 1]), ethertype: 0x0800 }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'not-vring-ethertype',
  },
  {
    name: 'kind 0',
    send: [{ kind: 0, stream: 2, body: packr.pack(['t', 1]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-kind',
  },
  {
    name: 'a packed record that claims more bytes than its frame holds',
    send: [
      {
        kind: Kind.PUBLISH,
        stream: 2,
        flags: FLAG_FIRST | FLAG_LAST | FLAG_MORE,
        totalLength: 5000,
        body: chunk,
      },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'packed-record-overruns',
  },
  {
    name: 'a truncated message restarted',
    send: [
      { kind: Kind.PUBLISH, stream: 2, flags: FLAG_FIRST, totalLength: 5000, body: chunk },
      { kind: Kind.PUBLISH, stream: 2, body: packr.pack(['t', 1]) },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'stream-restarted',
  },
  {
    name: 'a fragment with no first fragment',
    send: [
      {
        kind: Kind.PUBLISH,
        stream: 9,
        flags: FLAG_LAST,
        totalLength: 2000,
        offset: 1000,
        body: chunk,
      },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'fragment-without-start',
  },
  {
    name: 'a fragment at the wrong offset',
    send: [
      { kind: Kind.PUBLISH, stream: 2, flags: FLAG_FIRST, totalLength: 5000, body: chunk },
      { kind: Kind.PUBLISH, stream: 2, flags: 0, totalLength: 5000, offset: 2000, body: chunk },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'fragment-out-of-order',
  },
  {
    name: 'a flood of messages begun and never finished',
    send: Array.from({ length: 100 }, (_, i) => ({
      kind: Kind.PUBLISH,
      stream: 100 + i,
      flags: FLAG_FIRST,
      totalLength: 1_000_000,
      body: chunk,
    })),
    code: 'ERR_VRING_PROTOCOL',
    reason: 'too-many-streams',
  },
  {
    name: 'messages in flight declaring more than the byte budget',
    send: Array.from({ length: 3 }, (_, i) => ({
      kind: Kind.PUBLISH,
      stream: 100 + i,
      flags: FLAG_FIRST,
      totalLength: 60 * 1024 * 1024,
      body: chunk,
    })),
    code: 'ERR_VRING_PROTOCOL',
    reason: 'pending-bytes-exceeded',
  },
  {
    name: 'a total length over the largest message',
    send: [
      { kind: Kind.PUBLISH, stream: 2, flags: FLAG_FIRST, totalLength: 0xffff_fff0, body: chunk },
    ],
    code: 'ERR_VRING_OVERSIZED_MESSAGE',
  },
  {
    name: 'a publish whose value is cut short',
    send: [
      {
        kind: Kind.PUBLISH,
        stream: 2,
        body: Uint8Array.from([0x92, 0xa1, 0x74, 0xdb, 0xff, 0xff]),
      },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a publish whose value is the never-used byte 0xc1',
    send: [{ kind: Kind.PUBLISH, stream: 2, body: Uint8Array.from([0x92, 0xa1, 0x74, 0xc1]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a publish with bytes after its value',
    send: [
      { kind: Kind.PUBLISH, stream: 2, body: Uint8Array.from([0x92, 0xa1, 0x74, 0x01, 0x02]) },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a value nested 5,000 deep',
    send: [
      {
        kind: Kind.PUBLISH,
        stream: 2,
        body: Uint8Array.from([0x92, 0xa1, 0x74, ...new Array(5_000).fill(0x91), 0x01]),
      },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'an array claiming more elements than there are bytes',
    send: [
      {
        kind: Kind.PUBLISH,
        stream: 2,
        body: Uint8Array.from([0x92, 0xa1, 0x74, 0xdd, 0x7f, 0xff, 0xff, 0xff]),
      },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    // Valid msgpack, but no subscriber's codec can decode it: maps become objects, whose
    // keys cannot be maps. Forwarded, it cost every subscriber of the topic its connection.
    name: 'a publish whose value is a map keyed by a map',
    send: [
      {
        kind: Kind.PUBLISH,
        stream: 2,
        body: Uint8Array.from([0x92, 0xa1, 0x74, 0x81, 0x80, 0x01]),
      },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a publish whose value is a map keyed by binary',
    send: [
      {
        kind: Kind.PUBLISH,
        stream: 2,
        body: Uint8Array.from([0x92, 0xa1, 0x74, 0x81, 0xc4, 0x01, 0x00, 0x01]),
      },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a publish on a wildcard topic',
    send: [{ kind: Kind.PUBLISH, stream: 2, body: packr.pack(['a.*', 1]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-topic',
  },
  {
    name: 'a subscription that is not msgpack',
    send: [{ kind: Kind.SUBSCRIBE, stream: 2, body: Uint8Array.from([0xc1, 0xc1]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a subscription to a malformed pattern',
    send: [{ kind: Kind.SUBSCRIBE, stream: 2, body: packr.pack([1, 'a.>.b', 0]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-topic',
  },
  {
    name: 'a queue subscription whose queue name is not a string',
    send: [{ kind: Kind.SUBSCRIBE, stream: 2, body: packr.pack([1, 'a', 0, 7]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a queue subscription with a wildcard queue name',
    send: [{ kind: Kind.SUBSCRIBE, stream: 2, body: packr.pack([1, 'a', 0, 'w.*']) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-topic',
  },
  {
    name: 'a subscription of five elements',
    send: [{ kind: Kind.SUBSCRIBE, stream: 2, body: packr.pack([1, 'a', 0, 'w', 'x']) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a request-many id reused while in flight',
    send: [
      { kind: Kind.SERVE, stream: 2, body: packr.pack(['svc']) },
      { kind: Kind.REQUEST_MANY, stream: 3, body: packr.pack([7, 'svc', 1]) },
      { kind: Kind.REQUEST, stream: 4, body: packr.pack([7, 'svc', 2]) },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a direct-route address that is not a string',
    send: [{ kind: Kind.ROUTE, stream: 2, body: packr.pack([7]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a direct-route address of 2 KiB',
    send: [{ kind: Kind.ROUTE, stream: 2, body: packr.pack(['/'.repeat(2048)]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a publish whose headers are not a map',
    send: [{ kind: Kind.PUBLISH, stream: 2, body: packr.pack(['t', 1, ['a', 'b']]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a publish with a header whose value is a number',
    send: [{ kind: Kind.PUBLISH, stream: 2, body: packr.pack(['t', 1, { a: 1 }]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a publish with a header of an empty name',
    send: [{ kind: Kind.PUBLISH, stream: 2, body: packr.pack(['t', 1, { '': 'x' }]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a publish with 65 headers',
    send: [
      {
        kind: Kind.PUBLISH,
        stream: 2,
        body: packr.pack([
          't',
          1,
          Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, 'v'])),
        ]),
      },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a request whose headers take more than 16 KiB',
    send: [
      { kind: Kind.SERVE, stream: 2, body: packr.pack(['svc']) },
      ...inTwoFragments(Kind.REQUEST, 3, packr.pack([7, 'svc', 1, { big: 'x'.repeat(17_000) }])),
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a reply whose headers claim more entries than there are bytes',
    send: [
      {
        kind: Kind.REPLY,
        stream: 2,
        body: Uint8Array.from([0x94, 0x01, 0x00, 0x01, 0x8f, 0xa1, 0x61]),
      },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'features that are not a list of names',
    send: [{ kind: Kind.FEATURES, stream: 2, body: packr.pack([[1]]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a kind only the bus sends',
    send: [{ kind: Kind.DELIVER, stream: 2, body: packr.pack([[1], 't', 1]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
  {
    name: 'a PUBLISH on a topic reserved for the bus',
    send: [{ kind: Kind.PUBLISH, stream: 2, body: packr.pack(['$vring.stats', 1]) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'reserved-name',
  },
  {
    name: 'a SERVE of a name reserved for the bus',
    send: [{ kind: Kind.SERVE, stream: 2, body: packr.pack(['$vring.stats']) }],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'reserved-name',
  },
  {
    name: 'a request id reused while in flight',
    send: [
      { kind: Kind.SERVE, stream: 2, body: packr.pack(['svc']) },
      { kind: Kind.REQUEST, stream: 3, body: packr.pack([7, 'svc', 1]) },
      { kind: Kind.REQUEST, stream: 4, body: packr.pack([7, 'svc', 2]) },
    ],
    code: 'ERR_VRING_PROTOCOL',
    reason: 'bad-envelope',
  },
];

/** Connects a raw front-end, says HELLO, sends `list`, and resolves when the bus drops it. */
async function attack(path: string, list: RawFrame[]): Promise<void> {
  let disconnected!: () => void;
  const gone = new Promise<void>((resolve) => {
    disconnected = resolve;
  });
  const raw = await VirtioUser.open(path, {
    maxMessage: MAX_FRAME,
    onEvent: (e: VirtioUserEvent) => {
      if (e.type === 'disconnected') disconnected();
    },
  });
  try {
    const batch = new MessageBatch({ bytes: 1 << 20 });
    await raw.sendBatch(frames(batch, [hello]));
    batch.clear();
    await raw.sendBatch(frames(batch, list));
    await gone;
  } finally {
    raw.close();
  }
}

test('each malformed input disconnects only its sender, with its own code and reason', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const sub = subscriber.subscribe<number>('t');
    await subscriber.flush();
    let n = 0;
    for (const c of cases) {
      h.errors.length = 0;
      await attack(h.path, c.send);
      await until(() => h.errors.length === 1, `the bus reported ${c.name}`);
      const { error } = h.errors[0]!;
      assert.is(error.code, c.code, c.name);
      if (c.reason) assert.is(error.reason, c.reason, `${c.name}: ${error.message}`);
      // Everyone else carries on.
      await publisher.publish('t', n);
      assert.is((await sub.next()).value?.value, n++, c.name);
    }
    assert.is(h.bus.stats.rejected, cases.length);
    await until(() => h.bus.stats.clients === 2, 'only the healthy clients remain');
    assert.ok(sub.active);
  } finally {
    await h.close();
  }
});

test('frames a client left in its ring before HELLO are dropped, not taken as an attack', async () => {
  const h = startBus();
  try {
    const subscriber = await h.connect();
    const sub = subscriber.subscribe<number>('t');
    await subscriber.flush();
    const raw = await VirtioUser.open(h.path, { maxMessage: MAX_FRAME });
    const batch = new MessageBatch();
    // The tail of a message begun for a previous bus, then a new session.
    frames(batch, [
      {
        kind: Kind.PUBLISH,
        stream: 5,
        flags: FLAG_LAST,
        totalLength: 2000,
        offset: 1000,
        body: chunk,
      },
      hello,
      { kind: Kind.PUBLISH, stream: 6, body: packr.pack(['t', 42]) },
    ]);
    await raw.sendBatch(batch);
    assert.is((await sub.next()).value?.value, 42);
    assert.is(h.errors.length, 0);
    raw.close();
  } finally {
    await h.close();
  }
});

test('hundreds of hostile clients leave the bus with bounded memory', async () => {
  const h = startBus();
  try {
    const flood = cases.find((c) => c.reason === 'too-many-streams')!;
    const budget = cases.find((c) => c.reason === 'pending-bytes-exceeded')!;
    for (let i = 0; i < 20; i++) await attack(h.path, i % 2 ? flood.send : budget.send);
    await collectGarbage();
    const before = process.memoryUsage();
    for (let i = 0; i < 200; i++) await attack(h.path, i % 2 ? flood.send : budget.send);
    await collectGarbage();
    const after = process.memoryUsage();
    const growth = (after.heapUsed + after.external - before.heapUsed - before.external) / 2 ** 20;
    assert.ok(growth < 8, `heap + external grew by ${growth.toFixed(1)} MiB over 200 attacks`);
    assert.is(h.bus.stats.rejected, 220);
    await until(() => h.bus.stats.clients === 0, 'every hostile client is gone');
  } finally {
    await h.close();
  }
});

test.run();
