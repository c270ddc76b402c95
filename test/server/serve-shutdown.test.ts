// `talos-etcd-backup serve` as Kubernetes runs it: it must fail loudly when it cannot listen, cut clients that
// never finish their request, and on SIGTERM keep serving while the endpoint goes away, then drain and exit 0.
// Real processes, real sockets on 127.0.0.1; every loop is bounded in time and stops by itself.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request as httpRequest } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { MAIN, startServe } from '../../bench/serve-process.js';
import { schedule, syncRequest } from '../helpers/builders.js';

const SYNC_BODY = JSON.stringify(syncRequest(schedule(), []));

function serveSync(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [MAIN, 'serve', ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 20_000,
  });
}

/** One request on a connection of its own; resolves to the status, or the error code when the connection failed. */
function postOnce(
  url: string,
  body: string,
  agent: Agent | false = false,
): Promise<{ status?: number; error?: string; connection?: string }> {
  return new Promise((resolve) => {
    const req = httpRequest(
      `${url}/hooks/schedule/sync`,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: 5_000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, connection: res.headers.connection }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
    req.end(body);
  });
}

function get(
  url: string,
  path: string,
  agent: Agent | false = false,
): Promise<{ status: number; body: string; connection?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { agent, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

describe('serve cannot listen: exit 1 with one line on stderr', () => {
  it('the port is in use', async () => {
    const holder = createServer();
    holder.listen(0, '127.0.0.1');
    await once(holder, 'listening');
    const port = (holder.address() as { port: number }).port;
    try {
      const result = serveSync(['--host', '127.0.0.1', '--port', String(port)]);
      assert.equal(result.status, 1, result.stderr);
      assert.equal(
        result.stderr,
        `talos-etcd-backup: cannot listen on 127.0.0.1:${port}: address already in use (EADDRINUSE)\n`,
      );
      assert.doesNotMatch(result.stdout, /shutting down/);
    } finally {
      holder.close();
    }
  });

  it('the address is not on this machine', () => {
    const result = serveSync(['--host', '192.0.2.1', '--port', '0']); // TEST-NET-1 (RFC 5737): never local
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, /^talos-etcd-backup: cannot listen on 192\.0\.2\.1:0: .*\(EADDRNOTAVAIL\)\n$/);
  });
});

describe('a client that sends its headers and trickles its body', () => {
  /** Sends headers announcing 100 kB, then one byte every 100 ms until the server closes (at most `maxMs`). */
  async function trickle(url: string, maxMs: number): Promise<{ closedAfterMs: number; answer: string }> {
    const { hostname, port } = new URL(url);
    const socket: Socket = connect(Number(port), hostname);
    await once(socket, 'connect');
    const started = performance.now();
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.on('error', () => undefined);
    socket.write(
      `POST /hooks/schedule/sync HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{`,
    );
    const timer = setInterval(() => socket.writable && socket.write(' '), 100);
    const deadline = setTimeout(() => socket.destroy(), maxMs);
    await once(socket, 'close');
    clearInterval(timer);
    clearTimeout(deadline);
    return { closedAfterMs: performance.now() - started, answer };
  }

  it('gets 408 and is disconnected once REQUEST_TIMEOUT_SECONDS pass', async () => {
    const server = await startServe({ REQUEST_TIMEOUT_SECONDS: '1', SHUTDOWN_DELAY_SECONDS: '0' });
    try {
      const { closedAfterMs, answer } = await trickle(server.url, 10_000);
      assert.match(answer, /^HTTP\/1\.1 408/);
      assert.ok(closedAfterMs >= 900 && closedAfterMs < 3_000, `closed after ${Math.round(closedAfterMs)} ms`);
    } finally {
      await server.stop();
    }
  });

  it('does not hold up a SIGTERM: the server exits 0 within the request timeout', async () => {
    const server = await startServe({ REQUEST_TIMEOUT_SECONDS: '2', SHUTDOWN_DELAY_SECONDS: '0' });
    const trickling = trickle(server.url, 15_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = performance.now();
    const code = await server.stop(15_000);
    const ms = performance.now() - started;
    await trickling;
    assert.equal(code, 0, server.output());
    assert.ok(ms < 5_000, `exited after ${Math.round(ms)} ms`);
    assert.doesNotMatch(server.output(), /killed by timeout/);
  });
});

describe('SIGTERM: serve on for SHUTDOWN_DELAY_SECONDS, then drain', () => {
  it('every request during the delay is answered 200 (a connection per request, 16 at once), readyz turns 503, idle keep-alive connections are closed, exit 0', async () => {
    const DELAY_MS = 2_000;
    const server = await startServe({ SHUTDOWN_DELAY_SECONDS: String(DELAY_MS / 1000) });
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    const idle = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // A keep-alive connection used again after SIGTERM, and one left idle.
      assert.equal((await get(server.url, '/healthz', keepAlive)).status, 200);
      assert.equal((await get(server.url, '/readyz', idle)).status, 200);
      const idleSocket = Object.values(idle.freeSockets).flat()[0]!;
      const idleClosed = once(idleSocket, 'close');

      let stopAt = Number.POSITIVE_INFINITY;
      const results: { status?: number; error?: string }[] = [];
      const worker = async () => {
        while (performance.now() < stopAt) results.push(await postOnce(server.url, SYNC_BODY));
      };
      const workers = Array.from({ length: 16 }, worker);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const exited = once(server.child, 'exit') as Promise<[number | null]>;
      const signalled = performance.now();
      server.child.kill('SIGTERM');
      // Requests keep coming until shortly before the delay ends, as they would while the endpoint is removed.
      stopAt = signalled + DELAY_MS - 500;
      await new Promise((resolve) => setTimeout(resolve, 200));
      const readyz = await get(server.url, '/readyz');
      assert.deepEqual(
        { status: readyz.status, body: JSON.parse(readyz.body) },
        { status: 503, body: { status: 'draining' } },
      );
      const reused = await get(server.url, '/healthz', keepAlive);
      assert.equal(reused.status, 200);
      assert.equal(reused.connection, 'close', 'an answer during the drain closes its connection');
      await Promise.all(workers);

      const failed = results.filter((r) => r.status !== 200);
      assert.deepEqual(failed, [], `${failed.length} of ${results.length} requests failed`);
      assert.ok(results.length >= 32, `${results.length} requests`);

      const [code] = await exited;
      const exitedAfter = performance.now() - signalled;
      assert.equal(code, 0, server.output());
      assert.ok(exitedAfter >= DELAY_MS - 100, `exited ${Math.round(exitedAfter)} ms after SIGTERM: before the delay`);
      assert.ok(
        exitedAfter < DELAY_MS + 3_000,
        `exited ${Math.round(exitedAfter)} ms after SIGTERM: the idle keep-alive connection held it`,
      );
      await idleClosed;
      const messages = server
        .output()
        .trim()
        .split('\n')
        .map((line) => (JSON.parse(line) as { msg: string }).msg);
      assert.ok(messages.indexOf('shutting down') < messages.indexOf('closing the listener'), messages.join(' / '));
    } finally {
      keepAlive.destroy();
      idle.destroy();
      await server.stop();
    }
  });

  it('SIGINT (a person at a terminal) does not wait', async () => {
    const server = await startServe({ SHUTDOWN_DELAY_SECONDS: '30' });
    const exited = once(server.child, 'exit') as Promise<[number | null]>;
    const started = performance.now();
    server.child.kill('SIGINT');
    const [code] = await exited;
    assert.equal(code, 0);
    assert.ok(performance.now() - started < 5_000);
  });
});
