// Liveness and readiness probes. The app is built only after every CRD schema has compiled, so once it
// answers at all it is ready; while it shuts down Fastify itself answers 503 to requests still arriving.

import type { FastifyInstance } from 'fastify';

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async () => ({ status: 'ready' }));
}
