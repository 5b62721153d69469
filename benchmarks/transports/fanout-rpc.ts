// The fan-out and RPC scenarios, written once for every transport that runs them (the vring
// Bus, a vring Channel, and the `net-msgpack` baseline), so that transports differ only in
// how they publish, deliver, call and answer, never in what is counted or timed.
//
// Fan-out: the listener (index 0) publishes; connectors 1.. subscribe and count. A run:
//
// 1. warm-up: the publisher publishes flat out, unmeasured;
// 2. SYNC: every subscriber acknowledges it, so the warm-up's backlog is gone everywhere;
// 3. latency: one message about every millisecond (a `setTimeout` loop; above 16 KiB
//    fewer, at most 16 MiB a second, so that large messages do not saturate the stretch
//    meant to be unloaded: 250 a second at 64 KiB, 16 at 1 MiB), each stamped
//    with its publish time (`ts`, CLOCK_MONOTONIC, which all processes share); each
//    subscriber records every delivery's latency, publish call to handler, in a histogram
//    it reports whole (`delivery.s<index>`), so the suite takes percentiles over every
//    delivery of every subscriber. Paced, not flat out: at full speed a delivery's latency
//    is the depth of the queues in front of it (a bus's high-water mark, a socket's
//    buffer, a credit window), which each transport sizes its own way;
// 4. WARM: subscribers restart their counters and CPU meters;
// 5. throughput: flat out for `seconds`;
// 6. END: each subscriber reports its count and acknowledges. The publisher's `seconds` run
//    from WARM to the last acknowledgement, so every message counted was delivered within
//    them.
//
// RPC: the connecting peer is the client, the listener the server. The client keeps
// `concurrency` requests in flight for the measured time; a WARM and an END request mark the
// measured stretch for the server's CPU meter.
import {
  CpuMeter,
  LatencyRecorder,
  monotonicMs,
  ProcessCpuMeter,
  perBurst,
  report,
} from './measure.js';
import { END, marker, type Payload, payload, SYNC, WARM } from './payload.js';
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

/** Publisher bytes a second the paced stretch stays within (large messages go slower). */
const PACED_BYTES_PER_SECOND = 16 * 1024 * 1024;

/**
 * One message about every millisecond (at most 16 MiB a second) for `seconds`, each
 * stamped with its publish time.
 */
async function publishPaced(publish: Publish, value: Payload, size: number, seconds: number) {
  const until = performance.now() + seconds * 1000;
  const interval = Math.max(1, Math.round((size / PACED_BYTES_PER_SECOND) * 1000));
  const stamped = { ...value };
  while (performance.now() < until) {
    // Every transport packs the value within publish(), so the object can be stamped anew.
    stamped.ts = monotonicMs();
    const wait = publish(stamped);
    if (wait) await wait;
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/**
 * The subscribers' acknowledgements, as they arrive: each subscriber acknowledges the
 * markers in order, and the publisher waits for a marker's acknowledgements before it
 * sends anything past it, so the n-th round is complete at n × subscribers of them.
 */
export class Acks {
  readonly #subscribers: number;
  #count = 0;
  #rounds = 0;
  #waiters: Array<{ at: number; resolve: () => void }> = [];

  constructor(subscribers: number) {
    this.#subscribers = subscribers;
  }

  /** One subscriber's acknowledgement arrived. */
  add(): void {
    this.#count++;
    const due = this.#waiters.filter((w) => w.at <= this.#count);
    this.#waiters = this.#waiters.filter((w) => w.at > this.#count);
    for (const w of due) w.resolve();
  }

  /** Resolves once every subscriber has acknowledged the next marker (or said it is ready). */
  next(): Promise<void> {
    const at = ++this.#rounds * this.#subscribers;
    if (this.#count >= at) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ at, resolve }));
  }
}

/**
 * The publisher's side (steps 1 to 6 above); `acks` counts the subscribers'
 * acknowledgements. Reports `seconds` and its CPU as `cpu.publisher` (and the broker's, if
 * the case has one, as `cpu.broker`).
 */
export async function publishFanout(publish: Publish, args: PeerArgs, acks: Acks): Promise<void> {
  const value = payload(args.size);
  await publishFor(publish, value, args.size, args.warmupSeconds);
  await publish(marker(SYNC));
  await acks.next();
  await publishPaced(publish, value, args.size, Math.min(1, args.seconds));
  await publish(marker(WARM));
  const cpu = new CpuMeter();
  const broker = args.brokerPid === undefined ? undefined : new ProcessCpuMeter(args.brokerPid);
  const started = performance.now();
  await publishFor(publish, value, args.size, args.seconds);
  await publish(marker(END));
  await acks.next();
  const seconds = (performance.now() - started) / 1000;
  cpu.report('publisher');
  broker?.report('broker');
  report({ seconds });
}

/**
 * A subscriber's side: feed it every value received. It records the latency stretch's
 * deliveries, counts the throughput stretch's, calls `ack` on SYNC and END, and resolves
 * `ended` on END, after reporting `delivered.s<index>`, `delivery.s<index>` (the latency
 * histogram) and `cpu.s<index>`.
 */
export class FanoutCounter {
  readonly ended: Promise<void>;
  readonly #side: string;
  readonly #ack: () => unknown;
  readonly #cpu = new CpuMeter();
  readonly #latency = new LatencyRecorder();
  #recording = false;
  #delivered = 0;
  #resolve!: () => void;

  constructor(index: number, ack: () => unknown) {
    this.#side = `s${index}`;
    this.#ack = ack;
    this.ended = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** Takes one value; returns whether it was the END marker. */
  onValue(value: Payload): boolean {
    if (value.id >= 0) {
      this.#delivered++;
      if (this.#recording) this.#latency.record((monotonicMs() - value.ts) * 1e6);
      return false;
    }
    if (value.id === SYNC) {
      this.#recording = true;
      this.#ack();
      return false;
    }
    if (value.id === WARM) {
      this.#recording = false;
      this.#delivered = 0;
      this.#cpu.restart();
      return false;
    }
    this.#cpu.report(this.#side);
    report({
      delivered: { [this.#side]: this.#delivered },
      delivery: { [this.#side]: this.#latency.encode() },
    });
    this.#ack();
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
 * reports `cpu.server` (and `cpu.broker`, the process of `brokerPid`, if the case has a
 * broker) and resolves `ended` on END.
 */
export function echoServer(brokerPid?: number): {
  handle(value: Payload): Payload;
  ended: Promise<void>;
} {
  const cpu = new CpuMeter();
  const broker = brokerPid === undefined ? undefined : new ProcessCpuMeter(brokerPid);
  let resolve!: () => void;
  const ended = new Promise<void>((r) => {
    resolve = r;
  });
  return {
    handle(value) {
      if (value.id === WARM) {
        cpu.restart();
        broker?.restart();
      } else if (value.id === END) {
        cpu.report('server');
        broker?.report('broker');
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
