// The use model across a container boundary, without Docker: the bus runs here (root, on the
// host), the app runs in its own PID, mount, network, IPC and UTS namespaces as nobody
// (unshare + setpriv from util-linux), with fresh /tmp, /run and /dev/shm, so all it shares
// with the host is the bus socket bind-mounted at /run/vring/bus.sock. Across that boundary
// it serves and calls RPCs, publishes and subscribes. Where root or the namespaces are not
// available the file registers no test and says why.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  OTHER_UID,
  otherUserUnavailable,
  spawnChild,
  traversableTempDir,
} from '../../../test-support/index.js';
import { createBus } from '../src/index.js';

const CONTAINER_SOCKET = '/run/vring/bus.sock';
const HOSTNAME = 'vring-container';

// Runs as root inside the new namespaces, then drops to nobody for the app itself. The
// host's socket is bind-mounted before /tmp (where it lives) is covered by a fresh tmpfs.
const ENTER = [
  'set -e',
  `hostname ${HOSTNAME}`,
  'mount -t tmpfs -o mode=0755 tmpfs /run',
  'mkdir /run/vring',
  `touch ${CONTAINER_SOCKET}`,
  `mount --bind "$1" ${CONTAINER_SOCKET}`,
  'mount -t tmpfs -o mode=1777 tmpfs /tmp',
  'mount -t tmpfs -o mode=1777 tmpfs /dev/shm',
  'shift',
  `exec setpriv --reuid=${OTHER_UID} --regid=${OTHER_UID} --clear-groups --no-new-privs "$@"`,
].join('\n');

const NAMESPACES = ['--pid', '--fork', '--kill-child', '--mount', '--net', '--ipc', '--uts'];

function namespacesUnavailable(): string | undefined {
  const other = otherUserUnavailable();
  if (other) return other;
  const probe = spawnSync('unshare', [...NAMESPACES, '--mount-proc', 'true'], {
    encoding: 'utf8',
  });
  if (probe.error) return `unshare (util-linux) cannot run: ${probe.error.message}`;
  if (probe.status !== 0) return `unshare cannot create the namespaces: ${probe.stderr.trim()}`;
  return undefined;
}

const unavailable = namespacesUnavailable();
if (unavailable) {
  console.log(`bus.container: skipped: ${unavailable}`);
} else {
  test('an app in its own namespaces as nobody, sharing only the socket: RPC both ways, publish and subscribe', async () => {
    const hostSocket = join(traversableTempDir(), 'bus.sock');
    const bus = createBus(hostSocket, { socketMode: 0o666, allowUids: [OTHER_UID] });
    const host = await bus.connect();
    host.serve('host.echo', (request: { from: string }) => ({ ...request, by: 'host' }));
    const hello = host.subscribe<{ pid: number }>('container.hello');
    await host.flush();
    const app = spawnChild(
      'unshare',
      [
        ...NAMESPACES,
        '--mount-proc',
        'sh',
        '-c',
        ENTER,
        'enter',
        hostSocket,
        process.execPath,
        ...process.execArgv,
        new URL('./fixtures/container-app.ts', import.meta.url).pathname,
        CONTAINER_SOCKET,
        hostSocket,
      ],
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
