// What the benchmark peers measure, and how they report it to the runner: one JSON object
// per stdout line, which the runner merges into the case's result.
import { readFileSync } from 'node:fs';
import { type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64 } from 'hdr-histogram-js';

/** Bytes a burst (below) stays within. */
const BURST_BYTES = 4 * 1024 * 1024;

/**
 * How many messages of `size` bytes make one burst: at most `max`, at most about 4 MiB of
 * them, and at least one. A sender reads the clock once per burst (reading it per message
 * costs as much as a 64 B send; reading it once per 64 messages of 16 MiB would overshoot a
 * measured stretch by seconds). Adapters whose flow control is their own use it as their
 * window of messages in flight.
 */
export function perBurst(size: number, max: number): number {
  return Math.max(1, Math.min(max, Math.floor(BURST_BYTES / Math.max(1, size))));
}

/** Writes one JSON result line on stdout, where the runner reads it. */
export function report(value: object): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** The listening peer's first line: the runner starts the connecting peers after it. */
export function reportReady(): void {
  report({ ready: true });
}

/**
 * GC pauses of this thread within one measured stretch: V8's 'gc' performance entries
 * (scavenges, mark-compact pauses) that started between `start` and `end`.
 */
interface GcWindow {
  side: string | undefined;
  start: number;
  end: number;
  ms: number;
  count: number;
}

/** The stretches being measured, and those measured but not yet reported (see reportGc). */
const gcWindows = new Set<GcWindow>();
let gcObserver: PerformanceObserver | undefined;

function countGc(entries: readonly PerformanceEntry[]): void {
  for (const entry of entries) {
    for (const w of gcWindows) {
      if (entry.startTime < w.start || entry.startTime >= w.end) continue;
      w.ms += entry.duration;
      w.count++;
    }
  }
}

/** A new stretch from now; one observer per process, started with the first. */
function openGcWindow(): GcWindow | undefined {
  // A worker thread's GC is its own isolate's, and it reports no CPU either (see below).
  if (!isMainThread) return undefined;
  if (!gcObserver) {
    // An entry comes a turn of the event loop after its collection; the peers collect tens
    // of times a second, and the cost of an entry is lost in the noise even at ~1,800.
    gcObserver = new PerformanceObserver((list) => countGc(list.getEntries()));
    gcObserver.observe({ entryTypes: ['gc'] });
  }
  const w = {
    side: undefined,
    start: performance.now(),
    end: Number.POSITIVE_INFINITY,
    ms: 0,
    count: 0,
  };
  gcWindows.add(w);
  return w;
}

/**
 * Reports each measured stretch's GC as `gc.<side>`: `share` (GC pause time over the
 * stretch's wall time), `ms` and `count`. Called once the peer is done and a turn of the
 * event loop has passed, so the entries of collections at the very end of a stretch have
 * arrived (V8 hands them over after the collection, never during it).
 */
export function reportGc(): void {
  if (gcObserver) countGc(gcObserver.takeRecords());
  for (const w of gcWindows) {
    if (w.side === undefined) continue;
    gcWindows.delete(w);
    const share = w.end > w.start ? w.ms / (w.end - w.start) : 0;
    report({ gc: { [w.side]: { share, ms: w.ms, count: w.count } } });
  }
}

/**
 * CPU time of this process over a measured stretch. `report` adds it to the result as
 * `cpu.<side>` in µs, so the runner can divide it by the messages moved, per side, and
 * closes the stretch's GC window, which reportGc reports as `gc.<side>`.
 */
export class CpuMeter {
  #start = process.cpuUsage();
  #gc = openGcWindow();

  restart(): void {
    this.#start = process.cpuUsage();
    if (this.#gc) {
      this.#gc.start = performance.now();
      this.#gc.ms = 0;
      this.#gc.count = 0;
    }
  }

  micros(): number {
    const used = process.cpuUsage(this.#start);
    return used.user + used.system;
  }

  report(side: string): void {
    // A worker thread's cpuUsage is the whole process's: the main thread reports it once.
    if (!isMainThread) return;
    report({ cpu: { [side]: this.micros() } });
    if (this.#gc) {
      this.#gc.end = performance.now();
      this.#gc.side = side;
    }
  }
}

const histogramShape = {
  lowestDiscernibleValue: 100,
  highestTrackableValue: 10_000_000_000,
  numberOfSignificantValueDigits: 3,
} as const;

type Histogram = ReturnType<typeof build>;

function percentiles(h: Histogram) {
  const us = (q: number) => h.getValueAtPercentile(q) / 1000;
  return {
    p50: us(50),
    p99: us(99),
    p999: us(99.9),
    max: h.maxValue / 1000,
    count: h.totalCount,
  };
}

/**
 * CPU time of another process over a measured stretch: a broker's, read by the peer that
 * marks the stretch (the publisher, the RPC server) from /proc/<pid>/stat, every thread of
 * it included. Its unit is the clock tick (USER_HZ, 100 a second on Linux whatever the
 * kernel's HZ), so it is good to 10 ms: enough for a broker busy through the stretch.
 */
export class ProcessCpuMeter {
  readonly #pid: number;
  #start: number | undefined;

  constructor(pid: number) {
    this.#pid = pid;
    this.#start = this.#micros();
  }

  #micros(): number | undefined {
    try {
      const stat = readFileSync(`/proc/${this.#pid}/stat`, 'utf8');
      // After "pid (comm) ": state is field 3, utime 14 and stime 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
    } catch {
      return undefined; // not Linux, or the process is gone
    }
  }

  restart(): void {
    this.#start = this.#micros();
  }

  /** CPU µs the process used since the meter started (undefined when unreadable). */
  elapsed(): number | undefined {
    const now = this.#micros();
    return now !== undefined && this.#start !== undefined ? now - this.#start : undefined;
  }

  report(side: string): void {
    const used = this.elapsed();
    if (used !== undefined) report({ cpu: { [side]: used } });
  }
}

/**
 * Round-trip times in an HdrHistogram (3 significant digits, 100 ns to 10 s): constant
 * memory and time per sample however long the run, exact enough for p99.9, and the same
 * percentile definition as every other HdrHistogram user.
 */
export class LatencyRecorder {
  readonly #histogram = build(histogramShape);

  /** Records one round trip of `nanos` nanoseconds. */
  record(nanos: number): void {
    this.#histogram.recordValue(Math.max(100, Math.round(nanos)));
  }

  /** p50, p99, p99.9 and max in µs, and the sample count. */
  summary(): { p50: number; p99: number; p999: number; max: number; count: number } {
    return percentiles(this.#histogram);
  }

  /** The whole histogram as text, for another process to merge (see `mergedLatency`). */
  encode(): string {
    return encodeIntoCompressedBase64(this.#histogram);
  }
}

/**
 * The percentiles of several processes' samples taken together (a fan-out's subscribers):
 * their encoded histograms added up, so a p99 is the p99 of every delivery, not a mean of
 * per-process p99s.
 */
export function mergedLatency(encoded: readonly string[]): ReturnType<typeof percentiles> {
  const total = build(histogramShape);
  for (const text of encoded) total.add(decodeFromCompressedBase64(text));
  return percentiles(total);
}

/**
 * CLOCK_MONOTONIC in ms: one clock for every process of the machine (unlike
 * `performance.now()`, whose origin is each process's start), so a time stamped by a
 * publisher can be subtracted from a subscriber's. Never an integer, so a msgpack float64
 * it stays (an integral value would pack shorter and change the message size).
 */
export function monotonicMs(): number {
  const ms = Number(process.hrtime.bigint()) / 1e6;
  return Number.isInteger(ms) ? ms + 1e-6 : ms;
}

/**
 * The client's side of a ping-pong, whatever the transport: round trips for the warm-up,
 * `warm()` (the server restarts its CPU meter on it), then timed round trips for `seconds`;
 * reports the client's CPU and the latency percentiles.
 */
export async function pingFor(
  roundTrip: () => Promise<unknown>,
  warm: () => Promise<unknown>,
  args: { warmupSeconds: number; seconds: number },
): Promise<void> {
  const warmUntil = performance.now() + args.warmupSeconds * 1000;
  while (performance.now() < warmUntil) await roundTrip();
  await warm();
  const latency = new LatencyRecorder();
  const cpu = new CpuMeter();
  const started = performance.now();
  const until = started + args.seconds * 1000;
  while (performance.now() < until) {
    const t0 = process.hrtime.bigint();
    await roundTrip();
    latency.record(Number(process.hrtime.bigint() - t0));
  }
  cpu.report('client');
  report({ ...latency.summary(), seconds: (performance.now() - started) / 1000 });
}

/** CPU this process uses over `seconds` of doing nothing but waiting, in % of one core. */
export async function measureIdle(seconds: number): Promise<{ percent: number; seconds: number }> {
  // Let start-up work (module compilation, V8's background threads) finish first.
  await new Promise((resolve) => setTimeout(resolve, Math.min(1000, seconds * 1000)));
  const before = process.cpuUsage();
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const used = process.cpuUsage(before);
  const elapsed = (performance.now() - started) / 1000;
  return { percent: ((used.user + used.system) / 1e6 / elapsed) * 100, seconds: elapsed };
}

/** Reports this side's idle CPU as `idle.<side>`. */
export async function reportIdle(side: string, seconds: number): Promise<void> {
  const { percent } = await measureIdle(seconds);
  report({ idle: { [side]: percent } });
}

/**
 * Reports the idle CPU of another process (a broker), measured over the same stretch as
 * {@link measureIdle}'s, as `idle.<side>`: to the kernel's 10 ms clock ticks, so a 2 s
 * stretch tells 0 from 0.5 %.
 */
export async function reportProcessIdle(pid: number, side: string, seconds: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, Math.min(1000, seconds * 1000)));
  const meter = new ProcessCpuMeter(pid);
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const used = meter.elapsed();
  if (used === undefined) return;
  const elapsed = (performance.now() - started) / 1000;
  report({ idle: { [side]: (used / 1e6 / elapsed) * 100 } });
}
