import { VringError } from '@vring/core';

/**
 * The header every vring IPC frame starts with: an Ethernet header (so any vhost-user switch
 * can carry the frame) followed by the vring header. Specified in docs/wire-format.md; all
 * multi-byte fields are little-endian.
 */

/** IEEE 802 "local experimental" EtherType: frames of ours, never mistaken for IP. */
export const ETHERTYPE_VRING = 0x88b5;
export const ETHERNET_HEADER_BYTES = 14;
export const VRING_HEADER_BYTES = 16;
/** Bytes before a fragment's body chunk. */
export const FRAME_HEADER_BYTES = ETHERNET_HEADER_BYTES + VRING_HEADER_BYTES;
/** Version of this layout; a receiver rejects any other. */
export const WIRE_VERSION = 1;

/** First fragment of a message (its offset is 0). */
export const FLAG_FIRST = 1;
/** Last fragment of a message (it ends at the total length). */
export const FLAG_LAST = 2;
const KNOWN_FLAGS = FLAG_FIRST | FLAG_LAST;

/** The vring header fields of one frame. */
export interface FrameHeader {
  /** What the message is (defined by the layer above: publish, request, reply, ...), 1..255. */
  kind: number;
  /** FLAG_FIRST / FLAG_LAST. */
  flags: number;
  /** Sender-chosen id of the message in flight; fragments of one message share it. */
  stream: number;
  /** Length of the whole message body, in bytes. */
  totalLength: number;
  /** Where this fragment's chunk starts in the body. */
  offset: number;
}

/** A frame header read off the wire, with the chunk it carries. */
export interface ReceivedFrame extends FrameHeader {
  /** The body chunk: a view of the frame. */
  chunk: Uint8Array;
}

/** Locally administered, unicast: never collides with a real NIC's address. */
export const DEFAULT_MAC = Buffer.from([0x02, 0x76, 0x72, 0x69, 0x6e, 0x67]);

function u32le(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16)) + bytes[at + 3]! * 0x1000000;
}

function protocolError(reason: string, message: string): VringError {
  return new VringError('ERR_VRING_PROTOCOL', `invalid vring frame: ${message}`, { reason });
}

/**
 * Writes the Ethernet and vring headers at the start of `frame` (which must hold at least
 * {@link FRAME_HEADER_BYTES}).
 */
export function writeFrameHeader(
  frame: Buffer,
  header: FrameHeader,
  destination: Uint8Array = DEFAULT_MAC,
  source: Uint8Array = DEFAULT_MAC,
): void {
  frame.set(destination, 0);
  frame.set(source, 6);
  frame.writeUInt16BE(ETHERTYPE_VRING, 12); // network byte order, as in any Ethernet header
  frame[14] = WIRE_VERSION;
  frame[15] = header.kind;
  frame.writeUInt16LE(header.flags, 16);
  frame.writeUInt32LE(header.stream, 18);
  frame.writeUInt32LE(header.totalLength, 22);
  frame.writeUInt32LE(header.offset, 26);
}

/**
 * Reads and checks a frame's headers: everything about the frame that can be checked
 * without knowing the stream it belongs to.
 * @throws VringError `ERR_VRING_PROTOCOL` with a `reason` naming the failed check.
 */
export function readFrameHeader(frame: Uint8Array): ReceivedFrame {
  if (frame.byteLength < FRAME_HEADER_BYTES) {
    throw protocolError(
      'frame-too-short',
      `${frame.byteLength} bytes cannot hold the ${FRAME_HEADER_BYTES}-byte header`,
    );
  }
  // Field by field from the bytes: no DataView per frame on the receive path.
  const ethertype = (frame[12]! << 8) | frame[13]!;
  if (ethertype !== ETHERTYPE_VRING) {
    throw protocolError('not-vring-ethertype', `EtherType 0x${ethertype.toString(16)}`);
  }
  const version = frame[14]!;
  if (version !== WIRE_VERSION) {
    throw protocolError(
      'unsupported-version',
      `wire version ${version} (this peer speaks ${WIRE_VERSION})`,
    );
  }
  const kind = frame[15]!;
  if (kind === 0) throw protocolError('bad-kind', 'kind 0 is reserved');
  const flags = frame[16]! | (frame[17]! << 8);
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw protocolError('reserved-flags', `flags 0x${flags.toString(16)} set reserved bits`);
  }
  const stream = u32le(frame, 18);
  const totalLength = u32le(frame, 22);
  const offset = u32le(frame, 26);
  const chunk = frame.subarray(FRAME_HEADER_BYTES);
  if (offset + chunk.byteLength > totalLength) {
    throw protocolError(
      'fragment-out-of-bounds',
      `chunk of ${chunk.byteLength} bytes at ${offset} overruns the ${totalLength}-byte message`,
    );
  }
  if ((flags & FLAG_FIRST) !== 0 && offset !== 0) {
    throw protocolError('first-fragment-offset', `first fragment starts at ${offset}, not 0`);
  }
  if ((flags & FLAG_LAST) !== 0 && offset + chunk.byteLength !== totalLength) {
    throw protocolError(
      'last-fragment-short',
      `last fragment ends at ${offset + chunk.byteLength} of ${totalLength} bytes`,
    );
  }
  if (chunk.byteLength === 0 && totalLength !== 0) {
    throw protocolError('empty-fragment', 'a fragment of a non-empty message carries no bytes');
  }
  return { kind, flags, stream, totalLength, offset, chunk };
}
