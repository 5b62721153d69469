// The `net` baselines' frame reader: a stream cut anywhere (inside a length prefix, inside a
// payload, between frames) decodes to the same frames, whole frames within a chunk are
// views of it, and a frame spanning chunks is allocated once.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameReader, frame } from '../transports/frame-reader.js';

/** `length` bytes of a pattern that differs with `seed`, so a misplaced byte shows. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (seed * 37 + i * 31) & 0xff;
  return b;
}

/** Frames of awkward sizes: empty, shorter than a prefix, about a prefix, and longer. */
const bodies = [0, 1, 3, 4, 5, 0, 64, 300].map(pattern);
const stream = Buffer.concat(bodies.map(frame));

/** Feeds `chunks` to a fresh reader and returns the frames it produced, copied. */
function read(chunks: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  const reader = new FrameReader((payload) => out.push(Buffer.from(payload)));
  for (const chunk of chunks) reader.push(chunk);
  return out;
}

function assertFrames(actual: Buffer[], expected: Buffer[], where: string): void {
  assert.is(actual.length, expected.length, `frame count, ${where}`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(actual[i]!.equals(expected[i]!), `frame ${i}, ${where}`);
  }
}

test('one chunk holding every frame', () => {
  assertFrames(read([stream]), bodies, 'one chunk');
});

test('cut at every byte: two chunks', () => {
  for (let i = 0; i <= stream.length; i++) {
    assertFrames(read([stream.subarray(0, i), stream.subarray(i)]), bodies, `cut at ${i}`);
  }
});

test('cut at every pair of bytes: three chunks', () => {
  // Covers a prefix split in three, a prefix split with a payload following in the same
  // chunk, and empty chunks.
  for (let i = 0; i <= stream.length; i++) {
    for (let j = i; j <= stream.length; j++) {
      const chunks = [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)];
      assertFrames(read(chunks), bodies, `cuts at ${i} and ${j}`);
    }
  }
});

test('one byte per chunk', () => {
  const chunks = Array.from(stream, (_, i) => stream.subarray(i, i + 1));
  assertFrames(read(chunks), bodies, 'byte by byte');
});

test('a large frame in socket-sized chunks, between small ones, at every alignment', () => {
  const big = pattern(1024 * 1024 + 7, 99);
  const expected = [bodies[6]!, big, bodies[1]!, bodies[7]!];
  const data = Buffer.concat(expected.map(frame));
  for (const size of [65536, 65536 + 1, 4093]) {
    for (let shift = 0; shift < 9; shift++) {
      const chunks = [data.subarray(0, shift)];
      for (let at = shift; at < data.length; at += size) chunks.push(data.subarray(at, at + size));
      assertFrames(read(chunks), expected, `chunks of ${size} shifted by ${shift}`);
    }
  }
});

test('a frame whole within a chunk is a view of it; a spanning frame is allocated once', () => {
  const big = Buffer.alloc(200_000, 0x5a);
  const data = Buffer.concat([frame(bodies[6]!), frame(big)]);
  const chunk = data.subarray(0, 70_000);
  const seen: Buffer[] = [];
  const reader = new FrameReader((payload) => seen.push(payload));
  reader.push(chunk);
  assert.is(seen.length, 1);
  assert.is(seen[0]!.buffer, chunk.buffer, 'the small frame shares the chunk');
  reader.push(data.subarray(70_000, 140_000));
  reader.push(data.subarray(140_000));
  assert.is(seen.length, 2);
  assert.is(seen[1]!.length, big.length);
  assert.is(seen[1]!.byteOffset, 0, 'the spanning frame is its own allocation');
  assert.is(seen[1]!.buffer.byteLength, big.length, 'allocated at its length, once');
  assert.ok(seen[1]!.equals(big));
});

test.run();
