import { defineConfig } from 'tsup';

// One build per package, ESM + CJS + declarations for each. `target: node20` keeps
// `using`/decorators lowered for Node 20; nothing is minified (esbuild once dropped
// disposal under --minify-syntax).
const packages = ['core', 'ipc'] as const;

export default defineConfig(
  packages.map((name) => ({
    name: `@vring/${name}`,
    // core also builds the `vring` command (run by its bin, bin/vring.js); one build per
    // package, so `clean` cannot race another build.
    entry:
      name === 'core'
        ? { index: 'packages/core/src/index.ts', cli: 'packages/core/src/cli/main.ts' }
        : { index: `packages/${name}/src/index.ts` },
    outDir: `packages/${name}/dist`,
    format: ['esm', 'cjs'],
    target: 'node20',
    platform: 'node',
    // Declarations resolve @vring/core through the tsconfig paths (its sources), so the
    // packages' builds do not depend on each other's output order.
    dts: { compilerOptions: { composite: false } },
    sourcemap: true,
    clean: true,
    shims: true,
    splitting: false,
    treeshake: false,
    external: ['@vring/core', 'msgpackr', 'rxjs'],
    tsconfig: 'tsconfig.json',
  })),
);
