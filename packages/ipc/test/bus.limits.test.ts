// What one client may cost a bus, with clients in their own processes: a client whose rings'
// memory is over the bus's maxPeerMemory learns so (ERR_VRING_LIMIT_EXCEEDED, reason
// memory-limit) and is counted in stats.limited, and none of the others notices.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, spawnScript } from '../../../test-support/index.js';
import { createBus } from '../src/index.js';

interface ClientResult {
  ok: boolean;
  code?: string;
  reason?: string;
  reply?: { uid: number; servedBy: number };
}

/** Runs the client fixture (connect, one RPC, one publish) against `path` with `options`. */
async function client(path: string, options: object): Promise<ClientResult> {
  const child = spawnScript(
    new URL('./fixtures/bus-access-client.ts', import.meta.url),
    [path, JSON.stringify(options)],
    { killAfterMs: 30_000 },
  );
  const result = JSON.parse(await child.line()) as ClientResult;
  assert.is(await child.exited, 0, `the client exited cleanly:\n${child.output()}`);
  return result;
}

test('a client over maxPeerMemory is told and counted; the host and a smaller client carry on', async () => {
  const path = socketPath('bus-limits');
  const errors: string[] = [];
  // 4096 descriptors of 2 KiB per ring come to about 16 MiB of memory; 256 to about 1 MiB.
  const bus = createBus(path, {
    maxPeerMemory: 4 * 1024 * 1024,
    onError: (error) => errors.push(`${error.code} ${error.reason}`),
  });
  const host = await bus.connect();
  host.serve('access.echo', (request: { uid: number }) => ({ ...request, servedBy: 0 }));
  await host.flush();
  try {
    const big = await client(path, { queueSize: 4096 });
    assert.equal(
      [big.ok, big.code, big.reason],
      [false, 'ERR_VRING_LIMIT_EXCEEDED', 'memory-limit'],
    );
    assert.is(bus.stats.limited, 1);
    assert.equal(
      errors,
      ['ERR_VRING_LIMIT_EXCEEDED memory-limit'],
      'reported once, with the limit',
    );

    const small = await client(path, { queueSize: 256 });
    assert.equal(small, { ok: true, reply: { uid: process.getuid!(), servedBy: 0 } });
    assert.is(bus.stats.limited, 1);
    assert.is(bus.stats.refused, 0);
    assert.equal(await host.request('access.echo', { uid: 7 }), { uid: 7, servedBy: 0 });
  } finally {
    await bus[Symbol.asyncDispose]();
  }
});

test.run();
