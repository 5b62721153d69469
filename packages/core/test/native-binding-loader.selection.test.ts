// The native binding loader: which addon file it picks for a platform, arch and libc, that a
// local build wins over the prebuild, that an explicit path is the only one tried, and what the
// error says when nothing loads. Each case lays out a fake package root in a temp dir, with
// invalid binaries where a load must fail and a copy of the real addon where one must succeed.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tempDir } from '../../../test-support/index.js';
import { detectLibc, loadNativeBinding } from '../src/native-binding-loader.js';
import { throwsVring } from './fixtures/vring-assert.js';

const REAL_ADDON = join(import.meta.dirname, '..', 'build', 'vring.node');
const hasRealAddon = existsSync(REAL_ADDON);
if (!hasRealAddon) {
  console.log(
    `skipping the cases that load a real addon: ${REAL_ADDON} is not built (pnpm build:native)`,
  );
}

const onX64Glibc = { platform: 'linux', arch: 'x64', libc: 'glibc' } as const;

/** A fresh fake package root (each gets its own paths, so require's cache never answers). */
function packageRoot(): string {
  const root = mkdtempSync(join(tempDir(), 'pkg-'));
  writeFileSync(join(root, 'package.json'), '{"name":"fake-core"}');
  return root;
}

function place(root: string, relative: string, content: 'invalid' | 'real'): string {
  const path = join(root, relative);
  mkdirSync(dirname(path), { recursive: true });
  if (content === 'real') copyFileSync(REAL_ADDON, path);
  else writeFileSync(path, 'not an ELF shared object');
  return path;
}

test('no loadable binary: ERR_VRING_UNSUPPORTED_PLATFORM names the target, each path and why, and the fix', () => {
  const root = packageRoot();
  const prebuild = place(root, 'prebuilds/linux-x64-glibc/vring.node', 'invalid');
  const error = throwsVring(
    () => loadNativeBinding({ packageRoot: root, ...onX64Glibc }),
    'ERR_VRING_UNSUPPORTED_PLATFORM',
  );
  assert.match(error.message, 'linux-x64-glibc');
  assert.match(error.message, `${join(root, 'build', 'vring.node')}: not found`);
  // dlopen's own reason, not a generic "cannot load".
  assert.match(error.message, new RegExp(`${prebuild}: .*(invalid ELF header|file too short)`));
  assert.match(error.message, 'pnpm build:native');
  assert.match(error.message, 'VRING_NATIVE_PATH');
  assert.ok(error.cause instanceof Error, 'the last load error is the cause');
});

test('musl is looked up under its own name, never given the glibc binary', () => {
  const root = packageRoot();
  place(root, 'prebuilds/linux-x64-glibc/vring.node', hasRealAddon ? 'real' : 'invalid');
  const error = throwsVring(
    () => loadNativeBinding({ packageRoot: root, platform: 'linux', arch: 'x64', libc: 'musl' }),
    'ERR_VRING_UNSUPPORTED_PLATFORM',
  );
  assert.match(error.message, 'linux-x64-musl');
  assert.match(
    error.message,
    `${join(root, 'prebuilds', 'linux-x64-musl', 'vring.node')}: not found`,
  );
  assert.not.match(error.message, 'prebuilds/linux-x64-glibc');
});

test('a target with no prebuild says which targets ship', () => {
  const root = packageRoot();
  const error = throwsVring(
    () =>
      loadNativeBinding({ packageRoot: root, platform: 'linux', arch: 'riscv64', libc: 'glibc' }),
    'ERR_VRING_UNSUPPORTED_PLATFORM',
  );
  assert.match(error.message, 'linux-riscv64-glibc');
  assert.match(
    error.message,
    'linux-x64-glibc, linux-arm64-glibc, linux-x64-musl, linux-arm64-musl only',
  );
  assert.match(error.message, join(root, 'prebuilds', 'linux-riscv64-glibc', 'vring.node'));
});

test('not Linux: ERR_VRING_UNSUPPORTED_PLATFORM naming the platform', () => {
  const error = throwsVring(
    () => loadNativeBinding({ packageRoot: packageRoot(), platform: 'darwin', arch: 'arm64' }),
    'ERR_VRING_UNSUPPORTED_PLATFORM',
  );
  assert.match(error.message, 'darwin-arm64');
  assert.match(error.message, 'needs Linux');
});

/** Loads on linux-x64-glibc from a fake package root laid out as `files` says. */
function loadFrom(files: Record<string, 'invalid' | 'real'>): Record<string, unknown> {
  const root = packageRoot();
  for (const [relative, content] of Object.entries(files)) place(root, relative, content);
  return loadNativeBinding({ packageRoot: root, ...onX64Glibc });
}

test('the prebuild for the running target loads when nothing is built locally', () => {
  if (!hasRealAddon) return;
  const binding = loadFrom({
    'prebuilds/linux-x64-glibc/vring.node': 'real',
    'prebuilds/linux-x64-musl/vring.node': 'invalid',
  });
  assert.type(binding.setErrorFactory, 'function');
});

test('a local build wins over the prebuild', () => {
  if (!hasRealAddon) return;
  const binding = loadFrom({
    'build/vring.node': 'real',
    'prebuilds/linux-x64-glibc/vring.node': 'invalid',
  });
  assert.type(binding.setErrorFactory, 'function');
});

test('an override path is the only candidate: no silent fallback to another build', () => {
  const root = packageRoot();
  if (hasRealAddon) place(root, 'build/vring.node', 'real');
  const override = place(root, 'asan/vring-asan.node', 'invalid');
  const error = throwsVring(
    () => loadNativeBinding({ packageRoot: root, ...onX64Glibc, overridePath: override }),
    'ERR_VRING_NATIVE_LOAD',
  );
  assert.match(error.message, 'VRING_NATIVE_PATH');
  assert.match(error.message, override);
  assert.not.match(error.message, join(root, 'build', 'vring.node'));
});

test('detectLibc agrees with the glibc version Node reports', () => {
  const header = (process.report.getReport() as { header: { glibcVersionRuntime?: string } })
    .header;
  assert.is(detectLibc(), header.glibcVersionRuntime ? 'glibc' : 'musl');
});

test.run();
