import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VringError, type VringErrorCode } from './errors.js';
import { loadNativeBinding } from './native-binding-loader.js';

// `src/` and `dist/` both sit directly under the package root, next to `build/` and `prebuilds/`.
const here = typeof __dirname === 'string' ? __dirname : dirname(fileURLToPath(import.meta.url));
const binding = loadNativeBinding({
  packageRoot: join(here, '..'),
  // Set by the test runner's --asan run to the sanitizer build.
  overridePath: process.env.VRING_NATIVE_PATH,
});

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
