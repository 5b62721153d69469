// Builds the addon with node-gyp and copies it to packages/core/build/vring.node.
// Incremental: configures only when needed, so `pnpm start`/`pnpm test` stay fast.
// --sanitize builds the Debug configuration (ASan + UBSan) to packages/core/build/vring-asan.node.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const coreDir = join(root, 'packages', 'core');
const sanitize = process.argv.includes('--sanitize');

const require = createRequire(join(coreDir, 'package.json'));
const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');

// Use the headers of the running Node when they are installed (Debian/NodeSource
// packages put them in <prefix>/include/node), so the build never needs the network.
const prefix = resolve(dirname(process.execPath), '..');
const nodedirArgs = existsSync(join(prefix, 'include', 'node', 'node_api.h'))
  ? [`--nodedir=${prefix}`]
  : [];

function gyp(...args) {
  execFileSync(process.execPath, [nodeGyp, ...args, ...nodedirArgs, `--directory=${nativeDir}`], {
    stdio: 'inherit',
    cwd: nativeDir,
    env: { ...process.env, npm_config_loglevel: 'warn' },
  });
}

if (!existsSync(join(nativeDir, 'build', 'Makefile'))) gyp('configure');
gyp(
  'build',
  ...(sanitize ? ['--debug'] : []),
  `--jobs=${Math.max(2, (await import('node:os')).cpus().length)}`,
);

const built = join(nativeDir, 'build', sanitize ? 'Debug' : 'Release', 'vring.node');
mkdirSync(join(coreDir, 'build'), { recursive: true });
copyFileSync(built, join(coreDir, 'build', sanitize ? 'vring-asan.node' : 'vring.node'));
