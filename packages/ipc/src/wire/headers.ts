import { VringError } from '@vring/core';

/**
 * Message headers: string names to string values that travel beside a message's value on
 * PUBLISH/DELIVER, REQUEST and REPLY (docs/wire-format.md, "Headers"). On the wire they are
 * the optional last element of the message's array, so a message without them is the same
 * bytes as before headers existed, and costs nothing to send or read.
 */

/** String headers of a message: names to values. */
export type MessageHeaders = Readonly<Record<string, string>>;

/** Most entries one message's headers may have. */
export const MAX_HEADER_COUNT = 64;

/** Most bytes a header name may have, in UTF-8. */
export const MAX_HEADER_NAME_BYTES = 256;

/** Most bytes one message's headers may take, encoded (names, values and their msgpack framing). */
export const MAX_HEADERS_BYTES = 16 * 1024;

function invalid(message: string): VringError {
  return new VringError('ERR_VRING_INVALID_ARGUMENT', `invalid headers: ${message}`, {
    reason: 'bad-headers',
  });
}

/**
 * Checks headers a caller passes to send: a plain object of at most {@link MAX_HEADER_COUNT}
 * string values with non-empty names, within the byte bounds. Returns whether there is any
 * header to send (an empty object sends none).
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT` (reason `bad-headers`).
 */
export function checkHeaders(headers: unknown): boolean {
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) {
    throw invalid('expected an object of strings');
  }
  let count = 0;
  // A msgpack map header, then a string header (up to 5 bytes) per name and value.
  let bytes = 5;
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    const value = (headers as Record<string, unknown>)[name];
    if (typeof value !== 'string') throw invalid(`the value of ${name} is not a string`);
    const nameBytes = Buffer.byteLength(name);
    if (nameBytes === 0 || nameBytes > MAX_HEADER_NAME_BYTES) {
      throw invalid(`a name must have 1 to ${MAX_HEADER_NAME_BYTES} bytes`);
    }
    if (++count > MAX_HEADER_COUNT) throw invalid(`more than ${MAX_HEADER_COUNT} headers`);
    bytes += 10 + nameBytes + Buffer.byteLength(value);
    if (bytes > MAX_HEADERS_BYTES) throw invalid(`more than ${MAX_HEADERS_BYTES} bytes`);
  }
  return count > 0;
}

/**
 * The headers of a received message, as msgpack decoded them, or a protocol error: a peer
 * (the bus checked them already) that sends anything else is broken.
 * @throws VringError `ERR_VRING_PROTOCOL` (reason `bad-headers`).
 */
export function receivedHeaders(decoded: unknown): MessageHeaders {
  if (decoded === null || typeof decoded !== 'object' || Array.isArray(decoded)) {
    throw new VringError('ERR_VRING_PROTOCOL', 'malformed headers: not a map', {
      reason: 'bad-headers',
    });
  }
  for (const name in decoded) {
    if (typeof (decoded as Record<string, unknown>)[name] !== 'string') {
      throw new VringError('ERR_VRING_PROTOCOL', 'malformed headers: a value is not a string', {
        reason: 'bad-headers',
      });
    }
  }
  return decoded as MessageHeaders;
}
