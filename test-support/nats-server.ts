// nats-server processes for tests and benchmarks: where the binary is, a free loopback port,
// and a server (or a cluster of them) started on loopback ports and stopped by its owner.
// Nothing here knows about vring.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { delimiter, join } from 'node:path';

const executable = (file: string) => {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/**
 * The `nats-server` binary: $VRING_BENCH_NATS_SERVER if set (a server built or downloaded
 * elsewhere), else on PATH or where Debian's package puts it (/usr/sbin, not on every
 * user's PATH).
 */
export function natsServerPath(): string | undefined {
  const chosen = process.env.VRING_BENCH_NATS_SERVER;
  if (chosen) return executable(chosen) ? chosen : undefined;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin'];
  return dirs
    .filter(Boolean)
    .map((dir) => join(dir, 'nats-server'))
    .find(executable);
}

export const NATS_SERVER_MISSING = 'nats-server not installed (apt-get install nats-server)';

/** A loopback port nobody listens on now (the kernel's pick). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** Whether a NATS server answers on `port` with its INFO line. */
export async function natsAnswers(port: number): Promise<boolean> {
  const socket = createConnection(port, '127.0.0.1');
  try {
    const answered = new Promise<boolean>((resolve) => {
      socket.once('data', (chunk: Buffer) => resolve(chunk.toString().startsWith('INFO ')));
      socket.once('error', () => resolve(false));
      socket.once('close', () => resolve(false));
    });
    return await answered;
  } finally {
    socket.destroy();
  }
}

/** A nats-server started by {@link startNatsServer}. */
export interface NatsServer {
  /** `nats://127.0.0.1:PORT`, where clients connect. */
  url: string;
  process: ChildProcess;
  /** Kills it outright (SIGKILL), as a crash would, and waits for it to be gone. */
  kill(): Promise<void>;
}

/** Where a cluster's servers listen for routes: one port per server, chosen beforehand. */
export interface ClusterPorts {
  /** This server's route port. */
  own: number;
  /** Every server's route port (this one's included; a server skips its own). */
  all: number[];
}

/**
 * Starts `nats-server` on loopback ports (a member of a cluster when `cluster` is given) and
 * resolves once it answers clients. Throws with {@link NATS_SERVER_MISSING} when there is
 * no binary, or with its last line on stderr when it does not come up within 10 s.
 */
export async function startNatsServer(cluster?: ClusterPorts): Promise<NatsServer> {
  const binary = natsServerPath();
  if (!binary) throw new Error(NATS_SERVER_MISSING);
  const port = await freePort();
  const args = ['-a', '127.0.0.1', '-p', String(port)];
  if (cluster) {
    const routes = cluster.all
      .filter((p) => p !== cluster.own)
      .map((p) => `nats://127.0.0.1:${p}`)
      .join(',');
    args.push(
      '--cluster_name',
      'vring-test',
      '--cluster',
      `nats://127.0.0.1:${cluster.own}`,
      '--routes',
      routes,
    );
  }
  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let lastLine = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    const lines = s.split('\n').filter((l) => l.trim() !== '');
    if (lines.length > 0) lastLine = lines.at(-1)!.trim();
  });
  const exited = once(child, 'exit');
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  const deadline = Date.now() + 10_000;
  while (!(await natsAnswers(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await kill();
      throw new Error(`nats-server did not start: ${lastLine}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { url: `nats://127.0.0.1:${port}`, process: child, kill };
}

/** Starts `size` nats-servers routed to each other as one cluster. */
export async function startNatsCluster(size: number): Promise<NatsServer[]> {
  const all: number[] = [];
  for (let i = 0; i < size; i++) all.push(await freePort());
  const servers: NatsServer[] = [];
  try {
    for (const own of all) servers.push(await startNatsServer({ own, all }));
  } catch (error) {
    await Promise.all(servers.map((s) => s.kill()));
    throw error;
  }
  return servers;
}
