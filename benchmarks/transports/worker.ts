// worker_threads: the peer is a worker thread of the same process, talking over its
// MessagePort (`postMessage`, structured clone). In-process, so not a competitor of the
// two-process transports but a reference: what crossing threads costs without crossing
// processes. CPU figures are the whole process (both threads); Node 20 has no per-thread
// CPU clock.
import { parentPort, Worker, workerData } from 'node:worker_threads';
import type { Payload } from './payload.js';
import type { PeerArgs, Transport } from './transport.js';
import { type Endpoint, runValueScenario, sendWindow } from './value-scenarios.js';

interface Port {
  postMessage(value: unknown): void;
  on(event: 'message', listener: (value: unknown) => void): unknown;
}

/** Marker id of a credit message (its `ts` is the number of messages credited). */
const ACK = -3;

/**
 * postMessage never blocks and queues without bound, so the receiver returns a credit every
 * quarter window and the sender stops at a window of unacknowledged messages: the flow
 * control any real user of a MessagePort stream has to add.
 */
function endpoint(
  port: Port,
  size: number,
  peerGone: Promise<unknown>,
  close: () => void,
): Endpoint {
  const window = sendWindow(size, 4096);
  const credit = Math.max(1, window >> 2);
  let unacknowledged = 0;
  let received = 0;
  let wake: (() => void) | undefined;
  let handle: (value: Payload) => void = () => {};
  port.on('message', (message) => {
    const value = message as Payload;
    if (value.id === ACK) {
      unacknowledged -= value.ts;
      if (wake && unacknowledged < window) {
        const w = wake;
        wake = undefined;
        w();
      }
      return;
    }
    if (++received === credit) {
      received = 0;
      port.postMessage({ id: ACK, ts: credit, data: null });
    }
    handle(value);
  });
  return {
    send(value) {
      port.postMessage(value);
      if (++unacknowledged < window) return undefined;
      return new Promise<void>((resolve) => {
        wake = resolve;
      });
    },
    onMessage(handler) {
      handle = handler;
    },
    peerGone,
    close,
  };
}

/** The worker thread's side: the connecting one. */
export async function workerSide(): Promise<void> {
  const args = workerData as PeerArgs;
  const port = parentPort!;
  await runValueScenario(
    endpoint(port, args.size, new Promise(() => {}), () => port.close()),
    args,
  );
}

async function run(args: PeerArgs): Promise<void> {
  // tsx registers its loader on the main thread only (Node 20): the worker registers its own.
  const source = `import('tsx/esm/api')
    .then(({ register }) => { register(); return import(${JSON.stringify(import.meta.url)}); })
    .then((m) => m.workerSide());`;
  const worker = new Worker(source, {
    eval: true,
    workerData: { ...args, role: 'connect', index: 1 } satisfies PeerArgs,
  });
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  await runValueScenario(
    endpoint(worker, args.size, exited, () => {}),
    args,
  );
  await exited;
}

export const worker: Transport = {
  name: 'worker',
  label: 'worker_threads (in-process)',
  payload: 'msgpack',
  layout: { processes: 'single', cores: '0,1' },
  scenarios: ['oneway', 'pingpong'],
  run,
};
