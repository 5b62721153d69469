// IPC framing without a ring: cutting a message into frames in a MessageBatch, packing small
// messages into shared frames, reading records, and reassembling.
import { MessageBatch } from '@vring/core';
import { bench, do_not_optimize, group } from 'mitata';
import { Fragmenter, OutgoingMessage } from '../../packages/ipc/src/wire/fragmenter.js';
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
    const body = Buffer.alloc(64, 7);
    bench('64 x 64 B bodies packed into shared frames', () => {
      batch.clear();
      for (let i = 0; i < 64; i++) fragmenter.write(batch, new OutgoingMessage(KIND, i, body));
      do_not_optimize(batch.count);
    });
  });

  const frameOf = (size: number): Buffer[] => {
    batch.clear();
    fragmenter.write(batch, new OutgoingMessage(KIND, 1, Buffer.alloc(size, 7)));
    return [...batch].map((f) => Buffer.from(f));
  };
  const small = frameOf(64);
  const large = frameOf(1024 * 1024);
  group('frames: decode', () => {
    let delivered = 0;
    const reassembler = new Reassembler(() => void delivered++);
    bench('Reassembler.push, 64 B message in one frame', () => {
      reassembler.push(small[0]!);
      do_not_optimize(delivered);
    });
    bench(`Reassembler.push, 1 MiB message in ${large.length} frames`, () => {
      for (const f of large) reassembler.push(f);
      do_not_optimize(delivered);
    });
  });
}
