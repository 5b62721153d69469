import { VringError } from '@vring/core';

/**
 * The headers of a vring IPC frame: an Ethernet header (so any vhost-user switch can carry
 * the frame) followed by one or more records, each a vring header and a body chunk.
 * Specified in docs/wire-format.md; all multi-byte vring fields are little-endian.
 */

/** IEEE 802 "local experimental" EtherType: frames of ours, never mistaken for IP. */
export const ETHERTYPE_VRING = 0x88b5;
export const ETHERNET_HEADER_BYTES = 14;
/** The vring header of one record (a message or a fragment of one). */
export const RECORD_HEADER_BYTES = 16;
/** Bytes before the first record's body chunk. */
export const FRAME_HEADER_BYTES = ETHERNET_HEADER_BYTES + RECORD_HEADER_BYTES;
/** Version of this layout; a receiver rejects any other. Version 2 packs records (FLAG_MORE). */
export const WIRE_VERSION = 2;

/** First fragment of a message (its offset is 0). */
export const FLAG_FIRST = 1;
/** Last fragment of a message (it ends at the total length). */
export const FLAG_LAST = 2;
/**
 * Another record follows this one in the same frame. Only a whole message (FIRST and LAST)
 * carries it, and its chunk is then exactly `totalLength` bytes: small messages share a
 * frame, and with it the per-packet cost of the ring.
 */
export const FLAG_MORE = 4;
const KNOWN_FLAGS = FLAG_FIRST | FLAG_LAST | FLAG_MORE;

/** The vring header fields of one record. */
export interface FrameHeader {
  /** What the message is (defined by the layer above: publish, request, reply, ...), 1..255. */
  kind: number;
  /** FLAG_FIRST / FLAG_LAST / FLAG_MORE. */
  flags: number;
  /** Sender-chosen id of the message in flight; fragments of one message share it. */
  stream: number;
  /** Length of the whole message body, in bytes. */
  totalLength: number;
  /** Where this fragment's chunk starts in the body. */
  offset: number;
}

/**
 * One record read off the wire: its header fields and where its chunk lies in the buffer
 * the frame was read from. The reader fills one instance again and again: no object per
 * record on the receive path.
 */
export class ReceivedRecord implements FrameHeader {
  kind = 0;
  flags = 0;
  stream = 0;
  totalLength = 0;
  offset = 0;
  /** Where the chunk starts in the buffer. */
  chunkStart = 0;
  /** Where the chunk ends (exclusive); the next record of the frame starts here. */
  chunkEnd = 0;
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
 * Writes the Ethernet header and the header of a frame's first record at the start of
 * `frame` (which must hold at least {@link FRAME_HEADER_BYTES}).
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
 * Whether the frame `data[start, end)` begins with a whole message (FIRST and LAST) of
 * `kind`: read from the first record's header without checking the rest of the frame, for a
 * receiver looking for where a session starts among frames it will otherwise drop.
 */
export function startsWithWholeMessage(
  data: Uint8Array,
  start: number,
  end: number,
  kind: number,
): boolean {
  const record = start + ETHERNET_HEADER_BYTES;
  return (
    end - start >= FRAME_HEADER_BYTES &&
    data[record + 1] === kind &&
    (data[record + 2]! & (FLAG_FIRST | FLAG_LAST)) === (FLAG_FIRST | FLAG_LAST)
  );
}

/**
 * Checks a frame's Ethernet header; returns where its first record starts.
 * @throws VringError `ERR_VRING_PROTOCOL` (`frame-too-short`, `not-vring-ethertype`).
 */
export function readEthernetHeader(data: Uint8Array, start: number, end: number): number {
  if (end - start < FRAME_HEADER_BYTES) {
    throw protocolError(
      'frame-too-short',
      `${end - start} bytes cannot hold the ${FRAME_HEADER_BYTES}-byte header`,
    );
  }
  const ethertype = (data[start + 12]! << 8) | data[start + 13]!;
  if (ethertype !== ETHERTYPE_VRING) {
    throw protocolError('not-vring-ethertype', `EtherType 0x${ethertype.toString(16)}`);
  }
  return start + ETHERNET_HEADER_BYTES;
}

/**
 * Reads and checks the record at `at` of a frame that ends at `end`, into `out`: everything
 * about it that can be checked without knowing the stream it belongs to. A record with
 * FLAG_MORE ends after `totalLength` chunk bytes; any other runs to the end of the frame.
 * @throws VringError `ERR_VRING_PROTOCOL` with a `reason` naming the failed check.
 */
export function readRecord(data: Uint8Array, at: number, end: number, out: ReceivedRecord): void {
  if (end - at < RECORD_HEADER_BYTES) {
    throw protocolError('record-too-short', `${end - at} bytes cannot hold a record header`);
  }
  // Field by field from the bytes: no DataView or object per record on the receive path.
  const version = data[at]!;
  if (version !== WIRE_VERSION) {
    throw protocolError(
      'unsupported-version',
      `wire version ${version} (this peer speaks ${WIRE_VERSION})`,
    );
  }
  const kind = data[at + 1]!;
  if (kind === 0) throw protocolError('bad-kind', 'kind 0 is reserved');
  const flags = data[at + 2]! | (data[at + 3]! << 8);
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw protocolError('reserved-flags', `flags 0x${flags.toString(16)} set reserved bits`);
  }
  const totalLength = u32le(data, at + 8);
  const offset = u32le(data, at + 12);
  const chunkStart = at + RECORD_HEADER_BYTES;
  let chunkEnd = end;
  if ((flags & FLAG_MORE) !== 0) {
    if ((flags & (FLAG_FIRST | FLAG_LAST)) !== (FLAG_FIRST | FLAG_LAST)) {
      throw protocolError('packed-fragment', 'only a whole message can share its frame');
    }
    // The next record needs at least its header after this chunk.
    if (totalLength + RECORD_HEADER_BYTES > end - chunkStart) {
      throw protocolError('packed-record-overruns', 'a packed record runs past its frame');
    }
    chunkEnd = chunkStart + totalLength;
  }
  const length = chunkEnd - chunkStart;
  if (offset + length > totalLength) {
    throw protocolError(
      'fragment-out-of-bounds',
      `chunk of ${length} bytes at ${offset} overruns the ${totalLength}-byte message`,
    );
  }
  if ((flags & FLAG_FIRST) !== 0 && offset !== 0) {
    throw protocolError('first-fragment-offset', `first fragment starts at ${offset}, not 0`);
  }
  if ((flags & FLAG_LAST) !== 0 && offset + length !== totalLength) {
    throw protocolError(
      'last-fragment-short',
      `last fragment ends at ${offset + length} of ${totalLength} bytes`,
    );
  }
  if (length === 0 && totalLength !== 0) {
    throw protocolError('empty-fragment', 'a fragment of a non-empty message carries no bytes');
  }
  out.kind = kind;
  out.flags = flags;
  out.stream = u32le(data, at + 4);
  out.totalLength = totalLength;
  out.offset = offset;
  out.chunkStart = chunkStart;
  out.chunkEnd = chunkEnd;
}
