// How two benchmark processes come to share one vring queue pair: the connecting side is the
// driver (it creates the rings and memory), the listening side the device (it attaches to
// what it is handed over a Unix socket with SCM_RIGHTS). Every vring transport starts here.
import {
  DeviceQueuePair,
  DriverQueuePair,
  FdServer,
  FdSocket,
  type NotificationMode,
  type QueuePairDescriptor,
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
  geometry: { queueSize?: number; maxMessage?: number; bufferSize?: number } = {},
): Promise<SharedQueuePair> {
  let end: QueuePairEnd;
  let socket: FdSocket;
  if (args.role === 'listen') {
    const server = await FdServer.listen(args.path);
    reportReady();
    socket = await server.accept();
    server.close();
    const { data, fds } = await socket.receive();
    const descriptor = JSON.parse(data.toString()) as QueuePairDescriptor;
    end = DeviceQueuePair.attach(descriptor, fds, { notification, lifeline: socket });
    await socket.send(Buffer.from('attached'));
  } else {
    socket = await FdSocket.connect(args.path);
    const driver = DriverQueuePair.create({
      notification,
      lifeline: socket,
      queueSize: 1024,
      ...geometry,
    });
    const { descriptor, fds } = driver.share();
    await socket.send(Buffer.from(JSON.stringify(descriptor)), fds);
    await socket.receive(); // the device is attached: from here on nothing is set-up cost
    end = driver;
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
