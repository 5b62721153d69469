// Runs one case once: starts its peer processes (pinned), waits for the listener to be
// ready, lets the connecting peers go, and merges what they all report into one result.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pinnedChild, type RunningBroker, startBroker } from '../transports/brokers.js';
import { type PeerArgs, START_ON_STDIN, toArgv } from '../transports/transport.js';
import type { Case } from './cases.js';
import { canPin } from './machine.js';
import { type Result, scenario } from './scenarios.js';

const peerScript = join(dirname(fileURLToPath(import.meta.url)), '..', 'transports', 'peer.ts');
const peerTsconfig = join(dirname(fileURLToPath(import.meta.url)), '..', 'tsconfig.json');

export interface RunSettings {
  /** Scratch directory for the sockets. */
  dir: string;
  quick: boolean;
}

interface Peer {
  child: ChildProcess;
  lines: AsyncIterator<string>;
  stderr: string[];
}

/**
 * Extra Node flags for every peer, e.g. VRING_BENCH_PEER_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/p"
 * to profile both sides of a case (Node refuses --cpu-prof in NODE_OPTIONS).
 */
const peerNodeFlags = (process.env.VRING_BENCH_PEER_FLAGS ?? '').split(' ').filter(Boolean);

function spawnPeer(args: PeerArgs, cores: string, startOnStdin: boolean): Peer {
  const node = [process.execPath, ...peerNodeFlags, '--import', 'tsx', peerScript, ...toArgv(args)];
  const argv = pinnedChild(node, canPin ? cores : undefined);
  // benchmarks/tsconfig.json has no `paths`: @vring/* load from their built dist, as users
  // get them, not from the sources tsx would otherwise transform on the fly.
  const env: NodeJS.ProcessEnv = { ...process.env, TSX_TSCONFIG_PATH: peerTsconfig };
  if (startOnStdin) env[START_ON_STDIN] = '1';
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: [startOnStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env,
  });
  // Kept for the error message only: a peer's stderr would tear the progress bar.
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    stderr.push(s);
    if (stderr.length > 50) stderr.shift();
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return { child, lines, stderr };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Objects merge key by key (each side adds its `cpu.<side>`), anything else is replaced. */
function mergeInto(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    if (isObject(existing) && isObject(value)) mergeInto(existing, value);
    else target[key] = isObject(value) ? { ...value } : value;
  }
}

/** Core of a two-sided case's peer: the listener on 1, connecting peers from 0, alternating. */
function coreOf(index: number): string {
  return String(index % 2 === 1 ? 0 : 1);
}

/** A broker's core: 0, beside the first connecting peer, while the listener has core 1. */
const BROKER_CORE = '0';

/** How a peer ended: its signal or its exit code. */
function exitOf(peer: Peer): string {
  return peer.child.signalCode ?? `exit code ${peer.child.exitCode}`;
}

/** The end of a peer's stderr: the error line of a Node crash, the stack left out. */
function tail(peer: Peer): string {
  const lines = peer.stderr
    .join('')
    .split('\n')
    .filter((l) => !/^\s+at /.test(l));
  return lines.join(' ').replace(/\s+/g, ' ').trim().slice(-400);
}

let runNumber = 0;

export async function runOnce(c: Case, settings: RunSettings): Promise<Result> {
  const spec = scenario(c.scenario);
  const base: PeerArgs = {
    transport: c.transport,
    scenario: c.scenario,
    role: 'listen',
    index: 0,
    peers: c.peers,
    path: join(settings.dir, `${c.transport}-${++runNumber}.sock`),
    size: c.size,
    seconds: settings.quick ? spec.seconds.quick : spec.seconds.full,
    warmupSeconds: settings.quick ? spec.warmupSeconds.quick : spec.warmupSeconds.full,
    concurrency: c.concurrency,
    pinned: canPin,
  };
  const peers: Peer[] = [];
  let broker: RunningBroker | undefined;
  const result: Result = {};
  // The first thing to go wrong ends the run at once (no peer waits for a dead one until
  // the timeout): a peer that fails, the broker's exit, the timeout.
  let failure: string | undefined;
  let failedPeer: Peer | undefined;
  const stopPeers = () => {
    for (const p of peers) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  };
  const fail = (why: string) => {
    failure ??= why;
    stopPeers();
  };
  // Start-up is most of it: thirty-odd Node processes on two cores take a while.
  const limit = (base.seconds + base.warmupSeconds) * 1000 + 30_000 + 1000 * c.peers;
  const timeout = setTimeout(() => fail(`timed out after ${Math.round(limit / 1000)} s`), limit);
  try {
    if (c.layout.processes === 'single') {
      peers.push(spawnPeer(base, c.layout.cores, false));
    } else {
      if (c.layout.broker) {
        broker = await startBroker(
          c.layout.broker,
          base.path,
          canPin ? BROKER_CORE : undefined,
          c.size,
        );
        base.broker = broker.address;
        base.brokerPid = broker.pid;
        const kind = c.layout.broker.kind;
        void broker.exited.then((how) => {
          if (peers.some((p) => p.child.exitCode === null)) fail(`${kind} exited (${how})`);
        });
      }
      peers.push(spawnPeer(base, coreOf(0), false));
      for (let index = 1; index < c.peers; index++) {
        peers.push(spawnPeer({ ...base, role: 'connect', index }, coreOf(index), true));
      }
      for (const p of peers) {
        p.child.once('exit', (code) => {
          if (code === 0) return;
          failedPeer ??= p;
          stopPeers();
        });
      }
      // Connecting peers load while the listener does; they connect once it listens.
      const ready = await peers[0]!.lines.next();
      if (ready.done) {
        if (failure) throw new Error(failure);
        // The listener is killed when any peer fails first: name the one that did.
        const first = failedPeer && failedPeer !== peers[0] ? failedPeer : undefined;
        throw new Error(
          first
            ? `a peer failed before the listener was ready (${exitOf(first)}): ${tail(first)}`
            : `the listening peer exited before it was ready: ${tail(peers[0]!)}`,
        );
      }
      for (const p of peers.slice(1)) p.child.stdin!.end('go\n');
    }
    const collect = async (lines: AsyncIterator<string>) => {
      for (let r = await lines.next(); !r.done; r = await lines.next()) {
        const line = JSON.parse(r.value) as Record<string, unknown>;
        if (!line.ready) mergeInto(result, line);
      }
    };
    await Promise.all([
      ...peers.map((p) => collect(p.lines)),
      ...peers.map((p) => (p.child.exitCode === null ? once(p.child, 'exit') : Promise.resolve())),
    ]);
    if (failure) throw new Error(failure);
    const failed = failedPeer ?? peers.find((p) => p.child.exitCode !== 0);
    if (failed) {
      throw new Error(`a peer failed (${exitOf(failed)}): ${tail(failed)}`);
    }
    spec.reduce?.(result);
    return result;
  } finally {
    clearTimeout(timeout);
    for (const p of peers) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await broker?.stop();
  }
}
