import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { VringError } from './errors.js';

/** The C library a Linux process runs on, as prebuilds are named. @internal */
export type Libc = 'glibc' | 'musl';

/** The prebuilt targets the package ships, as `<platform>-<arch>-<libc>` directory names. @internal */
export const PREBUILT_TARGETS: readonly string[] = [
  'linux-x64-glibc',
  'linux-arm64-glibc',
  'linux-x64-musl',
  'linux-arm64-musl',
];

/** The documented fix when no binary loads, quoted in the error. @internal */
export const BUILD_FROM_SOURCE_HINT =
  'build the addon from source: in a vring checkout run `pnpm install && pnpm build:native` ' +
  '(needs python3, make and a C++17 compiler), then set VRING_NATIVE_PATH to the ' +
  'packages/core/build/vring.node it made';

/** Where to look for the addon, and on what. Every field defaults to the running process. @internal */
export interface NativeBindingLoadOptions {
  /** The package root, holding `build/` and `prebuilds/`. */
  packageRoot: string;
  /** Defaults to `process.platform`. */
  platform?: string;
  /** Defaults to `process.arch`. */
  arch?: string;
  /** Defaults to {@link detectLibc}. */
  libc?: Libc;
  /** An explicit addon path (`VRING_NATIVE_PATH`): when set, the only candidate. */
  overridePath?: string | undefined;
}

/**
 * Which C library this process runs on. Reads the mapped objects of the process first (a musl
 * process maps `ld-musl-*.so.1`), then Node's diagnostic report, which carries
 * `glibcVersionRuntime` only on glibc.
 * @internal
 */
export function detectLibc(): Libc {
  try {
    const maps = readFileSync('/proc/self/maps', 'utf8');
    if (/\/ld-musl-[^/\s]*\.so|\/libc\.musl-/.test(maps)) return 'musl';
    if (/\/libc\.so\.6\b|\/libc-2\.[0-9]+\.so\b/.test(maps)) return 'glibc';
  } catch {
    // No /proc (a locked-down sandbox): the report below still answers.
  }
  const report = process.report as
    | (NodeJS.ProcessReport & { excludeNetwork?: boolean })
    | undefined;
  if (report) {
    // The network section does reverse lookups; the header is all that is needed.
    report.excludeNetwork = true;
    const header = (report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
    return header?.glibcVersionRuntime ? 'glibc' : 'musl';
  }
  return 'glibc';
}

/**
 * The addon files to try, in order: the explicit override alone when given (a sanitizer run must
 * never fall back silently to another build); else the locally built `build/vring.node` (built
 * from source, which must win over the shipped binary), then the prebuild for this target.
 * @internal
 */
export function nativeBindingCandidates(
  options: NativeBindingLoadOptions & { platform: string; arch: string; libc: Libc },
): string[] {
  if (options.overridePath) return [options.overridePath];
  return [
    join(options.packageRoot, 'build', 'vring.node'),
    join(
      options.packageRoot,
      'prebuilds',
      `${options.platform}-${options.arch}-${options.libc}`,
      'vring.node',
    ),
  ];
}

/**
 * Loads the addon from the first candidate that loads.
 * @throws VringError `ERR_VRING_UNSUPPORTED_PLATFORM` when the platform is not Linux, or when no
 * candidate loads: the message names the platform, arch and libc, every path tried with why it
 * failed, and how to build from source. `ERR_VRING_NATIVE_LOAD` when the override path given
 * by `VRING_NATIVE_PATH` does not load.
 * @internal
 */
export function loadNativeBinding(options: NativeBindingLoadOptions): Record<string, unknown> {
  const platform = options.platform ?? process.platform;
  const arch = options.arch ?? process.arch;
  if (platform !== 'linux') {
    throw new VringError(
      'ERR_VRING_UNSUPPORTED_PLATFORM',
      `vring needs Linux (memfd, eventfd, SCM_RIGHTS); this is ${platform}-${arch}`,
    );
  }
  const libc = options.libc ?? detectLibc();
  const target = `${platform}-${arch}-${libc}`;
  const candidates = nativeBindingCandidates({ ...options, platform, arch, libc });
  const require = createRequire(join(options.packageRoot, 'package.json'));
  const failures: string[] = [];
  let lastError: unknown;
  for (const path of candidates) {
    if (!existsSync(path)) {
      failures.push(`  ${path}: not found`);
      continue;
    }
    try {
      return require(path) as Record<string, unknown>;
    } catch (error) {
      lastError = error;
      failures.push(`  ${path}: ${firstLine(error)}`);
    }
  }
  if (options.overridePath) {
    throw new VringError(
      'ERR_VRING_NATIVE_LOAD',
      `VRING_NATIVE_PATH names an addon that does not load on ${target}:\n${failures.join('\n')}`,
      { cause: lastError },
    );
  }
  const shipped = PREBUILT_TARGETS.includes(target)
    ? `a prebuilt addon for ${target} ships with @vring/core, but it did not load`
    : `@vring/core ships prebuilt addons for ${PREBUILT_TARGETS.join(', ')} only`;
  throw new VringError(
    'ERR_VRING_UNSUPPORTED_PLATFORM',
    `no vring native addon loads on ${target} (Node ${process.versions.node}); ${shipped}. ` +
      `Tried:\n${failures.join('\n')}\nFix: ${BUILD_FROM_SOURCE_HINT}.`,
    { cause: lastError },
  );
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? message;
}
