// child_process IPC: a parent forks its peer and they talk with `send()` / 'message', the
// built-in channel every Node user has. Values go as objects: the "msgpack" cost of this
// transport is Node's own serializer (`json`: JSON.stringify, a Buffer becomes an array of
// numbers; `advanced`: the V8 structured-clone serializer), which is what its users pay.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Payload } from './payload.js';
import { type PeerArgs, START_ON_STDIN, type Transport, toArgv } from './transport.js';
import { type Endpoint, runValueScenario, sendWindow } from './value-scenarios.js';

type Serialization = 'json' | 'advanced';

interface IpcTarget {
  readonly connected: boolean;
  send(message: unknown, callback?: (error: Error | null) => void): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  disconnect(): void;
}

function endpoint(target: IpcTarget, peerGone: Promise<unknown>, size: number): Endpoint {
  // `send` never blocks: every window-th message, wait until the channel has written it.
  const window = sendWindow(size, 64);
  let sent = 0;
  return {
    send(value) {
      if (++sent % window !== 0) {
        target.send(value);
        return undefined;
      }
      return new Promise<void>((resolve, reject) =>
        target.send(value, (error) => (error ? reject(error) : resolve())),
      );
    },
    onMessage(handler) {
      target.on('message', (message) => handler(message as Payload));
    },
    peerGone,
    close: () => {
      if (target.connected) target.disconnect();
    },
  };
}

async function parent(args: PeerArgs, serialization: Serialization): Promise<void> {
  const peer = fileURLToPath(new URL('./peer.ts', import.meta.url));
  const node = [
    process.execPath,
    ...process.execArgv,
    peer,
    ...toArgv({ ...args, role: 'connect', index: 1 }),
  ];
  // The parent runs on core 1 (the runner pins it); its child takes core 0, like a pair.
  const argv = args.pinned ? ['taskset', '-c', '0', ...node] : node;
  const env = { ...process.env };
  delete env[START_ON_STDIN];
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization,
    env,
  });
  const exited = once(child, 'exit');
  await runValueScenario(endpoint(child, once(child, 'disconnect'), args.size), args);
  await exited;
}

async function run(args: PeerArgs, serialization: Serialization): Promise<void> {
  if (args.role === 'listen') return parent(args, serialization);
  if (!process.send) throw new Error('child_process transport: started without an IPC channel');
  const gone = once(process, 'disconnect');
  await runValueScenario(endpoint(process as unknown as IpcTarget, gone, args.size), args);
}

export function childProcess(serialization: Serialization): Transport {
  return {
    name: `ipc-${serialization}`,
    label: `child_process IPC, ${serialization}`,
    payload: 'msgpack',
    layout: { processes: 'single', cores: '1' },
    scenarios: ['oneway', 'pingpong', 'idle'],
    run: (args) => run(args, serialization),
  };
}
