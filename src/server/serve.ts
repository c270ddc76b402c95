// `talos-etcd-backup serve`: runs the hook server until SIGTERM/SIGINT, then drains: on SIGTERM it keeps serving
// for SHUTDOWN_DELAY_SECONDS while Kubernetes takes the pod out of its Service, then stops accepting, closes idle
// keep-alive connections and finishes the requests in flight.

import { setTimeout as sleep } from 'node:timers/promises';
import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import type { ServerConfig } from './config.js';
import { DrainState } from './http/health.js';

// Kubernetes waits terminationGracePeriodSeconds (30 s by default) before SIGKILL; hook answers take
// milliseconds and a request that has not arrived within the request timeout (5 s) is cut, so 10 s after the
// listener closes drains everything and still leaves time to exit on our own terms.
const SHUTDOWN_GRACE_MS = 10_000;
// After the request timeout, what a request that did arrive may still take to be answered (milliseconds, measured).
const ANSWER_MS = 1_000;

export class ListenError extends Error {
  override name = 'ListenError';
}

/** `listen EADDRINUSE: address already in use 127.0.0.1:8080` → `address already in use (EADDRINUSE)`. */
function listenProblem(error: unknown): string {
  const { code, message } = error as NodeJS.ErrnoException;
  const reason = message.replace(/^listen \w+: /, '').replace(/ \S+:\d+$/, '');
  return code && !reason.includes(code) ? `${reason} (${code})` : reason;
}

/** Starts the server; resolves once it listens, rejects with a ListenError when it cannot. */
export async function serve(config: ServerConfig): Promise<void> {
  const drain = new DrainState();
  const app = await buildApp({
    logger: { level: config.logLevel },
    bodyLimit: config.bodyLimit,
    keepAliveTimeoutMs: config.keepAliveTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    jobImage: config.jobImage,
    backupHooks: config.backupHooks,
    metricsExpirySeconds: config.metricsExpirySeconds,
    drain,
  });
  // Installed before listening, so a signal right after the first log line is handled; without its reaction to
  // the process's normal exit ('beforeExit'), which turned a failed start into exit code 0.
  const handlers = closeWithGrace(
    {
      delay: config.shutdownDelayMs + SHUTDOWN_GRACE_MS,
      skip: ['beforeExit'],
      logger: { error: (message: unknown) => app.log.error({ detail: String(message) }, 'shutdown failed') },
    },
    async ({ signal, err }) => {
      if (err) {
        app.log.error({ err }, 'shutting down after an unexpected error');
      } else if (signal === 'SIGTERM' && config.shutdownDelayMs > 0) {
        // Readiness turns 503 and every answer closes its connection; new connections are still accepted.
        drain.draining = true;
        app.log.info({ signal, delaySeconds: config.shutdownDelayMs / 1000 }, 'shutting down');
        await sleep(config.shutdownDelayMs);
      } else {
        app.log.info({ signal }, 'shutting down');
      }
      app.log.info('closing the listener');
      // Node stops enforcing the request timeout once the listener closes: a client still sending its request
      // then (a trickle) would hold the shutdown until SIGKILL. A request not received by then never will be.
      const cut = setTimeout(() => app.server.closeAllConnections(), config.requestTimeoutMs + ANSWER_MS);
      try {
        await app.close();
      } finally {
        clearTimeout(cut);
      }
    },
  );
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    handlers.uninstall();
    await app.close().catch(() => undefined);
    throw new ListenError(`cannot listen on ${config.host}:${config.port}: ${listenProblem(error)}`);
  }
}
