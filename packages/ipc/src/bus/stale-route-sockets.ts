import { lstat, readdir, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';

/** How a client names the socket it listens on for direct routes. */
export const ROUTE_SOCKET_PREFIX = '.vring-route-';
const ROUTE_SOCKET = /^\.vring-route-(\d+)-\d+(?:-[0-9a-f]+)?$/;

/**
 * A socket younger than this is left alone: its client may be between bind and listen,
 * when a connection is refused as if nobody were there.
 */
const GRACE_MS = 10_000;

/** Directories already swept by this process. */
const swept = new Set<string>();

/**
 * Removes the route sockets in `dir` that clients killed by a signal left behind (a client
 * that closes removes its own). A socket goes only when its process is gone from this pid
 * namespace and a connection to it is refused: a client in another container that shares
 * the directory, whose pid means nothing here, still answers. Once per directory and
 * process, in the background; failures (a directory not ours to clean) are ignored.
 * @internal
 */
export async function removeStaleRouteSockets(dir: string): Promise<void> {
  if (swept.has(dir)) return;
  swept.add(dir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  const now = Date.now();
  for (const name of names) {
    const pid = ROUTE_SOCKET.exec(name)?.[1];
    if (pid === undefined || processExists(Number(pid))) continue;
    const path = join(dir, name);
    try {
      const stat = await lstat(path);
      if (!stat.isSocket() || now - stat.mtimeMs < GRACE_MS) continue;
      if (!(await nobodyListens(path))) continue;
      // Still the file that was judged: not one a new client made there meanwhile.
      const again = await lstat(path);
      if (again.ino === stat.ino && again.dev === stat.dev && again.mtimeMs === stat.mtimeMs) {
        await unlink(path);
      }
    } catch {
      // Gone meanwhile, or not ours to remove.
    }
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Whether a connection to the socket at `path` is refused (nobody listens on it). */
function nobodyListens(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(error.code === 'ECONNREFUSED');
    });
  });
}
