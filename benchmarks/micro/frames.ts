// IPC framing without a ring: cutting a message into frames in a MessageBatch, reading a
// frame header, and reassembling.
import { MessageBatch } from '@vring/core';
import { bench, do_not_optimize, group } from 'mitata';
import { Fragmenter, OutgoingMessage } from '../../packages/ipc/src/wire/fragmenter.js';
import { readFrameHeader } from '../../packages/ipc/src/wire/frame-header.js';
import { Reassembler } from '../../packages/ipc/src/wire/reassembler.js';

const KIND = 1;

export function frameBenchmarks(): void {
  const fragmenter = new Fragmenter({ maxFrame: 64 * 1024 });
  const batch = new MessageBatch({ bytes: 2 * 1024 * 1024, messages: 1024 });
  group('frames: Fragmenter.write into a batch', () => {
    for (const size of [64, 1024, 1024 * 1024]) {
      const body = Buffer.alloc(size, 7);
      bench(`${size} B body`, () => {
        batch.clear();
        do_not_optimize(fragmenter.write(batch, new OutgoingMessage(KIND, 1, body)));
      });
    }
  });

  const frameOf = (size: number): Buffer[] => {
    batch.clear();
    fragmenter.write(batch, new OutgoingMessage(KIND, 1, Buffer.alloc(size, 7)));
    return [...batch].map((f) => Buffer.from(f));
  };
  const small = frameOf(64);
  const large = frameOf(1024 * 1024);
  group('frames: decode', () => {
    bench('readFrameHeader', () => do_not_optimize(readFrameHeader(small[0]!)));
    const reassembler = new Reassembler();
    bench('Reassembler.push, 64 B message in one frame', () =>
      do_not_optimize(reassembler.push(small[0]!)),
    );
    bench(`Reassembler.push, 1 MiB message in ${large.length} frames`, () => {
      let message: unknown;
      for (const f of large) message = reassembler.push(f);
      do_not_optimize(message);
    });
  });
}
