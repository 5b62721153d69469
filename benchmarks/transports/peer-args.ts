// The command line of a benchmark peer process, shared by the runner (which builds it) and
// the peers (which parse it), so both sides agree on one shape.

export type Scenario = 'oneway' | 'pingpong' | 'idle' | 'echo';

export interface PeerArgs {
  transport: 'vring' | 'net' | 'vhost-user';
  role: 'listen' | 'connect';
  scenario: Scenario;
  /** vring notification mode; unused by `net`. */
  mode: string;
  path: string;
  size: number;
  seconds: number;
  count: number;
  warmup: number;
}

export function toArgv(args: PeerArgs): string[] {
  return [JSON.stringify(args)];
}

export function fromArgv(argv: readonly string[]): PeerArgs {
  return JSON.parse(argv[0] ?? '{}') as PeerArgs;
}
