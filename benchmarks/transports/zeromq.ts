// ZeroMQ (the `zeromq` npm package, v6, libzmq underneath) over `ipc://` (a Unix socket):
// PUSH/PULL for one-way (plus a PUSH/PULL back for the end handshake), REQ/REP for the
// ping-pong and idle runs, each message the packed standard value in one frame.
import { execFileSync } from 'node:child_process';
import { Packr, Unpackr } from 'msgpackr';
import type * as Zmq from 'zeromq';
import { reportReady } from './measure.js';
import { type Payload, packerOptions } from './payload.js';
import type { PeerArgs, Transport } from './transport.js';
import { type Endpoint, runValueScenario } from './value-scenarios.js';

type Socket = Zmq.Push | Zmq.Pull | Zmq.Request | Zmq.Reply;

function endpoint(out: Socket, inbound: Socket): Endpoint {
  const packr = new Packr(packerOptions);
  const unpackr = new Unpackr(packerOptions);
  return {
    // v6 allows one send in flight per socket; awaiting it is its backpressure (the HWM).
    send: (value) => (out as Zmq.Push).send(packr.pack(value)),
    onMessage(handler) {
      void (async () => {
        try {
          for await (const [message] of inbound as Zmq.Pull) {
            await handler(unpackr.unpack(message!) as Payload);
          }
        } catch {
          // Closed under the loop at the end of the run.
        }
      })();
    },
    // ZeroMQ hides connections: after the end handshake, give the last reply time to leave.
    peerGone: new Promise((resolve) => setTimeout(resolve, 100)),
    close: () => {
      out.close();
      if (inbound !== out) inbound.close();
    },
  };
}

async function open(args: PeerArgs): Promise<Endpoint> {
  const zmq = await import('zeromq');
  const listen = args.role === 'listen';
  const url = (suffix: string) => `ipc://${args.path}${suffix}`;
  // Linger 0: the handshake has already delivered everything, so exit must never block.
  const options = { linger: 0 };
  let out: Socket;
  let inbound: Socket;
  if (args.scenario === 'oneway') {
    out = new zmq.Push(options);
    inbound = new zmq.Pull(options);
    if (listen) {
      await inbound.bind(url('.data'));
      await out.bind(url('.back'));
    } else {
      out.connect(url('.data'));
      inbound.connect(url('.back'));
    }
  } else {
    out = listen ? new zmq.Reply(options) : new zmq.Request(options);
    inbound = out;
    if (listen) await out.bind(url('.rr'));
    else out.connect(url('.rr'));
  }
  if (listen) reportReady();
  return endpoint(out, inbound);
}

export const zeromq: Transport = {
  name: 'zeromq',
  label: 'ZeroMQ ipc://',
  payload: 'msgpack',
  layout: { processes: 'pair' },
  scenarios: ['oneway', 'pingpong', 'idle'],
  async unavailable() {
    // Probed in a child process, so the runner never loads libzmq: its context, with its
    // I/O thread, would otherwise live on in the runner until exit.
    const probe = `import('zeromq').then(
      (z) => new z.Push().close(),
      (e) => { console.error(String(e.message).split('\\n')[0]); process.exit(1); })`;
    try {
      execFileSync(process.execPath, ['-e', probe], {
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: 20_000,
      });
      return undefined;
    } catch (error) {
      const stderr = String((error as { stderr?: Buffer }).stderr ?? '').trim();
      return (stderr || String(error)).split('\n')[0]!.slice(0, 160);
    }
  },
  run: async (args) => runValueScenario(await open(args), args),
};
