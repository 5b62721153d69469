// EventFd: the doorbell of a virtqueue. Counter semantics, watching from the event loop, and
// whether a watch keeps a process alive.
import { closeSync, constants as fsConstants, openSync, readFileSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextLoopTurn } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Child, killChildren, spawnScript, tempDir } from '../../../test-support/index.js';
import { EventFd, SharedRegion } from '../src/index.js';
import { closedFdNumber, makePipe, openFdCount, throwsVring } from './fixtures/vring-assert.js';

const CHILD = join(import.meta.dirname, 'fixtures', 'event-fd-child.ts');
const dir = tempDir();

test.after.each(() => killChildren());

/** The next count delivered to `eventFd`'s watch callback (which this installs). */
function nextWakeup(eventFd: EventFd): Promise<number> {
  return new Promise((resolve) => eventFd.watch(resolve));
}

/**
 * Resolves once the event loop has polled for readiness after this call and finished that
 * poll phase: every eventfd that was readable by now has had its callback run.
 */
async function afterAPollPhase(): Promise<void> {
  const sentinel = new EventFd().ref();
  const woke = nextWakeup(sentinel);
  sentinel.signal();
  await woke;
  sentinel.close();
  await nextLoopTurn(); // the check phase runs after the whole poll phase
}

function fdFlags(fd: number): number {
  const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const match = /^flags:\s+([0-7]+)$/m.exec(info);
  assert.ok(match, info);
  return Number.parseInt(match[1]!, 8);
}

test('a new eventfd has a zero counter: drain returns 0 and never blocks', () => {
  const eventFd = new EventFd();
  assert.is(eventFd.closed, false);
  assert.is(eventFd.drain(), 0);
  assert.is(eventFd.drain(), 0);
  eventFd.close();
});

test('the fd is a non-blocking, close-on-exec eventfd', () => {
  const eventFd = new EventFd();
  assert.is(readlinkSync(`/proc/self/fd/${eventFd.fd}`), 'anon_inode:[eventfd]');
  const flags = fdFlags(eventFd.fd);
  assert.ok(flags & fsConstants.O_NONBLOCK, 'O_NONBLOCK');
  assert.ok(flags & 0o2000000, 'O_CLOEXEC');
  eventFd.close();
});

test('signal adds one to the counter; drain returns the sum and resets it', () => {
  const eventFd = new EventFd();
  eventFd.signal();
  assert.is(eventFd.drain(), 1);
  for (let i = 0; i < 1000; i++) eventFd.signal();
  assert.is(eventFd.drain(), 1000);
  assert.is(eventFd.drain(), 0);
  eventFd.close();
});

test('fromFd wraps a duplicate sharing the counter; the caller keeps its fd', () => {
  const original = new EventFd();
  const wrapped = EventFd.fromFd(original.fd);
  assert.is.not(wrapped.fd, original.fd);
  assert.is(readlinkSync(`/proc/self/fd/${wrapped.fd}`), 'anon_inode:[eventfd]');
  assert.ok(fdFlags(wrapped.fd) & fsConstants.O_NONBLOCK, 'the duplicate is non-blocking');
  wrapped.signal();
  wrapped.signal();
  assert.is(original.drain(), 2);
  original.signal();
  assert.is(wrapped.drain(), 1);
  wrapped.close();
  // The caller's fd is still open and still the same eventfd.
  original.signal();
  assert.is(original.drain(), 1);
  const again = EventFd.fromFd(original.fd);
  original.close();
  again.signal();
  assert.is(again.drain(), 1, 'the duplicate outlives the original');
  again.close();
});

test('fromFd of an fd that is not an eventfd fails with ERR_VRING_INVALID_ARGUMENT', () => {
  const devNull = openSync('/dev/null', 'r');
  const file = openSync(join(dir, 'regular-file'), 'w+');
  const pipe = makePipe(dir, 'not-eventfd.fifo');
  const region = SharedRegion.create(4096);
  const before = openFdCount();
  for (const [what, fd] of [
    ['/dev/null', devNull],
    ['a regular file', file],
    ['a pipe (read end)', pipe.read],
    ['a pipe (write end)', pipe.write],
    ['a memfd', region.fd],
  ] as const) {
    throwsVring(() => EventFd.fromFd(fd), 'ERR_VRING_INVALID_ARGUMENT', what);
  }
  assert.is(openFdCount(), before, 'the refused duplicates were closed');
  for (const fd of [devNull, file, pipe.read, pipe.write]) closeSync(fd);
  region.close();
});

test('fromFd refuses malformed fd numbers with ERR_VRING_INVALID_ARGUMENT', () => {
  for (const fd of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31]) {
    throwsVring(() => EventFd.fromFd(fd), 'ERR_VRING_INVALID_ARGUMENT', `fd ${fd}`);
  }
});

test('fromFd of an fd that is not open fails with ERR_VRING_SYSTEM and errno EBADF', () => {
  const error = throwsVring(() => EventFd.fromFd(closedFdNumber()), 'ERR_VRING_SYSTEM');
  assert.is(error.errno, constants.errno.EBADF);
});

test('watch calls back from the event loop, never synchronously, with the count it drained', async () => {
  const eventFd = new EventFd().ref();
  const counts: number[] = [];
  const woke = new Promise<void>((resolve) =>
    eventFd.watch((count) => {
      counts.push(count);
      resolve();
    }),
  );
  eventFd.signal();
  eventFd.signal();
  eventFd.signal();
  assert.equal(counts, [], 'no callback inside signal()');
  await woke;
  assert.equal(counts, [3], 'one callback for all three signals');
  assert.is(eventFd.drain(), 0, 'the watch drained the counter');
  eventFd.close();
});

test('watch keeps delivering: every later wakeup calls back again', async () => {
  const eventFd = new EventFd().ref();
  for (let round = 1; round <= 5; round++) {
    const woke = nextWakeup(eventFd);
    for (let i = 0; i < round; i++) eventFd.signal();
    assert.is(await woke, round);
  }
  eventFd.close();
});

test('a signal sent before watch starts is delivered once watching begins', async () => {
  const eventFd = new EventFd().ref();
  eventFd.signal();
  eventFd.signal();
  assert.is(await nextWakeup(eventFd), 2);
  eventFd.close();
});

test('watch replaces the earlier callback', async () => {
  const eventFd = new EventFd().ref();
  const first: number[] = [];
  eventFd.watch((count) => first.push(count));
  const second = nextWakeup(eventFd);
  eventFd.signal();
  assert.is(await second, 1);
  await afterAPollPhase();
  assert.equal(first, []);
  eventFd.close();
});

test('stopWatching stops the callbacks; signals accumulate for drain', async () => {
  const eventFd = new EventFd().ref();
  const counts: number[] = [];
  eventFd.watch((count) => counts.push(count));
  eventFd.stopWatching();
  eventFd.signal();
  eventFd.signal();
  await afterAPollPhase();
  assert.equal(counts, []);
  assert.is(eventFd.drain(), 2);
  // Watching can start again afterwards.
  const woke = nextWakeup(eventFd);
  eventFd.signal();
  assert.is(await woke, 1);
  eventFd.close();
});

test('close inside the callback is safe and ends the watch', async () => {
  const eventFd = new EventFd().ref();
  let calls = 0;
  const woke = new Promise<void>((resolve) =>
    eventFd.watch(() => {
      calls++;
      eventFd.close();
      resolve();
    }),
  );
  eventFd.signal();
  await woke;
  await afterAPollPhase();
  assert.is(calls, 1);
  assert.is(eventFd.closed, true);
});

test('ref and unref return the eventfd, for chaining', () => {
  const eventFd = new EventFd();
  assert.is(eventFd.ref(), eventFd);
  assert.is(eventFd.unref(), eventFd);
  eventFd.close();
});

test('close is idempotent; every later use fails with ERR_VRING_CLOSED', () => {
  const eventFd = new EventFd();
  eventFd.watch(() => {});
  eventFd.close();
  assert.is(eventFd.closed, true);
  eventFd.close();
  eventFd[Symbol.dispose]();
  throwsVring(() => eventFd.signal(), 'ERR_VRING_CLOSED', 'signal');
  throwsVring(() => eventFd.drain(), 'ERR_VRING_CLOSED', 'drain');
  throwsVring(() => eventFd.fd, 'ERR_VRING_CLOSED', 'fd');
  throwsVring(() => eventFd.watch(() => {}), 'ERR_VRING_CLOSED', 'watch');
  throwsVring(() => eventFd.stopWatching(), 'ERR_VRING_CLOSED', 'stopWatching');
  throwsVring(() => eventFd.ref(), 'ERR_VRING_CLOSED', 'ref');
  throwsVring(() => eventFd.unref(), 'ERR_VRING_CLOSED', 'unref');
});

test('close releases the fd, watching or not', () => {
  const before = openFdCount();
  const idle = new EventFd();
  const watching = new EventFd().ref();
  watching.watch(() => {});
  assert.is(openFdCount(), before + 2);
  idle.close();
  watching.close();
  assert.is(openFdCount(), before);
});

/** Starts the child fixture in `mode`, with `fds` as its fd 3 and up. */
function startChild(mode: string, fds: number[] = []): Child {
  // A safety net, not a measurement: a child that something keeps alive is killed, and the
  // signal it died of fails the test.
  return spawnScript(CHILD, [mode], { fds, killAfterMs: 30_000 });
}

test("a process whose only handle is an unref'd watching eventfd exits by itself, with status 0", async () => {
  const child = startChild('unref-watch');
  assert.is(await child.exited, 0, 'exit status (SIGKILL: the watch kept it alive)');
  assert.is(child.output(), 'watching\n');
});

test('ref() then unref() lets the process exit again', async () => {
  const child = startChild('ref-unref-watch');
  assert.is(await child.exited, 0, 'exit status (SIGKILL: the watch kept it alive)');
  assert.is(child.output(), 'watching\n');
});

test("a ref'd watching eventfd keeps an idle process alive until it is signalled", async () => {
  const doorbell = new EventFd();
  try {
    const child = startChild('ref-watch', [doorbell.fd]);
    // The child is alive and idle, held only by its watch: ring.
    assert.is(await child.line(), 'idle');
    doorbell.signal();
    assert.is(await child.exited, 0);
    assert.is(child.output(), 'idle\nsignalled 1\n');
  } finally {
    doorbell.close();
  }
});

test.run();
