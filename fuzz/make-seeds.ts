/**
 * Writes the seed corpora of the JavaScript targets and of the native message reader, from what
 * our own code sends: vhost-user requests made by our encoder in the order our front-end's
 * handshake sends them, and bus traffic (HELLO, SUBSCRIBE, PUBLISH, REQUEST, REPLY, a message
 * in fragments) encoded by the message codec and framed as docs/wire-format.md lays frames out.
 * The device queue's seeds come from native/fuzz/device_queue_pair_seeds.cc (make fuzz-seeds).
 *
 *   node --import tsx fuzz/make-seeds.ts
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeReply, encodeRequest } from '../packages/core/src/vhost-user/message-encoder.js';
import {
  VhostUserRequest as R,
  type SupportedRequest,
} from '../packages/core/src/vhost-user/message-layout.js';
import { MessageCodec } from '../packages/ipc/src/message-codec.js';
import {
  FLAG_FIRST,
  FLAG_LAST,
  FLAG_MORE,
  writeFrameHeader,
} from '../packages/ipc/src/wire/frame-header.js';
import { Kind } from '../packages/ipc/src/wire/message-kinds.js';

const corpus = join(dirname(fileURLToPath(import.meta.url)), 'corpus');

function write(target: string, name: string, bytes: Uint8Array): void {
  mkdirSync(join(corpus, target), { recursive: true });
  writeFileSync(join(corpus, target, `seed-${name}`), bytes);
}

// --- vhost-user: the front-end's handshake, one request per seed ---------------------------
const FD = 1_000_000; // stand-in fd numbers: the encoder only places them
const region = (i: number) => ({
  guestPhysAddr: 0x1_0000_0000n * BigInt(i + 1),
  memorySize: 0x20_0000n,
  userspaceAddr: 0x7f00_0000_0000n + 0x100_0000n * BigInt(i),
  mmapOffset: 0n,
  fd: FD + i,
});
const handshake: [string, SupportedRequest, unknown][] = [
  ['set-owner', R.SET_OWNER, undefined],
  ['get-features', R.GET_FEATURES, undefined],
  ['get-protocol-features', R.GET_PROTOCOL_FEATURES, undefined],
  ['set-protocol-features', R.SET_PROTOCOL_FEATURES, 0x8001n],
  ['get-queue-num', R.GET_QUEUE_NUM, undefined],
  ['set-features', R.SET_FEATURES, 0x1_3000_8000n],
  ['set-mem-table', R.SET_MEM_TABLE, { regions: [region(0), region(1)] }],
  ['set-vring-num', R.SET_VRING_NUM, { index: 1, num: 256 }],
  ['set-vring-base', R.SET_VRING_BASE, { index: 1, num: 0 }],
  [
    'set-vring-addr',
    R.SET_VRING_ADDR,
    {
      index: 1,
      flags: 0,
      descUser: 0x7f00_0000_1000n,
      usedUser: 0x7f00_0000_3000n,
      availUser: 0x7f00_0000_2000n,
      log: 0n,
    },
  ],
  ['set-vring-kick', R.SET_VRING_KICK, { index: 1, fd: FD }],
  ['set-vring-call-polled', R.SET_VRING_CALL, { index: 0, fd: undefined }],
  ['set-vring-enable', R.SET_VRING_ENABLE, { index: 1, num: 1 }],
  ['set-status', R.SET_STATUS, 0xfn],
  ['get-vring-base', R.GET_VRING_BASE, { index: 1, num: 0 }],
];
const handshakeFrames: Buffer[] = [];
for (const [name, request, payload] of handshake) {
  const { frame, fds } = encodeRequest(request, payload as never, {
    needReply: request === R.SET_MEM_TABLE,
  });
  handshakeFrames.push(frame);
  write('vhost-user-request', name, Buffer.concat([Buffer.from([fds.length]), frame]));
}
const replies: [string, SupportedRequest, unknown][] = [
  ['reply-get-features', R.GET_FEATURES, 0x1_3000_8000n],
  ['reply-get-vring-base', R.GET_VRING_BASE, { index: 1, num: 42 }],
  ['reply-ack', R.SET_MEM_TABLE, 0n],
];
for (const [name, request, payload] of replies) {
  write(
    'vhost-user-request',
    name,
    Buffer.concat([Buffer.from([32]), encodeReply(request, payload as never)]),
  );
}

// --- the native message reader: the same frames as a peer's sendmsg calls ------------------
// Chunk: [flags: bits 0-3 fds, bit 4 close after, bit 5 read after][length][bytes].
function chunks(frames: { bytes: Uint8Array; fds: number }[], split: number): Buffer {
  const parts: Buffer[] = [Buffer.from([1024 / 4 - 1])];
  for (const f of frames) {
    for (let at = 0; at < f.bytes.byteLength; at += split) {
      const piece = f.bytes.subarray(at, Math.min(at + split, f.bytes.byteLength));
      parts.push(Buffer.from([(at === 0 ? f.fds : 0) | 32, piece.byteLength]), Buffer.from(piece));
    }
  }
  return Buffer.concat(parts);
}
const withFds = handshakeFrames.map((bytes, i) => ({
  bytes,
  fds: handshake[i]![1] === R.SET_MEM_TABLE ? 2 : handshake[i]![1] === R.SET_VRING_KICK ? 1 : 0,
}));
write('message-reader', 'handshake', chunks(withFds.slice(0, 8), 255));
write('message-reader', 'handshake-split', chunks(withFds.slice(5, 11), 7));

// --- IPC: bus traffic as frames -------------------------------------------------------------
const codec = new MessageCodec();
interface Msg {
  kind: number;
  stream: number;
  body: Buffer;
}
/** One frame of whole messages packed together (FLAG_MORE on all but the last record). */
function packedFrame(messages: Msg[]): Buffer {
  const parts: Buffer[] = [];
  messages.forEach((m, i) => {
    const header = Buffer.alloc(30);
    const more = i < messages.length - 1 ? FLAG_MORE : 0;
    writeFrameHeader(header, {
      kind: m.kind,
      flags: FLAG_FIRST | FLAG_LAST | more,
      stream: m.stream,
      totalLength: m.body.byteLength,
      offset: 0,
    });
    parts.push(i === 0 ? header : header.subarray(14), m.body);
  });
  return Buffer.concat(parts);
}
/** The frames of one message cut into chunks of `chunk` bytes. */
function fragments(m: Msg, chunk: number): Buffer[] {
  const frames: Buffer[] = [];
  for (let offset = 0; offset < m.body.byteLength; offset += chunk) {
    const piece = m.body.subarray(offset, offset + chunk);
    const header = Buffer.alloc(30);
    const flags =
      (offset === 0 ? FLAG_FIRST : 0) |
      (offset + piece.byteLength === m.body.byteLength ? FLAG_LAST : 0);
    writeFrameHeader(header, {
      kind: m.kind,
      flags,
      stream: m.stream,
      totalLength: m.body.byteLength,
      offset,
    });
    frames.push(Buffer.concat([header, piece]));
  }
  return frames;
}
/** The ipc-frames input: limits byte, then each frame with its u16 length. */
function framesInput(limits: number, frames: Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.from([limits])];
  for (const f of frames) {
    const length = Buffer.alloc(2);
    length.writeUInt16LE(f.byteLength);
    parts.push(length, f);
  }
  return Buffer.concat(parts);
}
const hello = { kind: Kind.HELLO, stream: 0, body: codec.encode([1, 1514]) };
const subscribe = { kind: Kind.SUBSCRIBE, stream: 1, body: codec.encode([1, 'sensors.>', 0]) };
const publish = {
  kind: Kind.PUBLISH,
  stream: 2,
  body: codec.encode(['sensors.temp', { c: 21.5 }]),
};
const request = { kind: Kind.REQUEST, stream: 3, body: codec.encode([7, 'math.add', [1, 2]]) };
const reply = { kind: Kind.REPLY, stream: 4, body: codec.encode([7, 0, 3]) };
const large = {
  kind: Kind.PUBLISH,
  stream: 5,
  body: codec.encode(['bulk', Buffer.alloc(600, 0xab)]),
};
// Limits 0x1f: 8 streams, maxMessage 8 KiB, 16 KiB pending (see the target).
write(
  'ipc-frames',
  'session-start',
  framesInput(0x1f, [packedFrame([hello]), packedFrame([subscribe])]),
);
write('ipc-frames', 'packed', framesInput(0x1f, [packedFrame([publish, request, reply])]));
write('ipc-frames', 'fragmented', framesInput(0x1f, fragments(large, 256)));
write(
  'ipc-frames',
  'interleaved',
  framesInput(0x1f, [
    ...fragments(large, 300).slice(0, 2),
    packedFrame([publish]),
    ...fragments(large, 300).slice(2),
  ]),
);

// --- msgpack prefix: the bodies the bus reads the routing fields of -------------------------
write('msgpack-prefix', 'publish', Buffer.concat([Buffer.from([0]), publish.body]));
write('msgpack-prefix', 'request', Buffer.concat([Buffer.from([1]), request.body]));
write('msgpack-prefix', 'reply', Buffer.concat([Buffer.from([2]), reply.body]));
const rich = codec.encode([
  'rich',
  { n: null, t: true, u: undefined, d: new Date(0), b: Buffer.from([1, 2]), f: 1.5, i: -5, s: 'x' },
]);
write('msgpack-prefix', 'publish-rich-value', Buffer.concat([Buffer.from([0]), rich]));
write(
  'msgpack-prefix',
  'nested-value',
  Buffer.concat([Buffer.from([3]), codec.encode([[[1]], { a: [2] }])]),
);
console.log(`seeds written under ${resolve(corpus)}`);
