// Runs every uvu test file of every package and of the benchmarks, each in its own Node
// process (tests fork children and watch process exits, so isolation matters), two files at a
// time, and prints one line per file (with its time) and one summary line.
// Usage: node scripts/run-tests.mjs [--asan [--all] | --split] [--jobs=N] [filter-substring]
// Test files are named <subject>.test.ts for a subject's main tests and
// <subject>.<aspect>.test.ts for one aspect of it (e.g. vhost-user-backend.hostile-rings.test.ts,
// vhost-user-frontend.dpdk.test.ts), so a filter of a subject's name runs all of its files.
// --asan loads packages/core/build/vring-asan.node (pnpm build:native:asan) with the ASan and
// UBSan runtimes preloaded, in every test process and every child it forks, and runs every
// file except those in ASAN_SKIPS below (it says which it skips, and why); --all runs those too.
// --split (what `pnpm test` runs) runs every file once: those in ASAN_SKIPS with the plain
// addon, every other one under ASan, so what feeds native code peer input is sanitized and
// nothing runs twice (the ASan addon is the same code as the plain one).
// --jobs=N runs N files at once (default 2); the files in ALONE below always run by themselves.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Files the --asan run leaves out: they drive no native code with input a peer controls, or
 * only code that the files it keeps drive too (rings, frames, regions, eventfds, fd passing,
 * vhost-user, hostile clients and rings, large messages, lending), so under the sanitizers they
 * would find nothing more and double their time in CI. What they test is TypeScript: routing,
 * RPC and stream semantics, tracing, headers, the CLI, the NATS bridge, the poll budget,
 * codecs. A new test file runs under ASan unless it is added here, with its reason.
 */
const ASAN_SKIPS = new Map([
  ['packages/core/test/native-binding-loader.selection.test.ts', 'which addon file loads'],
  ['packages/ipc/test/bus.test.ts', 'pub/sub and RPC semantics of the bus'],
  // Who may connect and how much a peer may take: decisions made in TypeScript on credentials
  // and counts, before or beside the native paths (fd passing, mapping) the kept files drive.
  // Under the sanitizers their many short-lived processes cost 3-4 times as long.
  ['packages/core/test/vhost-user.access-control.test.ts', 'credential checks on connect'],
  ['packages/core/test/vhost-user.limits.test.ts', 'memory and connection limits'],
  ['packages/ipc/test/bus.access-control.test.ts', 'credential checks on connect'],
  ['packages/ipc/test/bus.limits.test.ts', 'per-client limits of the bus'],
  ['packages/ipc/test/bus.container.test.ts', 'a bus reached across namespaces'],
  [
    'packages/core/test/queue-pair.processes.test.ts',
    'load across processes on the rings queue-pair.test drives under ASan',
  ],
  [
    'packages/ipc/test/bus.direct-routes.test.ts',
    'request routing; its handshake is queue-pair-handshake',
  ],
  ['packages/ipc/test/bus.headers.test.ts', 'message headers'],
  ['packages/ipc/test/bus.nats-bridge.test.ts', 'the NATS bridge'],
  ['packages/ipc/test/bus.ordering.test.ts', 'delivery order'],
  [
    'packages/ipc/test/bus.processes.test.ts',
    'load across processes over the same rings as channel',
  ],
  ['packages/ipc/test/bus.queue-groups.test.ts', 'queue-group routing'],
  ['packages/ipc/test/bus.request-many.test.ts', 'scatter-gather RPC semantics'],
  ['packages/ipc/test/bus.stats.test.ts', 'counters'],
  ['packages/ipc/test/bus.tracing.test.ts', 'OpenTelemetry spans'],
  ['packages/ipc/test/cli.test.ts', 'the CLI'],
  ['packages/ipc/test/inbox.test.ts', 'inbox semantics'],
  ['packages/ipc/test/message-codec.test.ts', 'the codec'],
  ['packages/ipc/test/msgpack-prefix.test.ts', 'a TypeScript parser (fuzzed by the corpus replay)'],
  ['packages/ipc/test/notification-policy.test.ts', 'the poll budget'],
  ['packages/ipc/test/rpc.test.ts', 'RPC semantics'],
  ['packages/ipc/test/subscription.test.ts', 'subscription semantics'],
  ['benchmarks/test/brokers.test.ts', "the benchmark's broker transports"],
  ['benchmarks/test/fanout.test.ts', "the benchmark's fan-out helper"],
  ['benchmarks/test/frame-reader.test.ts', "the benchmark's socket frame reader"],
]);
for (const file of ASAN_SKIPS.keys()) {
  // A renamed or removed file must not leave a stale entry that would skip its successor.
  if (!existsSync(join(root, file))) throw new Error(`ASAN_SKIPS names ${file}, which is gone`);
}

/**
 * Files that run by themselves, never beside another file: they keep both cores busy for
 * long (testpmd polls a core flat out; many processes stream at full speed), or they assert
 * how long something took, which a neighbour's load would make flaky.
 */
function alone(file) {
  if (/\.dpdk[\w-]*\.test\.ts$/.test(file)) return 'testpmd polls a core';
  if (/\.processes\.test\.ts$/.test(file)) return 'processes streaming at full speed';
  return ALONE.get(file);
}
const ALONE = new Map([
  ['packages/core/test/queue-pair.test.ts', 'ring stress at full speed'],
  ['packages/ipc/test/bus.large-messages.test.ts', 'values of up to 16 MiB through processes'],
  ['packages/ipc/test/bus.request-many.test.ts', 'asserts how long a scatter-gather took'],
  ['packages/ipc/test/rpc.test.ts', 'asserts how long requests took'],
  ['benchmarks/test/brokers.test.ts', 'brokers at full speed'],
  ['benchmarks/test/fanout.test.ts', 'fan-out at full speed'],
]);
for (const file of ALONE.keys()) {
  if (!existsSync(join(root, file))) throw new Error(`ALONE names ${file}, which is gone`);
}

const split = process.argv.includes('--split');
const asan = process.argv.includes('--asan') || split;
const asanSkips = asan && !split && !process.argv.includes('--all');
const jobsArg = process.argv.find((a) => a.startsWith('--jobs='));
const jobs = jobsArg ? Number(jobsArg.slice('--jobs='.length)) : 2;
if (!Number.isInteger(jobs) || jobs < 1) throw new Error('--jobs=N needs a positive integer');
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
/** @type {{ name: string, sanitized: boolean }[]} */
const files = [];
let skipped = 0;
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
    // The filter matches the path inside the repository, never the checkout's own location.
    const name = relative(root, join(dir, f));
    if (!f.endsWith('.test.ts') || !name.includes(filter)) continue;
    const skip = asan && ASAN_SKIPS.get(name);
    if (skip && asanSkips) {
      skipped++;
      console.log(`skip ${name} under ASan (${skip})`);
    } else {
      files.push({ name, sanitized: asan && !(split && skip) });
    }
  }
}

let passed = 0;
let failed = 0;
const failures = [];
const started = Date.now();
const seconds = (since) => ((Date.now() - since) / 1000).toFixed(1);

const FILE_TIMEOUT_MS = 5 * 60_000;

/** Runs one file in its own process and prints its line (and its output if it failed). */
function runFile({ name, sanitized }) {
  const began = Date.now();
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', join(root, name)], {
    cwd: root,
    env: { ...process.env, FORCE_COLOR: '0', ...(sanitized ? sanitizerEnv : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s) => {
    out += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s) => {
    out += s;
  });
  // A file that hangs is stopped and reported as such, with what it printed so far (uvu prints
  // a mark per finished test, so the output shows how far it got); the slowest file takes
  // about a minute.
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, FILE_TIMEOUT_MS);
  return new Promise((resolveRun) => {
    child.on('close', (status) => {
      clearTimeout(timer);
      const total = /Total:\s+(\d+)/.exec(out);
      const ok = /Passed:\s+(\d+)/.exec(out);
      const t = Number(total?.[1] ?? 0);
      const p = Number(ok?.[1] ?? 0);
      const good = status === 0 && t > 0 && t === p;
      passed += p;
      failed += good ? 0 : Math.max(1, t - p);
      const how = split ? (sanitized ? ' [asan]' : ' [plain]') : '';
      const why = timedOut ? `, stopped: still running after ${FILE_TIMEOUT_MS / 1000} s` : '';
      console.log(`${good ? 'ok  ' : 'FAIL'} ${name}${how} (${p}/${t}, ${seconds(began)} s${why})`);
      if (!good) {
        failures.push(name);
        console.log(
          out
            .split('\n')
            .map((l) => `    ${l}`)
            .join('\n'),
        );
      }
      resolveRun();
    });
  });
}

// The files that may share the machine first, `jobs` at a time, then the others one by one.
const shared = files.filter((f) => !alone(f.name));
const queue = [...shared];
await Promise.all(
  Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await runFile(next);
  }),
);
for (const file of files.filter((f) => alone(f.name))) await runFile(file);

console.log(`${passed} passed, ${failed} failed in ${seconds(started)} s`);
// A run with nothing in it failed, unless what matched was left out on purpose.
process.exit(failed === 0 && (passed > 0 || (files.length === 0 && skipped > 0)) ? 0 : 1);
