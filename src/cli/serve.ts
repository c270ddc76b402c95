// `talos-etcd-backup serve`: runs the hook server until SIGTERM/SIGINT, then drains in-flight requests.

import closeWithGrace from 'close-with-grace';
import { buildApp } from '../app.js';
import type { ServerConfig } from '../config.js';

// Kubernetes waits terminationGracePeriodSeconds (30 s by default) before SIGKILL; hook answers take
// milliseconds, so 10 s drains everything and still leaves time to exit on our own terms.
const SHUTDOWN_GRACE_MS = 10_000;

export async function serve(config: ServerConfig): Promise<void> {
  const app = await buildApp({
    logger: { level: config.logLevel },
    bodyLimit: config.bodyLimit,
    keepAliveTimeoutMs: config.keepAliveTimeoutMs,
    jobImage: config.jobImage,
  });
  closeWithGrace({ delay: SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an unexpected error');
    else app.log.info({ signal }, 'shutting down');
    await app.close();
  });
  await app.listen({ host: config.host, port: config.port });
}
