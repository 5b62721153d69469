// What the benchmark peers measure, and how they report it to the runner.

/** Writes one JSON result line on stdout, where the runner reads it. */
export function report(value: object): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/**
 * Exact percentiles of round-trip samples in µs. The runs take at most a few hundred
 * thousand samples, so sorting them all is cheap and needs no histogram approximation.
 */
export function percentiles(samples: Float64Array): { p50: number; p99: number; p999: number } {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { p50: at(0.5), p99: at(0.99), p999: at(0.999) };
}

/** CPU this process uses over `seconds` of doing nothing but waiting, in % of one core. */
export async function measureIdle(
  seconds: number,
): Promise<{ cpuPercent: number; seconds: number }> {
  // Let start-up work (module compilation, V8's background threads) finish first.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const before = process.cpuUsage();
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const used = process.cpuUsage(before);
  const elapsed = (performance.now() - started) / 1000;
  return { cpuPercent: ((used.user + used.system) / 1e6 / elapsed) * 100, seconds: elapsed };
}
