// Process plumbing shared by the examples: each example is one file that runs as the parent
// (hosting the bus) and, started again with a role argument, as each of its children.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { type Bus, createBus } from '@vring/ipc';

/** A child process whose output lines are printed with its name in front. */
export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  /** Resolves with the exit code (a signal counts as 1). */
  readonly exited: Promise<number>;
  /** Resolves with the first output line matching `pattern`. */
  line(pattern: RegExp): Promise<string>;
}

const NAME_WIDTH = 10;

/** Prints `text` as a line of `name`, aligned with the children's lines. */
export function say(name: string, text: string): void {
  console.log(`${name.padEnd(NAME_WIDTH)} │ ${text}`);
}

/**
 * Runs `file` again in a new Node process (same flags, so `--import tsx` carries over) with
 * `args`; its stdout and stderr lines are printed under `name`.
 */
export function startChild(name: string, file: string, args: string[]): Child {
  const child = spawn(process.execPath, [...process.execArgv, file, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const watchers: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream! }).on('line', (line) => {
      say(name, line);
      for (const w of watchers.filter((w) => w.pattern.test(line))) {
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve(line);
      }
    });
  }
  const exited = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
  return {
    name,
    process: child,
    exited,
    line: (pattern) =>
      new Promise((resolve, reject) => {
        watchers.push({ pattern, resolve });
        void exited.then(() => reject(new Error(`${name} exited before printing ${pattern}`)));
      }),
  };
}

/** A fresh directory for the example's bus socket, removed by `remove()`. */
export function socketDir(prefix: string): { socket: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `vring-${prefix}-`));
  return {
    socket: join(dir, 'bus.sock'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Fails the example if it is not over within `ms`: kills the children and exits 1. The
 * timer does not keep the process alive by itself.
 */
export function watchdog(ms: number, children: () => Child[], cleanup: () => void): void {
  setTimeout(() => {
    console.error(`example did not finish within ${ms} ms`);
    for (const c of children()) c.process.kill('SIGKILL');
    cleanup();
    process.exit(1);
  }, ms).unref();
}

/**
 * Waits until `condition()` holds, checking every few milliseconds.
 * @throws Error when one of `children` exits first: the condition would never hold.
 */
export async function until(condition: () => boolean, children: Child[] = []): Promise<void> {
  while (!condition()) {
    const gone = children.find((c) => c.process.exitCode !== null || c.process.signalCode !== null);
    if (gone) throw new Error(`${gone.name} exited early`);
    await sleep(10);
  }
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The shape of the RPC examples: this process hosts a bus and starts `file` twice, as
 * `server` and as `client`; when the client exits the server is stopped (SIGTERM). Sets
 * the exit code from both, after `report` has printed what the bus saw.
 */
export async function runServerAndClient(
  name: string,
  file: string,
  report: (bus: Bus) => string,
): Promise<void> {
  const { socket, remove } = socketDir(name);
  const bus = createBus(socket);
  const children: Child[] = [];
  watchdog(20_000, () => children, remove);
  say('bus', `listening on ${socket}`);
  const server = startChild('server', file, ['server', socket]);
  const client = startChild('client', file, ['client', socket]);
  children.push(server, client);
  const clientCode = await client.exited;
  server.process.kill('SIGTERM');
  const serverCode = await server.exited;
  say('bus', `${report(bus)}exit codes ${serverCode} ${clientCode}`);
  await bus[Symbol.asyncDispose]();
  remove();
  process.exitCode = serverCode === 0 && clientCode === 0 ? 0 : 1;
}
