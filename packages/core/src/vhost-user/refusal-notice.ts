/**
 * The one message a vhost-user listener of ours sends to a peer it refuses on its
 * credentials, right before closing the connection: so a refused front-end can report
 * `ERR_VRING_PEER_REFUSED` instead of a bare disconnect, which looks like a crash.
 *
 * It is shaped as a reply to request 0 (`VHOST_USER_NONE`, which no side ever sends), with an
 * 8-byte payload `REFUSED\0`. A front-end that does not know it (DPDK) reads a reply to the
 * wrong request and gives up on the connection, which is the right outcome too.
 *
 * @packageDocumentation
 */
import {
  LITTLE_ENDIAN,
  VHOST_USER_FLAG_REPLY,
  VHOST_USER_HEADER_SIZE,
  VHOST_USER_VERSION,
  viewOf,
} from './message-layout.js';

const MARK = 'REFUSED\0';

/** The request id the notice pretends to answer: none. */
const VHOST_USER_NONE = 0;

function encode(): Uint8Array {
  const frame = new Uint8Array(VHOST_USER_HEADER_SIZE + MARK.length);
  const view = viewOf(frame);
  view.setUint32(0, VHOST_USER_NONE, LITTLE_ENDIAN);
  view.setUint32(4, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, LITTLE_ENDIAN);
  view.setUint32(8, MARK.length, LITTLE_ENDIAN);
  frame.set(Buffer.from(MARK, 'latin1'), VHOST_USER_HEADER_SIZE);
  return frame;
}

/** The whole frame, header included. @internal */
export const REFUSAL_NOTICE: Uint8Array = encode();

/** Whether `frame` is {@link REFUSAL_NOTICE}. @internal */
export function isRefusalNotice(frame: Uint8Array): boolean {
  return Buffer.compare(frame, REFUSAL_NOTICE) === 0;
}
