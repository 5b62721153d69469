/**
 * A small coverage-guided fuzzer for the JavaScript targets in fuzz/targets, in libFuzzer's
 * manner: start from the seed corpus, mutate entries, keep every input that reaches a block
 * (or a block hit-count bucket) not seen before, and stop at the first finding with the input
 * saved. Feedback is V8's block coverage (see block-coverage.ts).
 *
 *   node --import tsx fuzz/engine/run.ts <target> [--seconds N] [--seed N] [--work DIR]
 *   node --import tsx fuzz/engine/run.ts <target> --replay FILE...
 *
 * --work: where inputs that found new coverage are written (the committed corpus is only
 * read). Findings go to fuzz/artifacts/. Prints libFuzzer-style `cov:` (blocks reached) and
 * `ft:` (features: blocks by hit-count bucket) figures. Exits 1 on a finding.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BlockCoverage } from './block-coverage.js';
import { Mutator, Random } from './mutator.js';
import type { FuzzTarget } from './target.js';

const fuzzRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '30' },
    seed: { type: 'string' },
    work: { type: 'string' },
    replay: { type: 'boolean', default: false },
  },
});
const name = positionals[0];
if (!name) {
  console.error('usage: run.ts <target> [--seconds N] [--seed N] [--work DIR] | --replay FILE...');
  process.exit(2);
}
const { target } = (await import(`../targets/${name}.js`)) as { target: FuzzTarget };
const coverage = new BlockCoverage((url) => target.covers.some((c) => url.includes(c)));
coverage.take(); // what importing ran is nobody's input

const features = new Set<string>();
const blocks = new Set<string>();
let executions = 0;

function sha1(data: Uint8Array): string {
  return createHash('sha1').update(data).digest('hex');
}

function report(data: Uint8Array, error: unknown): never {
  const artifacts = join(fuzzRoot, 'artifacts');
  mkdirSync(artifacts, { recursive: true });
  const path = join(artifacts, `${name}-crash-${sha1(data)}`);
  writeFileSync(path, data);
  console.error(`==fuzz== finding in ${name} after ${executions} inputs:`);
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  console.error(`==fuzz== input (${data.byteLength} bytes) saved to ${path}`);
  console.error(`==fuzz== base64: ${Buffer.from(data.subarray(0, 512)).toString('base64')}`);
  process.exit(1);
}

/**
 * Runs one input; true when it reached a feature no earlier input did. `again`: the input
 * already ran in a batch and is counted there.
 */
function execute(data: Uint8Array, again = false): boolean {
  if (!again) executions++;
  try {
    target.run(data);
  } catch (error) {
    report(data, error);
  }
  const seen = coverage.take();
  const before = features.size;
  for (const f of seen.features) features.add(f);
  for (const b of seen.blocks) blocks.add(b);
  return features.size > before;
}

function readDirectory(dir: string): Uint8Array[] {
  try {
    return readdirSync(dir)
      .sort()
      .map((f) => new Uint8Array(readFileSync(join(dir, f))));
  } catch {
    return [];
  }
}

if (options.replay) {
  for (const file of positionals.slice(1)) execute(new Uint8Array(readFileSync(file)));
  console.log(`replayed ${positionals.length - 1} inputs of ${name}: no finding`);
  process.exit(0);
}

const seconds = Number(options.seconds);
const seed = options.seed ? Number(options.seed) : Date.now() % 0x7fffffff;
const random = new Random(seed);
const mutator = new Mutator(random, target.dictionary ?? [], target.maxLength);
const work = options.work;
if (work) mkdirSync(work, { recursive: true });
const started = performance.now();
const stats = (label: string) => {
  const elapsed = (performance.now() - started) / 1000;
  console.log(
    `#${executions}\t${label} cov: ${blocks.size} ft: ${features.size} corp: ${corpus.length} ` +
      `exec/s: ${Math.round(executions / Math.max(elapsed, 0.001))}`,
  );
};

// Seeds: the committed corpus, then what earlier runs found; smallest first, like libFuzzer.
const seeds = [
  ...readDirectory(join(fuzzRoot, 'corpus', name)),
  ...(work ? readDirectory(work) : []),
].sort((a, b) => a.byteLength - b.byteLength);
const corpus: Uint8Array[] = [];
for (const s of seeds.length > 0 ? seeds : [new Uint8Array(0)]) {
  if (execute(s) || corpus.length === 0) corpus.push(s);
}
console.log(`${name}: seed ${seed}, ${seeds.length} seed inputs, ${seconds} s`);
stats('INITED');

// Taking V8's coverage costs about a hundred times what one input does, so inputs run in
// batches with one take per batch. A batch that reached a block never reached before is run
// again one input at a time to find which inputs did it (and their hit-count features); the
// others cost a fraction of a take each. Hit-count features alone therefore guide the search
// only through the inputs run one at a time.
const BATCH = 16;
const deadline = started + seconds * 1000;
let nextPulse = 1024;
while (performance.now() < deadline) {
  const batch: Uint8Array[] = [];
  for (let i = 0; i < BATCH; i++) {
    const input = mutator.mutate(random.pick(corpus), random.pick(corpus));
    batch.push(input);
    executions++;
    try {
      target.run(input);
    } catch (error) {
      report(input, error);
    }
  }
  if (!coverage.take().blocks.some((b) => !blocks.has(b))) {
    if (executions >= nextPulse) {
      nextPulse *= 2;
      stats('pulse ');
    }
    continue;
  }
  for (const input of batch) {
    if (!execute(input, true)) continue;
    corpus.push(input);
    if (work) writeFileSync(join(work, sha1(input)), input);
    stats('NEW   ');
  }
}
stats('DONE  ');
console.log(`stat::number_of_executed_units: ${executions}`);
coverage.close();
