// The brokers a case can have between its peers: a process of its own that the publisher /
// server and the subscribers / client all connect to (a standalone `vring bus`, a
// `nats-server`). The runner starts one for each run of such a case, pinned like the peers,
// waits until it accepts connections, hands its address to the peers (`PeerArgs.broker`),
// and stops it when the run ends, however it ends: a broker, unlike a peer, never exits by
// itself.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { NotificationMode } from '@vring/core';
import {
  freePort,
  NATS_SERVER_MISSING,
  natsAnswers,
  natsServerPath,
} from '../../test-support/nats-server.js';
import { busMaxFrame } from './bus-frames.js';

export { NATS_SERVER_MISSING, natsServerPath };

/** What runs between the peers; data, so the results JSON records the topology. */
export type Broker =
  | {
      /**
       * `vring bus --socket PATH --notification MODE --max-frame BYTES`, the @vring/ipc
       * command, with the frames the case's clients use (see bus-frames.ts), as a hosted
       * bus is given them.
       */
      kind: 'vring-bus';
      notification: NotificationMode;
    }
  | {
      /** `nats-server -a 127.0.0.1 -p PORT`, NATS core (no JetStream, no other listener). */
      kind: 'nats-server';
    };

export interface RunningBroker {
  /** Where the peers connect: the bus's socket path, or `nats://127.0.0.1:PORT`. */
  address: string;
  pid: number;
  /** Settles when it exits, with how it went ("exit code 1: <its last line on stderr>"). */
  exited: Promise<string>;
  /** Stops it (SIGTERM, then SIGKILL after a grace time) and waits for it to exit. */
  stop(): Promise<void>;
}

/** Brokers alive now: stopped on the runner's way out, whatever the way. */
const alive = new Set<ChildProcess>();
let exitHooked = false;

function killAllOnExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  const killAll = () => {
    for (const child of alive) child.kill('SIGKILL');
  };
  process.once('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  }
}

/**
 * A command line pinned to `cores` (taskset; undefined: not pinned) and prefixed so that
 * the process cannot outlive the runner even if the runner is killed outright
 * (`setpriv --pdeathsig KILL`, where util-linux has it): for brokers, and for the peers.
 */
export function pinnedChild(argv: string[], cores: string | undefined): string[] {
  const pinned = cores === undefined ? argv : ['taskset', '-c', cores, ...argv];
  return existsSync('/usr/bin/setpriv')
    ? ['/usr/bin/setpriv', '--pdeathsig', 'KILL', '--', ...pinned]
    : pinned;
}

async function stop(child: ChildProcess): Promise<void> {
  // A child that never started (its binary missing, say) has no pid and no exit to wait for.
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }
  alive.delete(child);
}

/** How to run one broker: its command line, its address, and how it says it is ready. */
interface Launch {
  argv: string[];
  address: string;
  ready(child: ChildProcess): Promise<boolean>;
}

/**
 * Extra Node flags for a standalone `vring bus`, e.g.
 * VRING_BENCH_BROKER_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/p" to profile the broker.
 */
const brokerNodeFlags = (process.env.VRING_BENCH_BROKER_FLAGS ?? '').split(' ').filter(Boolean);

async function launch(broker: Broker, path: string, size: number): Promise<Launch> {
  if (broker.kind === 'vring-bus') {
    const ipc = dirname(createRequire(import.meta.url).resolve('@vring/ipc/package.json'));
    return {
      argv: [
        process.execPath,
        ...brokerNodeFlags,
        join(ipc, 'bin', 'vring.js'),
        'bus',
        '--socket',
        path,
        '--notification',
        broker.notification,
        '--max-frame',
        String(busMaxFrame(size)),
      ],
      address: path,
      // createBus listens before it returns, and the command says so only after it.
      ready: (child) =>
        new Promise((resolve) => {
          let seen = '';
          child.stdout!.setEncoding('utf8').on('data', (s: string) => {
            seen += s;
            if (seen.includes('listening on')) resolve(true);
          });
          child.once('exit', () => resolve(false));
        }),
    };
  }
  const server = natsServerPath();
  if (!server) throw new Error(NATS_SERVER_MISSING);
  const port = await freePort();
  return {
    argv: [server, '-a', '127.0.0.1', '-p', String(port)],
    address: `nats://127.0.0.1:${port}`,
    ready: async (child) => {
      while (child.exitCode === null && child.signalCode === null) {
        if (await natsAnswers(port)) return true;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return false;
    },
  };
}

async function startOnce(
  broker: Broker,
  path: string,
  cores: string | undefined,
  size: number,
): Promise<RunningBroker> {
  const { argv, address, ready } = await launch(broker, path, size);
  const command = pinnedChild(argv, cores);
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  alive.add(child);
  // Its last line on stderr says why it stopped (nats-server logs its start-up there too).
  let lastLine = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    const lines = s.split('\n').filter((l) => l.trim() !== '');
    if (lines.length > 0) lastLine = lines.at(-1)!.trim().slice(0, 300);
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), 15_000);
  });
  try {
    const started = once(child, 'spawn').then(() => ready(child));
    if (!(await Promise.race([started, timedOut]))) {
      throw new Error(`${broker.kind} did not start${lastLine ? `: ${lastLine}` : ''}`);
    }
  } catch (error) {
    await stop(child);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  // What it prints from here on is not read; flowing, its pipes never fill up.
  child.stdout!.resume();
  const exited = once(child, 'exit').then(([code, signal]) => {
    // Killed, it said nothing about it; exiting, its last line is the reason.
    if (signal) return signal;
    return `exit code ${code}${lastLine ? `: ${lastLine}` : ''}`;
  });
  return { address, pid: child.pid!, exited, stop: () => stop(child) };
}

/**
 * Starts `broker` for one run: `path` is the run's fresh socket path (a bus listens
 * there), `cores` where to pin it (undefined: not pinned), `size` the case's message size
 * (a bus sizes its frames for it). Resolves once it accepts
 * connections. One that exits or is not ready within 15 s fails the run, stopped; a
 * nats-server gets three tries, as the free port it was given may have been taken since.
 */
export async function startBroker(
  broker: Broker,
  path: string,
  cores: string | undefined,
  size: number,
): Promise<RunningBroker> {
  killAllOnExit();
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(broker, path, cores, size);
    } catch (error) {
      if (broker.kind !== 'nats-server' || attempt === 3 || !natsServerPath()) throw error;
    }
  }
}
