// The `vring` command: `vring bus` hosts a bus; `vring ping` and `vring echo` (vhost-user
// from a shell) come from @vring/core/cli. It lives in @vring/ipc, the top package, because
// only this package can reach both.
//
//   vring bus --socket PATH [--notification event|adaptive|poll]
//   vring ping --socket PATH [--server] [--count N] [--size BYTES]
//   vring echo --socket PATH [--client]
import { parseArgs } from 'node:util';
import type { NotificationMode } from '@vring/core';
import { ECHO_USAGE, isCoreCommand, PING_USAGE, runCoreCommand } from '@vring/core/cli';
import { createBus } from '../bus/bus.js';

const BUS_USAGE = `  vring bus --socket PATH [--notification event|adaptive|poll]
      host a bus at PATH for @vring/ipc clients (connectBus): publish/subscribe and RPC
      among processes; prints its counters and exits 0 on SIGINT/SIGTERM
      --notification   how the bus's rings wake it (default event: no CPU when idle)`;

const USAGE = `usage:\n${BUS_USAGE}\n${PING_USAGE}\n${ECHO_USAGE}`;

const NOTIFICATION_MODES: readonly NotificationMode[] = ['event', 'adaptive', 'poll'];

/** A bad command line: print the usage and exit 2. */
class UsageError extends Error {}

async function bus(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { socket: { type: 'string' }, notification: { type: 'string' } },
    strict: true,
  });
  if (!values.socket) throw new UsageError('vring bus: --socket PATH is required');
  const notification = (values.notification ?? 'event') as NotificationMode;
  if (!NOTIFICATION_MODES.includes(notification)) {
    throw new UsageError(
      `vring bus: --notification must be one of ${NOTIFICATION_MODES.join(', ')}`,
    );
  }
  const bus = createBus(values.socket, { notification });
  console.log(`vring bus: listening on ${bus.path} (notification ${notification})`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const stop = (name: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(name);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  const s = bus.stats;
  console.log(
    `vring bus: ${signal}: clients ${s.clients}, subscriptions ${s.subscriptions}, ` +
      `published ${s.published}, delivered ${s.delivered}, dropped ${s.dropped}, ` +
      `requests ${s.requests}, rejected ${s.rejected}`,
  );
  await bus[Symbol.asyncDispose]();
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'bus') return bus(rest);
  if (isCoreCommand(command)) return runCoreCommand(command, rest);
  console.error(USAGE);
  return command === undefined || command === '--help' || command === '-h' ? 0 : 2;
}

function isUsageError(error: unknown): boolean {
  if (error instanceof UsageError) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return (
    (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) ||
    code === 'ERR_VRING_INVALID_ARGUMENT'
  );
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (isUsageError(error)) {
      const message = (error as Error).message;
      console.error(`${message.startsWith('vring') ? '' : 'vring: '}${message}\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    // Not `instanceof VringError`: @vring/core/cli is a bundle of its own, with its own copy
    // of the class.
    const code = (error as { code?: unknown } | null)?.code;
    const suffix = typeof code === 'string' ? ` [${code}]` : '';
    console.error(`vring: ${error instanceof Error ? error.message : String(error)}${suffix}`);
    process.exitCode = 1;
  },
);
