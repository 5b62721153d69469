// Two Node processes exchanging messages over one vring queue pair.
//
// The parent creates the queue pair (its rings and buffers live in a sealed memfd), forks a
// child and hands it the memory and eventfds over a Unix socket. The child echoes every
// message back; the parent checks each echo and prints what moved.
//
//   pnpm start                       # or: node --import tsx examples/queue-pair-demo.ts [count]
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { acceptQueuePair, FdServer, FdSocket, MessageBatch, offerQueuePair } from '@vring/core';

async function echoChild(socketPath: string): Promise<void> {
  const socket = await FdSocket.connect(socketPath);
  const device = await acceptQueuePair(socket);
  const batch = new MessageBatch();
  try {
    for (;;) {
      await device.receive(batch);
      await device.sendBatch(batch); // the received batch goes straight back
    }
  } catch {
    // The parent closed the socket: the demo is over.
  }
  device.close();
  socket.close();
}

async function parent(count: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vring-demo-'));
  const server = await FdServer.listen(join(dir, 'demo.sock'));
  const child = fork(fileURLToPath(import.meta.url), ['--child', server.path], {
    execArgv: process.execArgv,
  });
  const socket = await server.accept();
  server.close();

  const pair = await offerQueuePair(socket);
  const { descriptor, fds } = pair.share();
  console.log(
    `parent ${process.pid} → child ${child.pid}: queue pair of ${descriptor.queueSize} × ` +
      `${descriptor.bufferSize} B buffers in a ${descriptor.regionSize / 1024} KiB memfd, ` +
      `handed over with ${fds.length} fds`,
  );

  const started = process.hrtime.bigint();
  const sending = (async () => {
    const out = new MessageBatch();
    for (let i = 0; i < count; ) {
      out.clear();
      while (i < count && out.push(Buffer.from(`message ${i} ${'.'.repeat(i % 200)}`))) i++;
      await pair.sendBatch(out);
    }
  })();
  let echoed = 0;
  let bytes = 0;
  while (echoed < count) {
    for (const message of await pair.receive()) {
      const expected = `message ${echoed} ${'.'.repeat(echoed % 200)}`;
      if (Buffer.from(message).toString() !== expected) throw new Error(`echo ${echoed} differs`);
      echoed++;
      bytes += message.byteLength;
    }
  }
  await sending;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const { notificationsSent } = pair.stats;
  console.log(
    `${echoed} messages (${(bytes / 1e6).toFixed(1)} MB) went to the child and came back intact ` +
      `in ${seconds.toFixed(2)} s: ${Math.round(echoed / seconds).toLocaleString('en')} round trips/s, ` +
      `${notificationsSent} eventfd kicks for ${2 * echoed} ring operations`,
  );
  pair.close();
  socket.close();
  await once(child, 'exit');
  rmSync(dir, { recursive: true, force: true });
}

if (process.argv[2] === '--child') {
  await echoChild(process.argv[3]!);
} else {
  await parent(Number(process.argv[2] ?? 200_000));
}
