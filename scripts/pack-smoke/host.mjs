// Bus host of the packaging smoke test's ESM run: createBus from the installed @vring/ipc.
// Prints `ADDON <path>` (the vring addon this process mapped, so the test can tell a prebuild
// from any other build) and `LISTENING` once the socket is up; on SIGTERM prints
// `STATS <json>` and leaves.
import { readFileSync } from 'node:fs';
import { createBus } from '@vring/ipc';

const bus = createBus(process.argv[2]);
const addon = /\s(\/\S*\/vring[^/\s]*\.node)$/m.exec(readFileSync('/proc/self/maps', 'utf8'));
console.log(`ADDON ${addon?.[1] ?? 'none mapped'}`);
console.log('LISTENING');
process.once('SIGTERM', async () => {
  console.log(`STATS ${JSON.stringify(bus.stats)}`);
  await bus[Symbol.asyncDispose]();
});
