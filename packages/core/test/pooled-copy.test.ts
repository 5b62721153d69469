// pooledCopy: a large receive is copied into memory used again once the copy is collected;
// a copy that is still reachable, through itself, a view or its ArrayBuffer, never changes.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pooledCopy, pooledCopyWantsTurn } from '../src/index.js';
import { throwsVring } from './fixtures/vring-assert.js';

const gc = (globalThis as { gc?: () => void }).gc;

/** Collects garbage and lets the pool take back what was collected (it does so on a later turn). */
async function collect(): Promise<void> {
  assert.ok(gc, 'run with --expose-gc');
  for (let i = 0; i < 3; i++) {
    gc!();
    await nextTurn();
  }
}

function filled(bytes: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

test('the copy holds the range of the source, and is a Buffer of its own', () => {
  const source = filled(100_000, 1);
  const copy = pooledCopy(source, 1000, 71_000);
  assert.instance(copy, Buffer);
  assert.is(copy.byteLength, 70_000);
  assert.ok(copy.equals(source.subarray(1000, 71_000)));
  source.fill(0);
  assert.is(copy[0], (1000 * 31 + 1) & 0xff, 'later writes to the source do not reach the copy');
});

test('a copy of a view copies from where the view starts', () => {
  const backing = filled(50_000, 2);
  const view = new Uint8Array(backing.buffer, backing.byteOffset + 100, 20_000);
  const copy = pooledCopy(view, 10, 20_000);
  assert.ok(copy.equals(backing.subarray(110, 20_100)));
});

test('an empty range gives an empty Buffer', () => {
  assert.is(pooledCopy(filled(16, 3), 8, 8).byteLength, 0);
});

test('a range beyond the source is refused', () => {
  const source = filled(4096, 4);
  throwsVring(() => pooledCopy(source, 4000, 4097), 'ERR_VRING_INVALID_ARGUMENT');
  throwsVring(() => pooledCopy(source, 4097, 4097), 'ERR_VRING_INVALID_ARGUMENT');
  throwsVring(() => pooledCopy(source, 10, 5), 'ERR_VRING_INVALID_ARGUMENT');
});

test('copies kept, or only their ArrayBuffer kept, stay intact while others are collected and their memory is used again', async () => {
  const size = 256 * 1024;
  const keptCopy = pooledCopy(filled(size, 5), 0, size);
  const keptBuffer = pooledCopy(filled(size, 6), 0, size).buffer;
  const keptView = pooledCopy(filled(size, 7), 0, size).subarray(size / 2);
  // Copies of the same size, collected every round: their memory goes back to the pool and
  // is handed out again for the next ones.
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 8; i++) pooledCopy(filled(size, 100 + i), 0, size);
    await collect();
  }
  assert.ok(keptCopy.equals(filled(size, 5)));
  assert.ok(Buffer.from(keptBuffer, 0, size).equals(filled(size, 6)));
  assert.ok(keptView.equals(filled(size, 7).subarray(size / 2)));
  const fresh = pooledCopy(filled(size, 9), 0, size);
  assert.ok(fresh.equals(filled(size, 9)), 'a copy into reused memory holds its own bytes');
});

test('after 16 MiB copied without a turn of the event loop, a reader is asked to give it one', async () => {
  await nextTurn();
  assert.not.ok(pooledCopyWantsTurn());
  const source = filled(1024 * 1024, 8);
  for (let i = 0; i < 15; i++) pooledCopy(source, 0, source.byteLength);
  assert.not.ok(pooledCopyWantsTurn(), '15 MiB');
  pooledCopy(source, 0, source.byteLength);
  assert.ok(pooledCopyWantsTurn(), '16 MiB');
  await nextTurn();
  assert.not.ok(pooledCopyWantsTurn(), 'the turn came');
});

test.run();
