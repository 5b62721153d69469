// One side of the vhost-user echo benchmark: the listening side is a VhostUserBackend that
// returns every frame to its port (what `vring echo` does); the connecting side is a
// VirtioUser that streams frames and counts the echoes. Prints one JSON result line.
import { MessageBatch, VhostUserBackend, type VhostUserPort, VirtioUser } from '@vring/core';
import { report } from './measure.js';
import type { PeerArgs } from './peer-args.js';

async function echoPort(port: VhostUserPort): Promise<void> {
  const batch = port.createBatch();
  try {
    for (;;) await port.sendBatch(await port.receive(batch));
  } catch {
    // The frontend left: the run is over.
  }
}

async function serve(args: PeerArgs): Promise<void> {
  let done!: () => void;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const backend = new VhostUserBackend(args.path, {
    notification: args.mode as 'event' | 'adaptive' | 'poll',
    onPort: (port) => {
      void echoPort(port);
      void port.closed.then(() => done());
    },
  });
  report({ ready: true });
  await finished;
  await backend.close();
}

/** Streams frames for `seconds` and counts echoes; the ring bounds what is in flight. */
async function stream(args: PeerArgs): Promise<void> {
  const port = await VirtioUser.open(args.path, {
    notification: args.mode as 'event' | 'adaptive' | 'poll',
    queueSize: 1024,
  });
  const out = new MessageBatch({ bytes: 256 * 1024, messages: 256 });
  const frame = Buffer.alloc(args.size, 0xab);
  while (out.push(frame)) {}
  const inbox = new MessageBatch({ bytes: 1024 * 1024, messages: 1024 });
  // Warm up until the first echo, so start-up is not measured.
  await port.sendBatch(out);
  await port.receive(inbox);
  let echoed = 0;
  let stop = false;
  const started = performance.now();
  const sending = (async () => {
    while (!stop) await port.sendBatch(out);
  })();
  while (performance.now() - started < args.seconds * 1000) {
    echoed += (await port.receive(inbox)).count;
  }
  const seconds = (performance.now() - started) / 1000;
  stop = true;
  report({ messages: echoed, bytes: echoed * args.size, seconds });
  port.close();
  await sending.catch(() => {});
}

export async function runVhostUser(args: PeerArgs): Promise<void> {
  if (args.role === 'listen') await serve(args);
  else await stream(args);
}
