// How two benchmark processes come to share one vring queue pair: the connecting side is the
// driver (it creates the rings and memory), the listening side the device (it attaches to
// what it is handed over a Unix socket with SCM_RIGHTS). Every vring transport starts here.
import {
  acceptQueuePair,
  FdServer,
  FdSocket,
  type NotificationMode,
  offerQueuePair,
  type QueuePairEnd,
} from '@vring/core';
import { reportReady } from './measure.js';
import type { PeerArgs } from './transport.js';

export interface SharedQueuePair {
  end: QueuePairEnd;
  /** The set-up socket; it stays open as the queue pair's lifeline. */
  socket: FdSocket;
  close(): void;
}

export async function openQueuePair(
  args: PeerArgs,
  notification: NotificationMode,
  // `packed`: lay the rings out packed (VIRTIO_F_RING_PACKED) instead of split.
  geometry: { queueSize?: number; maxMessage?: number; bufferSize?: number; packed?: boolean } = {},
): Promise<SharedQueuePair> {
  let end: QueuePairEnd;
  let socket: FdSocket;
  if (args.role === 'listen') {
    const server = await FdServer.listen(args.path);
    reportReady();
    socket = await server.accept();
    server.close();
    end = await acceptQueuePair(socket, { notification });
  } else {
    socket = await FdSocket.connect(args.path);
    // Resolves once the device has attached: from here on nothing is set-up cost.
    end = await offerQueuePair(socket, { notification, queueSize: 1024, ...geometry });
  }
  return {
    end,
    socket,
    close: () => {
      end.close();
      socket.close();
    },
  };
}
