// The brokers the runner starts between a case's peers: each is ready to be connected to
// when startBroker resolves, and gone when stop resolves. NATS's test needs nats-server
// (apt-get install nats-server); without it, it says so and passes.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectBus } from '@vring/ipc';
import { connect } from 'nats';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { natsServerPath, startBroker } from '../transports/brokers.js';
import { busMaxFrame } from '../transports/bus-frames.js';

const dir = mkdtempSync(join(tmpdir(), 'vring-brokers-'));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('a standalone vring bus takes clients once started, with the frames of the case, and is gone once stopped', async () => {
  const size = 1024 * 1024;
  const broker = await startBroker(
    { kind: 'vring-bus', notification: 'event' },
    join(dir, 'bus.sock'),
    undefined,
    size,
  );
  try {
    assert.is(broker.address, join(dir, 'bus.sock'));
    // The frames a hosted bus of the same case is given: a 1 MiB value crosses whole.
    const argv = readFileSync(`/proc/${broker.pid}/cmdline`, 'utf8').split('\0');
    assert.is(argv[argv.indexOf('--max-frame') + 1], String(busMaxFrame(size)));
    const client = await connectBus(broker.address, { notification: 'event' });
    await client.publish('t', 'hello');
    client.close();
  } finally {
    await broker.stop();
  }
  assert.not.ok(alive(broker.pid), 'the bus process is gone');
});

test('nats-server listens on loopback once started, and is gone once stopped', async () => {
  if (!natsServerPath()) {
    console.log('  nats-server not installed (apt-get install nats-server): skipped');
    return;
  }
  const broker = await startBroker(
    { kind: 'nats-server' },
    join(dir, 'unused.sock'),
    undefined,
    64,
  );
  try {
    assert.match(broker.address, /^nats:\/\/127\.0\.0\.1:\d+$/);
    const nc = await connect({ servers: broker.address, reconnect: false });
    const sub = nc.subscribe('t', { max: 1 });
    nc.publish('t', new TextEncoder().encode('hello'));
    for await (const msg of sub) assert.is(msg.string(), 'hello');
    await nc.close();
  } finally {
    await broker.stop();
  }
  assert.not.ok(alive(broker.pid), 'nats-server is gone');
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
