// DPDK 22.11 virtio_user (dpdk-testpmd, unmodified) attached to `vring echo` running in its
// own process: with default devargs and `in_order=0,mrg_rxbuf=0`, queue sizes 256 and 1024.
//
// - exact: interactive testpmd in rxonly mode sends 64 bursts (`start tx_first 64`); every
//   frame it managed to transmit must come back: testpmd's RX count equals its TX count, and
//   the echo's counters equal both.
// - sustained: io forwarding with --tx-first for a few seconds; the echo
//   received exactly what testpmd transmitted and sent it all back; testpmd received all of
//   it but the one --tx-first burst still in flight when it stopped forwarding.
//
// - hugepages: testpmd on 2 MiB pages, from a hugetlbfs mount with --single-file-segments and
//   with --in-memory --single-file-segments, sends frames from a capture file through
//   virtio_user; every one must come back byte for byte. Where no hugepages are reserved,
//   those say why.
//
// Without /usr/bin/dpdk-testpmd the file registers no test and says why.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Child, socketPath, spawnChild, spawnScript } from '../../../test-support/index.js';
import { assertEveryFrameEchoed, parseCaptureReport } from './fixtures/capture-report.js';
import { stopEcho } from './fixtures/echo-counters.js';
import {
  filePrefix,
  HUGEPAGE_RUNS,
  removeRuntimeDir,
  requireHugepages,
  requireTestpmd,
  type TestpmdMemory,
  testpmdArgs,
  testpmdEnv,
} from './fixtures/testpmd-echo.js';

/** Packets testpmd's --tx-first sends before forwarding (its default burst). */
const TX_FIRST_BURST = 32;

const prefixes: string[] = [];

/** Starts testpmd with a virtio_user port on `socket`, `devargs` appended to its vdev. */
function startTestpmd(
  socket: string,
  devargs: string,
  app: string[],
  stdin: 'pipe' | 'ignore' = 'ignore',
): Child {
  const prefix = filePrefix();
  prefixes.push(prefix);
  const args = testpmdArgs({
    prefix,
    timeoutSeconds: 30,
    vdevs: [`--vdev=net_virtio_user0,path=${socket}${devargs}`],
    app,
    lineBuffered: true,
  });
  return spawnChild('timeout', args, {
    stdin,
    stderr: 'capture',
    env: testpmdEnv,
    name: 'testpmd',
  });
}

/** Starts `vring echo` in its own process on `socket`. */
function startEcho(socket: string, ...flags: string[]): Child {
  return spawnScript(new URL('./fixtures/echo-process.ts', import.meta.url), [socket, ...flags], {
    stderr: 'capture',
    name: 'vring echo',
  });
}

function forwardTotals(output: string): {
  rx: number;
  tx: number;
  rxDropped: number;
  txDropped: number;
} {
  const at = output.lastIndexOf('Accumulated forward statistics');
  assert.ok(at >= 0, `testpmd printed its final statistics:\n${output.slice(-3000)}`);
  const block = output.slice(at);
  const rx = block.match(/RX-packets:\s+(\d+)\s+RX-dropped:\s+(\d+)/);
  const tx = block.match(/TX-packets:\s+(\d+)\s+TX-dropped:\s+(\d+)/);
  assert.ok(rx && tx, 'forward statistics parse');
  return {
    rx: Number(rx![1]),
    rxDropped: Number(rx![2]),
    tx: Number(tx![1]),
    txDropped: Number(tx![2]),
  };
}

const configs = [
  { name: 'default devargs, queue 256', devargs: '' },
  { name: 'in_order=0,mrg_rxbuf=0, queue 256', devargs: ',in_order=0,mrg_rxbuf=0' },
  { name: 'default devargs, queue 1024', devargs: ',queue_size=1024' },
  {
    name: 'in_order=0,mrg_rxbuf=0, queue 1024',
    devargs: ',in_order=0,mrg_rxbuf=0,queue_size=1024',
  },
];

/** After testpmd has stopped: its forward totals and the echo's counters (stopping it), logged. */
async function results(kind: string, devargs: string, pmd: Child, echo: Child) {
  const totals = forwardTotals(pmd.output());
  const counters = await stopEcho(echo);
  console.log(
    `  ${kind} ${devargs || '(default)'}: testpmd ${JSON.stringify(totals)}, echo ${JSON.stringify(counters)}`,
  );
  return { totals, counters };
}

async function exactCase(devargs: string): Promise<void> {
  const socket = socketPath('exact');
  const echo = startEcho(socket);
  await echo.waitFor(/listening on/);
  const pmd = startTestpmd(socket, devargs, ['-i', '--forward-mode=rxonly'], 'pipe');
  try {
    let prompts = 1;
    await waitForPrompts(pmd, prompts);
    const command = async (line: string) => {
      pmd.process.stdin!.write(`${line}\n`);
      await waitForPrompts(pmd, ++prompts);
    };
    await command('start tx_first 64');
    // Poll the port counters until every transmitted frame has come back, or nothing moves
    // any more (then the assertions below say what is missing).
    let last = '';
    for (let unchanged = 0; unchanged < 5; ) {
      await new Promise((r) => setTimeout(r, 100));
      await command('show port stats 0');
      const stats = [
        ...pmd.output().matchAll(/RX-packets:\s+(\d+)[\s\S]*?TX-packets:\s+(\d+)/g),
      ].at(-1);
      const now = `${stats?.[1]}/${stats?.[2]}`;
      if (stats && stats[1] === stats[2] && now === last) break;
      unchanged = now === last ? unchanged + 1 : 0;
      last = now;
    }
    await command('stop');
    pmd.process.stdin!.write('quit\n');
    await pmd.exited;
  } finally {
    pmd.kill('SIGINT');
    await pmd.exited;
  }
  const { totals, counters } = await results('exact', devargs, pmd, echo);
  assert.ok(totals.tx > 0, 'testpmd transmitted frames');
  assert.is(totals.rx, totals.tx, 'testpmd RX equals TX');
  assert.is(totals.rxDropped, 0);
  assert.is(counters.received, totals.tx, 'the echo received every frame testpmd sent');
  assert.is(counters.sent, totals.tx, 'the echo sent every frame back');
  assert.is(counters.dropped, 0);
}

function waitForPrompts(p: Child, count: number): Promise<void> {
  return p.waitUntil(
    () => (p.stdout().match(/testpmd> /g)?.length ?? 0) >= count,
    `prompt ${count}`,
  );
}

async function sustainedCase(devargs: string): Promise<void> {
  const socket = socketPath('io');
  const echo = startEcho(socket);
  await echo.waitFor(/listening on/);
  const pmd = startTestpmd(socket, devargs, [
    '--stats-period',
    '1',
    '--forward-mode=io',
    '--tx-first',
  ]);
  try {
    // Two stats periods with traffic: the rings are live and frames circulate.
    await pmd.waitFor(/Rx-pps:\s+[1-9]\d*[\s\S]*Rx-pps:\s+[1-9]\d*/);
  } finally {
    pmd.kill('SIGINT');
    await pmd.exited;
  }
  const { totals, counters } = await results('io', devargs, pmd, echo);
  assert.ok(totals.rx > 0, 'testpmd received frames');
  assert.is(totals.rxDropped, 0);
  assert.is(totals.txDropped, 0);
  assert.is(counters.received, totals.tx, 'the echo received every frame testpmd sent');
  assert.is(counters.sent, counters.received, 'the echo sent every frame back');
  assert.is(counters.dropped, 0);
  // io forwarding sends what it receives, plus the --tx-first burst: that burst is what is
  // still in flight (in testpmd's receive ring) when forwarding stops.
  assert.is(
    totals.tx - totals.rx,
    TX_FIRST_BURST,
    'testpmd RX equals TX minus the burst in flight',
  );
}

/** Asks interactive testpmd for port 0's counters and returns its RX-packets. */
async function portRx(pmd: Child): Promise<number> {
  const blocks = () => pmd.output().split('NIC statistics for port 0').length - 1;
  const before = blocks();
  const latest = () => pmd.output().slice(pmd.output().lastIndexOf('NIC statistics for port 0'));
  pmd.process.stdin!.write('show port stats 0\n');
  await pmd.waitUntil(() => blocks() > before && /Tx-bps/.test(latest()), 'port statistics');
  return Number(latest().match(/RX-packets:\s+(\d+)/)![1]);
}

/** Polls until port 0's RX count exceeds `than`; false if it stops moving for a while. */
async function rxGrows(pmd: Child, than: number): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    if ((await portRx(pmd)) > than) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

async function reconnectCase(): Promise<void> {
  const socket = socketPath('server');
  // virtio_user in server mode listens; the echo connects (`vring echo --client`).
  const pmd = startTestpmd(socket, ',server=1', ['-i', '--forward-mode=io'], 'pipe');
  let echo: Child | undefined;
  try {
    // virtio_user blocks in accept() for its first back-end before testpmd starts.
    await pmd.waitFor(/waiting for client connection/);
    echo = startEcho(socket, '--client');
    await pmd.waitUntil(() => pmd.stdout().includes('testpmd> '), 'its prompt');
    pmd.process.stdin!.write('start tx_first\n');
    assert.ok(await rxGrows(pmd, 0), 'traffic flows through the first echo');
    // Kill the back-end while traffic runs, then start a new one.
    echo.kill('SIGKILL');
    await echo.exited;
    const atKill = await portRx(pmd);
    echo = startEcho(socket, '--client');
    // virtio_user replays its handshake (base 0; we resync from used->idx). Frames that were
    // inside the killed process are gone, so send a fresh burst if the old ones do not resume.
    if (!(await rxGrows(pmd, atKill))) {
      pmd.process.stdin!.write('stop\nstart tx_first\n');
      assert.ok(
        await rxGrows(pmd, atKill),
        `traffic resumes through the restarted echo:\n${pmd.output().slice(-4000)}\n${echo.output()}`,
      );
    }
    pmd.process.stdin!.write('stop\nquit\n');
    await pmd.exited;
    const counters = await stopEcho(echo);
    console.log(
      `  reconnect: testpmd RX ${atKill} at the kill, echo after restart ${JSON.stringify(counters)}`,
    );
    assert.ok(counters.received > 0, 'the restarted echo received frames');
    assert.is(counters.sent, counters.received);
  } finally {
    pmd.kill('SIGINT');
    echo?.kill('SIGKILL');
    await pmd.exited;
  }
}

/** Frames of a capture run: all fit testpmd's transmit ring however slowly they echo. */
const CAPTURED_FRAMES = 500;

async function hugepageCase(memory: TestpmdMemory): Promise<void> {
  const socket = socketPath('huge');
  const echo = startEcho(socket);
  await echo.waitFor(/listening on/);
  const client = spawnScript(
    new URL('./fixtures/dpdk-virtio-user-capture.ts', import.meta.url),
    [socket, String(CAPTURED_FRAMES), memory],
    { stderr: 'capture', name: 'dpdk-virtio-user-capture', killAfterMs: 60_000 },
  );
  const code = await client.exited;
  assert.is(code, 0, `testpmd stops cleanly\n${client.output()}`);
  const report = parseCaptureReport(client.output());
  const context = `testpmd:\n${client.output()}\necho:\n${echo.output()}`;
  assert.ok(report.hugepageKib >= 128 * 1024, `testpmd ran on 2 MiB pages\n${context}`);
  assertEveryFrameEchoed(report, CAPTURED_FRAMES, context);
  assert.equal(
    await stopEcho(echo),
    { received: CAPTURED_FRAMES, sent: CAPTURED_FRAMES, dropped: 0 },
    'the echo mapped the hugepage memory and returned every frame through it',
  );
}

if (requireTestpmd()) {
  for (const { memory, flags } of HUGEPAGE_RUNS) {
    const what = `DPDK virtio_user on 2 MiB hugepages (${flags})`;
    if (requireHugepages(memory, what)) {
      test(`${what} → vring echo: ${CAPTURED_FRAMES} frames back byte for byte`, () =>
        hugepageCase(memory));
    }
  }
  for (const c of configs) {
    test(`DPDK virtio_user → vring echo, exact counts (${c.name})`, () => exactCase(c.devargs));
    test(`DPDK virtio_user → vring echo, io forwarding (${c.name})`, () =>
      sustainedCase(c.devargs));
  }
  test('DPDK virtio_user server=1 ↔ vring echo --client: echo killed and restarted under traffic', () =>
    reconnectCase());
}

test.after(() => {
  for (const prefix of prefixes) removeRuntimeDir(prefix);
});

test.run();
