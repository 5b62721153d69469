// The two bus members of the packaging smoke test, shared by member.mjs (ESM import of the
// installed @vring/ipc) and member.cjs (CommonJS require of it): each passes in the module
// it loaded, so the same assertions run against both builds.
//   subscriber: subscribes to smoke.numbers, serves smoke.add and smoke.fail, prints what it
//               received as one `RECEIVED <json>` line once every published message is in.
//   publisher:  calls smoke.add until the subscriber serves it (so its subscription, sent
//               before, is in place at the bus), checks a remote error, then publishes.
const assert = require('node:assert/strict');

/** What the publisher sends; the subscriber must print exactly this. */
const MESSAGES = [
  { seq: 1, text: 'plain' },
  { seq: 2, text: 'ünïcödé ✓', nested: { list: [1, 2, 3], flag: true, none: null } },
  { seq: 3, text: 'large', big: 2 ** 40, fill: 'x'.repeat(20_000) },
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function subscriber(ipc, socket) {
  const client = await ipc.connectBus(socket);
  // Subscribed before serving: once smoke.add is routable, the subscription is in place.
  const numbers = client.subscribe('smoke.numbers');
  client.serve('smoke.add', ([a, b]) => a + b);
  client.serve('smoke.fail', () => {
    throw Object.assign(new Error('refused on purpose'), { code: 'E_SMOKE', data: { id: 7 } });
  });
  const received = [];
  for await (const { topic, value } of numbers) {
    received.push({ topic, value });
    if (received.length === MESSAGES.length) break;
  }
  console.log(`RECEIVED ${JSON.stringify(received)}`);
  await client.drain();
}

async function publisher(ipc, socket) {
  const client = await ipc.connectBus(socket);
  let sum;
  for (let attempt = 0; sum === undefined; attempt++) {
    try {
      sum = await client.request('smoke.add', [2, 3], { timeout: 5_000 });
    } catch (error) {
      if (error?.code !== 'ERR_VRING_NO_RESPONDERS' || attempt > 1_000) throw error;
      await sleep(10);
    }
  }
  assert.equal(sum, 5);
  const failure = await client.request('smoke.fail', null).then(
    () => assert.fail('smoke.fail resolved'),
    (error) => error,
  );
  assert.ok(failure instanceof ipc.VringError, `remote error is a VringError: ${failure}`);
  assert.equal(failure.code, 'E_SMOKE');
  assert.deepEqual(failure.data, { id: 7 });
  for (const value of MESSAGES) await client.publish('smoke.numbers', value);
  console.log(`RPC sum ${sum}, remote error ${failure.code}`);
  await client.drain();
}

/** Runs `role` with the @vring/ipc module the caller loaded; exits non-zero on any failure. */
function run(ipc, [role, socket]) {
  const roles = { subscriber, publisher };
  if (!roles[role] || !socket) throw new Error(`usage: member subscriber|publisher SOCKET`);
  roles[role](ipc, socket).then(
    () => process.exit(0),
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}

module.exports = { MESSAGES, run };
