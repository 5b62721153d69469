/**
 * IPC frames from a peer through the reassembler, the code every Link runs on what it
 * receives: Ethernet header, records (packed whole messages and fragments of large ones),
 * reassembly across frames, and the limits on what a peer can make us hold. It must hand
 * over only bodies that lie inside what it was given (or a buffer of its own of exactly the
 * declared size), keep within its limits, and reject everything else with a typed error.
 * After the first error the harness stops, as a Link closes the connection.
 *
 * Input: [0] limits: bits 0-1 maxStreams (1, 2, 4, 8), bits 2-4 maxMessage (64 << n bytes),
 * bit 5 maxPendingBytes = maxMessage instead of twice it; then frames, each a u16 (LE) length
 * and that many bytes. Each frame is pushed from inside a larger buffer (a ring batch holds
 * many), starting at (length % 5) with a poison byte before and after it.
 */
import { VringError } from '@vring/core';
import { FRAME_HEADER_BYTES } from '../../packages/ipc/src/wire/frame-header.js';
import { Reassembler } from '../../packages/ipc/src/wire/reassembler.js';
import { expect, type FuzzTarget } from '../engine/target.js';

function isRejection(error: unknown): boolean {
  return (
    error instanceof VringError &&
    (error.code === 'ERR_VRING_PROTOCOL' || error.code === 'ERR_VRING_OVERSIZED_MESSAGE')
  );
}

function frameHeader(kind: number, flags: number, stream: number, total: number, offset: number) {
  const b = Buffer.alloc(FRAME_HEADER_BYTES);
  b.writeUInt16BE(0x88b5, 12);
  b[14] = 2;
  b[15] = kind;
  b.writeUInt16LE(flags, 16);
  b.writeUInt32LE(stream, 18);
  b.writeUInt32LE(total, 22);
  b.writeUInt32LE(offset, 26);
  return new Uint8Array(b);
}

export const target: FuzzTarget = {
  covers: ['/packages/ipc/src/wire/reassembler.', '/packages/ipc/src/wire/frame-header.'],
  maxLength: 8192,
  dictionary: [
    frameHeader(5, 3, 1, 4, 0),
    frameHeader(9, 1, 2, 200, 0),
    frameHeader(9, 0, 2, 200, 100),
    frameHeader(9, 2, 2, 200, 150),
    frameHeader(1, 7, 0, 2, 0).subarray(14),
    Uint8Array.from([0x88, 0xb5, 0x02]),
  ],
  run(data) {
    if (data.byteLength === 0) return;
    const limits = data[0]!;
    const maxStreams = 1 << (limits & 3);
    const maxMessage = 64 << ((limits >> 2) & 7);
    const maxPendingBytes = limits & 32 ? maxMessage : 2 * maxMessage;
    let pushed: Uint8Array = new Uint8Array(0);
    let frameStart = 0;
    let frameEnd = 0;
    const reassembler = new Reassembler(
      (kind, body, start, end, owned) => {
        expect(kind >= 1 && kind <= 255, `message of kind ${kind}`);
        expect(end - start <= maxMessage, 'a message over maxMessage was delivered');
        expect(
          0 <= start && start <= end && end <= body.byteLength,
          'body range outside its buffer',
        );
        if (owned) {
          expect(body !== pushed && start === 0, 'an owned body is not a buffer of its own');
        } else {
          expect(body === pushed, 'a body not owned lies in another buffer than the frame');
          expect(frameStart <= start && end <= frameEnd, 'a body runs outside its frame');
        }
      },
      { maxStreams, maxMessage, maxPendingBytes },
    );
    for (let at = 1; at + 2 <= data.byteLength; ) {
      const length = Math.min(data[at]! | (data[at + 1]! << 8), data.byteLength - at - 2);
      at += 2;
      const pad = length % 5;
      pushed = new Uint8Array(length + 2 * pad + 2).fill(0xee);
      pushed.set(data.subarray(at, at + length), pad + 1);
      frameStart = pad + 1;
      frameEnd = frameStart + length;
      at += length;
      try {
        reassembler.push(pushed, frameStart, frameEnd);
      } catch (error) {
        if (isRejection(error)) return;
        throw error;
      }
      expect(reassembler.pendingMessages <= maxStreams, 'more streams in flight than allowed');
      expect(reassembler.pendingBytes <= maxPendingBytes, 'more bytes reserved than allowed');
      expect(
        reassembler.pendingMessages > 0 || reassembler.pendingBytes === 0,
        'bytes reserved with no message in flight',
      );
    }
  },
};
