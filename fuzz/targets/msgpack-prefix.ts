/**
 * The msgpack prefix reader as the bus uses it on a client's PUBLISH, REQUEST and REPLY bodies:
 * read the routing fields, vouch for the value that follows (skipValue) and that nothing
 * trails it, or the headers that follow it (skipHeaders). Whatever the reader accepts is
 * forwarded to other clients, who decode it with the message codec: so an accepted body must
 * decode there, to an array of the length the reader saw, holding the very fields the bus
 * routed on, and headers the clients accept.
 *
 * Input: [0] which body (0 PUBLISH, 1 REQUEST, 2 REPLY, 3 a bare value at depth limit 4),
 * then the body.
 */
import { VringError } from '@vring/core';
import { MessageCodec } from '../../packages/ipc/src/message-codec.js';
import {
  MAX_HEADER_COUNT,
  MAX_HEADER_NAME_BYTES,
  MAX_HEADERS_BYTES,
  receivedHeaders,
} from '../../packages/ipc/src/wire/headers.js';
import { MAX_NAME_BYTES, MAX_VALUE_DEPTH } from '../../packages/ipc/src/wire/message-kinds.js';
import { MsgpackPrefixReader } from '../../packages/ipc/src/wire/msgpack-prefix.js';
import { expect, type FuzzTarget } from '../engine/target.js';

const codec = new MessageCodec();

/** The fields a body of each shape starts with, as the bus reads them. */
const SHAPES: readonly (readonly ('string' | 'uint')[])[] = [
  ['string'],
  ['uint', 'string'],
  ['uint', 'uint'],
];

/** The routing fields read ([] for a bare value), or undefined where the bus refuses the body. */
function readBody(shape: number, body: Uint8Array): unknown[] | undefined {
  const reader = new MsgpackPrefixReader(body);
  if (shape === 3) {
    reader.skipValue(4);
    reader.end();
    return [];
  }
  const fields = SHAPES[shape]!;
  const length = reader.arrayLength();
  // The value, and headers after it when there is one more element.
  if (length !== fields.length + 1 && length !== fields.length + 2) return undefined;
  const read = fields.map((f) => (f === 'string' ? reader.string(MAX_NAME_BYTES) : reader.uint()));
  reader.skipValue(MAX_VALUE_DEPTH);
  if (length === fields.length + 2) {
    reader.skipHeaders(MAX_HEADER_COUNT, MAX_HEADER_NAME_BYTES, MAX_HEADERS_BYTES);
  }
  reader.end();
  return read;
}

export const target: FuzzTarget = {
  covers: ['/packages/ipc/src/wire/msgpack-prefix.'],
  maxLength: 4096,
  dictionary: [
    [0x92],
    [0x93],
    [0xdc, 0x00, 0x02],
    [0xdd, 0x00, 0x00, 0x00, 0x03],
    [0xa5, 0x74, 0x6f, 0x70, 0x69, 0x63],
    [0xd9, 0x04],
    [0xce, 0xff, 0xff, 0xff, 0xff],
    [0xd4, 0x00, 0x00],
    [0xd6, 0xff, 0, 0, 0, 0],
    [0xc7, 0x0c, 0xff],
    [0xde, 0x00, 0x01],
    [0x81, 0xa1, 0x6b, 0xa1, 0x76],
    [0xc4, 0x02],
    [0xcb],
    [0xc0],
  ].map((t) => Uint8Array.from(t)),
  run(data) {
    if (data.byteLength === 0) return;
    const shape = data[0]! % 4;
    const body = data.subarray(1);
    let fields: unknown[] | undefined;
    try {
      fields = readBody(shape, body);
    } catch (error) {
      if (error instanceof VringError && error.code === 'ERR_VRING_PROTOCOL') return;
      throw error;
    }
    if (!fields) return;
    // Accepted: a receiver must be able to decode what the bus would forward.
    const value = codec.decode(body);
    if (shape === 3) return;
    expect(Array.isArray(value), 'an accepted body does not decode to an array');
    const decoded = value as unknown[];
    const withHeaders = decoded.length === fields.length + 2;
    expect(
      decoded.length === fields.length + 1 || withHeaders,
      'the decoded array has another length',
    );
    // A receiver refuses headers that are not a map of strings: it would close the link.
    if (withHeaders) receivedHeaders(decoded.at(-1));
    fields.forEach((f, i) => {
      expect(decoded[i] === f, `field ${i} decodes as ${String(decoded[i])}, the bus read ${f}`);
    });
  },
};
