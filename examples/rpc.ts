// RPC between two processes through a bus.
//
// A server process serves `math.add`, `users.get` (which fails with its own error code for
// an unknown id) and `math.slow` (which takes its time, and stops when the caller gives
// up). A client process calls them: plain calls, a remote error, a timeout, an abort, a
// name nobody serves (ERR_VRING_NO_RESPONDERS), and 1,000 calls in flight at once.
//
//   pnpm example:rpc          # or: node --import tsx examples/rpc.ts
import { fileURLToPath } from 'node:url';
import { type BusClient, connectBus, type VringError } from '@vring/ipc';
import { runServerAndClient, sleep } from './support/processes.js';

interface User {
  id: number;
  name: string;
}

const USERS: User[] = [
  { id: 1, name: 'Ada Lovelace' },
  { id: 2, name: 'Grace Hopper' },
];

async function server(socket: string): Promise<void> {
  const client = await connectBus(socket);
  client.serve<[number, number], number>('math.add', ([a, b]) => a + b);
  client.serve<number, User>('users.get', (id) => {
    const user = USERS.find((u) => u.id === id);
    // Any error with a string `code` keeps it across the bus, `data` included.
    if (!user) throw Object.assign(new Error(`no user ${id}`), { code: 'E_NO_USER', data: { id } });
    return user;
  });
  client.serve<number, string>('math.slow', async (ms, { signal }) => {
    // The signal aborts when the caller times out, aborts, or goes away.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        console.log(`math.slow(${ms}) stopped: ${(signal.reason as VringError).code}`);
        resolve();
      });
    });
    return `slept ${ms} ms`;
  });
  console.log('serving math.add, users.get, math.slow');
  // Serving keeps the process alive; SIGTERM lets running handlers finish, then leaves.
  process.once('SIGTERM', () => {
    console.log('SIGTERM: draining');
    void client.drain();
  });
}

/** Calls `name`, printing the result or the error's code. */
async function call(client: BusClient, label: string, name: string, value: unknown, options = {}) {
  const started = performance.now();
  try {
    const result = await client.request(name, value, options);
    console.log(`${label.padEnd(32)} → ${JSON.stringify(result)}`);
  } catch (error) {
    const e = error as VringError;
    const data = e.data === undefined ? '' : ` data ${JSON.stringify(e.data)}`;
    const ms = (performance.now() - started).toFixed(0);
    console.log(`${label.padEnd(32)} ✗ ${e.code}: ${e.message}${data} (${ms} ms)`);
  }
}

async function caller(socket: string): Promise<void> {
  const client = await connectBus(socket);
  // The server starts alongside us: wait until the bus knows it serves math.add.
  for (;;) {
    try {
      await client.request('math.add', [0, 0]);
      break;
    } catch (error) {
      if ((error as VringError).code !== 'ERR_VRING_NO_RESPONDERS') throw error;
      await sleep(20);
    }
  }
  await call(client, 'math.add [2, 3]', 'math.add', [2, 3]);
  await call(client, 'users.get 2', 'users.get', 2);
  await call(client, 'users.get 99', 'users.get', 99);
  await call(client, 'math.slow 2000, timeout 100 ms', 'math.slow', 2000, { timeout: 100 });
  const abort = new AbortController();
  setTimeout(() => abort.abort(), 50);
  await call(client, 'math.slow 2000, aborted at 50 ms', 'math.slow', 2000, {
    signal: abort.signal,
  });
  await call(client, 'math.mul [2, 3]', 'math.mul', [2, 3]);
  const started = performance.now();
  const sums = await Promise.all(
    Array.from({ length: 1000 }, (_, i) => client.request<number>('math.add', [i, i])),
  );
  const ms = performance.now() - started;
  const ok = sums.every((sum, i) => sum === 2 * i);
  console.log(
    `${'1000 × math.add at once'.padEnd(32)} → ${ok ? 'all correct' : 'WRONG'} in ${ms.toFixed(1)} ms`,
  );
  await client.drain();
}

const [role, socket] = process.argv.slice(2);
if (role === 'server') await server(socket!);
else if (role === 'client') await caller(socket!);
else
  await runServerAndClient(
    'rpc',
    fileURLToPath(import.meta.url),
    (bus) => `requests routed ${bus.stats.requests}; `,
  );
