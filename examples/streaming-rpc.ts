// Streaming RPC: a handler answers with many values.
//
// The server serves `ticks`, whose handler returns an RxJS Observable (an endless interval),
// and `primes`, whose handler is an async generator. The client reads `primes` to the end,
// and takes four ticks then unsubscribes: the server sees the cancel through the handler's
// `context.signal`, and the interval stops.
//
//   pnpm example:streaming          # or: node --import tsx examples/streaming-rpc.ts
import { fileURLToPath } from 'node:url';
import { connectBus, type VringError } from '@vring/ipc';
import { finalize, interval, lastValueFrom, map, take, tap, toArray } from 'rxjs';
import { runServerAndClient, sleep } from './support/processes.js';

interface Tick {
  tick: number;
  at: string;
}

async function* primes(count: number, signal: AbortSignal): AsyncGenerator<number> {
  let found = 0;
  for (let n = 2; found < count && !signal.aborted; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) if (n % d === 0) prime = false;
    if (!prime) continue;
    found++;
    yield n;
    await sleep(10); // as if each took some work
  }
}

async function server(socket: string): Promise<void> {
  const client = await connectBus(socket);
  client.serve<{ everyMs: number }, Tick>('ticks', ({ everyMs }, { signal }) => {
    let sent = 0;
    signal.addEventListener('abort', () =>
      console.log(
        `ticks: cancelled by the client after ${sent} (${(signal.reason as VringError).code})`,
      ),
    );
    return interval(everyMs).pipe(
      map((tick) => ({ tick, at: new Date().toISOString().slice(11, 23) })),
      tap(() => sent++),
      finalize(() => console.log('ticks: interval stopped')),
    );
  });
  client.serve<number, number>('primes', (count, { signal }) => {
    console.log(`primes: streaming the first ${count}`);
    return primes(count, signal);
  });
  console.log('serving ticks (Observable) and primes (async generator)');
  process.once('SIGTERM', () => void client.drain());
}

async function caller(socket: string): Promise<void> {
  const client = await connectBus(socket);
  for (;;) {
    // The server starts alongside us: wait until the bus knows it serves primes.
    try {
      const all = await lastValueFrom(client.requestStream<number>('primes', 10).pipe(toArray()));
      console.log(`primes: got ${all.length}: ${all.join(' ')}`);
      break;
    } catch (error) {
      if ((error as VringError).code !== 'ERR_VRING_NO_RESPONDERS') throw error;
      await sleep(20);
    }
  }
  // take(4) unsubscribes after the fourth value; the unsubscribe cancels the request.
  await lastValueFrom(
    client.requestStream<Tick>('ticks', { everyMs: 100 }).pipe(
      take(4),
      tap(({ tick, at }) => console.log(`ticks: #${tick} at ${at}`)),
    ),
  );
  console.log('ticks: took 4, unsubscribed');
  // Give the server's log line about the cancel time to show before the demo ends.
  await sleep(100);
  await client.drain();
}

const [role, socket] = process.argv.slice(2);
if (role === 'server') await server(socket!);
else if (role === 'client') await caller(socket!);
else await runServerAndClient('streaming', fileURLToPath(import.meta.url), () => '');
