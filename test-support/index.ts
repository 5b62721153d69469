// Support shared by the tests of every package (packages/*/test): waiting for a condition,
// temporary files and sockets, child processes started from a fixture script, rejections
// and garbage collection. Nothing here knows about rings or the bus; the assertions that do
// stay with their package's fixtures.
import { type ChildProcess, type StdioOptions, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setImmediate as nextLoopTurn, setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';
import type { VringError } from '../packages/core/src/index.js';

// ---- waiting ----

/**
 * Polls `condition` every few milliseconds until it returns (or resolves to) a truthy value,
 * and returns that value. The deadline is a guard against a test that would otherwise hang,
 * not a timing requirement: past it, this throws with `what` (what was awaited) in its
 * message.
 */
export async function until<T>(
  condition: () => T | PromiseLike<T>,
  what = 'the condition to hold',
  timeoutMs = 30_000,
): Promise<Exclude<T, false | 0 | '' | null | undefined>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as Exclude<T, false | 0 | '' | null | undefined>;
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs} ms: ${what}`);
    await sleep(5);
  }
}

// ---- temporary files ----

let dir: string | undefined;
let serial = 0;

/** This process's temporary directory: made on first use, removed when the process exits. */
export function tempDir(): string {
  if (dir === undefined) {
    const made = mkdtempSync(join(tmpdir(), 'vring-test-'));
    process.once('exit', () => rmSync(made, { recursive: true, force: true }));
    dir = made;
  }
  return dir;
}

/** A path for a Unix socket in tempDir() that no other call in this process returns. */
export function socketPath(name = 's'): string {
  return join(tempDir(), `${name}-${++serial}.sock`);
}

// ---- child processes ----

/** A child process whose stdout (and stderr, if captured) this process reads. */
export interface Child {
  readonly process: ChildProcess;
  /** Everything it has printed so far on the streams read. */
  output(): string;
  /**
   * What it has printed on stdout alone: a prompt there is not split by a line on stderr
   * that arrived in the middle of it (testpmd warns on stderr while printing its prompt).
   */
  stdout(): string;
  /** The next line of its stdout that no earlier call returned; rejects if it exits first. */
  line(): Promise<string>;
  /** The first match of `pattern` in its output; rejects if it exits without printing one. */
  waitFor(pattern: RegExp): Promise<RegExpMatchArray>;
  /**
   * Resolves once `condition` (which reads its output) holds; rejects if it exits first.
   * `condition` is checked whenever the child prints.
   */
  waitUntil(condition: () => boolean, what: string): Promise<void>;
  /** Its exit code, or the signal that ended it, once its output is all read. */
  readonly exited: Promise<number | NodeJS.Signals>;
  /** Sends `signal` (SIGKILL by default) unless it has already exited. */
  kill(signal?: NodeJS.Signals): void;
}

export interface ChildOptions {
  /** 'pipe' to write to it through `process.stdin`; by default it reads /dev/null. */
  stdin?: 'pipe' | 'ignore';
  /** 'capture' reads stderr into output() too; by default it goes to this process's stderr. */
  stderr?: 'capture' | 'inherit';
  /** Descriptors it inherits as fd 3, 4, … */
  fds?: readonly number[];
  env?: NodeJS.ProcessEnv;
  /** Kill it with SIGKILL after this long: a guard for a child that could hang. */
  killAfterMs?: number;
  /** How errors name it (default: the command's or script's file name). */
  name?: string;
}

const children = new Set<ChildProcess>();
// A child left running would keep this process's event loop alive through its pipes.
process.once('exit', () => killChildren());

/** Kills every child started here that is still running (for `test.after.each`). */
export function killChildren(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const child of children) child.kill(signal);
}

/** Starts `command` with `args`. */
export function spawnChild(
  command: string,
  args: readonly string[],
  options: ChildOptions = {},
): Child {
  const stdio: StdioOptions = [
    options.stdin ?? 'ignore',
    'pipe',
    options.stderr === 'capture' ? 'pipe' : 'inherit',
    ...(options.fds ?? []),
  ];
  const child = spawn(command, args, { stdio, env: options.env ?? process.env });
  const name = options.name ?? basename(command);
  children.add(child);
  let out = '';
  let partial = '';
  const lines: string[] = [];
  let taken = 0;
  let ended: number | NodeJS.Signals | undefined;
  const waiters = new Set<() => void>();
  const changed = () => {
    for (const waiter of [...waiters]) waiter();
  };
  let stdoutText = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    out += text;
    stdoutText += text;
    partial += text;
    for (let nl = partial.indexOf('\n'); nl >= 0; nl = partial.indexOf('\n')) {
      lines.push(partial.slice(0, nl));
      partial = partial.slice(nl + 1);
    }
    changed();
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    out += text;
    changed();
  });
  const timer =
    options.killAfterMs === undefined
      ? undefined
      : setTimeout(() => child.kill('SIGKILL'), options.killAfterMs).unref();
  // 'close' rather than 'exit': by then everything it printed has been read.
  const exited = new Promise<number | NodeJS.Signals>((resolve) => {
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      children.delete(child);
      ended = (code ?? signal)!;
      changed();
      resolve(ended);
    });
  });
  /** Resolves with `check`'s first defined result, checked now and whenever output arrives. */
  const waitOutput = <T>(check: () => T | undefined, what: string) =>
    new Promise<T>((resolve, reject) => {
      const waiter = () => {
        const result = check();
        if (result !== undefined) {
          waiters.delete(waiter);
          resolve(result);
        } else if (ended !== undefined) {
          waiters.delete(waiter);
          reject(new Error(`${name} exited (${ended}) before ${what}; it printed:\n${out}`));
        }
      };
      waiters.add(waiter);
      waiter();
    });
  return {
    process: child,
    exited,
    output: () => out,
    stdout: () => stdoutText,
    line: () =>
      waitOutput(() => (taken < lines.length ? lines[taken++] : undefined), 'printing a line'),
    waitFor: (pattern: RegExp) =>
      waitOutput(() => out.match(pattern) ?? undefined, `printing ${pattern}`),
    waitUntil: (condition: () => boolean, what: string) =>
      waitOutput(() => (condition() ? true : undefined), what).then(() => {}),
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/**
 * Starts the TypeScript file `script` (a path or file URL, e.g.
 * `new URL('./fixtures/x.ts', import.meta.url)`) in Node with this process's flags (`--import
 * tsx`, and `--expose-gc` under the test runner).
 */
export function spawnScript(
  script: string | URL,
  args: readonly string[] = [],
  options: ChildOptions = {},
): Child {
  const [node, ...rest] = scriptCommand(script, args);
  return spawnChild(node!, rest, { name: basename(scriptPath(script)), ...options });
}

function scriptPath(script: string | URL): string {
  return typeof script === 'string' ? script : fileURLToPath(script);
}

// ---- a second user ----

/** The unprivileged user tests run peers as: `nobody`/`nogroup` on Debian. */
export const OTHER_UID = 65534;
export const OTHER_GID = 65534;

/**
 * Why peers cannot run as {@link OTHER_UID} here (undefined when they can): that takes root
 * and util-linux's `setpriv`.
 */
export function otherUserUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'running as another uid needs root (this is not root)';
  const probe = spawnSync('setpriv', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return 'setpriv (util-linux) is not installed';
  // The other user must reach node, tsx and this checkout: not so in a clone under a
  // directory only root can enter (e.g. /root).
  const thisFile = fileURLToPath(import.meta.url);
  const reach = spawnSync(
    'setpriv',
    [
      `--reuid=${OTHER_UID}`,
      `--regid=${OTHER_GID}`,
      '--clear-groups',
      process.execPath,
      ...process.execArgv,
      '-e',
      `require('node:fs').accessSync(${JSON.stringify(thisFile)}, require('node:fs').constants.R_OK)`,
    ],
    { encoding: 'utf8' },
  );
  if (reach.status !== 0) {
    const why = reach.stderr.split('\n').find((line) => /Error|EACCES|denied/.test(line));
    return `uid ${OTHER_UID} cannot run node on this checkout (${why?.trim() ?? `exit ${reach.status}`}); put it where other users can read it`;
  }
  return undefined;
}

/**
 * A temporary directory that another user can traverse but not list or write (mode 0711):
 * where a socket for a peer of another uid lives. Removed when this process exits.
 */
export function traversableTempDir(): string {
  const made = mkdtempSync(join(tmpdir(), 'vring-shared-'));
  chmodSync(made, 0o711);
  process.once('exit', () => rmSync(made, { recursive: true, force: true }));
  return made;
}

/**
 * Starts the TypeScript file `script` like {@link spawnScript}, as {@link OTHER_UID} and
 * {@link OTHER_GID} with no supplementary groups (`setpriv`; check
 * {@link otherUserUnavailable} first). Its pid is Node's: setpriv execs it.
 */
export function spawnScriptAsOtherUser(
  script: string | URL,
  args: readonly string[] = [],
  options: ChildOptions = {},
): Child {
  return spawnChild(
    'setpriv',
    [
      `--reuid=${OTHER_UID}`,
      `--regid=${OTHER_GID}`,
      '--clear-groups',
      ...scriptCommand(script, args),
    ],
    { name: basename(scriptPath(script)), ...options },
  );
}

// ---- a container without Docker ----

/** The hostname of {@link spawnInContainer}'s namespaces. */
export const CONTAINER_HOSTNAME = 'vring-container';

/** The repository's root: what a container of the tests runs its app from. */
const CHECKOUT = dirname(dirname(fileURLToPath(import.meta.url)));

const CONTAINER_NAMESPACES = [
  '--pid',
  '--fork',
  '--kill-child',
  '--mount',
  '--net',
  '--ipc',
  '--uts',
];

/**
 * Why {@link spawnInContainer} cannot run here (undefined when it can): it takes root,
 * setpriv, and unshare allowed to create PID, mount, network, IPC and UTS namespaces.
 */
export function containerUnavailable(): string | undefined {
  const other = otherUserUnavailable();
  if (other) return other;
  const probe = spawnSync('unshare', [...CONTAINER_NAMESPACES, '--mount-proc', 'true'], {
    encoding: 'utf8',
  });
  if (probe.error) return `unshare (util-linux) cannot run: ${probe.error.message}`;
  if (probe.status !== 0) return `unshare cannot create the namespaces: ${probe.stderr.trim()}`;
  return undefined;
}

/**
 * Runs `command` as a container would: in its own PID (it is pid 1), mount, network, IPC
 * and UTS namespaces, as {@link OTHER_UID} without capabilities, with fresh `/tmp`, `/run`
 * and `/dev/shm`. The only thing it shares with the host is `hostSocket`, bind-mounted at
 * `containerSocket` (under `/run`). Check {@link containerUnavailable} first.
 */
export function spawnInContainer(
  hostSocket: string,
  containerSocket: string,
  command: readonly string[],
  options: ChildOptions = {},
): Child {
  // Runs as root inside the namespaces, then drops to nobody for the command. The host's
  // socket is bind-mounted before /tmp (where it may live) is covered by a fresh tmpfs. The
  // checkout stands for the app's image: where it lies under a directory that gets a fresh
  // tmpfs (a clone in /tmp), it is parked on a private tmpfs at /mnt first and bound back.
  const enter = [
    'set -e',
    `hostname ${CONTAINER_HOSTNAME}`,
    'mount -t tmpfs -o mode=0755 tmpfs /mnt',
    'mkdir /mnt/app',
    'mount --bind "$3" /mnt/app',
    'mount -t tmpfs -o mode=0755 tmpfs /run',
    'mkdir -p "$(dirname "$2")"',
    'touch "$2"',
    'mount --bind "$1" "$2"',
    'mount -t tmpfs -o mode=1777 tmpfs /tmp',
    'mount -t tmpfs -o mode=1777 tmpfs /dev/shm',
    'if [ ! -d "$3" ] || [ -z "$(ls -A "$3")" ]; then mkdir -p "$3"; mount --bind /mnt/app "$3"; fi',
    'shift 3',
    `exec setpriv --reuid=${OTHER_UID} --regid=${OTHER_GID} --clear-groups --no-new-privs "$@"`,
  ].join('\n');
  return spawnChild(
    'unshare',
    [
      ...CONTAINER_NAMESPACES,
      '--mount-proc',
      'sh',
      '-c',
      enter,
      'enter',
      hostSocket,
      containerSocket,
      CHECKOUT,
      ...command,
    ],
    { name: basename(command[command.length - 1] ?? 'container'), ...options },
  );
}

/** The command that runs the TypeScript file `script` in Node with this process's flags. */
export function scriptCommand(script: string | URL, args: readonly string[] = []): string[] {
  return [process.execPath, ...process.execArgv, scriptPath(script), ...args];
}

// ---- promises and the heap ----

/**
 * Awaits `promise`, which must reject with an Error; returns that error. It is typed as the
 * VringError most tests expect: for any other Error, `code`, `reason` and the like read as
 * undefined and fail the comparison that follows.
 */
export async function rejection(promise: Promise<unknown>): Promise<VringError> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, Error, `rejected with a non-Error: ${String(error)}`);
    return error as VringError;
  }
  assert.unreachable('expected a rejection, but the promise resolved');
  throw new Error('unreachable');
}

/** Runs full garbage collections with event loop turns in between, so finalizers run. */
export async function collectGarbage(rounds = 6): Promise<void> {
  const gc = globalThis.gc;
  assert.type(gc, 'function', 'run the tests with node --expose-gc (the test runner does)');
  for (let i = 0; i < rounds; i++) {
    gc!();
    await nextLoopTurn();
    await sleep(5);
  }
}
