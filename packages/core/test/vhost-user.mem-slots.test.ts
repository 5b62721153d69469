// More than 8 memory regions (vhost-user CONFIGURE_MEM_SLOTS) on our back-end: a front-end
// that negotiated it asks how many slots there are (GET_MAX_MEM_SLOTS), adds regions one by
// one (ADD_MEM_REG, one fd each) and removes them (REM_MEM_REG); frames keep flowing while
// the table changes under running rings. Overlaps, a region the back-end does not have, more
// regions than slots, and the request without the feature are refused (a NACK with
// NEED_REPLY, the connection staying). Our VirtioUser uses it with the `memorySlots` option.
// DPDK 22.11 speaks it in neither net role, so it is tested with our own front-end.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath } from '../../../test-support/index.js';
import { SharedRegion } from '../src/shared-region.js';
import {
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VIRTIO_F_VERSION_1,
} from '../src/vhost-user/features.js';
import { type MemoryRegion, VhostUserRequest as R } from '../src/vhost-user/message-layout.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { echoBackend, frame, roundTrip } from './fixtures/echo-backend.js';
import {
  createDriver,
  dpdkHandshake,
  RawVhostUserClient,
} from './fixtures/vhost-user-raw-client.js';
import { openFdCount } from './fixtures/vring-assert.js';

/** Slots our back-end announces. */
const SLOTS = 32n;
const PAGE = 4096n;

/** `count` one-page memfds, each its own region far from the driver's memory. */
function extraRegions(
  count: number,
  from = 0,
): { regions: MemoryRegion[]; memfds: SharedRegion[] } {
  const memfds = Array.from({ length: count }, () => SharedRegion.create(Number(PAGE)));
  const regions = memfds.map((m, i) => {
    const at = 0x7000_0000_0000n + BigInt(from + i) * 0x10_0000n;
    return { guestPhysAddr: at, memorySize: PAGE, userspaceAddr: at, mmapOffset: 0n, fd: m.fd };
  });
  return { regions, memfds };
}

async function negotiate(client: RawVhostUserClient, memorySlots = true): Promise<void> {
  await client.request(R.SET_OWNER, undefined);
  await client.request(R.GET_FEATURES, undefined);
  const offered = (await client.request(R.GET_PROTOCOL_FEATURES, undefined)) as bigint;
  assert.is.not(offered & VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, 0n, 'offered');
  const wanted =
    VHOST_USER_PROTOCOL_F_REPLY_ACK |
    (memorySlots ? VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS : 0n);
  await client.request(R.SET_PROTOCOL_FEATURES, offered & wanted);
  await client.request(R.SET_FEATURES, VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES);
}

test('12 regions added one by one, then 5 removed, while frames keep echoing', async () => {
  const h = echoBackend(socketPath('inf17-slots'));
  const client = new RawVhostUserClient(h.path);
  const driver = createDriver();
  const extra = extraRegions(11);
  try {
    await client.request(R.SET_OWNER, undefined);
    assert.is(
      await client
        .request(R.SET_PROTOCOL_FEATURES, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)
        .then(() => client.request(R.GET_MAX_MEM_SLOTS, undefined)),
      SLOTS,
    );
    // The driver's own memory goes in with ADD_MEM_REG too (dpdkHandshake), then 11 more.
    await dpdkHandshake(client, driver, {
      replay: true,
      extraProtocol: VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
      memorySlots: true,
    });
    await roundTrip(driver, 20);
    for (const region of extra.regions) {
      assert.is(await client.request(R.ADD_MEM_REG, region, true), 0n, 'ADD_MEM_REG acked');
    }
    await roundTrip(driver, 20, 20);
    for (const region of extra.regions.slice(0, 5)) {
      assert.is(
        await client.request(R.REM_MEM_REG, { ...region, fd: undefined }, true),
        0n,
        'REM_MEM_REG acked',
      );
    }
    await roundTrip(driver, 20, 40);
    assert.is(h.errors.length, 0, h.errors.map((e) => e.error.message).join('; '));
    assert.ok(h.ports[0]!.live);
  } finally {
    client.close();
    driver.close();
    for (const m of extra.memfds) m.close();
    h.backend.close();
  }
});

test('overlaps, unknown regions, a full table and the missing feature are NACKed; the connection stays', async () => {
  const h = echoBackend(socketPath('inf17-slots'));
  const client = new RawVhostUserClient(h.path);
  const extra = extraRegions(Number(SLOTS) + 1);
  const first = extra.regions[0]!;
  try {
    await negotiate(client);
    assert.is(await client.request(R.ADD_MEM_REG, first, true), 0n);
    const nacked = async (what: string, request: () => Promise<unknown>) => {
      assert.is(await request(), 1n, `${what}: NACKed`);
      assert.is(typeof (await client.request(R.GET_FEATURES, undefined)), 'bigint', what);
    };
    await nacked('the same guest range again', () =>
      client.request(R.ADD_MEM_REG, { ...first, userspaceAddr: 0x6000_0000_0000n }, true),
    );
    await nacked('an overlapping userspace range', () =>
      client.request(
        R.ADD_MEM_REG,
        { ...first, guestPhysAddr: 0x5000_0000_0000n, userspaceAddr: first.userspaceAddr + 8n },
        true,
      ),
    );
    await nacked('removing a region never added', () =>
      client.request(R.REM_MEM_REG, { ...extra.regions[1]!, fd: undefined }, true),
    );
    await nacked('removing with the right address but another size', () =>
      client.request(R.REM_MEM_REG, { ...first, memorySize: 2n * PAGE, fd: undefined }, true),
    );
    // Fill every slot, then one more.
    for (const region of extra.regions.slice(1, Number(SLOTS))) {
      assert.is(await client.request(R.ADD_MEM_REG, region, true), 0n);
    }
    await nacked('a region beyond the last slot', () =>
      client.request(R.ADD_MEM_REG, extra.regions[Number(SLOTS)]!, true),
    );
    // An fd that comes with REM_MEM_REG (as older QEMU sends it) is closed either way.
    const stray = SharedRegion.create(Number(PAGE));
    const strayFd = stray.fd;
    try {
      const fds = openFdCount();
      await nacked('removing a region never added, with an fd', () =>
        client.request(R.REM_MEM_REG, { ...extra.regions[Number(SLOTS)]!, fd: strayFd }, true),
      );
      assert.is(openFdCount(), fds, 'the back-end closed the fd of the refused request');
      // A removed slot can be used again.
      assert.is(await client.request(R.REM_MEM_REG, { ...first, fd: strayFd }, true), 0n);
      assert.is(openFdCount(), fds - 1, 'the fd that came along and the region are closed');
    } finally {
      stray.close();
    }
    assert.is(await client.request(R.ADD_MEM_REG, extra.regions[Number(SLOTS)]!, true), 0n);
    assert.is(h.errors.length, 0);
  } finally {
    client.close();
    for (const m of extra.memfds) m.close();
    h.backend.close();
  }
});

test('GET_MAX_MEM_SLOTS and ADD_MEM_REG without CONFIGURE_MEM_SLOTS are refused', async () => {
  const h = echoBackend(socketPath('inf17-slots'));
  const extra = extraRegions(1);
  try {
    const client = new RawVhostUserClient(h.path);
    try {
      await negotiate(client, false);
      assert.is(await client.request(R.ADD_MEM_REG, extra.regions[0]!, true), 1n, 'NACKed');
      // GET_MAX_MEM_SLOTS is answered with a body, so its refusal ends the connection.
      await client.request(R.GET_MAX_MEM_SLOTS, undefined).catch(() => undefined);
      await client.socket.closed;
      assert.is(h.errors.at(-1)?.error.reason, 'not-negotiated');
    } finally {
      client.close();
    }
  } finally {
    for (const m of extra.memfds) m.close();
    h.backend.close();
  }
});

test('our VirtioUser with memorySlots hands its memory over with ADD_MEM_REG, and frames echo', async () => {
  const h = echoBackend(socketPath('inf17-slots'));
  const user = await VirtioUser.open(h.path, { memorySlots: true });
  try {
    assert.is.not(user.protocolFeatures & VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, 0n);
    const sent = Array.from({ length: 50 }, (_, i) => frame(i, 60 + i * 20));
    const sending = user.send(sent);
    let got = 0;
    while (got < sent.length) {
      for (const f of await user.receive()) {
        assert.ok(f.equals(sent[got]!), `frame ${got} came back intact`);
        got++;
      }
    }
    await sending;
    assert.is(h.ports[0]!.stats.regionsAdded, 1, 'its one region came with ADD_MEM_REG');
    assert.is(h.errors.length, 0);
  } finally {
    user.close();
    h.backend.close();
  }
});

test.run();
