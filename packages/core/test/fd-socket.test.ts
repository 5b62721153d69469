// FdServer and FdSocket: Unix stream sockets carrying whole messages with file descriptors
// attached, their failure modes, cancellation and backpressure.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  lstatSync,
  readFileSync,
  readSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextLoopTurn, setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejection, socketPath, tempDir } from '../../../test-support/index.js';
import { EventFd, FdServer, FdSocket, type VringError } from '../src/index.js';
import { makePipe, openFdCount, rejectsVring } from './fixtures/vring-assert.js';

const dir = tempDir();
let serial = 0;
const cleanup: Array<{ close(): void }> = [];

function abstractName(): string {
  return `@vring-test-${process.pid}-${serial++}`;
}

test.after.each(() => {
  for (const resource of cleanup.splice(0)) resource.close();
});

/** A server and one connection to it: `client` connected, `peer` the accepted end. */
async function connectedPair(
  serverOptions: { maxMessage?: number } = {},
  clientOptions: { maxMessage?: number } = {},
): Promise<{ server: FdServer; client: FdSocket; peer: FdSocket; path: string }> {
  const path = socketPath();
  const server = await FdServer.listen(path, serverOptions);
  const [client, peer] = await Promise.all([
    FdSocket.connect(path, clientOptions),
    server.accept(),
  ]);
  cleanup.push(client, peer, server);
  return { server, client, peer, path };
}

/**
 * A server's connection (`plain`, 4-byte headers) and its client `framed`, whose frames have an
 * 8-byte header with the length at offset 4: a message on one side is not one on the other,
 * which is how a test plays a peer that frames wrongly.
 */
async function mismatchedPair(framing: {
  maxPayload: number;
  addHeader: boolean;
}): Promise<{ framed: FdSocket; plain: FdSocket }> {
  const path = socketPath();
  const server = await FdServer.listen(path);
  const framed = FdSocket.connectFramed(path, { headerSize: 8, lengthOffset: 4, ...framing });
  const plain = await server.accept();
  cleanup.push(framed, plain, server);
  return { framed, plain };
}

function text(message: { data: Buffer }): string {
  return message.data.toString('utf8');
}

/** Leaves a socket file at `path` whose listener died without removing it. */
function staleSocketFile(path: string): void {
  const result = spawnSync(process.execPath, [
    '-e',
    "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))",
    path,
  ]);
  assert.is(result.signal, 'SIGKILL');
  assert.ok(lstatSync(path).isSocket(), 'a stale socket file is left behind');
}

test('FdServer.listen + accept and FdSocket.connect: messages flow both ways, whole and in order', async () => {
  const { client, peer, server, path } = await connectedPair();
  assert.is(server.path, path);
  assert.ok(lstatSync(path).isSocket());
  for (let i = 0; i < 5; i++) await client.send(Buffer.from(`to server ${i}`));
  await peer.send(Buffer.from('to client'));
  for (let i = 0; i < 5; i++) assert.is(text(await peer.receive()), `to server ${i}`);
  const reply = await client.receive();
  assert.is(text(reply), 'to client');
  assert.equal(reply.fds, []);
});

test('messages of any size up to maxMessage arrive intact, including empty ones', async () => {
  const { client, peer } = await connectedPair({ maxMessage: 1 << 20 });
  const sizes = [0, 1, 3, 4, 5, 4096, 65536, 1 << 20];
  const sends = sizes.map((size) => {
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = (i * 31 + size) & 0xff;
    return client.send(data);
  });
  for (const size of sizes) {
    const { data } = await peer.receive();
    assert.is(data.length, size);
    for (let i = 0; i < size; i++) {
      if (data[i] !== ((i * 31 + size) & 0xff)) assert.unreachable(`byte ${i} of ${size}`);
    }
  }
  await Promise.all(sends);
});

test('messages carry 0 to 8 fds, in order, and the fds received work', async () => {
  const { client, peer } = await connectedPair();
  const eventFds: EventFd[] = [];
  const pipes: Array<{ read: number; write: number }> = [];
  // Message k carries k fds, alternately eventfds and pipe read ends.
  const sent: Array<Array<{ kind: 'event'; index: number } | { kind: 'pipe'; index: number }>> = [];
  for (let k = 0; k <= 8; k++) {
    const fds: number[] = [];
    const kinds: (typeof sent)[number] = [];
    for (let j = 0; j < k; j++) {
      if (j % 2 === 0) {
        const e = new EventFd();
        eventFds.push(e);
        fds.push(e.fd);
        kinds.push({ kind: 'event', index: eventFds.length - 1 });
      } else {
        const p = makePipe(dir, `p${serial++}.fifo`);
        pipes.push(p);
        fds.push(p.read);
        kinds.push({ kind: 'pipe', index: pipes.length - 1 });
      }
    }
    sent.push(kinds);
    await client.send(Buffer.from(`message with ${k} fds`), fds);
  }
  for (let k = 0; k <= 8; k++) {
    const { data, fds } = await peer.receive();
    assert.is(data.toString(), `message with ${k} fds`);
    assert.is(fds.length, k);
    for (const [j, what] of sent[k]!.entries()) {
      const fd = fds[j]!;
      if (what.kind === 'event') {
        const original = eventFds[what.index]!;
        assert.is.not(fd, original.fd, 'the receiver gets its own duplicate');
        const received = EventFd.fromFd(fd);
        received.signal();
        received.signal();
        assert.is(original.drain(), 2, `eventfd ${j} of message ${k}`);
        received.close();
      } else {
        const original = pipes[what.index]!;
        writeSync(original.write, `pipe ${k}.${j}`);
        const buffer = Buffer.alloc(64);
        const n = readSync(fd, buffer);
        assert.is(buffer.toString('utf8', 0, n), `pipe ${k}.${j}`, `pipe ${j} of message ${k}`);
      }
      closeSync(fd);
    }
  }
  for (const e of eventFds) e.close();
  for (const p of pipes) {
    closeSync(p.read);
    closeSync(p.write);
  }
});

test('the sender keeps its fds: what the receiver got stays valid after the sender closes them', async () => {
  const { client, peer } = await connectedPair();
  const original = new EventFd();
  const before = openFdCount();
  await client.send(Buffer.from('x'), [original.fd]);
  assert.is(openFdCount(), before, 'send leaves no extra fd behind');
  original.close();
  const { fds } = await peer.receive();
  const received = EventFd.fromFd(fds[0]!);
  closeSync(fds[0]!);
  received.signal();
  assert.is(received.drain(), 1);
  received.close();
});

test('an empty message can carry fds', async () => {
  const { client, peer } = await connectedPair();
  const e = new EventFd();
  await client.send(new Uint8Array(0), [e.fd, e.fd]);
  const { data, fds } = await peer.receive();
  assert.is(data.length, 0);
  assert.is(fds.length, 2);
  for (const fd of fds) closeSync(fd);
  e.close();
});

test('more than 8 fds fail with ERR_VRING_INVALID_ARGUMENT; nothing is sent and the socket stays usable', async () => {
  const { client, peer } = await connectedPair();
  const e = new EventFd();
  const before = openFdCount();
  await rejectsVring(
    client.send(Buffer.from('too many'), Array(9).fill(e.fd)),
    'ERR_VRING_INVALID_ARGUMENT',
  );
  await rejectsVring(
    client.send(Buffer.from('far too many'), Array(64).fill(e.fd)),
    'ERR_VRING_INVALID_ARGUMENT',
  );
  assert.is(openFdCount(), before);
  await client.send(Buffer.from('after'), Array(8).fill(e.fd));
  const next = await peer.receive();
  assert.is(text(next), 'after', 'the refused messages never went out');
  assert.is(next.fds.length, 8);
  for (const fd of next.fds) closeSync(fd);
  e.close();
});

test('fds that are not non-negative integers fail with ERR_VRING_INVALID_ARGUMENT', async () => {
  const { client } = await connectedPair();
  for (const fds of [[-1], [1.5], [Number.NaN], ['3' as unknown as number]]) {
    await rejectsVring(client.send(Buffer.from('x'), fds), 'ERR_VRING_INVALID_ARGUMENT');
  }
});

test("a message larger than the receiver's maxMessage fails the receiver with ERR_VRING_PROTOCOL", async () => {
  const { client, peer } = await connectedPair({ maxMessage: 1024 });
  await client.send(Buffer.alloc(1024, 1));
  assert.is((await peer.receive()).data.length, 1024, 'exactly maxMessage is fine');
  const receiving = peer.receive();
  await client.send(Buffer.alloc(1025, 2));
  const error = await rejectsVring(receiving, 'ERR_VRING_PROTOCOL');
  assert.is(error.reason, 'oversized-message');
  assert.is(await peer.closed, error, 'closed settles with the same error');
  // The failure is final: later operations report it.
  await rejectsVring(peer.receive(), 'ERR_VRING_PROTOCOL');
  await rejectsVring(peer.send(Buffer.from('x')), 'ERR_VRING_PROTOCOL');
});

test("a peer that sends more than 8 fds with one message fails the receiver with reason 'too-many-fds' and the fds are closed", async () => {
  // The receiver's message spans both of the sender's frames, so it takes the fds of both, 8 + 1.
  const { framed: sender, plain: receiver } = await mismatchedPair({
    maxPayload: 0,
    addHeader: false,
  });
  const e = new EventFd();
  const before = openFdCount();
  const first = Buffer.alloc(8);
  first.writeUInt32LE(12, 0); // the receiver's length: the rest of this frame and all the next
  const receiving = receiver.receive();
  await sender.send(first, Array(8).fill(e.fd));
  await sender.send(Buffer.alloc(8), [e.fd]);
  const error = await rejectsVring(receiving, 'ERR_VRING_PROTOCOL');
  assert.is(error.reason, 'too-many-fds');
  assert.is(openFdCount(), before - 1, 'the 9 fds received are closed, and the failed socket');
  e.close();
});

test("a peer that closes in the middle of a message fails the receiver with reason 'short-message'", async () => {
  // The peer's whole message (4 bytes) is half of the receiver's 8-byte header.
  const { framed: receiver, plain: peer } = await mismatchedPair({
    maxPayload: 64,
    addHeader: true,
  });
  const receiving = receiver.receive();
  await peer.send(Buffer.alloc(0));
  peer.close();
  const error = await rejectsVring(receiving, 'ERR_VRING_PARTIAL_MESSAGE');
  assert.is(error.reason, 'short-message');
});

test("a message larger than the sender's own maxMessage is refused with ERR_VRING_OVERSIZED_MESSAGE; the socket stays usable", async () => {
  const { client, peer } = await connectedPair({}, { maxMessage: 100 });
  const error = await rejectsVring(client.send(Buffer.alloc(101)), 'ERR_VRING_OVERSIZED_MESSAGE');
  assert.is(error.reason, undefined, 'a reason names bad input from the peer, not our own');
  await client.send(Buffer.alloc(100, 7));
  assert.is((await peer.receive()).data.length, 100);
});

test('invalid maxMessage options fail with ERR_VRING_INVALID_ARGUMENT', async () => {
  const path = socketPath();
  const server = await FdServer.listen(path);
  cleanup.push(server);
  for (const maxMessage of [-1, 1.5, 2 ** 32, Number.NaN, Number.POSITIVE_INFINITY]) {
    await rejectsVring(FdSocket.connect(path, { maxMessage }), 'ERR_VRING_INVALID_ARGUMENT');
    await rejectsVring(FdServer.listen(socketPath(), { maxMessage }), 'ERR_VRING_INVALID_ARGUMENT');
  }
});

test('peer close: a pending receive rejects with ERR_VRING_PEER_DISCONNECTED and closed resolves with that error', async () => {
  const { client, peer } = await connectedPair();
  const receiving = peer.receive();
  client.close();
  const error = await rejectsVring(receiving, 'ERR_VRING_PEER_DISCONNECTED');
  assert.is(error.reason, undefined, 'leaving between messages is no bad input');
  const reason = await peer.closed;
  assert.is(reason, error, 'closed settles with the same error');
  await rejectsVring(peer.receive(), 'ERR_VRING_PEER_DISCONNECTED');
  await rejectsVring(peer.send(Buffer.from('x')), 'ERR_VRING_PEER_DISCONNECTED');
  assert.is(await client.closed, undefined);
});

test('messages sent before the peer closed are still received, then ERR_VRING_PEER_DISCONNECTED', async () => {
  const { client, peer } = await connectedPair();
  for (let i = 0; i < 3; i++) await client.send(Buffer.from(`last words ${i}`));
  client.close();
  for (let i = 0; i < 3; i++) assert.is(text(await peer.receive()), `last words ${i}`);
  await rejectsVring(peer.receive(), 'ERR_VRING_PEER_DISCONNECTED');
});

test('a peer that closes with our messages still unread fails us with ERR_VRING_PEER_DISCONNECTED', async () => {
  const { client, peer } = await connectedPair();
  const receiving = client.receive();
  await client.send(Buffer.from('never read'));
  // The kernel resets the connection: the peer went away with data in its receive queue.
  peer.close();
  const error = await rejectsVring(receiving, 'ERR_VRING_PEER_DISCONNECTED');
  assert.is(await client.closed, error);
});

test('local close: a pending receive rejects with ERR_VRING_CLOSED and closed resolves undefined', async () => {
  const { client } = await connectedPair();
  const receiving = client.receive();
  client.close();
  await rejectsVring(receiving, 'ERR_VRING_CLOSED');
  assert.is(await client.closed, undefined);
  await rejectsVring(client.receive(), 'ERR_VRING_CLOSED');
  await rejectsVring(client.send(Buffer.from('x')), 'ERR_VRING_CLOSED');
  client.close(); // idempotent
  await client[Symbol.asyncDispose]();
  assert.is(await client.closed, undefined);
});

test('local close rejects a send waiting for buffer space with ERR_VRING_CLOSED', async () => {
  const { client } = await connectedPair();
  // Nobody receives: once the peer's read-ahead and the kernel buffer are full, a send waits.
  const chunk = Buffer.alloc(64 * 1024);
  let blocked: Promise<void> | undefined;
  for (let i = 0; i < 1000 && !blocked; i++) {
    const sending = client.send(chunk);
    const settled = await Promise.race([
      sending.then(() => true),
      nextLoopTurn().then(() => false),
    ]);
    if (!settled) blocked = sending;
  }
  assert.ok(blocked, 'a send waited for buffer space');
  client.close();
  await rejectsVring(blocked, 'ERR_VRING_CLOSED');
});

test('closing a socket closes the fds of messages nobody received', async () => {
  const { client, peer } = await connectedPair();
  const e = new EventFd();
  const baseline = openFdCount();
  await client.send(Buffer.from('first'), [e.fd, e.fd]);
  await client.send(Buffer.from('second'), [e.fd, e.fd, e.fd]);
  const first = await peer.receive();
  for (const fd of first.fds) closeSync(fd);
  await nextLoopTurn(); // the rest of that read: "second" and its fds wait in the inbox
  assert.is(openFdCount(), baseline + 3);
  peer.close();
  assert.is(openFdCount(), baseline - 1, "the inbox's 3 fds and the socket itself are closed");
  e.close();
});

test('an AbortSignal aborts a pending receive with its reason; the next message goes to the next receive', async () => {
  const { client, peer } = await connectedPair();
  const controller = new AbortController();
  const reason = new Error('no longer interested');
  const receiving = peer.receive({ signal: controller.signal });
  controller.abort(reason);
  assert.is(await rejection(receiving), reason);
  await client.send(Buffer.from('kept'));
  assert.is(text(await peer.receive()), 'kept', 'the aborted receive did not swallow a message');
});

test('an already-aborted signal rejects receive and accept at once, with its reason', async () => {
  const { peer, server } = await connectedPair();
  const reason = new Error('too late');
  const signal = AbortSignal.abort(reason);
  assert.is(await rejection(peer.receive({ signal })), reason);
  assert.is(await rejection(server.accept({ signal })), reason);
});

test('an AbortSignal aborts a pending accept with its reason; the server keeps accepting', async () => {
  const path = socketPath();
  const server = await FdServer.listen(path);
  cleanup.push(server);
  const controller = new AbortController();
  const accepting = server.accept({ signal: controller.signal });
  controller.abort();
  const error = await rejection(accepting);
  assert.is(error, controller.signal.reason);
  assert.is((error as Error).name, 'AbortError');
  const [client, peer] = await Promise.all([FdSocket.connect(path), server.accept()]);
  cleanup.push(client, peer);
  await client.send(Buffer.from('accepted after abort'));
  assert.is(text(await peer.receive()), 'accepted after abort');
});

test('connect to a path where nothing exists fails with ERR_VRING_SYSTEM, errno ENOENT', async () => {
  const error = await rejectsVring(FdSocket.connect(join(dir, 'missing.sock')), 'ERR_VRING_SYSTEM');
  assert.is(error.errno, constants.errno.ENOENT);
  assert.is(error.syscall, 'connect');
});

test('connect to a socket file nobody listens on fails with ERR_VRING_SYSTEM, errno ECONNREFUSED', async () => {
  const path = socketPath();
  staleSocketFile(path);
  const error = await rejectsVring(FdSocket.connect(path), 'ERR_VRING_SYSTEM');
  assert.is(error.errno, constants.errno.ECONNREFUSED);
});

test('connect to an abstract name nobody listens on fails with ERR_VRING_SYSTEM, errno ECONNREFUSED', async () => {
  const error = await rejectsVring(FdSocket.connect(abstractName()), 'ERR_VRING_SYSTEM');
  assert.is(error.errno, constants.errno.ECONNREFUSED);
});

test('empty and overlong paths fail with ERR_VRING_INVALID_ARGUMENT', async () => {
  const long = join(dir, 'x'.repeat(200));
  for (const path of ['', '@', long, `@${'x'.repeat(200)}`]) {
    await rejectsVring(FdSocket.connect(path), 'ERR_VRING_INVALID_ARGUMENT', `connect ${path}`);
    await rejectsVring(FdServer.listen(path), 'ERR_VRING_INVALID_ARGUMENT', `listen ${path}`);
  }
});

test('listening on a path where a server is live fails with ERR_VRING_SYSTEM, errno EADDRINUSE; the live server keeps its file', async () => {
  const path = socketPath();
  const server = await FdServer.listen(path);
  cleanup.push(server);
  const error = await rejectsVring(FdServer.listen(path), 'ERR_VRING_SYSTEM');
  assert.is(error.errno, constants.errno.EADDRINUSE);
  assert.ok(lstatSync(path).isSocket(), 'the live socket file is still there');
});

test("a failed listen on a live path leaves the live server's connections untouched", async () => {
  const path = socketPath();
  const server = await FdServer.listen(path);
  cleanup.push(server);
  await rejectsVring(FdServer.listen(path), 'ERR_VRING_SYSTEM');
  const client = await FdSocket.connect(path);
  cleanup.push(client);
  const accepted = await server.accept();
  cleanup.push(accepted);
  await client.send(Buffer.from('hello'));
  const outcome = await accepted.receive().then(text, (error: VringError) => {
    return `the first accepted socket failed: ${error.code} (${error.message})`;
  });
  assert.is(outcome, 'hello', 'the first accepted connection must be the real client');
});

test('listen replaces a stale socket file nobody listens on', async () => {
  const path = socketPath();
  staleSocketFile(path);
  const server = await FdServer.listen(path);
  cleanup.push(server);
  const [client, peer] = await Promise.all([FdSocket.connect(path), server.accept()]);
  cleanup.push(client, peer);
  await client.send(Buffer.from('on the new socket'));
  assert.is(text(await peer.receive()), 'on the new socket');
});

test('listen never deletes a path that is not a socket: ERR_VRING_SYSTEM, errno EADDRINUSE', async () => {
  const path = join(dir, `plain-file-${serial++}`);
  writeFileSync(path, 'precious');
  const error = await rejectsVring(FdServer.listen(path), 'ERR_VRING_SYSTEM');
  assert.is(error.errno, constants.errno.EADDRINUSE);
  assert.is(readFileSync(path, 'utf8'), 'precious');
});

test('server.close removes the socket file; accept then rejects with ERR_VRING_CLOSED; accepted sockets stay open', async () => {
  const { server, client, peer, path } = await connectedPair();
  const accepting = server.accept();
  server.close();
  assert.is(existsSync(path), false);
  await rejectsVring(accepting, 'ERR_VRING_CLOSED');
  await rejectsVring(server.accept(), 'ERR_VRING_CLOSED');
  server.close(); // idempotent
  await server[Symbol.asyncDispose]();
  await client.send(Buffer.from('still connected'));
  assert.is(text(await peer.receive()), 'still connected');
  await rejectsVring(FdSocket.connect(path), 'ERR_VRING_SYSTEM');
});

test('server.close removes only its own socket file, not one bound at the path since', async () => {
  const path = socketPath();
  const first = await FdServer.listen(path);
  unlinkSync(path); // someone removed it...
  const second = await FdServer.listen(path); // ...and a new server took the path
  cleanup.push(second);
  first.close();
  assert.ok(lstatSync(path).isSocket(), "the second server's file is still there");
  const client = await FdSocket.connect(path);
  cleanup.push(client);
  const peer = await second.accept();
  cleanup.push(peer);
  await client.send(Buffer.from('second server'));
  assert.is(text(await peer.receive()), 'second server');
});

test('async iteration over a server yields connections until it closes', async () => {
  const path = socketPath();
  const server = await FdServer.listen(path);
  const clients = await Promise.all([0, 1, 2].map(() => FdSocket.connect(path)));
  cleanup.push(...clients);
  const accepted: FdSocket[] = [];
  for await (const socket of server) {
    accepted.push(socket);
    cleanup.push(socket);
    if (accepted.length === 3) server.close();
  }
  assert.is(accepted.length, 3);
  for (const [i, client] of clients.entries()) await client.send(Buffer.from(`client ${i}`));
  const greetings = await Promise.all(accepted.map(async (s) => text(await s.receive())));
  assert.equal(greetings.sort(), ['client 0', 'client 1', 'client 2']);
});

test('abstract names (@name) listen and connect without creating a file; a live name cannot be taken twice', async () => {
  const name = abstractName();
  const server = await FdServer.listen(name);
  cleanup.push(server);
  assert.is(server.path, name);
  assert.is(existsSync(name), false);
  const error = await rejectsVring(FdServer.listen(name), 'ERR_VRING_SYSTEM');
  assert.is(error.errno, constants.errno.EADDRINUSE);
  const [client, peer] = await Promise.all([FdSocket.connect(name), server.accept()]);
  cleanup.push(client, peer);
  const e = new EventFd();
  await client.send(Buffer.from('abstract'), [e.fd]);
  const message = await peer.receive();
  assert.is(text(message), 'abstract');
  assert.is(message.fds.length, 1);
  closeSync(message.fds[0]!);
  e.close();
  // Closing frees the name at once.
  server.close();
  const again = await FdServer.listen(name);
  cleanup.push(again);
});

test('an FdServer socket file is 0600 by default and exactly socketMode when given, whatever the umask', async () => {
  const path = socketPath();
  const old = process.umask(0);
  try {
    const server = await FdServer.listen(path);
    cleanup.push(server);
    assert.is(lstatSync(path).mode & 0o777, 0o600);
    const wide = await FdServer.listen(socketPath(), { socketMode: 0o660 });
    cleanup.push(wide);
    assert.is(lstatSync(wide.path).mode & 0o777, 0o660);
  } finally {
    process.umask(old);
  }
});

test('peerCredentials name the process at the other end, on both sides', async () => {
  const { client, peer } = await connectedPair();
  const self = { pid: process.pid, uid: process.getuid!(), gid: process.getegid!() };
  const { pid, uid, gid, groups } = peer.peerCredentials;
  assert.equal({ pid, uid, gid }, self);
  assert.ok(Array.isArray(groups));
  assert.is(client.peerCredentials.pid, process.pid);
  client.close();
  assert.is(
    (() => {
      try {
        return client.peerCredentials.pid;
      } catch (error) {
        return (error as VringError).code;
      }
    })(),
    'ERR_VRING_CLOSED',
  );
});

test('a peer that authorize refuses is closed unread, counted and reported; the server keeps accepting', async () => {
  const path = socketPath();
  const refusals: Array<{ pid: number | undefined; reason: string }> = [];
  let admit = false;
  const server = await FdServer.listen(path, {
    authorize: () => admit,
    onRefused: (r) => refusals.push({ pid: r.peer?.pid, reason: r.reason }),
  });
  cleanup.push(server);
  const refused = await FdSocket.connect(path);
  cleanup.push(refused);
  await refused.send(Buffer.from('never read'));
  const error = await rejection(refused.receive());
  assert.is(error.code, 'ERR_VRING_PEER_DISCONNECTED');
  assert.is(server.refusedPeers, 1);
  assert.equal(refusals, [{ pid: process.pid, reason: 'not-allowed' }]);
  admit = true;
  const [client, peer] = await Promise.all([FdSocket.connect(path), server.accept()]);
  cleanup.push(client, peer);
  await client.send(Buffer.from('admitted'));
  assert.is(text(await peer.receive()), 'admitted');
  assert.is(server.refusedPeers, 1);
});

test('FdSocket.connect with expectPeerUid refuses a listener of another uid with ERR_VRING_PEER_REFUSED', async () => {
  const path = socketPath();
  const server = await FdServer.listen(path);
  cleanup.push(server);
  const error = await rejection(FdSocket.connect(path, { expectPeerUid: [process.getuid!() + 1] }));
  assert.is(error.code, 'ERR_VRING_PEER_REFUSED');
  assert.is(error.reason, 'peer-not-allowed');
  const ok = await FdSocket.connect(path, { expectPeerUid: process.getuid!() });
  cleanup.push(ok);
  const invalid = await rejection(FdSocket.connect(path, { expectPeerUid: -1 }));
  assert.is(invalid.code, 'ERR_VRING_INVALID_ARGUMENT');
});

test('backpressure: 10,000 messages of 64 KiB to a receiver that is not reading resolve only as it drains, and all arrive in order', async () => {
  const COUNT = 10_000;
  const SIZE = 64 * 1024;
  const { client, peer } = await connectedPair({ maxMessage: SIZE });
  // How far the sender may run ahead of what the receiver took: the receiver's read-ahead
  // (64 messages before it stops reading), what the kernel buffers for a stream socket
  // (bounded by wmem_default, ~3 messages here), one message half read. 256 leaves room for
  // both to be tuned; sending all 10,000 unchecked would buffer 640 MiB.
  const wmem = Number(readFileSync('/proc/sys/net/core/wmem_default', 'utf8'));
  const bound = 256 + Math.ceil((2 * wmem) / SIZE);
  let sent = 0;
  let received = 0;
  let furthestAhead = 0;
  const payload = Buffer.alloc(SIZE);
  const rssBefore = process.memoryUsage().rss;
  const sender = (async () => {
    for (let i = 0; i < COUNT; i++) {
      payload.writeUInt32LE(i, 0);
      payload.fill(i & 0xff, 4);
      await client.send(payload); // the socket copies: the buffer can be reused at once
      sent++;
      furthestAhead = Math.max(furthestAhead, sent - received);
    }
  })();
  // Let the sender run until it makes no more progress (it waits for the reader).
  let last = -1;
  while (sent !== last && sent < COUNT) {
    last = sent;
    await sleep(50);
  }
  assert.ok(sent < COUNT, `all ${COUNT} sends resolved while nobody was reading`);
  assert.ok(sent <= bound, `${sent} sends resolved while nobody was reading (bound ${bound})`);
  const grown = process.memoryUsage().rss - rssBefore;
  assert.ok(grown < 128 * 2 ** 20, `RSS grew by ${grown} bytes while the sender was blocked`);
  for (let i = 0; i < COUNT; i++) {
    const { data } = await peer.receive();
    received++;
    if (data.length !== SIZE || data.readUInt32LE(0) !== i || data[SIZE - 1] !== (i & 0xff)) {
      assert.unreachable(`message ${i}: got #${data.readUInt32LE(0)} of ${data.length} bytes`);
    }
  }
  await sender;
  assert.is(sent, COUNT);
  assert.ok(furthestAhead <= bound, `the sender ran ${furthestAhead} messages ahead`);
});

test.run();
