/**
 * `@vring/core/cli`: the `ping` and `echo` commands of the `vring` command, as functions. The
 * `vring` executable itself ships with `@vring/ipc`, the top package, which adds `vring bus`;
 * it parses its own first argument and hands `ping` and `echo` to {@link runCoreCommand}.
 * Importing this module has no side effects.
 *
 * @packageDocumentation
 */
import { parseArgs } from 'node:util';
import { VringError } from '../errors.js';
import { echo } from './echo.js';
import { ping } from './ping.js';

export { type EchoOptions, echo } from './echo.js';
export { type PingOptions, ping } from './ping.js';

/** Usage text of `vring ping`. @public */
export const PING_USAGE = `  vring ping --socket PATH [--server] [--count N] [--size BYTES]
      run a virtio-user frontend, send N Ethernet frames (default 1000 × 64 B) to the
      vhost-user backend at PATH and check that each comes back intact; exit 0 only if all do
      --server   listen at PATH and let the backend connect (DPDK net_vhost client=1)`;

/** Usage text of `vring echo`. @public */
export const ECHO_USAGE = `  vring echo --socket PATH [--client]
      run a vhost-user backend that sends every frame back to the port it came from;
      prints per-port counters on SIGINT/SIGTERM
      --client   connect to PATH instead of listening`;

/** The commands {@link runCoreCommand} runs. @public */
export const CORE_COMMANDS = ['ping', 'echo'] as const;

/** One of {@link CORE_COMMANDS}. @public */
export type CoreCommand = (typeof CORE_COMMANDS)[number];

/** Whether `command` is one that {@link runCoreCommand} runs. @public */
export function isCoreCommand(command: string | undefined): command is CoreCommand {
  return (CORE_COMMANDS as readonly string[]).includes(command ?? '');
}

function positiveInteger(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `--${name} must be a positive integer`);
  }
  return n;
}

/**
 * Runs `vring ping` or `vring echo` with the arguments after the command name and resolves
 * with the exit code: 0 on success, 1 on failure, 2 when `--socket` is missing.
 * @throws the `ERR_PARSE_ARGS_*` error of `node:util` `parseArgs` for an unknown or
 * malformed option, and `ERR_VRING_INVALID_ARGUMENT` for a bad `--count` or `--size`: the
 * caller prints its usage and exits 2.
 * @public
 */
export async function runCoreCommand(command: CoreCommand, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      socket: { type: 'string' },
      server: { type: 'boolean', default: false },
      client: { type: 'boolean', default: false },
      count: { type: 'string' },
      size: { type: 'string' },
    },
    strict: true,
  });
  if (!values.socket) {
    const usage = command === 'ping' ? PING_USAGE : ECHO_USAGE;
    console.error(`vring ${command}: --socket PATH is required\n\nusage:\n${usage}`);
    return 2;
  }
  if (command === 'ping') {
    return ping({
      socket: values.socket,
      server: values.server ?? false,
      count: positiveInteger(values.count, 'count', 1000),
      size: positiveInteger(values.size, 'size', 64),
    });
  }
  return echo({ socket: values.socket, client: values.client ?? false });
}
