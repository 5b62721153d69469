// The `vring` command: vhost-user from a shell, like `ping` for virtio-user.
//
//   vring ping --socket PATH [--server] [--count N] [--size BYTES]
//   vring echo --socket PATH [--client]
import { parseArgs } from 'node:util';
import { VringError } from '../errors.js';

const USAGE = `usage:
  vring ping --socket PATH [--server] [--count N] [--size BYTES]
      run a virtio-user frontend, send N Ethernet frames (default 1000 × 64 B) to the
      vhost-user backend at PATH and check that each comes back intact; exit 0 only if all do
      --server   listen at PATH and let the backend connect (DPDK net_vhost client=1)
  vring echo --socket PATH [--client]
      run a vhost-user backend that sends every frame back to the port it came from;
      prints per-port counters on SIGINT/SIGTERM
      --client   connect to PATH instead of listening`;

function positiveInteger(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `--${name} must be a positive integer`);
  }
  return n;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'ping' && command !== 'echo') {
    console.error(USAGE);
    return command === undefined || command === '--help' || command === '-h' ? 0 : 2;
  }
  const { values } = parseArgs({
    args: rest,
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
    console.error(`vring ${command}: --socket PATH is required\n\n${USAGE}`);
    return 2;
  }
  if (command === 'ping') {
    const { ping } = await import('./ping.js');
    return ping({
      socket: values.socket,
      server: values.server ?? false,
      count: positiveInteger(values.count, 'count', 1000),
      size: positiveInteger(values.size, 'size', 64),
    });
  }
  const { echo } = await import('./echo.js');
  return echo({ socket: values.socket, client: values.client ?? false });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if ((error as { code?: unknown }).code?.toString().startsWith('ERR_PARSE_ARGS')) {
      console.error(`vring: ${(error as Error).message}\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    const code = error instanceof VringError ? ` [${error.code}]` : '';
    console.error(`vring: ${error instanceof Error ? error.message : String(error)}${code}`);
    process.exitCode = 1;
  },
);
