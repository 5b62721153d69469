// Run by verify-prebuilds.mjs under the target's Node, with VRING_NATIVE_PATH naming the prebuild:
// loads @vring/core's dist with that addon and sends a message down a queue pair and back
// (memfd, eventfds and libuv polling all take part). Prints `round trip ok ...` on success.
import { DeviceQueuePair, DriverQueuePair } from '../packages/core/dist/index.js';

const driver = DriverQueuePair.create();
const { descriptor, fds } = driver.share();
const device = DeviceQueuePair.attach(JSON.parse(JSON.stringify(descriptor)), fds);
await driver.send(Buffer.from('ping'));
const down = [...(await device.receive())].map(String);
await device.send(Buffer.from(`${down[0]} pong`));
const up = [...(await driver.receive())].map(String);
device.close();
driver.close();
if (up.length !== 1 || up[0] !== 'ping pong') {
  console.error(`round trip returned ${JSON.stringify(up)}, expected ["ping pong"]`);
  process.exit(1);
}
const { glibcVersionRuntime } = process.report.getReport().header;
console.log(
  `round trip ok on Node ${process.versions.node} ${process.arch} ` +
    `${glibcVersionRuntime ? `glibc ${glibcVersionRuntime}` : 'musl'}`,
);
