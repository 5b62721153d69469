// msgpackr on the standard payload (transports/payload.ts): the codec cost every msgpack
// transport of the suite pays on each side.
import { bench, do_not_optimize, group } from 'mitata';
import { Packr, Unpackr } from 'msgpackr';
import { packerOptions, payload } from '../transports/payload.js';

export function codecBenchmarks(): void {
  const packr = new Packr(packerOptions);
  const unpackr = new Unpackr(packerOptions);
  group('msgpackr: the standard payload', () => {
    for (const size of [64, 1024, 64 * 1024]) {
      const value = payload(size);
      const packed = Buffer.from(packr.pack(value));
      bench(`pack ${size} B`, () => do_not_optimize(packr.pack(value)));
      bench(`unpack ${size} B`, () => do_not_optimize(unpackr.unpack(packed)));
    }
  });
}
