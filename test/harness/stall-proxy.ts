// A TCP proxy on 127.0.0.1 that stalls: each connection forwards what the client sends until it has carried
// `afterBytes`, then forwards nothing more and holds the connection open (a store, or the way to it, that hangs
// mid-upload). Small requests on fresh connections still pass, so an abort sent anew reaches the store.
// Bounded: every connection and the listener are closed by close(), or at the latest after `lifetimeMs`.

import { createServer, connect, type Socket } from 'node:net';

export interface StallProxy {
  /** `http://127.0.0.1:<port>`: use it as the S3 endpoint. */
  endpoint: string;
  /** Connections that stalled so far. */
  stalled(): number;
  close(): Promise<void>;
}

export async function startStallProxy(
  target: string,
  opts: { afterBytes: number; lifetimeMs?: number },
): Promise<StallProxy> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  let stalled = 0;
  const server = createServer((client) => {
    const upstream = connect({ host: hostname, port: Number(port) });
    sockets.add(client).add(upstream);
    let carried = 0;
    let stopped = false;
    client.on('data', (chunk: Buffer) => {
      if (stopped) return;
      const room = opts.afterBytes - carried;
      if (chunk.length <= room) {
        carried += chunk.length;
        upstream.write(chunk);
        return;
      }
      if (room > 0) upstream.write(chunk.subarray(0, room));
      carried = opts.afterBytes;
      stopped = true;
      stalled += 1;
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= new Promise<void>((resolve) => {
      clearTimeout(lifetime);
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }));
  const lifetime = setTimeout(() => void close(), opts.lifetimeMs ?? 120_000);
  lifetime.unref();
  return { endpoint: `http://127.0.0.1:${address.port}`, stalled: () => stalled, close };
}
