// The command line of `pnpm bench`.
import type { Scenario } from '../transports/transport.js';

export interface Options {
  /** Smoke run: short cases, fewer sizes, one run each; about a minute and a half. */
  quick: boolean;
  /** Only the cases whose name contains this text. */
  only: string;
  scenarios: Scenario[] | undefined;
  sizes: number[] | undefined;
  transports: string[] | undefined;
  /** Fan-out subscriber counts (the N of 1 → N), any counts, instead of the scenario's own. */
  subscribers: number[] | undefined;
  /** Runs per case (default 3, quick 1). */
  runs: number;
  help: boolean;
}

export const usage = `pnpm bench [options]

  --quick                    smoke run (~1.5 minutes): fewer sizes, short cases, one run each
  --scenario=oneway,pingpong scenarios: oneway, pingpong, echo, idle, fanout, rpc
  --size=64,1k,64k,1m,16m    message sizes among each scenario's own (k = KiB, m = MiB)
  --transport=net,vring-event transports (the net baselines are always added for the ratios)
  --subscribers=3,10,30      fan-out subscriber counts, the N of 1 → N (default 3,10,30; --quick 3)
  --only=text                only cases whose name contains text, e.g. --only="pingpong 64 B"
  --runs=N                   runs per case (default 3; --quick 1)
`;

function list(argv: readonly string[], name: string): string[] | undefined {
  const arg = argv.find((a) => a.startsWith(`--${name}=`));
  if (arg === undefined) return undefined;
  return arg
    .slice(name.length + 3)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function parseSize(text: string): number {
  const match = /^(\d+)\s*(b|k|kib|kb|m|mib|mb)?$/i.exec(text);
  if (!match) throw new Error(`not a size: ${text} (try 64, 1k, 64k, 1m, 16m)`);
  const unit = (match[2] ?? 'b').toLowerCase()[0];
  return Number(match[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 * 1024 : 1);
}

export function parseOptions(argv: readonly string[]): Options {
  const known = [
    '--quick',
    '--help',
    '-h',
    '--only=',
    '--scenario=',
    '--size=',
    '--transport=',
    '--subscribers=',
    '--runs=',
  ];
  for (const a of argv) {
    if (!known.some((k) => (k.endsWith('=') ? a.startsWith(k) : a === k))) {
      throw new Error(`unknown option ${a}\n\n${usage}`);
    }
  }
  const quick = argv.includes('--quick');
  const runs = list(argv, 'runs')?.[0];
  return {
    quick,
    only: argv.find((a) => a.startsWith('--only='))?.slice('--only='.length) ?? '',
    scenarios: list(argv, 'scenario') as Scenario[] | undefined,
    sizes: list(argv, 'size')?.map(parseSize),
    transports: list(argv, 'transport'),
    subscribers: list(argv, 'subscribers')?.map((n) => {
      const count = Number(n);
      if (!Number.isInteger(count) || count < 1) throw new Error(`not a subscriber count: ${n}`);
      return count;
    }),
    runs: runs === undefined ? (quick ? 1 : 3) : Number(runs),
    help: argv.includes('--help') || argv.includes('-h'),
  };
}

/** Whether the run covers the whole suite (only such a run replaces the committed results). */
export function isFullRun(o: Options): boolean {
  return (
    !o.quick &&
    !o.only &&
    !o.scenarios &&
    !o.sizes &&
    !o.transports &&
    !o.subscribers &&
    o.runs === 3
  );
}
