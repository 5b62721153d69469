// The `vring` command: `vring bus` hosts a bus and `vring stats`, `pub`, `sub` and `req` talk
// to one; `vring ping` and `vring echo` (vhost-user from a shell) come from @vring/core/cli.
// It lives in @vring/ipc, the top package, because only this package can reach both. Every command's options and help are declared once, in
// its Command; `vring --help` and `vring COMMAND --help` print them.
import { createRequire } from 'node:module';
import { coreCommands, runProgram } from '@vring/core/cli';
import { busCommand } from './bus.js';
import { pubCommand } from './pub.js';
import { reqCommand } from './req.js';
import { statsCommand } from './stats.js';
import { subCommand } from './sub.js';

// Read at run time by the package's own name, so the same line works from dist/ and src/.
const { version } = createRequire(import.meta.url)('@vring/ipc/package.json') as {
  version: string;
};

runProgram(
  {
    name: 'vring',
    version,
    summary: 'shared-memory IPC for Node.js on virtio/vhost-user',
    commands: [busCommand, statsCommand, pubCommand, subCommand, reqCommand, ...coreCommands],
    examples: [
      'vring bus --socket /tmp/bus.sock',
      "vring sub --socket /tmp/bus.sock 'orders.>' & vring pub --socket /tmp/bus.sock orders.new 1",
      'vring echo --socket /tmp/vring.sock & vring ping --socket /tmp/vring.sock',
    ],
  },
  process.argv.slice(2),
).then((code) => {
  process.exitCode = code;
});
