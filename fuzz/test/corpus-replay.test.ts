// Every committed input of the JavaScript fuzz targets, seeds and past findings alike, runs
// without a finding: a fixed finding stays fixed even where the fuzzers themselves do not run.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FuzzTarget } from '../engine/target.js';

const fuzzRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

for (const name of ['vhost-user-request', 'ipc-frames', 'msgpack-prefix']) {
  test(`${name}: every corpus input runs without a finding`, async () => {
    const { target } = (await import(`../targets/${name}.js`)) as { target: FuzzTarget };
    const dir = join(fuzzRoot, 'corpus', name);
    const files = readdirSync(dir);
    assert.ok(files.length > 0, `${dir} holds inputs`);
    for (const file of files) {
      assert.not.throws(() => target.run(new Uint8Array(readFileSync(join(dir, file)))), file);
    }
  });
}

test.run();
