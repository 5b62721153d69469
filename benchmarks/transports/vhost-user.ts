// vhost-user end to end: a VirtioUser streaming frames through a VhostUserBackend that
// echoes them (what `vring ping` and `vring echo` do). Its baseline is the `net` echo.
import {
  MessageBatch,
  type NotificationMode,
  VhostUserBackend,
  type VhostUserPort,
  VirtioUser,
} from '@vring/core';
import { CpuMeter, report, reportReady } from './measure.js';
import type { PeerArgs, Transport } from './transport.js';

async function echoPort(port: VhostUserPort, cpu: CpuMeter): Promise<void> {
  const batch = port.createBatch();
  try {
    for (;;) await port.sendBatch(await port.receive(batch));
  } catch {
    // The frontend left: the run is over.
    cpu.report('server');
  }
}

async function serve(args: PeerArgs, notification: NotificationMode): Promise<void> {
  let done!: () => void;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const cpu = new CpuMeter();
  const backend = new VhostUserBackend(args.path, {
    notification,
    onPort: (port) => {
      void echoPort(port, cpu);
      void port.closed.then(() => done());
    },
  });
  reportReady();
  await finished;
  await backend.close();
}

/** Streams frames for `seconds` and counts echoes; the ring bounds what is in flight. */
async function stream(args: PeerArgs, notification: NotificationMode): Promise<void> {
  const port = await VirtioUser.open(args.path, { notification, queueSize: 1024 });
  const out = new MessageBatch({ bytes: 256 * 1024, messages: 256 });
  const frame = Buffer.alloc(args.size, 0xab);
  while (out.push(frame)) {}
  const inbox = new MessageBatch({ bytes: 1024 * 1024, messages: 1024 });
  let stop = false;
  const sending = (async () => {
    while (!stop) await port.sendBatch(out);
  })();
  const warmUntil = performance.now() + args.warmupSeconds * 1000;
  while (performance.now() < warmUntil) await port.receive(inbox);
  const cpu = new CpuMeter();
  let echoed = 0;
  const started = performance.now();
  while (performance.now() - started < args.seconds * 1000) {
    echoed += (await port.receive(inbox)).count;
  }
  const seconds = (performance.now() - started) / 1000;
  stop = true;
  cpu.report('client');
  report({ messages: echoed, bytes: echoed * args.size, seconds });
  port.close();
  await sending.catch(() => {});
}

export function vhostUser(mode: NotificationMode): Transport {
  return {
    name: `vhost-user-${mode}`,
    label: `vhost-user echo, ${mode}`,
    payload: 'raw',
    layout: { processes: 'pair' },
    scenarios: ['echo'],
    run: (args) => (args.role === 'listen' ? serve(args, mode) : stream(args, mode)),
  };
}
