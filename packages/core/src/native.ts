import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VringError, type VringErrorCode } from './errors.js';

/**
 * Loads the compiled addon once. Looks for `build/vring.node` next to `src/` and `dist/`
 * (both layouts share the package root), or at `VRING_NATIVE_PATH` when set (used to
 * load the sanitizer build in tests).
 */
function load(): Record<string, unknown> {
  if (process.platform !== 'linux') {
    throw new VringError(
      'ERR_VRING_UNSUPPORTED_PLATFORM',
      `vring needs Linux (memfd, eventfd, SCM_RIGHTS); this is ${process.platform}`,
    );
  }
  const here = typeof __dirname === 'string' ? __dirname : dirname(fileURLToPath(import.meta.url));
  // An explicit path is the only candidate: a sanitizer run must never fall back silently.
  const override = process.env.VRING_NATIVE_PATH;
  const candidates = override ? [override] : [join(here, '..', 'build', 'vring.node')];
  const require = createRequire(join(here, 'index.js'));
  let lastError: unknown;
  for (const path of candidates) {
    if (!path || !existsSync(path)) continue;
    try {
      return require(path) as Record<string, unknown>;
    } catch (error) {
      lastError = error;
    }
  }
  throw new VringError(
    'ERR_VRING_NATIVE_LOAD',
    'the vring native addon is not built or cannot be loaded; run `pnpm build:native` ' +
      '(needs python3, make and g++) in the vring checkout',
    { cause: lastError },
  );
}

const binding = load();

(binding.setErrorFactory as (factory: unknown) => void)(
  (code: VringErrorCode, message: string, errno?: number, syscall?: string, reason?: string) =>
    new VringError(code, message, { errno, syscall, reason }),
);

/**
 * The raw addon exports. Each module casts this to the slice of the native API it uses,
 * so the binding surface is declared next to the TypeScript that wraps it.
 * @internal
 */
export const native: Readonly<Record<string, unknown>> = binding;
