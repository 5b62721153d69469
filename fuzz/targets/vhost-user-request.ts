/**
 * The vhost-user decoder on what a front-end sends our back-end (requests) and what a back-end
 * sends our front-end (replies). A request it accepts must be exactly what our own encoder
 * makes of the decoded message, byte for byte: a field the decoder misread, or a check it
 * skipped that the encoder applies, shows up as a difference. Fds are stand-in numbers: the
 * parser only counts them (decodeRequest, which closes them on rejection, is not called).
 *
 * Input: [0] bits 0-3 fds that came with the message (0..15), bit 4 RING_PACKED negotiated,
 * bit 5 decode as the reply to the request id in the frame instead, bits 6-7 maxVrings
 * (1, 2, 256 or 3); then the frame, header and payload.
 */
import { VringError } from '@vring/core';
import { decodeReply, parseRequest } from '../../packages/core/src/vhost-user/message-decoder.js';
import { encodeRequest } from '../../packages/core/src/vhost-user/message-encoder.js';
import {
  isSupported,
  VhostUserRequest,
} from '../../packages/core/src/vhost-user/message-layout.js';
import { expect, type FuzzTarget } from '../engine/target.js';

const MAX_VRINGS = [1, 2, 256, 3];
const STAND_IN_FDS = Array.from({ length: 16 }, (_, i) => 1_000_000 + i);

function isRejection(error: unknown): boolean {
  return error instanceof VringError && error.code === 'ERR_VRING_PROTOCOL';
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

export const target: FuzzTarget = {
  covers: ['/packages/core/src/vhost-user/message-'],
  maxLength: 1024,
  dictionary: [
    ...Object.values(VhostUserRequest).map(u32),
    u32(0x1),
    u32(0x5),
    u32(0x9),
    u32(8),
    u32(40),
    u32(0x100),
    Uint8Array.from([0, 0, 0, 0x80, 0, 0, 0, 0]),
    Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
  ],
  run(data) {
    if (data.byteLength === 0) return;
    const control = data[0]!;
    const fds = STAND_IN_FDS.slice(0, control & 15);
    const options = { ringPacked: (control & 16) !== 0, maxVrings: MAX_VRINGS[control >> 6]! };
    const frame = data.subarray(1);
    if (control & 32) {
      const request =
        frame.byteLength >= 4 ? new DataView(frame.buffer, frame.byteOffset).getUint32(0, true) : 0;
      if (!isSupported(request)) return;
      try {
        decodeReply(frame, [], request, options);
      } catch (error) {
        if (!isRejection(error)) throw error;
      }
      return;
    }
    let message: ReturnType<typeof parseRequest>;
    try {
      message = parseRequest(frame, fds, options);
    } catch (error) {
      if (isRejection(error)) return;
      throw error;
    }
    expect(message.fds.length === fds.length, 'an accepted request lost or gained fds');
    // The only bytes a receiver may ignore: the padding of SET_MEM_TABLE after the region
    // count, and the u64 of padding before ADD_MEM_REG's and REM_MEM_REG's region (the spec
    // leaves them undefined, as do DPDK and QEMU, so they are not checked).
    const expected = Buffer.from(frame);
    if (message.request === VhostUserRequest.SET_MEM_TABLE) expected.fill(0, 16, 20);
    if (
      message.request === VhostUserRequest.ADD_MEM_REG ||
      message.request === VhostUserRequest.REM_MEM_REG
    ) {
      expected.fill(0, 12, 20);
    }
    const encoded = encodeRequest(message.request, message.payload, {
      ...options,
      needReply: message.needReply,
    });
    expect(
      expected.equals(encoded.frame),
      `request ${message.request} accepted, but it re-encodes as ${encoded.frame.toString('hex')}` +
        ` not ${expected.toString('hex')}`,
    );
    expect(
      encoded.fds.length === fds.length && encoded.fds.every((fd, i) => fd === fds[i]),
      'the decoded payload does not place the fds where they came',
    );
  },
};
