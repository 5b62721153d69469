// The `vring` command as a user meets it: the built bin (packages/ipc/bin/vring.js, after
// `pnpm build:ts`) run as a real process, its output and exit code read back.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { type Command, echoCommand, pingCommand } from '@vring/core/cli';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { busCommand } from '../src/cli/bus.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const bin = join(root, 'packages/ipc/bin/vring.js');
const { version } = JSON.parse(readFileSync(join(root, 'packages/ipc/package.json'), 'utf8')) as {
  version: string;
};
// The commands' own declarations: the help must cover every option they declare.
const commands: Command[] = [busCommand, pingCommand, echoCommand];
const dir = mkdtempSync(join(tmpdir(), 'vring-cli-'));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function vring(...args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d;
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
  });
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

interface Running {
  child: ChildProcess;
  firstLine: string;
  /** Everything printed from the first line on, once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }>;
}

/** Starts a long-running command and waits for its first line (10 s at most). */
async function start(...args: string[]): Promise<Running> {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d;
  });
  const exited = once(child, 'close').then(([code, signal]) => ({ code, signal, stdout }));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const timer = globalThis.setTimeout(() => child.kill('SIGKILL'), 10_000);
  try {
    const first = await lines.next();
    if (first.done) throw new Error(`vring ${args.join(' ')} exited without printing a line`);
    return { child, firstLine: first.value, exited };
  } finally {
    clearTimeout(timer);
  }
}

function assertCommandHelp(command: Command, text: string): void {
  assert.ok(text.startsWith(`usage: vring ${command.name} `), text);
  const lines = text.split('\n');
  for (const [name, option] of Object.entries(command.options)) {
    const at = lines.findIndex((l) => new RegExp(`^ {2}--${name}\\b`).test(l));
    assert.ok(at >= 0, `--${name} is listed:\n${text}`);
    // The option's row with its wrapped continuation lines (indented further).
    const end = lines.findIndex((l, i) => i > at && !/^ {4}/.test(l));
    const row = lines.slice(at, end).join(' ');
    const said =
      option.type === 'boolean'
        ? 'default: off'
        : option.required
          ? 'required'
          : option.default === undefined
            ? 'default: none'
            : `default: ${option.default}`;
    assert.ok(row.includes(said), `--${name} says "${said}":\n${text}`);
  }
  assert.match(text, /-h, --help/);
  assert.match(text, /example:\n {2}vring /);
}

test.before(() => {
  assert.ok(existsSync(join(root, 'packages/ipc/dist/cli.js')), 'run `pnpm build:ts` first');
});

test.after(() => {
  rmSync(dir, { recursive: true, force: true });
});

for (const flag of ['--help', '-h']) {
  test(`vring ${flag}: the commands and the program's options on stdout, exit 0`, async () => {
    const r = await vring(flag);
    assert.is(r.code, 0, r.stderr);
    assert.is(r.stderr, '');
    assert.ok(r.stdout.startsWith(`vring ${version}: `), r.stdout);
    assert.match(r.stdout, /^usage: vring COMMAND/m);
    for (const command of commands) {
      assert.match(r.stdout, new RegExp(`^ {2}${command.name} +${command.summary}`, 'm'));
    }
    assert.match(r.stdout, /-v, --version/);
    assert.match(r.stdout, /example:\n {2}vring /);
  });

  for (const command of commands) {
    test(`vring ${command.name} ${flag}: what it does, every option with its default, an example; exit 0`, async () => {
      const r = await vring(command.name, flag);
      assert.is(r.code, 0, r.stderr);
      assert.is(r.stderr, '');
      assertCommandHelp(command, r.stdout);
    });
  }
}

test('help wins over a mistake on the same line', async () => {
  const r = await vring('bus', '--bogus', '-h');
  assert.is(r.code, 0, r.stderr);
  assertCommandHelp(busCommand, r.stdout);
});

for (const flag of ['--version', '-v']) {
  test(`vring ${flag} prints the version of @vring/ipc, exit 0`, async () => {
    const r = await vring(flag);
    assert.equal(r, { code: 0, stdout: `${version}\n`, stderr: '' });
  });
}

const usageErrors: Array<{ args: string[]; error: string; usage: string }> = [
  { args: ['--bogus'], error: "vring: unknown option '--bogus'", usage: 'usage: vring COMMAND' },
  { args: [], error: 'vring: missing command', usage: 'usage: vring COMMAND' },
  { args: ['frob'], error: "vring: unknown command 'frob'", usage: 'usage: vring COMMAND' },
  ...commands.map((c) => ({
    args: [c.name, '--socket', join(dir, 'x.sock'), '--bogus'],
    error: `vring ${c.name}: unknown option '--bogus'`,
    usage: `usage: vring ${c.name} `,
  })),
  { args: ['bus'], error: 'vring bus: --socket PATH is required', usage: 'usage: vring bus ' },
  {
    args: ['bus', '--socket'],
    error: 'vring bus: --socket needs a value',
    usage: 'usage: vring bus ',
  },
  {
    args: ['bus', '--socket', 'x', '--notification', 'spin'],
    error: "vring bus: --notification must be one of event, adaptive, poll; got 'spin'",
    usage: 'usage: vring bus ',
  },
  {
    args: ['ping', '--socket', 'x', '--count', '1e3'],
    error: "vring ping: --count must be a whole number, 1 or more; got '1e3'",
    usage: 'usage: vring ping ',
  },
  {
    args: ['ping', '--socket', 'x', '--size', '59'],
    error: "vring ping: --size must be a whole number, 60..1514; got '59'",
    usage: 'usage: vring ping ',
  },
  {
    args: ['echo', '--socket', 'x', '--client=yes'],
    error: 'vring echo: --client takes no value',
    usage: 'usage: vring echo ',
  },
  {
    args: ['bus', '--socket', join(dir, 'mode.sock'), '--socket-mode', '0999'],
    error: "vring bus: --socket-mode takes octal permission bits such as 0660; got '0999'",
    usage: 'usage: vring bus ',
  },
  {
    args: ['bus', '--socket', join(dir, 'limit.sock'), '--max-connections', '0'],
    error: "vring bus: --max-connections takes a positive whole number; got '0'",
    usage: 'usage: vring bus ',
  },
  {
    args: ['echo', '--socket', join(dir, 'limit.sock'), '--max-peer-memory', '1.5'],
    error: "vring echo: --max-peer-memory takes a positive whole number; got '1.5'",
    usage: 'usage: vring echo ',
  },
  {
    args: ['echo', '--socket', join(dir, 'uid.sock'), '--allow-uid', '1000,root'],
    error: "vring echo: --allow-uid takes numeric ids separated by commas; got '1000,root'",
    usage: 'usage: vring echo ',
  },
  {
    args: ['echo', '--socket', 'x', 'extra'],
    error: "vring echo: unexpected argument 'extra'",
    usage: 'usage: vring echo ',
  },
];

for (const { args, error, usage } of usageErrors) {
  test(`vring ${args.join(' ')}: one-line error and the usage on stderr, exit 2`, async () => {
    const r = await vring(...args);
    assert.is(r.code, 2, r.stderr);
    assert.is(r.stdout, '');
    const [first, blank, ...rest] = r.stderr.split('\n');
    assert.is(first, error);
    assert.is(blank, '');
    assert.ok(rest.join('\n').includes(usage), r.stderr);
  });
}

test('vring bus --socket PATH: says where it listens and how to stop it; SIGTERM: counters, exit 0', async () => {
  const socket = join(dir, 'bus.sock');
  const bus = await start('bus', '--socket', socket);
  try {
    assert.is(
      bus.firstLine,
      `vring bus: listening on ${socket} (notification adaptive); ` +
        'Ctrl-C or SIGTERM prints the counters and stops it',
    );
    bus.child.kill('SIGTERM');
    const { code, stdout } = await bus.exited;
    assert.is(code, 0, stdout);
    assert.match(stdout, /^vring bus: SIGTERM: clients 0, subscriptions 0, published 0/m);
  } finally {
    bus.child.kill('SIGKILL');
  }
});

test('vring bus --socket-mode 0640 --allow-uid: the socket file gets that mode; the counters include refusals and limits', async () => {
  const socket = join(dir, 'bus-mode.sock');
  const bus = await start(
    'bus',
    '--socket',
    socket,
    '--socket-mode',
    '0640',
    '--allow-uid',
    '65534',
  );
  try {
    assert.is(statSync(socket).mode & 0o777, 0o640);
    bus.child.kill('SIGTERM');
    const { code, stdout } = await bus.exited;
    assert.is(code, 0, stdout);
    assert.match(stdout, /, refused 0, limited 0$/m);
  } finally {
    bus.child.kill('SIGKILL');
  }
});

test('vring echo: the socket file is 0600 unless --socket-mode widens it', async () => {
  for (const [flags, mode] of [
    [[], 0o600],
    [['--socket-mode', '666'], 0o666],
  ] as const) {
    const socket = join(dir, `echo-mode-${mode.toString(8)}.sock`);
    const echo = await start('echo', '--socket', socket, ...flags);
    try {
      assert.is(statSync(socket).mode & 0o777, mode);
    } finally {
      echo.child.kill('SIGKILL');
      await echo.exited;
    }
  }
});

test('vring echo --socket PATH: says where it listens and how to stop it; SIGINT: exit 0', async () => {
  const socket = join(dir, 'echo.sock');
  const echo = await start('echo', '--socket', socket);
  try {
    assert.is(
      echo.firstLine,
      `vring echo: listening on ${socket}; Ctrl-C or SIGTERM prints the counters and stops it`,
    );
    echo.child.kill('SIGINT');
    const { code, stdout } = await echo.exited;
    assert.is(code, 0, stdout);
    assert.match(stdout, /^vring echo: no ports$/m);
  } finally {
    echo.child.kill('SIGKILL');
  }
});

test('vring ping --server --socket PATH: says where it listens and how to stop it; SIGTERM stops it', async () => {
  const socket = join(dir, 'ping.sock');
  const ping = await start('ping', '--server', '--socket', socket);
  try {
    assert.is(
      ping.firstLine,
      `vring ping: listening on ${socket} for a vhost-user backend; Ctrl-C or SIGTERM stops it`,
    );
    // The line comes just before the listen call, so give that call a moment.
    for (let i = 0; i < 100 && !existsSync(socket); i++) await setTimeout(20);
    assert.ok(existsSync(socket), 'it listens at the path it named');
    ping.child.kill('SIGTERM');
    assert.is((await ping.exited).signal, 'SIGTERM');
  } finally {
    ping.child.kill('SIGKILL');
  }
});

test.run();
