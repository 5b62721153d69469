// `pnpm bench:micro`: the hot path one layer at a time (ring, framing, codec) with mitata,
// so a regression can be placed in its layer without the whole suite. One process, no
// pinning; compare runs on the same machine only.
import { run } from 'mitata';
import { codecBenchmarks } from './codec.js';
import { frameBenchmarks } from './frames.js';
import { ringBenchmarks } from './ring.js';

const closeRing = ringBenchmarks();
frameBenchmarks();
codecBenchmarks();
await run({ filter: new RegExp(process.argv[2] ?? '.') });
closeRing();
