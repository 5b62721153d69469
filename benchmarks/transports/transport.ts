// What a benchmark transport is: the contract between the suite runner (which decides what
// to run and where) and the peer processes (which move the messages and measure).
//
// Adding a transport is one file exporting a `Transport` and one line in registry.ts.
import type { Broker } from './brokers.js';

/**
 * What a case measures. `fanout` (1 publisher, `peers - 1` subscribers) and `rpc`
 * (requests/s at `concurrency` outstanding calls) have no transport yet: they are the vring
 * Bus and RPC's, and the runner already spawns and reports them.
 */
export type Scenario = 'oneway' | 'pingpong' | 'echo' | 'idle' | 'fanout' | 'rpc';

/** The listening peer binds and reports ready; connecting peers start after that. */
export type Role = 'listen' | 'connect';

/** The command line of one peer process (one JSON argument). */
export interface PeerArgs {
  transport: string;
  scenario: Scenario;
  role: Role;
  /** 0 for the listener, 1.. for the connecting peers (a fan-out has several). */
  index: number;
  /** Processes in the case, listener included. */
  peers: number;
  /** A fresh per-case path for a socket (or a prefix for several). */
  path: string;
  /** Message size in bytes (raw payload, or packed size of the standard msgpack value). */
  size: number;
  /** Measured time; throughput and latency loops run this long after warm-up. */
  seconds: number;
  /** Unmeasured traffic before the measured part, so JIT, caches and rings are warm. */
  warmupSeconds: number;
  /** Calls in flight (rpc). */
  concurrency: number;
  /** Whether the runner pins processes: a transport that starts its own peer pins it too. */
  pinned: boolean;
  /** Where the case's broker listens (see `broker` in the layout), if it has one. */
  broker?: string;
  /** The broker's process, whose CPU the publisher or server reports as `cpu.broker`. */
  brokerPid?: number;
}

export interface Transport {
  /** Name on the command line and in the JSON (`--transport=net,vring-event`). */
  readonly name: string;
  /** Row label in the table and chart. */
  readonly label: string;
  /** `raw`: Buffers as they are; `msgpack`: the standard value (payload.ts), encoded. */
  readonly payload: 'raw' | 'msgpack';
  /**
   * `pair`: the runner starts one process per side (listener on core 1, connectors from
   * core 0, alternating), and first, if there is one, the `broker` they all connect to
   * (on core 0). `single`: the runner starts one process that does the whole case (a codec
   * loop, worker threads, a parent that forks its child), pinned to `cores`.
   */
  readonly layout: { processes: 'pair'; broker?: Broker } | { processes: 'single'; cores: string };
  readonly scenarios: readonly Scenario[];
  /** Why this transport cannot run on this machine, checked by the runner before any case. */
  unavailable?(): Promise<string | undefined>;
  /** One peer's side of a case: reports ready (listener), measures, reports, exits. */
  run(args: PeerArgs): Promise<void>;
}

export function toArgv(args: PeerArgs): string[] {
  return [JSON.stringify(args)];
}

export function fromArgv(argv: readonly string[]): PeerArgs {
  return JSON.parse(argv[0] ?? '{}') as PeerArgs;
}

/**
 * Environment variable the runner sets on the connecting peers: they start with their
 * listener (start-up overlaps) and connect when the runner writes a line on their stdin.
 */
export const START_ON_STDIN = 'VRING_BENCH_START_ON_STDIN';

/** A notification mode in a row label, marked "(default)" when it is the API's default. */
export function modeLabel(mode: string, defaultMode: string): string {
  return mode === defaultMode ? `${mode} (default)` : mode;
}
