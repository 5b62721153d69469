import { defineConfig } from 'tsup';

// One build per package, ESM + CJS + declarations for each. `target: node20` keeps
// `using`/decorators lowered for Node 20; nothing is minified (esbuild once dropped
// disposal under --minify-syntax).
const packages = ['core', 'ipc'] as const;

export default defineConfig(
  packages.map((name) => ({
    name: `@vring/${name}`,
    // core's `cli` is the library of the ping/echo commands (`@vring/core/cli`); ipc's `cli`
    // is the `vring` command itself (run by its bin, bin/vring.js), which needs both packages.
    // One build per package, so `clean` cannot race another build.
    entry: {
      index: `packages/${name}/src/index.ts`,
      cli: `packages/${name}/src/cli/${name === 'core' ? 'index' : 'main'}.ts`,
    },
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
    // Dependencies stay outside the bundle; @opentelemetry/api above all, whose global
    // registry an application's SDK shares with it, and nats, loaded only for a bridge.
    external: ['@vring/core', 'msgpackr', 'rxjs', '@opentelemetry/api', 'nats'],
    tsconfig: 'tsconfig.json',
  })),
);
