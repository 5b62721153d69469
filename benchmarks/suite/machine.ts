// Where the figures came from: they mean little without the machine and the commit.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, release } from 'node:os';

export interface Machine {
  cpu: string;
  cores: number;
  kernel: string;
  node: string;
  commit: string;
  /** Uncommitted changes in the working tree when the run started. */
  dirty: boolean;
  /** Whether the peers were pinned to cores 0 and 1 with taskset. */
  pinned: boolean;
  date: string;
}

/** Pinning needs taskset and two cores; unpinned, a ping-pong flips between ~8 and ~45 µs. */
export const canPin = existsSync('/usr/bin/taskset') && cpus().length >= 2;

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return undefined; // not a git checkout
  }
}

export function machine(): Machine {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    kernel: release(),
    node: process.version,
    commit: git(['rev-parse', '--short', 'HEAD']) ?? 'unknown',
    dirty: (git(['status', '--porcelain', '--untracked-files=no']) ?? '') !== '',
    pinned: canPin,
    date: new Date().toISOString(),
  };
}

export function describeMachine(m: Machine): string {
  return `${m.cpu} (${m.cores} cores), Linux ${m.kernel}, Node ${m.node}, commit ${m.commit}${m.dirty ? ' (with uncommitted changes)' : ''}`;
}
