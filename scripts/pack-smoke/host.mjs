// Bus host of the packaging smoke test's ESM run: createBus from the installed @vring/ipc.
// Prints `LISTENING` once the socket is up; on SIGTERM prints `STATS <json>` and leaves.
import { createBus } from '@vring/ipc';

const bus = createBus(process.argv[2]);
console.log('LISTENING');
process.once('SIGTERM', async () => {
  console.log(`STATS ${JSON.stringify(bus.stats)}`);
  await bus[Symbol.asyncDispose]();
});
