// The app of examples/container: what runs inside a container that shares nothing with the
// host but a bus socket bind-mounted at /run/vring/bus.sock. It answers `whoami` RPCs,
// greets on `greetings` every second, prints the greetings of every other app on the bus,
// and calls `whoami` on whoever greeted last. Stop it with Ctrl-C or SIGTERM.
//
//   node --import tsx examples/container/app.ts [/run/vring/bus.sock]
import { hostname } from 'node:os';
import { connectBus } from '@vring/ipc';

const path = process.argv[2] ?? '/run/vring/bus.sock';
const me = `${hostname()}/${process.pid}`;
const client = await connectBus(path, {
  onEvent: (event) => console.log(`${me}: bus ${event.type}`),
});
console.log(`${me}: attached to ${path} as uid ${process.getuid?.()}`);

client.serve(`whoami.${hostname()}`, () => ({ app: me, uid: process.getuid?.() }));
const greetings = client.subscribe<{ from: string; host: string }>('greetings');
const timer = setInterval(() => {
  void client.publish('greetings', { from: me, host: hostname() }).catch(() => {});
}, 1000);

const stop = () => {
  clearInterval(timer);
  client.close();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);

for await (const { value } of greetings) {
  if (value.from === me) continue;
  const answer = await client.request(`whoami.${value.host}`, null).catch((e: Error) => e.message);
  console.log(`${me}: greeting from ${value.from}; whoami says ${JSON.stringify(answer)}`);
}
