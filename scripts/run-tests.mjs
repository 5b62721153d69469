// Runs every uvu test file of every package and of the benchmarks, each in its own Node
// process (tests fork children and watch process exits, so isolation matters), and prints
// one summary line.
// Usage: node scripts/run-tests.mjs [--asan] [filter-substring]
// Test files are named <subject>.test.ts for a subject's main tests and
// <subject>.<aspect>.test.ts for one aspect of it (e.g. vhost-user-backend.hostile-rings.test.ts,
// vhost-user-frontend.dpdk.test.ts), so a filter of a subject's name runs all of its files.
// --asan loads packages/core/build/vring-asan.node (pnpm build:native:asan) with the ASan and
// UBSan runtimes preloaded, in every test process and every child it forks.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const asan = process.argv.includes('--asan');
const filter = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? '';
const sanitizerEnv = {};
if (asan) {
  const runtime = (name) =>
    execFileSync('g++', [`-print-file-name=${name}`], { encoding: 'utf8' }).trim();
  sanitizerEnv.LD_PRELOAD = `${runtime('libasan.so')}:${runtime('libubsan.so')}`;
  // Node itself does not free everything at exit; leaks in vring show up in the C++ tests.
  sanitizerEnv.ASAN_OPTIONS = 'detect_leaks=0:abort_on_error=1';
  sanitizerEnv.UBSAN_OPTIONS = 'halt_on_error=1:print_stacktrace=1';
  sanitizerEnv.VRING_NATIVE_PATH = join(root, 'packages', 'core', 'build', 'vring-asan.node');
}
const files = [];
// Every package's tests, and the benchmarks' own (their helpers, e.g. the socket frame reader).
const testDirs = [
  ...readdirSync(join(root, 'packages')).map((pkg) => join(root, 'packages', pkg, 'test')),
  join(root, 'benchmarks', 'test'),
  // Replays the fuzz corpus through the JavaScript fuzz targets.
  join(root, 'fuzz', 'test'),
];
for (const dir of testDirs) {
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    continue;
  }
  for (const f of entries.sort()) {
    if (f.endsWith('.test.ts') && join(dir, f).includes(filter)) files.push(join(dir, f));
  }
}

let passed = 0;
let failed = 0;
const failures = [];
for (const file of files) {
  const name = relative(root, file);
  const started = Date.now();
  const result = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', file], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, FORCE_COLOR: '0', ...sanitizerEnv },
    timeout: 10 * 60_000,
  });
  const out = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  const total = /Total:\s+(\d+)/.exec(out);
  const ok = /Passed:\s+(\d+)/.exec(out);
  const t = Number(total?.[1] ?? 0);
  const p = Number(ok?.[1] ?? 0);
  const good = result.status === 0 && t > 0 && t === p;
  passed += p;
  failed += good ? 0 : Math.max(1, t - p);
  console.log(
    `${good ? 'ok  ' : 'FAIL'} ${name} (${p}/${t}, ${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );
  if (!good) {
    failures.push(name);
    console.log(
      out
        .split('\n')
        .map((l) => `    ${l}`)
        .join('\n'),
    );
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
