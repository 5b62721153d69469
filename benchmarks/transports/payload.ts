// The standard msgpack message of every msgpack transport: one definition, so they all move
// exactly the same bytes.
import { Packr } from 'msgpackr';

/** The value a msgpack transport sends: a record with a binary body, like a sensor sample. */
export interface Payload {
  /** 1_000_000 (a uint32, 5 bytes packed) in every data message; negative in a marker. */
  id: number;
  /**
   * Sender's clock (ms), a float64 as a real message would carry; a fan-out publisher
   * stamps the messages whose latency is measured with their publish time (`monotonicMs()`,
   * also a float64).
   */
  ts: number;
  data: Buffer;
}

/** Plain msgpack, as @vring/ipc and any peer in another language reads it. */
export const packerOptions = { useRecords: false } as const;

const packr = new Packr(packerOptions);

/**
 * A payload whose msgpack encoding is exactly `size` bytes (size >= 32), so a "64 B"
 * msgpack message is 64 bytes on the wire like a 64 B raw Buffer, and MB/s compare. The
 * record overhead (map, keys, id, ts, bin header) is 28 to 32 bytes; `data` takes the rest.
 */
export function payload(size: number): Payload {
  const id = 1_000_000;
  const ts = 1_700_000_000_000.5;
  let dataBytes = Math.max(0, size - 28);
  for (;;) {
    const packed = packr.pack({ id, ts, data: Buffer.alloc(dataBytes) }).length;
    if (packed <= size || dataBytes === 0) break;
    dataBytes -= packed - size;
  }
  return { id, ts, data: Buffer.alloc(Math.max(0, dataBytes), 0xab) };
}

/**
 * Marker values: the sender's last message, the end of its warm-up, and (fan-out) a point
 * every receiver acknowledges.
 */
export const END = -1;
export const WARM = -2;
export const SYNC = -3;

export function marker(id: typeof END | typeof WARM | typeof SYNC): Payload {
  return { id, ts: 0, data: Buffer.alloc(0) };
}
