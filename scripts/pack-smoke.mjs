// Packaging smoke test (`pnpm test:pack`, after `pnpm build` and `pnpm build:prebuilds`): what
// a user gets from the tarballs alone. Packs @vring/core and @vring/ipc with `pnpm pack`,
// checks that the core tarball holds the four prebuilt addons and no locally built one, lints
// the tarballs with publint and @arethetypeswrong/cli, installs them into empty projects outside
// the repo with npm (--ignore-scripts) and with pnpm, and through each installation runs:
//   - a bus with two member processes, pub/sub and RPC, once as ESM (bus from createBus, whose
//     process must have loaded the installed prebuild for this machine) and once as CommonJS
//     (bus from the installed `vring bus` command), checking every value;
//   - `vring --version`, `vring --help` and `vring bus --help`, which must exit 0;
//   - `tsc --strict` over typed.ts/typed.cts (must compile) and typed-bad.ts (must report
//     exactly its one deliberate error).
// The consumer programs are in scripts/pack-smoke/. Children run on this script's Node, so
// `PATH=/other/node/bin:$PATH pnpm test:pack` tests another Node. VRING_SMOKE_KEEP=1 keeps
// the temporary directory. Exits 1 on the first failure, printing the failing step's output.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PREBUILT_TARGETS } from './prebuilt-targets.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = join(root, 'scripts', 'pack-smoke');
const require = createRequire(join(root, 'package.json'));
const rootManifest = require('./package.json');
const tsc = require.resolve('typescript/bin/tsc');
const STEP_TIMEOUT_MS = 120_000;
const PROCESS_TIMEOUT_MS = 30_000;

// Children (and the bins' `#!/usr/bin/env node`) use the Node running this script.
const env = {
  ...process.env,
  PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH}`,
  FORCE_COLOR: '0',
  NO_COLOR: '1',
};
delete env.VRING_NATIVE_PATH; // the installed package must find its own binary
delete env.NODE_OPTIONS;

const work = mkdtempSync(join(tmpdir(), 'vring-pack-'));
const started = Date.now();
let steps = 0;
let lastStep = started;

/** Runs a command to completion; throws with its output when it exits non-zero. */
function run(command, args, options = {}) {
  try {
    return execFileSync(command, args, {
      encoding: 'utf8',
      env,
      timeout: STEP_TIMEOUT_MS,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...options,
    });
  } catch (error) {
    const output = `${error.stdout ?? ''}${error.stderr ?? ''}`.trim();
    throw new Error(`\`${command} ${args.join(' ')}\` failed (${error.message})\n${output}`);
  }
}

function pass(what) {
  steps++;
  const now = Date.now();
  console.log(`  ok ${what} (${((now - lastStep) / 1000).toFixed(1)} s)`);
  lastStep = now;
}

/** Starts a long-running child; `exited` resolves to its code, output is collected. */
function start(label, command, args, cwd) {
  const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc = { label, child, stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (d) => (proc.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (proc.stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), PROCESS_TIMEOUT_MS);
  proc.exited = new Promise((resolveExit) =>
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolveExit(code ?? signal);
    }),
  );
  return proc;
}

function describe(proc) {
  return `--- ${proc.label} stdout:\n${proc.stdout}--- ${proc.label} stderr:\n${proc.stderr}`;
}

async function waitForOutput(proc, text) {
  const deadline = Date.now() + PROCESS_TIMEOUT_MS;
  while (!proc.stdout.includes(text)) {
    if (proc.child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`${proc.label} never printed ${JSON.stringify(text)}\n${describe(proc)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---- pack -------------------------------------------------------------------------------

function pack(dir) {
  const before = new Set(readdirSync(work));
  run('pnpm', ['pack', '--pack-destination', work], { cwd: join(root, 'packages', dir) });
  const [tarball] = readdirSync(work).filter((f) => f.endsWith('.tgz') && !before.has(f));
  assert.ok(tarball, `pnpm pack of packages/${dir} produced no tarball`);
  return join(work, tarball);
}

/** The manifest and file list inside a tarball. */
function inspect(tarball) {
  const files = run('tar', ['-tzf', tarball]).split('\n').filter(Boolean);
  const manifest = JSON.parse(run('tar', ['-xzOf', tarball, 'package/package.json']));
  return { files, manifest };
}

function checkCore({ files, manifest }) {
  for (const f of ['dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'dist/index.d.cts']) {
    assert.ok(files.includes(`package/${f}`), `@vring/core tarball lacks ${f}`);
  }
  const binaries = files.filter((f) => f.endsWith('.node'));
  const expected = Object.keys(PREBUILT_TARGETS).map((t) => `package/prebuilds/${t}/vring.node`);
  // Exactly the prebuilds: an addon built on the packing machine (build/vring.node) would be
  // loaded before them and need that machine's glibc and C++ runtime.
  assert.deepEqual(binaries.sort(), expected.sort(), '@vring/core tarball: the .node files');
  checkNoInstallScripts(manifest);
  return binaries;
}

/** The prebuild directory the loader must pick in this process: same arch, same libc. */
function thisTarget() {
  const glibc = process.report.getReport().header.glibcVersionRuntime;
  return `${process.platform}-${process.arch}-${glibc ? 'glibc' : 'musl'}`;
}

function checkIpc({ files, manifest }, coreVersion) {
  for (const f of ['dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'bin/vring.js']) {
    assert.ok(files.includes(`package/${f}`), `@vring/ipc tarball lacks ${f}`);
  }
  // pnpm pack must have replaced workspace:* with the real version.
  assert.equal(manifest.dependencies['@vring/core'], coreVersion);
  checkNoInstallScripts(manifest);
}

function checkNoInstallScripts(manifest) {
  for (const hook of ['preinstall', 'install', 'postinstall']) {
    assert.equal(manifest.scripts?.[hook], undefined, `${manifest.name} has a ${hook} script`);
  }
}

// ---- install ----------------------------------------------------------------------------

/** An empty project outside the repo, with the consumer programs copied in. */
function consumer(name, extra = {}) {
  const dir = join(work, name);
  run('mkdir', ['-p', dir]);
  const manifest = { name: `vring-smoke-${name}`, version: '0.0.0', private: true, ...extra };
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  for (const f of readdirSync(fixtures)) copyFileSync(join(fixtures, f), join(dir, f));
  return dir;
}

// @types/node for the consumer's tsc, in the range the repo itself builds with.
const typesNode = `@types/node@${rootManifest.devDependencies['@types/node']}`;

function installWithNpm(coreTgz, ipcTgz) {
  const dir = consumer('npm');
  run(
    'npm',
    ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'].concat([
      coreTgz,
      ipcTgz,
      typesNode,
    ]),
    { cwd: dir },
  );
  return dir;
}

function installWithPnpm(coreTgz, ipcTgz) {
  // @vring/ipc depends on @vring/core by version; the override points that at the tarball
  // (no registry copy of @vring/core must ever be fetched). msgpackr's optional native
  // accelerator has an install script that pnpm 10 does not run unless approved, as a user
  // who approves nothing would have it; with CI set, pnpm fails on an unapproved one unless
  // it is declared ignored.
  const dir = consumer('pnpm', {
    pnpm: {
      overrides: { '@vring/core': `file:${coreTgz}` },
      ignoredBuiltDependencies: ['msgpackr-extract'],
    },
  });
  run('pnpm', ['add', '--prefer-offline', coreTgz, ipcTgz, typesNode], { cwd: dir });
  return dir;
}

// ---- checks through an installation ------------------------------------------------------

async function busRun(dir, format, MESSAGES) {
  const socket = join(dir, `bus-${format}.sock`);
  const bin = join(dir, 'node_modules', '.bin', 'vring');
  const host =
    format === 'esm'
      ? start('host (createBus)', process.execPath, ['host.mjs', socket], dir)
      : start('vring bus', bin, ['bus', '--socket', socket], dir);
  const members = [];
  try {
    await waitForOutput(host, format === 'esm' ? 'LISTENING' : 'listening on');
    const file = format === 'esm' ? 'member.mjs' : 'member.cjs';
    const subscriber = start(
      `subscriber (${file})`,
      process.execPath,
      [file, 'subscriber', socket],
      dir,
    );
    const publisher = start(
      `publisher (${file})`,
      process.execPath,
      [file, 'publisher', socket],
      dir,
    );
    members.push(subscriber, publisher);
    const codes = await Promise.all(members.map((m) => m.exited));
    const all = members.map(describe).join('\n');
    assert.deepEqual(codes, [0, 0], `bus members exited ${codes}\n${all}`);
    const line = subscriber.stdout.split('\n').find((l) => l.startsWith('RECEIVED '));
    assert.ok(line, `the subscriber printed nothing received\n${all}`);
    const expected = MESSAGES.map((value) => ({ topic: 'smoke.numbers', value }));
    assert.deepEqual(JSON.parse(line.slice('RECEIVED '.length)), expected);
    assert.match(publisher.stdout, /RPC sum 5, remote error E_SMOKE/);
    host.child.kill('SIGTERM');
    assert.equal(await host.exited, 0, `the bus host did not exit 0\n${describe(host)}`);
    if (format === 'esm') {
      // The installed package found its prebuild; it has no other addon to find.
      const addon = /^ADDON (.*)$/m.exec(host.stdout)?.[1];
      const prebuild = `/node_modules/@vring/core/prebuilds/${thisTarget()}/vring.node`;
      assert.ok(addon?.endsWith(prebuild), `the host loaded ${addon}, not …${prebuild}`);
      // The host's own count: three messages published, each delivered to the one subscriber.
      const stats = JSON.parse(host.stdout.split('STATS ')[1]);
      assert.equal(stats.published, MESSAGES.length, describe(host));
      assert.equal(stats.delivered, MESSAGES.length, describe(host));
    } else {
      assert.match(host.stdout, /published 3, delivered 3,/, describe(host));
    }
  } finally {
    for (const p of [host, ...members]) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  }
}

function checkBin(dir, version) {
  const bin = join(dir, 'node_modules', '.bin', 'vring');
  assert.equal(run(bin, ['--version'], { cwd: dir }).trim(), version, 'vring --version');
  assert.match(run(bin, ['--help'], { cwd: dir }), /\bbus\b/, 'vring --help lists bus');
  assert.match(run(bin, ['bus', '--help'], { cwd: dir }), /--socket/, 'vring bus --help');
}

function checkTypes(dir, { negative }) {
  const flags = ['--strict', '--noEmit', '--module', 'nodenext', '--target', 'es2022'];
  const typesFlags = ['--types', 'node', '--lib', 'es2023,esnext.disposable'];
  run(process.execPath, [tsc, ...flags, ...typesFlags, 'typed.ts', 'typed.cts'], { cwd: dir });
  if (!negative) return;
  let output = '';
  try {
    // The libraries' declarations were checked above; here only the one error matters.
    const badFlags = [...flags, ...typesFlags, '--skipLibCheck'];
    run(process.execPath, [tsc, ...badFlags, 'typed-bad.ts'], { cwd: dir });
  } catch (error) {
    output = error.message;
  }
  assert.ok(output, 'tsc compiled typed-bad.ts, which has a deliberate type error');
  const errors = output.match(/error TS\d+/g) ?? [];
  assert.deepEqual(errors, ['error TS2322'], `expected exactly one TS2322:\n${output}`);
  assert.match(output, /typed-bad\.ts\(7,/, output);
}

// ---- main --------------------------------------------------------------------------------

async function main() {
  for (const need of ['packages/core/dist/index.js', 'packages/ipc/dist/index.js']) {
    if (!existsSync(join(root, need))) throw new Error(`${need} is missing: run pnpm build first`);
  }
  for (const target of Object.keys(PREBUILT_TARGETS)) {
    const prebuild = `packages/core/prebuilds/${target}/vring.node`;
    if (!existsSync(join(root, prebuild))) {
      throw new Error(`${prebuild} is missing: run pnpm build:prebuilds first`);
    }
  }
  console.log(`pack smoke test on Node ${process.version}, in ${work}`);
  const coreTgz = pack('core');
  const ipcTgz = pack('ipc');
  const core = inspect(coreTgz);
  const binaries = checkCore(core);
  checkIpc(inspect(ipcTgz), core.manifest.version);
  pass(`packed ${coreTgz} (binaries: ${binaries.join(', ')}) and ${ipcTgz}`);

  const bin = (name) => join(root, 'node_modules', '.bin', name);
  for (const tgz of [coreTgz, ipcTgz]) {
    run(bin('publint'), ['run', '--strict', tgz]);
    run(bin('attw'), ['--no-emoji', '--no-color', tgz]);
  }
  pass('publint --strict and attw find no problems in either tarball');

  const { MESSAGES } = require(join(fixtures, 'member-roles.cjs'));
  const ipcVersion = inspect(ipcTgz).manifest.version;
  const installers = [
    ['npm', installWithNpm],
    ['pnpm', installWithPnpm],
  ];
  for (const [name, install] of installers) {
    const dir = install(coreTgz, ipcTgz);
    pass(`${name}: installed both tarballs into ${dir}`);
    for (const format of ['esm', 'cjs']) {
      await busRun(dir, format, MESSAGES);
      pass(`${name}: ${format} bus, pub/sub and RPC between two processes`);
    }
    checkBin(dir, ipcVersion);
    pass(`${name}: vring --version, --help, bus --help`);
    checkTypes(dir, { negative: name === 'npm' });
    pass(
      `${name}: tsc --strict${name === 'npm' ? ', and the deliberate type error is caught' : ''}`,
    );
  }
}

try {
  await main();
  console.log(
    `pack smoke test: ${steps} checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  if (!process.env.VRING_SMOKE_KEEP) rmSync(work, { recursive: true, force: true });
} catch (error) {
  console.error(`pack smoke test FAILED after ${steps} checks (kept ${work}):`);
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
}
