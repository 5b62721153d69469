// `pnpm bench`: every transport side by side on this machine, in one run (see README.md).
//
//   pnpm bench                   full suite, 3 runs per case (about 30 minutes on 2 cores)
//   pnpm bench --quick           smoke run, about a minute and a half
//   pnpm bench --help            the options that select scenarios, sizes and transports
//
// Each side of a case is its own process, pinned with taskset. Results: a table on stdout,
// JSON and an SVG chart in benchmarks/results/; a full run also regenerates the results
// section of benchmarks/README.md.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCases } from './suite/cases.js';
import { chart } from './suite/chart.js';
import { describeMachine, machine } from './suite/machine.js';
import { isFullRun, parseOptions, usage } from './suite/options.js';
import { Progress } from './suite/progress.js';
import { renderText, tables } from './suite/report.js';
import { updateResultsPage } from './suite/results-page.js';
import { runOnce } from './suite/runner.js';
import { type Result, scenario } from './suite/scenarios.js';
import { addRatios, type CaseResult, summarize } from './suite/summary.js';
import { targetTable } from './suite/targets.js';
import { registry } from './transports/registry.js';
import type { Transport } from './transports/transport.js';

const here = dirname(fileURLToPath(import.meta.url));

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  if (options.help) {
    console.log(usage);
    return 0;
  }
  const command = `pnpm bench${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
  const info = machine();
  console.log(`vring benchmark on ${describeMachine(info)}`);
  console.log(
    info.pinned
      ? 'peers pinned to cores 0 and 1 with taskset'
      : 'peers NOT pinned (taskset missing or one core): expect noisy latency',
  );

  const transports: Transport[] = [];
  const unavailable = new Map<string, string>();
  for (const load of Object.values(registry)) {
    const t = await load().catch((error: unknown) => {
      throw new Error(`a transport module failed to load: ${String(error)}`);
    });
    transports.push(t);
  }
  const cases = buildCases(transports, options);
  for (const t of transports) {
    if (!cases.some((c) => c.transport === t.name) || !t.unavailable) continue;
    const reason = await t.unavailable();
    if (reason) unavailable.set(t.name, reason);
  }
  if (cases.length === 0) {
    console.error('no case matches the options');
    return 1;
  }

  // Measured time, plus start-up: about 0.8 s for two processes, 0.2 s more per further one.
  const estimate = (c: (typeof cases)[number]) => {
    const s = scenario(c.scenario);
    const seconds = options.quick ? s.seconds.quick : s.seconds.full;
    const warmup = options.quick ? s.warmupSeconds.quick : s.warmupSeconds.full;
    // A fan-out also has its paced latency stretch (fanout-rpc.ts), at most a second.
    const paced = c.scenario === 'fanout' ? Math.min(1, seconds) : 0;
    return seconds + warmup + paced + 0.8 + 0.2 * Math.max(0, c.peers - 2);
  };
  const steps = cases.flatMap((c) => Array(options.runs).fill(estimate(c)) as number[]);
  const progress = new Progress(steps);
  const dir = mkdtempSync(join(tmpdir(), 'vring-bench-'));
  const results: CaseResult[] = [];
  try {
    for (const c of cases) {
      const reason = unavailable.get(c.transport);
      if (reason) {
        progress.skip(options.runs, `${c.name}: unavailable: ${reason}`);
        results.push({ ...summarize(c, []), unavailable: reason });
        continue;
      }
      const runs: Result[] = [];
      let error: string | undefined;
      for (let run = 1; run <= options.runs && !error; run++) {
        progress.start(options.runs > 1 ? `${c.name} (run ${run}/${options.runs})` : c.name);
        try {
          runs.push(await runOnce(c, { dir, quick: options.quick }));
        } catch (e) {
          error = e instanceof Error ? e.message : String(e);
          progress.note(`${c.name}: FAILED: ${error.split('\n')[0]}`);
        }
        const head = scenario(c.scenario).metrics[0]!;
        const value = runs.at(-1) ? head.read(runs.at(-1)!) : undefined;
        progress.step(
          error ? `${c.name}: failed` : `${c.name}: ${value?.toPrecision(4) ?? '–'} ${head.unit}`,
        );
      }
      const summary = summarize(c, runs);
      if (error) summary.error = error;
      results.push(summary);
    }
  } finally {
    progress.finish();
    rmSync(dir, { recursive: true, force: true });
  }
  addRatios(results);

  const targets = targetTable(results);
  const all = targets ? [...tables(results), targets] : tables(results);
  console.log(renderText(all));
  const out = join(here, 'results');
  mkdirSync(out, { recursive: true });
  // Only a full run replaces latest.* (the committed results); others go beside them.
  const full = isFullRun(options);
  const name = full ? 'latest' : options.quick ? 'quick' : 'partial';
  const json = {
    machine: info,
    command,
    options,
    unavailable: Object.fromEntries(unavailable),
    results,
  };
  writeFileSync(join(out, `${name}.json`), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(out, `${name}.svg`), chart(results, info, command));
  console.log(`\nresults written to benchmarks/results/${name}.json and ${name}.svg`);
  if (full && updateResultsPage(join(here, 'README.md'), all, info, command)) {
    console.log('results section of benchmarks/README.md regenerated');
  }
  const failed = results.filter((r) => r.error);
  if (failed.length > 0) {
    console.error(
      `\n${failed.length} case(s) failed: ${failed.map((r) => r.case.name).join(', ')}`,
    );
    return 1;
  }
  return 0;
}

// Exit at once: nothing is left to do, and no native module's teardown can change the outcome.
process.exit(await main());
