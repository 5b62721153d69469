/**
 * The command-line options of a listening command (`vring bus`, `vring echo`) that cap what
 * one peer may cost it: `--max-peer-memory`, `--max-connections`, `--max-per-uid`,
 * declared once here and turned into {@link PeerLimitOptions}.
 *
 * @packageDocumentation
 */
import { DEFAULT_PEER_LIMITS, type PeerLimitOptions } from '../peer-limits.js';
import { UsageError } from './command.js';

const MIB = 1024 * 1024;

/**
 * Options a listening command adds to its own: for `vring bus` in `@vring/ipc`, not an API.
 * @internal
 */
export const PEER_LIMIT_OPTIONS = {
  'max-peer-memory': {
    type: 'string',
    value: 'MIB',
    default: String(DEFAULT_PEER_LIMITS.maxPeerMemory / MIB),
    description:
      'MiB of memory one peer may have this process map (the sum of its memory regions); a ' +
      'peer offering more is disconnected with ERR_VRING_LIMIT_EXCEEDED',
  },
  'max-connections': {
    type: 'string',
    value: 'N',
    default: String(DEFAULT_PEER_LIMITS.maxConnections),
    description: 'connections held at once; one more is closed on arrival',
  },
  'max-per-uid': {
    type: 'string',
    value: 'N',
    default: String(DEFAULT_PEER_LIMITS.maxConnectionsPerUid),
    description: 'connections held at once from one uid',
  },
} as const;

function positive(flag: string, text: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`--${flag} takes a positive whole number; got '${text}'`);
  }
  return n;
}

/**
 * The {@link PeerLimitOptions} of parsed `values`.
 * @throws UsageError for a value that is not a positive whole number.
 * @public
 */
export function peerLimitsFrom(values: {
  'max-peer-memory': string;
  'max-connections': string;
  'max-per-uid': string;
}): PeerLimitOptions {
  return {
    maxPeerMemory: positive('max-peer-memory', values['max-peer-memory']) * MIB,
    maxConnections: positive('max-connections', values['max-connections']),
    maxConnectionsPerUid: positive('max-per-uid', values['max-per-uid']),
  };
}
