// Runs every fuzz harness for a set time, one after the other, and fails on any finding.
// Usage: node scripts/fuzz.mjs [--seconds N] [harness...]   (pnpm fuzz -- --seconds 30)
// Native harnesses are libFuzzer binaries built by `make -C native fuzz` (needs clang); the
// JavaScript ones run under fuzz/engine/run.ts and need `pnpm build` (they import @vring/core).
// Inputs that found new coverage accumulate in $TMPDIR/vring-fuzz/<harness> across runs; the
// committed seeds in fuzz/corpus/<harness> are only read. Findings are saved to fuzz/artifacts/.
// What is fuzzed and how to add a finding to the corpus: docs/fuzzing.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const NATIVE = ['device-queue-pair', 'message-reader'];
const JS = ['vhost-user-request', 'ipc-frames', 'msgpack-prefix'];

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { seconds: { type: 'string', default: '60' } },
});
const seconds = Number(values.seconds);
if (!Number.isInteger(seconds) || seconds < 1) {
  console.error('--seconds must be a positive integer');
  process.exit(2);
}
const unknown = positionals.filter((h) => !NATIVE.includes(h) && !JS.includes(h));
if (unknown.length > 0) {
  console.error(`unknown harness ${unknown.join(', ')}; known: ${[...NATIVE, ...JS].join(', ')}`);
  process.exit(2);
}
const selected = positionals.length > 0 ? positionals : [...NATIVE, ...JS];
const artifacts = join(root, 'fuzz', 'artifacts');
mkdirSync(artifacts, { recursive: true });

if (selected.some((h) => NATIVE.includes(h))) {
  const built = spawnSync('make', ['-j2', '-C', 'native', 'fuzz'], { cwd: root, stdio: 'inherit' });
  if (built.status !== 0) {
    console.error('building the native harnesses failed (they need clang: see docs/fuzzing.md)');
    process.exit(1);
  }
}
if (
  selected.some((h) => JS.includes(h)) &&
  !existsSync(join(root, 'packages', 'core', 'dist', 'index.js'))
) {
  console.error('the JavaScript harnesses import the built @vring/core: run `pnpm build` first');
  process.exit(1);
}

function command(harness, work) {
  if (NATIVE.includes(harness)) {
    const binary = join(root, 'native', 'build-test', `${harness.replaceAll('-', '_')}_fuzzer`);
    return [
      binary,
      [
        work,
        join(root, 'fuzz', 'corpus', harness),
        `-max_total_time=${seconds}`,
        '-timeout=10',
        '-print_final_stats=1',
        `-artifact_prefix=${join(artifacts, `${harness}-`)}`,
      ],
    ];
  }
  return [
    process.execPath,
    [
      '--import',
      'tsx',
      join(root, 'fuzz', 'engine', 'run.ts'),
      harness,
      '--seconds',
      String(seconds),
      '--work',
      work,
    ],
  ];
}

const results = [];
for (const harness of selected) {
  const work = join(tmpdir(), 'vring-fuzz', harness);
  mkdirSync(work, { recursive: true });
  const [file, args] = command(harness, work);
  console.log(`\n=== ${harness}: ${seconds} s`);
  const started = Date.now();
  // The JavaScript engine cannot interrupt a target stuck in a loop: the deadline here can.
  const run = spawnSync(file, args, {
    cwd: root,
    encoding: 'utf8',
    timeout: (seconds + 120) * 1000,
    maxBuffer: 256 * 1024 * 1024,
    env: {
      ...process.env,
      ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1',
      UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
    },
  });
  const out = `${run.stdout ?? ''}${run.stderr ?? ''}`;
  // The last figures printed: libFuzzer's DONE line, or the engine's.
  const figures = [...out.matchAll(/#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)/g)].at(-1);
  const hung = run.error?.code === 'ETIMEDOUT';
  const ok = run.status === 0 && !hung;
  if (!ok) console.log(out.split('\n').slice(-80).join('\n'));
  else
    console.log(
      out
        .split('\n')
        .filter((l) => /INITED|DONE/.test(l))
        .join('\n'),
    );
  results.push({
    harness,
    seconds: Math.round((Date.now() - started) / 1000),
    runs: figures?.[1] ?? '?',
    cov: figures?.[2] ?? '?',
    ft: figures?.[3] ?? '?',
    result: ok ? 'ok' : hung ? 'HUNG' : 'FINDING',
  });
}

console.log('\nharness              seconds  inputs     cov    ft     result');
for (const r of results) {
  console.log(
    `${r.harness.padEnd(20)} ${String(r.seconds).padStart(7)}  ${r.runs.padEnd(10)} ${r.cov.padEnd(6)} ${r.ft.padEnd(6)} ${r.result}`,
  );
}
const failed = results.filter((r) => r.result !== 'ok').length;
console.log(`fuzz: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
