// The negative case: this must NOT compile. The smoke test expects exactly one error, TS2322
// on the marked line, which proves the declarations are there and tsc reports misuse.
import { connectBus } from '@vring/ipc';

export async function wrong(path: string): Promise<void> {
  const client = await connectBus(path);
  const sum: string = await client.request<number>('add', [1, 2]); // TYPE ERROR HERE
  console.log(sum);
}
