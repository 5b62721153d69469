// The scenarios of every transport that moves msgpack values (payload.ts) rather than raw
// Buffers, written once over a small `Endpoint` adapter so that each transport differs only
// in how it sends and receives, never in what the scenario does.
//
// Protocol: the connecting side drives. It sends a WARM marker after its warm-up (the other
// side restarts its counters and CPU meter there) and an END marker when done; the
// listening side answers END with END and waits for the connecting side to hang up, so the
// last message is never lost to an early exit.
import { CpuMeter, perBurst, pingFor, report, reportIdle } from './measure.js';
import { END, marker, type Payload, payload, WARM } from './payload.js';
import type { PeerArgs } from './transport.js';

export interface Endpoint {
  /**
   * Sends one value. A returned promise asks the caller to wait before sending more: the
   * transport's own backpressure (a full socket, a pending zeromq send).
   */
  send(value: Payload): Promise<void> | undefined;
  /**
   * Calls `handler` with each value received, in order. Called once. A transport read in a
   * loop awaits what the handler returns before reading on (an echo sends, then receives).
   */
  onMessage(handler: (value: Payload) => Promise<void> | undefined): void;
  /** Settles when the other side has gone away (or a grace time for transports that cannot tell). */
  readonly peerGone: Promise<unknown>;
  close(): void;
}

/**
 * How many messages of `size` bytes a sender may have in flight before it waits, for
 * transports whose flow control is the adapter's: at most `max`, and at most about 4 MiB,
 * so a slow receiver (JSON-parsing a 1 MiB Buffer) never has gigabytes queued for it.
 */
export function sendWindow(size: number, max: number): number {
  return perBurst(size, max);
}

/**
 * Wraps a vring send (whose sends of one turn share a batch and a promise) so the caller
 * waits only every `window`-th time: awaiting each would put one message per batch, which
 * no throughput-minded caller does. A failed send fails the channel or client, and the next
 * awaited one reports it; each shared promise gets one handler, not one per message.
 */
export function windowed(
  send: (value: Payload) => Promise<void>,
  window: number,
): (value: Payload) => Promise<void> | undefined {
  let unawaited = 0;
  let caught: Promise<void> | undefined;
  return (value) => {
    const sent = send(value);
    if (++unawaited < window) {
      if (sent !== caught) {
        sent.catch(() => {});
        caught = sent;
      }
      return undefined;
    }
    unawaited = 0;
    return sent;
  };
}

/** Sends `value` for `seconds`, honouring backpressure. */
async function pump(endpoint: Endpoint, value: Payload, size: number, seconds: number) {
  const until = performance.now() + seconds * 1000;
  const burst = perBurst(size, 64);
  while (performance.now() < until) {
    for (let i = 0; i < burst; i++) {
      const wait = endpoint.send(value);
      if (wait) await wait;
    }
  }
}

/** Resolves with the next message (installed before the send that provokes it). */
function replies(endpoint: Endpoint): () => Promise<Payload> {
  let resolveNext: ((value: Payload) => void) | undefined;
  endpoint.onMessage((value) => {
    const r = resolveNext;
    resolveNext = undefined;
    r?.(value);
    return undefined;
  });
  return () =>
    new Promise<Payload>((resolve) => {
      resolveNext = resolve;
    });
}

/** Waits for the peer to hang up, but never longer than a second. */
async function finish(endpoint: Endpoint): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    endpoint.peerGone,
    new Promise((resolve) => {
      timer = setTimeout(resolve, 1000);
    }),
  ]);
  clearTimeout(timer);
  endpoint.close();
}

async function sendOneWay(endpoint: Endpoint, args: PeerArgs): Promise<void> {
  const next = replies(endpoint);
  const value = payload(args.size);
  await pump(endpoint, value, args.size, args.warmupSeconds);
  await endpoint.send(marker(WARM));
  const cpu = new CpuMeter();
  await pump(endpoint, value, args.size, args.seconds);
  const ended = next();
  await endpoint.send(marker(END));
  cpu.report('sender');
  await ended;
  endpoint.close();
}

async function receiveOneWay(endpoint: Endpoint, args: PeerArgs): Promise<void> {
  const cpu = new CpuMeter();
  let messages = 0;
  let started = performance.now();
  await new Promise<void>((resolve) => {
    endpoint.onMessage((value) => {
      if (value.id >= 0) {
        messages++;
      } else if (value.id === WARM) {
        messages = 0;
        started = performance.now();
        cpu.restart();
      } else if (value.id === END) {
        const seconds = (performance.now() - started) / 1000;
        cpu.report('receiver');
        report({ messages, bytes: messages * args.size, seconds });
        void endpoint.send(marker(END));
        resolve();
      }
      return undefined;
    });
  });
  await finish(endpoint);
}

async function ping(endpoint: Endpoint, args: PeerArgs): Promise<void> {
  const next = replies(endpoint);
  const value = payload(args.size);
  const roundTrip = async (v: Payload) => {
    const pong = next();
    await endpoint.send(v);
    await pong;
  };
  await pingFor(
    () => roundTrip(value),
    () => roundTrip(marker(WARM)),
    args,
  );
  await roundTrip(marker(END));
  endpoint.close();
}

async function pong(endpoint: Endpoint): Promise<void> {
  const cpu = new CpuMeter();
  await new Promise<void>((resolve) => {
    endpoint.onMessage((value) => {
      if (value.id === WARM) cpu.restart();
      if (value.id === END) {
        cpu.report('server');
        resolve();
      }
      // A ping-pong has one message in flight: backpressure cannot arise.
      return endpoint.send(value);
    });
  });
  await finish(endpoint);
}

async function idle(endpoint: Endpoint, args: PeerArgs): Promise<void> {
  if (args.role === 'connect') {
    const next = replies(endpoint);
    await reportIdle('connect', args.seconds);
    const ended = next();
    await endpoint.send(marker(END));
    await ended;
    endpoint.close();
    return;
  }
  let ended!: () => void;
  const endReceived = new Promise<void>((resolve) => {
    ended = resolve;
  });
  endpoint.onMessage((value) => {
    if (value.id === END) ended();
    return undefined;
  });
  await reportIdle('listen', args.seconds);
  await endReceived;
  await endpoint.send(marker(END));
  await finish(endpoint);
}

/** Runs this peer's side of `args.scenario` over `endpoint`. */
export async function runValueScenario(endpoint: Endpoint, args: PeerArgs): Promise<void> {
  const connect = args.role === 'connect';
  switch (args.scenario) {
    case 'oneway':
      return connect ? sendOneWay(endpoint, args) : receiveOneWay(endpoint, args);
    case 'pingpong':
      return connect ? ping(endpoint, args) : pong(endpoint);
    case 'idle':
      return idle(endpoint, args);
    default:
      throw new Error(`scenario ${args.scenario} is not implemented for msgpack values`);
  }
}
