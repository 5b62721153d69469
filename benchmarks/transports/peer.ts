// Entry point of a benchmark peer process: `node --import tsx peer.ts '<PeerArgs JSON>'`.
import { createInterface } from 'node:readline';
import { reportGc } from './measure.js';
import { loadTransport } from './registry.js';
import { fromArgv, START_ON_STDIN } from './transport.js';

const args = fromArgv(process.argv.slice(2));
const transport = await loadTransport(args.transport);
if (process.env[START_ON_STDIN]) {
  // Both peers start at once (their start-up overlaps); this one connects on the go line.
  const lines = createInterface({ input: process.stdin });
  await new Promise((resolve) => lines.once('line', resolve));
  lines.close();
}
await transport.run(args);
// A peer exits as soon as its side is done, even if a library keeps a handle open: every
// transport returns only once its last message is delivered, and stdout is a pipe, written
// synchronously on Linux, so no result line is lost. The turn of the event loop first also
// brings in the entries of the last collections of the measured stretch.
await new Promise((resolve) => setImmediate(resolve));
reportGc();
process.exit(0);
