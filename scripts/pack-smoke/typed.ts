// Compiled by `tsc --strict` against the installed packages' declarations (ESM side): every
// line leans on a declared type, so missing or wrong declarations fail the smoke test.
import type { DriverQueuePair, SharedRegion, VringErrorCode } from '@vring/core';
import { coreCommands } from '@vring/core/cli';
import {
  type Bus,
  type BusClient,
  type BusMessage,
  connectBus,
  createBus,
  type Subscription,
  VringError,
} from '@vring/ipc';

interface Tick {
  symbol: string;
  price: number;
}

export async function roundTrip(path: string): Promise<number> {
  const bus: Bus = createBus(path, { notification: 'event' });
  const client: BusClient = await connectBus(path);
  const ticks: Subscription<Tick> = client.subscribe<Tick>('prices.>', { policy: 'block' });
  client.serve<[number, number], number>('add', ([a, b]) => a + b);
  await client.publish('prices.AAPL', { symbol: 'AAPL', price: 1 } satisfies Tick);
  const first: IteratorResult<BusMessage<Tick>, undefined> = await ticks.next();
  const price: number = first.done ? 0 : first.value.value.price;
  const sum: number = await client.request<number>('add', [1, 2], { timeout: 1_000 });
  await client.drain();
  await bus[Symbol.asyncDispose]();
  return price + sum + coreCommands.length;
}

// A remote handler's own code travels too, so `code` is wider than VringErrorCode.
export function codeOf(error: unknown): VringErrorCode | (string & {}) | undefined {
  return error instanceof VringError ? error.code : undefined;
}

export type Handles = [typeof DriverQueuePair, typeof SharedRegion];
