// Codec-only loops: msgpackr on the standard value with no transport at all. No transport
// can beat these: they are the ceilings, in one process, on one core.
import { Packr, Unpackr } from 'msgpackr';
import { CpuMeter, perBurst, report } from './measure.js';
import { packerOptions, payload } from './payload.js';
import type { PeerArgs, Transport } from './transport.js';

async function loop(args: PeerArgs, unpack: boolean): Promise<void> {
  const packr = new Packr(packerOptions);
  const unpackr = new Unpackr(packerOptions);
  const value = payload(args.size);
  let sink = 0;
  const count = perBurst(args.size, 64);
  const burst = () => {
    for (let i = 0; i < count; i++) {
      const packed = packr.pack(value);
      sink += unpack ? (unpackr.unpack(packed) as { id: number }).id : packed.length;
    }
  };
  const spin = (seconds: number) => {
    let messages = 0;
    const until = performance.now() + seconds * 1000;
    while (performance.now() < until) {
      burst();
      messages += count;
    }
    return messages;
  };
  spin(args.warmupSeconds);
  const cpu = new CpuMeter();
  const started = performance.now();
  const messages = spin(args.seconds);
  const seconds = (performance.now() - started) / 1000;
  cpu.report(unpack ? 'pack+unpack' : 'pack');
  report({ messages, bytes: messages * args.size, seconds, sink: sink > 0 ? 1 : 0 });
}

function codec(name: string, label: string, unpack: boolean): Transport {
  return {
    name,
    label,
    payload: 'msgpack',
    layout: { processes: 'single', cores: '0' },
    scenarios: ['oneway'],
    run: (args) => loop(args, unpack),
  };
}

export const packOnly = codec('codec-pack', 'msgpackr pack only (ceiling)', false);
export const packUnpack = codec('codec-roundtrip', 'msgpackr pack + unpack (ceiling)', true);
