// The CommonJS side of typed.ts: `import = require` resolves the packages' .d.cts files.
import core = require('@vring/core');
import ipc = require('@vring/ipc');

export async function publishOne(path: string): Promise<core.VringError['code'] | 'ok'> {
  const client: ipc.BusClient = await ipc.connectBus(path);
  try {
    await client.publish('greetings', { hello: 'world' });
    return 'ok';
  } catch (error) {
    return error instanceof core.VringError ? error.code : 'ERR_VRING_PROTOCOL';
  } finally {
    client.close();
  }
}
