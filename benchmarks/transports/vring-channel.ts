// The standard msgpack value over a vring Channel (@vring/ipc), in each notification mode:
// what an application using vring for messages gets, codec and framing included.
import type { NotificationMode } from '@vring/core';
import { Channel } from '@vring/ipc';
import type { Payload } from './payload.js';
import type { PeerArgs, Transport } from './transport.js';
import { type Endpoint, runValueScenario, sendWindow, windowed } from './value-scenarios.js';
import { openQueuePair } from './vring-connect.js';

/**
 * Rings for messages of `size`: a frame up to the message's size (so a large value is one
 * frame written and read in place), and room for four of them in flight (two above 1 MiB),
 * at least the 2 MiB of the default 1024 buffers of 2 KiB.
 */
function geometry(size: number) {
  const frame = size + 256; // frame headers and the value's own msgpack overhead
  const area = Math.max(2 * 1024 * 1024, (size <= 1024 * 1024 ? 4 : 2) * frame);
  return {
    queueSize: 1024,
    bufferSize: Math.max(2048, Math.ceil(area / 1024 / 64) * 64),
    maxMessage: Math.max(65536, frame),
  };
}

async function run(
  args: PeerArgs,
  mode: NotificationMode,
  zeroCopy: boolean,
  packed: boolean,
): Promise<void> {
  const { socket, end } = await openQueuePair(args, mode, { ...geometry(args.size), packed });
  const channel = new Channel<Payload>(end, { views: zeroCopy, lazyEncoding: zeroCopy });
  const endpoint: Endpoint = {
    send: windowed((value) => channel.send(value), sendWindow(args.size, 64)),
    onMessage(handler) {
      void (async () => {
        try {
          // Awaiting what the handler returns lets an echo's send reach the ring before the
          // next receive, as `for await (v of ch) await ch.send(v)` would; a handler that
          // returns nothing is not awaited (net's adapter calls it the same way).
          for await (const value of channel) {
            const handled = handler(value);
            if (handled) await handled;
            // Views mode: the handler is done with the value's memory (an echo's send has
            // copied it into the ring by now).
            if (zeroCopy) channel.release(value);
          }
        } catch {
          // The peer hung up at the end of the run: the handshake is already done.
        }
      })();
    },
    peerGone: socket.closed,
    close: () => {
      channel.close();
      socket.close();
    },
  };
  await runValueScenario(endpoint, args);
}

/**
 * `zeroCopy`: the receiver takes large values as views of shared memory and releases each
 * once handled (`ChannelOptions.views`), and the sender encodes a value that waits for room
 * only when it goes, straight into shared memory (`lazyEncoding`): a large value's bytes are
 * copied once, by the sender's encoder. `packed`: the queue pair runs packed rings instead
 * of split ones, to set the two formats side by side.
 */
export function vringChannel(mode: NotificationMode, zeroCopy = false, packed = false): Transport {
  const variant = `${zeroCopy ? 'zerocopy-' : ''}${packed ? 'packed-' : ''}`;
  // Split rings are the default, so only packed ones say their format.
  const label = `${zeroCopy ? 'zero-copy, ' : ''}${packed ? 'packed rings, ' : ''}`;
  return {
    name: `channel-${variant}${mode}`,
    label: `vring Channel, ${label}${mode}`,
    payload: 'msgpack',
    layout: { processes: 'pair' },
    scenarios: ['oneway', 'pingpong', 'idle'],
    run: (args) => run(args, mode, zeroCopy, packed),
  };
}
