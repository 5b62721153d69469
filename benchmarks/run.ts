// vring against a Node `net` Unix-socket baseline measured in the same run.
//
//   pnpm bench                 full run (~2 minutes)
//   pnpm bench --quick         smoke run (~20 s)
//   pnpm bench --only=pingpong only the scenarios whose name contains the text
//
// Every case runs two fresh processes, pinned to different cores with taskset (unpinned, the
// scheduler flips a ping-pong between ~8 µs on one core and ~45 µs across two). Results go to
// stdout as a table and to benchmarks/results/latest.json with the machine they came from.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type PeerArgs, type Scenario, toArgv } from './transports/peer-args.js';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length) ?? '';
const pinned = existsSync('/usr/bin/taskset') && cpus().length >= 2;

interface Case {
  name: string;
  scenario: Scenario;
  transport: 'vring' | 'net' | 'vhost-user';
  mode: string;
  size: number;
}

type Result = Record<string, number>;

const seconds = quick ? 0.5 : 3;
const transports: Array<Pick<Case, 'transport' | 'mode'>> = [
  { transport: 'net', mode: '-' },
  { transport: 'vring', mode: 'event' },
  { transport: 'vring', mode: 'adaptive' },
  { transport: 'vring', mode: 'poll' },
];

const cases: Case[] = [];
for (const scenario of ['oneway', 'pingpong'] as const) {
  for (const size of [64, 1024]) {
    for (const t of transports) {
      cases.push({ name: `${scenario} ${size} B ${t.transport} ${t.mode}`, scenario, size, ...t });
    }
  }
}
// vhost-user end to end: a VirtioUser streaming frames through a VhostUserBackend that
// echoes them (what `vring ping` and `vring echo` do), against a Unix-socket echo.
for (const size of [64, 1024]) {
  for (const t of [
    transports[0]!,
    ...transports.slice(1).map((x) => ({ ...x, transport: 'vhost-user' as const })),
  ]) {
    cases.push({ name: `echo ${size} B ${t.transport} ${t.mode}`, scenario: 'echo', size, ...t });
  }
}
for (const t of transports.slice(0, 3)) {
  cases.push({ name: `idle ${t.transport} ${t.mode}`, scenario: 'idle', size: 0, ...t });
}

/** Round trips per ping-pong case: enough samples for a stable p99.9 in a few seconds. */
function roundTrips(c: Case): number {
  const fast = c.transport === 'vring' && c.mode !== 'event';
  return (fast ? 200_000 : 20_000) / (quick ? 10 : 1);
}

function spawnPeer(args: PeerArgs, cpu: number) {
  const node = [
    process.execPath,
    '--import',
    'tsx',
    join(here, 'transports', 'peer.ts'),
    ...toArgv(args),
  ];
  const argv = pinned ? ['taskset', '-c', String(cpu), ...node] : node;
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return { child, lines };
}

async function runCase(c: Case, dir: string): Promise<Result> {
  const base: Omit<PeerArgs, 'role'> = {
    transport: c.transport,
    scenario: c.scenario,
    mode: c.mode,
    path: join(dir, `${c.transport}.sock`),
    size: c.size,
    seconds: c.scenario === 'idle' ? (quick ? 1 : 3) : seconds,
    count: roundTrips(c),
    warmup: roundTrips(c) / 10,
  };
  const listener = spawnPeer({ ...base, role: 'listen' }, 1);
  const ready = await listener.lines.next();
  if (ready.done) throw new Error(`${c.name}: the listening peer died before it was ready`);
  const connector = spawnPeer({ ...base, role: 'connect' }, 0);
  const timer = setTimeout(() => {
    listener.child.kill('SIGKILL');
    connector.child.kill('SIGKILL');
  }, 120_000);
  const results: Result[] = [];
  const collect = async (lines: AsyncIterator<string>) => {
    for (let r = await lines.next(); !r.done; r = await lines.next())
      results.push(JSON.parse(r.value));
  };
  await Promise.all([
    collect(listener.lines),
    collect(connector.lines),
    once(listener.child, 'exit'),
    once(connector.child, 'exit'),
  ]);
  clearTimeout(timer);
  if (listener.child.exitCode !== 0 || connector.child.exitCode !== 0 || results.length !== 1) {
    throw new Error(
      `${c.name}: a peer failed (exit codes ${listener.child.exitCode}, ${connector.child.exitCode})`,
    );
  }
  return results[0]!;
}

function machine() {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    // Not a git checkout.
  }
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    kernel: release(),
    node: process.version,
    commit,
    pinned,
    date: new Date().toISOString(),
  };
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function describe(c: Case, r: Result, baseline: Result | undefined): string[] {
  const label =
    c.transport === 'net'
      ? 'net (Unix socket)'
      : `${c.transport === 'vhost-user' ? 'vhost-user' : 'vring'} ${c.mode}`;
  if (c.scenario === 'oneway' || c.scenario === 'echo') {
    const rate = r.messages! / r.seconds!;
    const ratio = baseline ? rate / (baseline.messages! / baseline.seconds!) : 1;
    return [
      label,
      `${fmt(rate / 1e6, 2)} M msg/s`,
      `${fmt(r.bytes! / r.seconds! / 1e6, 0)} MB/s`,
      `${fmt(ratio, 1)}×`,
    ];
  }
  if (c.scenario === 'pingpong') {
    const ratio = baseline ? baseline.p50! / r.p50! : 1;
    return [
      label,
      `p50 ${fmt(r.p50!, 2)} µs`,
      `p99 ${fmt(r.p99!, 2)} / p99.9 ${fmt(r.p999!, 2)} µs`,
      `${fmt(ratio, 1)}× faster`,
    ];
  }
  return [label, `${fmt(r.cpuPercent!, 2)} % CPU`, `over ${fmt(r.seconds!, 1)} s`, ''];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vring-bench-'));
  const info = machine();
  console.log(
    `vring benchmark on ${info.cpu} (${info.cores} cores), Linux ${info.kernel}, Node ${info.node}, commit ${info.commit}`,
  );
  console.log(
    pinned
      ? 'peers pinned to cores 0 and 1 with taskset'
      : 'peers NOT pinned (taskset missing or one core): expect noisy latency',
  );
  const selected = cases.filter((c) => c.name.includes(only));
  const rows: Array<{ case: Case; result: Result }> = [];
  let group = '';
  for (const c of selected) {
    const result = await runCase(c, dir);
    rows.push({ case: c, result });
    const titles = {
      oneway: 'one-way throughput',
      pingpong: 'ping-pong round trip',
      echo: 'echo throughput (frames returned per second), VirtioUser -> VhostUserBackend',
      idle: 'idle, connection open, nothing moving',
    };
    const title = c.scenario === 'idle' ? titles.idle : `${titles[c.scenario]}, ${c.size} B`;
    if (title !== group) {
      group = title;
      console.log(`\n${title}`);
    }
    const baseline = rows.find(
      (r) => r.case.transport === 'net' && r.case.scenario === c.scenario && r.case.size === c.size,
    )?.result;
    console.log(
      `  ${describe(c, result, baseline)
        .map((s, i) => s.padEnd([20, 18, 30, 14][i]!))
        .join('')}`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
  const out = join(here, 'results');
  mkdirSync(out, { recursive: true });
  // Only a full run replaces latest.json (the committed results); others go beside it.
  const file = quick ? 'quick.json' : only ? 'partial.json' : 'latest.json';
  writeFileSync(join(out, file), `${JSON.stringify({ machine: info, quick, rows }, null, 2)}\n`);
  console.log(`\nresults written to benchmarks/results/${file}`);
}

await main();
