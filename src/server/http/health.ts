// Liveness and readiness probes, and the server's part in a rolling update. The app is built only after every CRD
// schema has compiled, so once it answers at all it is ready; after SIGTERM it drains (serve.ts): /readyz says
// 503 so Kubernetes takes the pod out of its Service, every other request is still served, and each answer closes
// its keep-alive connection so the client's next request opens a new one, to a pod that stays.

import type { FastifyInstance } from 'fastify';

/** Whether the server is draining; serve.ts sets it on SIGTERM. */
export class DrainState {
  draining = false;
}

export async function healthRoutes(app: FastifyInstance, opts: { drain: DrainState }): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) =>
    opts.drain.draining ? reply.code(503).send({ status: 'draining' }) : { status: 'ready' },
  );
}
