// The use model across a container boundary, without Docker: the bus runs here (root, on the
// host), the app runs in its own PID, mount, network, IPC and UTS namespaces as nobody
// (unshare + setpriv from util-linux), with fresh /tmp, /run and /dev/shm, so all it shares
// with the host is the bus socket bind-mounted at /run/vring/bus.sock. Across that boundary
// it serves and calls RPCs, publishes and subscribes. Where root or the namespaces are not
// available the file registers no test and says why.
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CONTAINER_HOSTNAME,
  containerUnavailable,
  OTHER_UID,
  scriptCommand,
  spawnInContainer,
  traversableTempDir,
} from '../../../test-support/index.js';
import { createBus } from '../src/index.js';

const CONTAINER_SOCKET = '/run/vring/bus.sock';
const HOSTNAME = CONTAINER_HOSTNAME;

const unavailable = containerUnavailable();
if (unavailable) {
  console.log(`bus.container: skipped: ${unavailable}`);
  // The runner fails a file without tests: this one states why nothing else ran.
  test(`SKIP: ${unavailable}`, () => {
    assert.type(unavailable, 'string');
  });
} else {
  test('an app in its own namespaces as nobody, sharing only the socket: RPC both ways, publish and subscribe', async () => {
    const hostSocket = join(traversableTempDir(), 'bus.sock');
    const bus = createBus(hostSocket, { socketMode: 0o666, allowUids: [OTHER_UID] });
    const host = await bus.connect();
    host.serve('host.echo', (request: { from: string }) => ({ ...request, by: 'host' }));
    const hello = host.subscribe<{ pid: number }>('container.hello');
    await host.flush();
    const app = spawnInContainer(
      hostSocket,
      CONTAINER_SOCKET,
      scriptCommand(new URL('./fixtures/container-app.ts', import.meta.url), [
        CONTAINER_SOCKET,
        hostSocket,
      ]),
      { name: 'container-app', killAfterMs: 60_000 },
    );
    try {
      const { view } = JSON.parse(await app.line());
      assert.is(view.uid, OTHER_UID, 'the app runs as nobody');
      assert.is(view.pid, 1, 'the app is pid 1 of its own PID namespace');
      assert.is(view.hostname, HOSTNAME, 'it has its own UTS namespace');
      assert.equal(view.interfaces, [], 'its network namespace has no configured interface');
      assert.equal(view.shm, [], 'its /dev/shm is its own, and empty');
      assert.equal(view.tmp, [], "the host's /tmp is not visible");
      assert.equal(view.run, ['bus.sock'], 'only the bus socket is mounted in');
      assert.is(view.hostSocketVisible, false);

      assert.equal(JSON.parse(await app.line()), { ready: true });
      assert.equal(await host.request('container.whoami', null), {
        uid: OTHER_UID,
        hostname: HOSTNAME,
      });
      assert.equal(JSON.parse(await app.line()), {
        echoed: { from: HOSTNAME, by: 'host' },
      });
      const greeting = await hello[Symbol.asyncIterator]().next();
      assert.is(greeting.value?.value.pid, 1);
      await host.publish('host.news', 'hello from the host');
      assert.equal(JSON.parse(await app.line()), { news: 'hello from the host' });
      assert.is(await app.exited, 0, app.output());
      assert.is(bus.stats.refused, 0);
    } finally {
      app.kill();
      await bus[Symbol.asyncDispose]();
    }
  });
}

test.run();
