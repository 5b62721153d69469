// SharedRegion: sealed memfd-backed shared memory, its mappings, bounds and lifetime.
import { closeSync, fstatSync, ftruncateSync, openSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tempDir } from '../../../test-support/index.js';
import { EventFd, SharedRegion } from '../src/index.js';
import {
  closedFdNumber,
  makePipe,
  mappingCounts,
  openFdCount,
  throwsVring,
} from './fixtures/vring-assert.js';

const dir = tempDir();
/** The page size, as the first region created reveals it (create rounds 1 byte up to a page). */
const PAGE = (() => {
  const region = SharedRegion.create(1);
  const size = region.size;
  region.close();
  return size;
})();

test('create rounds the size up to a whole number of pages', () => {
  assert.ok(PAGE >= 4096 && (PAGE & (PAGE - 1)) === 0, `page size ${PAGE}`);
  for (const [asked, expected] of [
    [1, PAGE],
    [PAGE - 1, PAGE],
    [PAGE, PAGE],
    [PAGE + 1, 2 * PAGE],
    [5 * PAGE + 3, 6 * PAGE],
  ] as const) {
    const region = SharedRegion.create(asked);
    assert.is(region.size, expected, `create(${asked})`);
    region.close();
  }
});

test('a new region is zero-filled', () => {
  const region = SharedRegion.create(3 * PAGE);
  assert.ok(region.read(0, region.size).equals(Buffer.alloc(3 * PAGE)));
  region.close();
});

test('a region is mapped at a page-aligned address in this process', () => {
  const region = SharedRegion.create(PAGE);
  assert.is(typeof region.address, 'bigint');
  assert.ok(region.address > 0n);
  assert.is(region.address % BigInt(PAGE), 0n);
  region.close();
});

test('the fd is an anonymous memfd, named after the name option', () => {
  const region = SharedRegion.create(PAGE, { name: 'vring-test-name' });
  assert.match(readlinkSync(`/proc/self/fd/${region.fd}`), /^\/memfd:vring-test-name \(deleted\)$/);
  region.close();
  const unnamed = SharedRegion.create(PAGE);
  assert.match(readlinkSync(`/proc/self/fd/${unnamed.fd}`), /^\/memfd:vring \(deleted\)$/);
  unnamed.close();
});

test('the fd is sealed: it maps with the seal required, and its size can never change', () => {
  const region = SharedRegion.create(2 * PAGE);
  const mapped = SharedRegion.fromFd(region.fd); // requireSeal defaults to true
  assert.is(mapped.size, 2 * PAGE);
  // F_SEAL_SHRINK and F_SEAL_GROW: the kernel refuses any resize.
  for (const size of [0, PAGE, 4 * PAGE]) {
    try {
      ftruncateSync(region.fd, size);
      assert.unreachable(`ftruncate to ${size} succeeded on a sealed region`);
    } catch (error) {
      assert.is((error as NodeJS.ErrnoException).code, 'EPERM', `ftruncate to ${size}`);
    }
  }
  assert.is(fstatSync(region.fd).size, 2 * PAGE);
  mapped.close();
  region.close();
});

test('fromFd refuses an fd that is not a memfd with ERR_VRING_NOT_MEMFD', () => {
  const devNull = openSync('/dev/null', 'r+');
  const pipe = makePipe(dir, 'not-memfd.fifo');
  const file = openSync(join(dir, 'regular-file'), 'w+');
  ftruncateSync(file, PAGE);
  const eventFd = new EventFd();
  for (const [what, fd] of [
    ['/dev/null', devNull],
    ['a pipe (read end)', pipe.read],
    ['a pipe (write end)', pipe.write],
    ['a regular file', file],
    ['an eventfd', eventFd.fd],
  ] as const) {
    throwsVring(() => SharedRegion.fromFd(fd), 'ERR_VRING_NOT_MEMFD', what);
    throwsVring(() => SharedRegion.fromFd(fd, { requireSeal: false }), 'ERR_VRING_NOT_MEMFD', what);
  }
  for (const fd of [devNull, pipe.read, pipe.write, file]) closeSync(fd);
  eventFd.close();
});

test('fromFd of an fd that is not open fails with ERR_VRING_SYSTEM and errno EBADF', () => {
  const error = throwsVring(() => SharedRegion.fromFd(closedFdNumber()), 'ERR_VRING_SYSTEM');
  assert.is(error.errno, constants.errno.EBADF);
});

test('fromFd maps a range inside the file, at any byte offset', () => {
  const region = SharedRegion.create(2 * PAGE);
  region.write(PAGE + 100, Buffer.from('offset bytes'));
  const whole = SharedRegion.fromFd(region.fd, { offset: 0 });
  assert.is(whole.size, 2 * PAGE);
  const tail = SharedRegion.fromFd(region.fd, { offset: PAGE + 100 });
  assert.is(tail.size, PAGE - 100);
  assert.is(tail.read(0, 12).toString(), 'offset bytes');
  const slice = SharedRegion.fromFd(region.fd, { offset: PAGE + 100, size: 6 });
  assert.is(slice.size, 6);
  assert.is(slice.read(0, 6).toString(), 'offset');
  assert.is(SharedRegion.fromFd(region.fd, { offset: 2 * PAGE - 1 }).size, 1);
  for (const r of [whole, tail, slice, region]) r.close();
});

test('fromFd with an offset or size beyond the file fails with ERR_VRING_REGION_BOUNDS', () => {
  const region = SharedRegion.create(PAGE);
  const cases: Array<[string, { offset?: number; size?: number }]> = [
    ['offset past the end', { offset: PAGE + 1 }],
    ['offset at the end (nothing left to map)', { offset: PAGE }],
    ['size larger than the file', { size: PAGE + 1 }],
    ['offset + size past the end', { offset: 100, size: PAGE }],
    ['huge offset', { offset: Number.MAX_SAFE_INTEGER }],
    ['huge size', { size: Number.MAX_SAFE_INTEGER }],
    ['offset + size overflowing 2^53', { offset: PAGE - 1, size: Number.MAX_SAFE_INTEGER }],
  ];
  for (const [what, options] of cases) {
    throwsVring(() => SharedRegion.fromFd(region.fd, options), 'ERR_VRING_REGION_BOUNDS', what);
  }
  region.close();
});

test('fromFd refuses malformed fds, offsets and sizes with ERR_VRING_INVALID_ARGUMENT', () => {
  const region = SharedRegion.create(PAGE);
  for (const fd of [-1, Number.NaN, 1.5, Number.POSITIVE_INFINITY, 2 ** 40]) {
    throwsVring(() => SharedRegion.fromFd(fd), 'ERR_VRING_INVALID_ARGUMENT', `fd ${fd}`);
  }
  for (const bad of [-1, Number.NaN, 0.5, Number.POSITIVE_INFINITY, -Number.MAX_VALUE]) {
    throwsVring(
      () => SharedRegion.fromFd(region.fd, { offset: bad }),
      'ERR_VRING_INVALID_ARGUMENT',
      `offset ${bad}`,
    );
    throwsVring(
      () => SharedRegion.fromFd(region.fd, { size: bad }),
      'ERR_VRING_INVALID_ARGUMENT',
      `size ${bad}`,
    );
  }
  region.close();
});

test('writes through one mapping are visible through every other mapping of the same fd', () => {
  const region = SharedRegion.create(2 * PAGE);
  const other = SharedRegion.fromFd(region.fd);
  assert.is.not(other.address, region.address, 'a second, distinct mapping');
  region.write(10, Buffer.from('from the first'));
  assert.is(other.read(10, 14).toString(), 'from the first');
  other.write(PAGE + 7, Buffer.from('from the second'));
  assert.is(region.read(PAGE + 7, 15).toString(), 'from the second');
  // A mapping at an offset sees the same bytes, shifted.
  const shifted = SharedRegion.fromFd(region.fd, { offset: PAGE });
  assert.is(shifted.read(7, 15).toString(), 'from the second');
  shifted.write(0, Buffer.from([0xab]));
  assert.is(region.read(PAGE, 1)[0], 0xab);
  for (const r of [shifted, other, region]) r.close();
});

test('fromFd duplicates the fd: the caller keeps its fd and the mapping outlives it', () => {
  const region = SharedRegion.create(PAGE);
  const mapped = SharedRegion.fromFd(region.fd);
  assert.is.not(mapped.fd, region.fd);
  mapped.close();
  // Closing the mapping left the caller's fd open and usable.
  assert.is(fstatSync(region.fd).size, PAGE);
  const again = SharedRegion.fromFd(region.fd);
  region.write(0, Buffer.from('still shared'));
  region.close();
  // The creator's region is gone; the duplicate keeps the memory alive.
  assert.is(again.read(0, 12).toString(), 'still shared');
  again.write(0, Buffer.from('writable'));
  assert.is(again.read(0, 8).toString(), 'writable');
  again.close();
});

test('reads and writes that reach outside the region fail with ERR_VRING_REGION_BOUNDS', () => {
  const region = SharedRegion.create(PAGE);
  const size = region.size;
  const reads: Array<[number, number]> = [
    [size, 1],
    [0, size + 1],
    [size - 1, 2],
    [size + 1, 0],
    [1, Number.MAX_SAFE_INTEGER],
    [Number.MAX_SAFE_INTEGER, 1],
  ];
  for (const [offset, length] of reads) {
    throwsVring(
      () => region.read(offset, length),
      'ERR_VRING_REGION_BOUNDS',
      `read(${offset}, ${length})`,
    );
  }
  const writes: Array<[number, number]> = [
    [size, 1],
    [size - 1, 2],
    [0, size + 1],
    [size + 1, 0],
    [Number.MAX_SAFE_INTEGER, 1],
  ];
  for (const [offset, length] of writes) {
    throwsVring(
      () => region.write(offset, Buffer.alloc(length, 1)),
      'ERR_VRING_REGION_BOUNDS',
      `write(${offset}, ${length} bytes)`,
    );
  }
  // Nothing was written by the refused calls.
  assert.ok(region.read(0, size).equals(Buffer.alloc(size)));
  // The exact edges are in bounds.
  assert.is(region.read(size, 0).length, 0);
  region.write(size, Buffer.alloc(0));
  region.write(size - 1, Buffer.from([9]));
  assert.is(region.read(size - 1, 1)[0], 9);
  assert.is(region.read(0, size).length, size);
  region.close();
});

test('malformed offsets, lengths and data fail with ERR_VRING_INVALID_ARGUMENT', () => {
  const region = SharedRegion.create(PAGE);
  for (const bad of [-1, Number.NaN, 1.5, Number.POSITIVE_INFINITY, 2 ** 64]) {
    throwsVring(() => region.read(bad, 1), 'ERR_VRING_INVALID_ARGUMENT', `read offset ${bad}`);
    throwsVring(() => region.read(0, bad), 'ERR_VRING_INVALID_ARGUMENT', `read length ${bad}`);
    throwsVring(
      () => region.write(bad, Buffer.from([1])),
      'ERR_VRING_INVALID_ARGUMENT',
      `write offset ${bad}`,
    );
  }
  for (const data of ['text', 42, null, undefined, [1, 2, 3]]) {
    throwsVring(
      () => region.write(0, data as unknown as Uint8Array),
      'ERR_VRING_INVALID_ARGUMENT',
      `write data ${String(data)}`,
    );
  }
  region.close();
});

test('any typed array or DataView can be written; its bytes land as they are in memory', () => {
  const region = SharedRegion.create(PAGE);
  const words = new Uint32Array([0x11223344, 0x55667788]);
  region.write(0, words as unknown as Uint8Array);
  assert.ok(region.read(0, 8).equals(Buffer.from(words.buffer)));
  const view = new DataView(new ArrayBuffer(4), 0, 4);
  view.setUint32(0, 0xdeadbeef);
  region.write(8, view as unknown as Uint8Array);
  assert.is(region.read(8, 4).toString('hex'), 'deadbeef');
  const slice = Buffer.from('0123456789').subarray(3, 6);
  region.write(12, slice);
  assert.is(region.read(12, 3).toString(), '345');
  region.close();
});

test('create refuses zero, negative, non-integer, non-finite and huge sizes with ERR_VRING_INVALID_ARGUMENT', () => {
  const sizes: unknown[] = [
    0,
    -1,
    -PAGE,
    Number.NaN,
    0.5,
    PAGE + 0.5,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    2 ** 40 + 1, // above the 1 TiB limit
    2 ** 50,
    Number.MAX_SAFE_INTEGER,
    2 ** 64,
    Number.MAX_VALUE,
    '4096',
    null,
    undefined,
  ];
  for (const size of sizes) {
    throwsVring(
      () => SharedRegion.create(size as number),
      'ERR_VRING_INVALID_ARGUMENT',
      `create(${String(size)})`,
    );
  }
});

test('close is idempotent and every later use fails with ERR_VRING_CLOSED', () => {
  const region = SharedRegion.create(PAGE);
  assert.is(region.closed, false);
  region.close();
  assert.is(region.closed, true);
  region.close();
  region[Symbol.dispose]();
  assert.is(region.closed, true);
  throwsVring(() => region.read(0, 1), 'ERR_VRING_CLOSED', 'read');
  throwsVring(() => region.write(0, Buffer.from([1])), 'ERR_VRING_CLOSED', 'write');
  throwsVring(() => region.fd, 'ERR_VRING_CLOSED', 'fd');
  throwsVring(() => region.size, 'ERR_VRING_CLOSED', 'size');
  throwsVring(() => region.address, 'ERR_VRING_CLOSED', 'address');
});

test('Symbol.dispose closes the region', () => {
  const region = SharedRegion.create(PAGE);
  region[Symbol.dispose]();
  assert.is(region.closed, true);
  throwsVring(() => region.read(0, 1), 'ERR_VRING_CLOSED');
});

test('close releases the fd and the mapping at once', () => {
  const fds = openFdCount();
  const maps = mappingCounts().memfd;
  const regions = Array.from({ length: 20 }, () => SharedRegion.create(PAGE));
  const mapped = regions.map((r) => SharedRegion.fromFd(r.fd));
  assert.is(openFdCount(), fds + 40);
  assert.is(mappingCounts().memfd, maps + 40);
  for (const r of [...regions, ...mapped]) r.close();
  assert.is(openFdCount(), fds);
  assert.is(mappingCounts().memfd, maps);
});

test.run();
