// Benchmark-only entry: the real hook server (buildApp) with a fixed clock, in its own process so its CPU is measured alone.
// Usage: BENCH_NOW=<RFC 3339 time> node dist/bench/server.js — prints {"port":N} on stdout once listening on 127.0.0.1.
// When started with an IPC channel it answers {type:'cpu'} with process.cpuUsage() and exits when the channel closes.

import { buildApp } from '../src/server/app.js';

export interface CpuReply {
  type: 'cpu';
  /** process.cpuUsage(): microseconds of user and system CPU, all threads of this process (JS, GC, libuv). */
  user: number;
  system: number;
}

async function main(): Promise<void> {
  const raw = process.env.BENCH_NOW;
  const fixedMs = raw ? Date.parse(raw) : Number.NaN;
  if (Number.isNaN(fixedMs)) throw new Error(`BENCH_NOW must be an RFC 3339 time, got ${JSON.stringify(raw)}`);

  // A fixed clock makes every answer identical (a steady state), so all requests cost the same work.
  const app = await buildApp({ clock: () => new Date(fixedMs) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('the server has no TCP address');

  if (process.send) {
    process.on('message', (message: unknown) => {
      if ((message as { type?: unknown } | null)?.type !== 'cpu') return;
      const { user, system } = process.cpuUsage();
      const reply: CpuReply = { type: 'cpu', user, system };
      process.send?.(reply);
    });
    // The bench died without killing us: do not linger.
    process.on('disconnect', () => process.exit(0));
  }
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
