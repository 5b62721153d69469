/**
 * The one message a vhost-user listener of ours sends to a peer it will not serve, right
 * before closing the connection: so the peer can report why instead of a bare disconnect,
 * which looks like a crash. Two kinds:
 * - refused on its credentials: payload `REFUSED\0` (8 bytes); the peer reports
 *   `ERR_VRING_PEER_REFUSED` (reason `refused-by-peer`);
 * - over one of the listener's limits: payload `LIMITED\0` and the limit's name (a
 *   {@link PeerLimitReason}); the peer reports `ERR_VRING_LIMIT_EXCEEDED` with that reason.
 *
 * It is shaped as a reply to request 0 (`VHOST_USER_NONE`, which no side ever sends). A
 * front-end that does not know it (DPDK) reads a reply to the wrong request and gives up on
 * the connection, which is the right outcome too.
 *
 * @packageDocumentation
 */
import { VringError } from '../errors.js';
import type { ListenerNotices } from '../fd-server.js';
import { limitExceeded, type PeerLimitReason } from '../peer-limits.js';
import {
  LITTLE_ENDIAN,
  VHOST_USER_FLAG_REPLY,
  VHOST_USER_HEADER_SIZE,
  VHOST_USER_VERSION,
  viewOf,
} from './message-layout.js';

const REFUSED_MARK = 'REFUSED\0';
const LIMITED_MARK = 'LIMITED\0';
const LIMIT_REASONS: readonly PeerLimitReason[] = [
  'memory-limit',
  'connection-limit',
  'uid-connection-limit',
];

/** The request id the notice pretends to answer: none. */
const VHOST_USER_NONE = 0;

function encode(payload: string): Uint8Array {
  const frame = new Uint8Array(VHOST_USER_HEADER_SIZE + payload.length);
  const view = viewOf(frame);
  view.setUint32(0, VHOST_USER_NONE, LITTLE_ENDIAN);
  view.setUint32(4, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, LITTLE_ENDIAN);
  view.setUint32(8, payload.length, LITTLE_ENDIAN);
  frame.set(Buffer.from(payload, 'latin1'), VHOST_USER_HEADER_SIZE);
  return frame;
}

/** The refusal on credentials, header included. @internal */
export const REFUSAL_NOTICE: Uint8Array = encode(REFUSED_MARK);

const LIMIT_NOTICES = new Map(
  LIMIT_REASONS.map((reason) => [reason, encode(LIMITED_MARK + reason)]),
);

/** The notice that the peer went over the limit `reason`, header included. @internal */
export function limitNotice(reason: PeerLimitReason): Uint8Array {
  return LIMIT_NOTICES.get(reason)!;
}

/** Every notice a vhost-user listener sends, for `FdServer.listenFramed`. @internal */
export const VHOST_USER_NOTICES: ListenerNotices = {
  refused: REFUSAL_NOTICE,
  limited: limitNotice,
};

/** Whether `frame` is {@link REFUSAL_NOTICE}. @internal */
export function isRefusalNotice(frame: Uint8Array): boolean {
  return Buffer.compare(frame, REFUSAL_NOTICE) === 0;
}

/**
 * The error a notice stands for, as the peer that receives `frame` reports it (`side` names
 * the listener: "back-end" or "front-end"); undefined when `frame` is no notice.
 * @internal
 */
export function noticeError(frame: Uint8Array, side: string): VringError | undefined {
  if (isRefusalNotice(frame)) {
    return new VringError(
      'ERR_VRING_PEER_REFUSED',
      `the ${side} refused this process's credentials (its uid or gid is not in the ${side}'s ` +
        'allow-list, see docs/operations.md#permissions-and-credentials)',
      { reason: 'refused-by-peer' },
    );
  }
  for (const [reason, notice] of LIMIT_NOTICES) {
    if (Buffer.compare(frame, notice) === 0) {
      return limitExceeded(
        reason,
        `the ${side} closed the connection: it is over the ${side}'s ${reason} ` +
          '(see docs/operations.md#limits-per-peer)',
      );
    }
  }
  return undefined;
}
