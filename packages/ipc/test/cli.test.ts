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
import { pubCommand } from '../src/cli/pub.js';
import { reqCommand } from '../src/cli/req.js';
import { statsCommand } from '../src/cli/stats.js';
import { subCommand } from '../src/cli/sub.js';
import { connectBus } from '../src/index.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const bin = join(root, 'packages/ipc/bin/vring.js');
const { version } = JSON.parse(readFileSync(join(root, 'packages/ipc/package.json'), 'utf8')) as {
  version: string;
};
// The commands' own declarations: the help must cover every option they declare.
const commands: Command[] = [
  busCommand,
  statsCommand,
  pubCommand,
  subCommand,
  reqCommand,
  pingCommand,
  echoCommand,
];
const dir = mkdtempSync(join(tmpdir(), 'vring-cli-'));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function vring(...args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: 'pipe' });
  return vringOutput(child);
}

/** Everything `child` prints, and its exit code, once it has exited. */
async function vringOutput(child: ChildProcess): Promise<Run> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d;
  });
  child.stderr!.on('data', (d: Buffer) => {
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
  for (const argument of command.arguments ?? []) {
    const row = lines.find((l) => l.startsWith(`  ${argument.name} `));
    assert.ok(row?.endsWith(argument.description), `${argument.name} is listed:\n${text}`);
    assert.ok(lines[0]!.includes(` ${argument.name}`), `${argument.name} is in the usage`);
  }
  assert.match(text, /-h, --help/);
  assert.match(text, /example:\n {2}vring /);
}

test.before(() => {
  assert.ok(existsSync(join(root, 'packages/ipc/dist/cli.js')), 'run `pnpm build:ts` first');
});

test.after(() => {
  for (const child of backgrounded) child.kill('SIGKILL');
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
    args: ['bus', '--socket', join(dir, 'frame.sock'), '--max-frame', '64k'],
    error: "vring bus: --max-frame takes a whole number of bytes; got '64k'",
    usage: 'usage: vring bus ',
  },
  {
    args: ['bus', '--socket', join(dir, 'frame.sock'), '--max-frame', '10'],
    error: 'vring bus: maxFrame must be an integer of at least 94 bytes',
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
  {
    args: ['pub', '--socket', 'x'],
    error: 'vring pub: missing SUBJECT',
    usage: 'usage: vring pub --socket PATH [--wait MS] SUBJECT VALUE',
  },
  {
    args: ['pub', '--socket', 'x', 'orders.new'],
    error: 'vring pub: missing VALUE',
    usage: 'usage: vring pub ',
  },
  {
    args: ['pub', '--socket', 'x', 'orders.new', '1', '2'],
    error: "vring pub: unexpected argument '2'",
    usage: 'usage: vring pub ',
  },
  {
    args: ['sub', '--socket', 'x'],
    error: 'vring sub: missing PATTERN',
    usage: 'usage: vring sub ',
  },
  {
    args: ['sub', '--socket', 'x', 'a', '--count', '0'],
    error: "vring sub: --count must be a whole number, 1 or more; got '0'",
    usage: 'usage: vring sub ',
  },
  {
    args: ['req', '--socket', 'x', 'math.add'],
    error: 'vring req: missing VALUE',
    usage: 'usage: vring req ',
  },
  {
    args: ['bus', '--socket', 'x', '--export', 'orders.>'],
    error: 'vring bus: --export and --import need --nats',
    usage: 'usage: vring bus ',
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

test('vring bus --nats with no NATS server there: says so on stderr, exit 1', async () => {
  const socket = join(dir, 'bus-nats.sock');
  const r = await vring('bus', '--socket', socket, '--nats', 'nats://127.0.0.1:1');
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, 'nats bridge: cannot reach NATS at nats://127.0.0.1:1');
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

/** Runs `body` with a `vring bus` process at a fresh socket named `name`, killed after. */
async function withBus(name: string, body: (socket: string) => Promise<void>): Promise<void> {
  const socket = join(dir, `${name}.sock`);
  const bus = await start('bus', '--socket', socket);
  try {
    await body(socket);
  } finally {
    bus.child.kill('SIGKILL');
    await bus.exited;
  }
}

/** Commands run in the background, killed at the end should a test fail before they exit. */
const backgrounded: ChildProcess[] = [];

/** Runs a command in the background; `line(pattern)` waits for a line of its stderr. */
function background(...args: string[]) {
  const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: 'pipe' });
  backgrounded.push(child);
  const run = vringOutput(child);
  const lines = createInterface({ input: child.stderr })[Symbol.asyncIterator]();
  return {
    child,
    done: run,
    async line(pattern: RegExp): Promise<string> {
      for (;;) {
        const next = await lines.next();
        if (next.done) throw new Error(`vring ${args.join(' ')} ended before ${pattern}`);
        if (pattern.test(next.value)) return next.value;
      }
    },
  };
}

test('vring sub prints each message on a line and exits after --count; vring pub: JSON or a string', async () => {
  await withBus('pubsub', async (socket) => {
    const sub = background('sub', '--socket', socket, 'orders.>', '--count', '3');
    assert.is(
      await sub.line(/^vring sub:/),
      'vring sub: subscribed to orders.>; Ctrl-C or SIGTERM stops it',
    );
    // A value that starts with '-' goes after --, as the help says.
    for (const value of ['{"id": 1, "items": [2, 3]}', 'hello world', '-2.5']) {
      const args = value.startsWith('-') ? ['--', 'orders.new', value] : ['orders.new', value];
      const r = await vring('pub', '--socket', socket, ...args);
      assert.equal(r, { code: 0, stdout: '', stderr: '' }, value);
    }
    const { code, stdout } = await sub.done;
    assert.is(code, 0);
    assert.is(
      stdout,
      'orders.new {"id":1,"items":[2,3]}\norders.new "hello world"\norders.new -2.5\n',
    );

    const reserved = await vring('pub', '--socket', socket, '$vring.stats', '1');
    assert.is(reserved.code, 2, reserved.stderr);
    assert.match(reserved.stderr, /^vring pub: \$vring.stats is reserved for the bus/);
  });
});

test('vring sub --queue: the members of a group share the messages', async () => {
  await withBus('queue', async (socket) => {
    const members = [1, 2].map(() =>
      background('sub', '--socket', socket, 'jobs.*', '--queue', 'workers', '--count', '2'),
    );
    for (const m of members) await m.line(/in queue group workers/);
    for (let i = 0; i < 4; i++) {
      assert.is((await vring('pub', '--socket', socket, `jobs.${i}`, String(i))).code, 0);
    }
    const outputs = await Promise.all(members.map((m) => m.done));
    const got = outputs.flatMap((o) => o.stdout.trim().split('\n'));
    assert.equal(got.sort(), ['jobs.0 0', 'jobs.1 1', 'jobs.2 2', 'jobs.3 3']);
    for (const o of outputs) assert.is(o.code, 0);
  });
});

test('vring stats: the counters as a table by default, as JSON with --json', async () => {
  await withBus('stats', async (socket) => {
    await vring('pub', '--socket', socket, 'prices.AAPL', '189.5');
    await vring('pub', '--socket', socket, 'prices.AAPL', '190');
    const json = await vring('stats', '--socket', socket, '--json');
    assert.is(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as {
      totals: { published: number };
      clients: Array<{ pid: number; requestsSent: number }>;
      subjects: unknown[];
    };
    assert.is(report.totals.published, 2);
    assert.equal(report.subjects, [
      { subject: 'prices.AAPL', published: 2, delivered: 0, dropped: 0 },
    ]);
    // The publishers have gone; the one client is the stats command itself.
    assert.is(report.clients.length, 1);
    assert.is(report.clients[0]!.requestsSent, 1);

    const table = await vring('stats', '--socket', socket);
    assert.is(table.code, 0, table.stderr);
    const lines = table.stdout.split('\n');
    assert.match(lines[0]!, new RegExp(`^bus ${socket}: clients 1, subscriptions 0, published 2,`));
    assert.match(
      table.stdout,
      /^CLIENT +PID +UID +RINGS +QUEUED +PUBLISHED +DELIVERED +DROPPED +SLOW/m,
    );
    assert.match(table.stdout, /^ *\d+ +\d+ +\d+ +split +0 +0 +0 +0 +0 +1 +0$/m, 'its own row');
    assert.match(table.stdout, /^SUBJECT +PUBLISHED +DELIVERED +DROPPED\nprices\.AAPL +2 +0 +0$/m);
  });
});

test('vring stats shows the rings of each client; vring bus --split-only refuses a packed client', async () => {
  await withBus('rings', async (socket) => {
    const packed = await connectBus(socket, { packed: true, directRoutes: false });
    try {
      const table = await vring('stats', '--socket', socket);
      assert.is(table.code, 0, table.stderr);
      assert.match(table.stdout, new RegExp(`^ *\\d+ +${process.pid} +\\d+ +packed `, 'm'));
      assert.match(table.stdout, /^ *\d+ +\d+ +\d+ +split /m, 'the stats command itself');
    } finally {
      packed.close();
    }
  });
  const socket = join(dir, 'bus-split.sock');
  const bus = await start('bus', '--socket', socket, '--split-only');
  try {
    const refused = await connectBus(socket, { packed: true }).then(
      () => undefined,
      (error: unknown) => error as { code: string; reason: string },
    );
    assert.is(refused?.code, 'ERR_VRING_FEATURE_MISMATCH');
    assert.is(refused?.reason, 'packed-refused');
  } finally {
    bus.child.kill('SIGKILL');
    await bus.exited;
  }
});

test('vring req prints the reply; a failure prints its code and exits 1', async () => {
  await withBus('req', async (socket) => {
    const responder = await connectBus(socket);
    try {
      responder.serve<number, number>('math.double', (n) => n * 2);
      responder.serve('app.fail', () => {
        throw Object.assign(new Error('out of stock'), { code: 'E_STOCK' });
      });
      responder.serve(
        'app.slow',
        (_value, { signal }) => new Promise((r) => signal.addEventListener('abort', r)),
      );
      await responder.flush();

      assert.equal(await vring('req', '--socket', socket, 'math.double', '21'), {
        code: 0,
        stdout: '42\n',
        stderr: '',
      });
      const cases = [
        {
          args: ['nobody.home', '1'],
          error: 'vring req: nobody serves nobody.home [ERR_VRING_NO_RESPONDERS]',
        },
        { args: ['app.fail', '1'], error: 'vring req: out of stock [E_STOCK]' },
        { args: ['--timeout', '200', 'app.slow', '1'], error: /\[ERR_VRING_TIMEOUT\]$/ },
      ];
      for (const c of cases) {
        const r = await vring('req', '--socket', socket, ...c.args);
        assert.is(r.code, 1, c.args.join(' '));
        assert.is(r.stdout, '');
        if (typeof c.error === 'string') assert.is(r.stderr, `${c.error}\n`);
        else assert.match(r.stderr.trim(), c.error);
      }
    } finally {
      responder.close();
    }
  });
});

test('with no bus at PATH, stats, pub, sub and req give up after --wait: ERR_VRING_TIMEOUT, exit 1', async () => {
  const socket = join(dir, 'nobody.sock');
  const runs = await Promise.all([
    vring('stats', '--socket', socket, '--wait', '300'),
    vring('pub', '--socket', socket, '--wait', '300', 'a', '1'),
    vring('sub', '--socket', socket, '--wait', '300', 'a'),
    vring('req', '--socket', socket, '--wait', '300', 'a', '1'),
  ]);
  for (const [i, name] of ['stats', 'pub', 'sub', 'req'].entries()) {
    assert.is(runs[i]!.code, 1, runs[i]!.stderr);
    assert.is(
      runs[i]!.stderr,
      `vring ${name}: no bus answered at ${socket} within 300 ms [ERR_VRING_TIMEOUT]\n`,
    );
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
