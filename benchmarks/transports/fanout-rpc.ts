// The fan-out and RPC scenarios, written once for every transport that runs them (the vring
// Bus, a vring Channel, and the `net-msgpack` baseline), so that transports differ only in
// how they publish, deliver, call and answer, never in what is counted or timed.
//
// Fan-out: the listener (index 0) publishes; connectors 1.. subscribe and count. The
// publisher sends a WARM marker after its warm-up (subscribers restart their counters and
// CPU meters there) and an END marker when its time is up; each subscriber reports its count
// on END and tells the publisher it is done. The publisher's `seconds` run from WARM to the
// last subscriber's "done", so every message counted was delivered within them.
//
// RPC: the connecting peer is the client, the listener the server. The client keeps
// `concurrency` requests in flight for the measured time; a WARM and an END request mark the
// measured stretch for the server's CPU meter.
import { CpuMeter, LatencyRecorder, perBurst, report } from './measure.js';
import { END, marker, type Payload, payload, WARM } from './payload.js';
import type { PeerArgs } from './transport.js';

/** Publishes one value; a returned promise asks the caller to wait (backpressure). */
export type Publish = (value: Payload) => Promise<void> | undefined;

async function publishFor(publish: Publish, value: Payload, size: number, seconds: number) {
  const until = performance.now() + seconds * 1000;
  const burst = perBurst(size, 64);
  while (performance.now() < until) {
    for (let i = 0; i < burst; i++) {
      const wait = publish(value);
      if (wait) await wait;
    }
  }
}

/**
 * The publisher's side: warm-up, WARM, the measured stretch, END, then waits for every
 * subscriber's "done" (`allDone`) and reports `seconds` and its CPU as `cpu.publisher`.
 */
export async function publishFanout(
  publish: Publish,
  args: PeerArgs,
  allDone: Promise<unknown>,
): Promise<void> {
  const value = payload(args.size);
  await publishFor(publish, value, args.size, args.warmupSeconds);
  await publish(marker(WARM));
  const cpu = new CpuMeter();
  const started = performance.now();
  await publishFor(publish, value, args.size, args.seconds);
  await publish(marker(END));
  await allDone;
  const seconds = (performance.now() - started) / 1000;
  cpu.report('publisher');
  report({ seconds });
}

/**
 * A subscriber's counter: feed it every value received; it resolves `ended` on END, after
 * reporting `delivered.s<index>` and `cpu.s<index>`.
 */
export class FanoutCounter {
  readonly ended: Promise<void>;
  readonly #side: string;
  readonly #cpu = new CpuMeter();
  #delivered = 0;
  #resolve!: () => void;

  constructor(index: number) {
    this.#side = `s${index}`;
    this.ended = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** Counts one value; returns whether it was the END marker. */
  onValue(value: Payload): boolean {
    if (value.id >= 0) {
      this.#delivered++;
      return false;
    }
    if (value.id === WARM) {
      this.#delivered = 0;
      this.#cpu.restart();
      return false;
    }
    this.#cpu.report(this.#side);
    report({ delivered: { [this.#side]: this.#delivered } });
    this.#resolve();
    return true;
  }
}

/** Calls the echo service once. */
export type Call = (value: Payload) => Promise<unknown>;

/** `concurrency` loops, each calling as soon as its last call returned, for `seconds`. */
async function callFor(
  call: Call,
  value: Payload,
  concurrency: number,
  seconds: number,
  latency?: LatencyRecorder,
): Promise<number> {
  const until = performance.now() + seconds * 1000;
  let requests = 0;
  const loop = async () => {
    while (performance.now() < until) {
      if (latency) {
        const t0 = process.hrtime.bigint();
        await call(value);
        latency.record(Number(process.hrtime.bigint() - t0));
      } else {
        await call(value);
      }
      requests++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return requests;
}

/**
 * The client's side: warm-up, a WARM request, `concurrency` requests in flight for the
 * measured time (each one's latency recorded), an END request. Reports `requests`,
 * `seconds`, the latency percentiles and `cpu.client`.
 */
export async function rpcClient(call: Call, args: PeerArgs): Promise<void> {
  const value = payload(args.size);
  await callFor(call, value, args.concurrency, args.warmupSeconds);
  await call(marker(WARM));
  const latency = new LatencyRecorder();
  const cpu = new CpuMeter();
  const started = performance.now();
  const requests = await callFor(call, value, args.concurrency, args.seconds, latency);
  const seconds = (performance.now() - started) / 1000;
  cpu.report('client');
  const { p50, p99, p999 } = latency.summary();
  report({ requests, seconds, p50, p99, p999 });
  await call(marker(END));
}

/**
 * The server's echo handler: it returns the request, restarts the CPU meter on WARM, and
 * reports `cpu.server` and resolves `ended` on END.
 */
export function echoServer(): { handle(value: Payload): Payload; ended: Promise<void> } {
  const cpu = new CpuMeter();
  let resolve!: () => void;
  const ended = new Promise<void>((r) => {
    resolve = r;
  });
  return {
    handle(value) {
      if (value.id === WARM) cpu.restart();
      else if (value.id === END) {
        cpu.report('server');
        resolve();
      }
      return value;
    },
    ended,
  };
}

/** Waits for `gone` (the other side hung up), but never longer than `ms`. */
export async function atMost(gone: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    gone,
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}
