/**
 * The Ethernet frames `vring ping` sends and checks: valid Ethernet (destination and source
 * MAC, EtherType 0x88B5, IEEE local experimental) so any switch carries them, with a
 * sequence number and a content check so a reply can be matched to its request and proven
 * intact byte for byte.
 *
 * Layout (little-endian after the Ethernet header):
 * ```
 *  0  6  destination MAC (02:76:72:69:6e:67, locally administered)
 *  6  6  source MAC      (02:76:72:00:00:01)
 * 12  2  EtherType 0x88B5 (big-endian, as on the wire)
 * 14  4  magic "VRPG" (a counted frame) or "VRPW" (a warm-up probe, see ping-session.ts)
 * 18  4  sequence number
 * 22  4  frame length in bytes
 * 26  4  FNV-1a of the pattern bytes 30..end
 * 30  …  pattern: byte i = (seq * 31 + i * 7) & 0xff
 * ```
 *
 * @packageDocumentation
 */

/** EtherType of vring frames (IEEE 802 local experimental 1). @internal */
export const PING_ETHERTYPE = 0x88b5;
/** Smallest frame: an Ethernet minimum frame without FCS. @internal */
export const PING_MIN_FRAME = 60;
/** Largest frame: a standard Ethernet frame without FCS (1500-byte MTU). @internal */
export const PING_MAX_FRAME = 1514;

const DESTINATION = Buffer.from([0x02, 0x76, 0x72, 0x69, 0x6e, 0x67]);
const SOURCE = Buffer.from([0x02, 0x76, 0x72, 0x00, 0x00, 0x01]);
const MAGIC = 0x47505256; // "VRPG" read as a little-endian u32
const WARMUP_MAGIC = 0x57505256; // "VRPW"
const PATTERN_START = 30;

function patternByte(seq: number, i: number): number {
  return (seq * 31 + i * 7) & 0xff;
}

function fnv1a(bytes: Uint8Array, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    hash ^= bytes[i]!;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * Writes ping frame `seq` of `size` bytes into `out` (at least `size` bytes) and returns the
 * written view.
 * @internal
 */
export function writePingFrame(out: Buffer, seq: number, size: number, warmUp = false): Buffer {
  const frame = out.subarray(0, size);
  DESTINATION.copy(frame, 0);
  SOURCE.copy(frame, 6);
  frame.writeUInt16BE(PING_ETHERTYPE, 12);
  frame.writeUInt32LE(warmUp ? WARMUP_MAGIC : MAGIC, 14);
  frame.writeUInt32LE(seq >>> 0, 18);
  frame.writeUInt32LE(size, 22);
  for (let i = PATTERN_START; i < size; i++) frame[i] = patternByte(seq, i);
  frame.writeUInt32LE(fnv1a(frame, PATTERN_START, size), 26);
  return frame;
}

/** What {@link checkPingFrame} found. @internal */
export type PingFrameCheck =
  | { kind: 'intact'; seq: number }
  | { kind: 'corrupted'; seq: number | undefined; why: string }
  | { kind: 'warm-up' }
  | { kind: 'foreign' };

/**
 * Checks a received frame: its EtherType says whether it is ours at all (`foreign` frames
 * are someone else's traffic), then every field and every pattern byte. The sequence number
 * of a corrupted frame is reported only when the header around it is intact.
 * @internal
 */
export function checkPingFrame(frame: Uint8Array): PingFrameCheck {
  if (frame.byteLength < 14) return { kind: 'foreign' };
  const view = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (view.readUInt16BE(12) !== PING_ETHERTYPE) return { kind: 'foreign' };
  if (view.byteLength < PATTERN_START) {
    return { kind: 'corrupted', seq: undefined, why: `${view.byteLength}-byte frame` };
  }
  if (view.readUInt32LE(14) === WARMUP_MAGIC) return { kind: 'warm-up' };
  if (view.readUInt32LE(14) !== MAGIC) return { kind: 'corrupted', seq: undefined, why: 'magic' };
  const seq = view.readUInt32LE(18);
  if (!view.subarray(0, 6).equals(DESTINATION) || !view.subarray(6, 12).equals(SOURCE)) {
    return { kind: 'corrupted', seq, why: 'MAC addresses' };
  }
  const size = view.readUInt32LE(22);
  if (size !== view.byteLength) {
    return { kind: 'corrupted', seq, why: `length ${view.byteLength}, sent ${size}` };
  }
  if (view.readUInt32LE(26) !== fnv1a(view, PATTERN_START, size)) {
    return { kind: 'corrupted', seq, why: 'checksum' };
  }
  for (let i = PATTERN_START; i < size; i++) {
    if (view[i] !== patternByte(seq, i)) return { kind: 'corrupted', seq, why: `byte ${i}` };
  }
  return { kind: 'intact', seq };
}
