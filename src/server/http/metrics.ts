// Prometheus metrics: one registry per app (so several apps can live in one process, as in tests) at /metrics.

import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface HookMetrics {
  registry: Registry;
  requests: Counter<'hook' | 'code'>;
  duration: Histogram<'hook'>;
  scheduleSyncs: Counter<'result'>;
  backupSyncs: Counter<'result'>;
}

export function createMetrics(): HookMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    requests: new Counter({
      name: 'talos_etcd_backup_hook_requests_total',
      help: 'Hook requests answered, by hook and HTTP status code.',
      labelNames: ['hook', 'code'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'talos_etcd_backup_hook_request_duration_seconds',
      help: 'Time to answer a hook request, by hook.',
      labelNames: ['hook'],
      // Metacontroller's default hook timeout is 10 s; answers should take milliseconds.
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    }),
    scheduleSyncs: new Counter({
      name: 'talos_etcd_backup_schedule_syncs_total',
      help: 'Schedule sync answers, by result: created (a backup for a slot), idle, paused, deleting, invalid.',
      labelNames: ['result'],
      registers: [registry],
    }),
    backupSyncs: new Counter({
      name: 'talos_etcd_backup_backup_syncs_total',
      help: 'Backup sync answers, by result: pending, running, succeeded, failed (this answer records the outcome), finished (recorded before).',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}

/**
 * Counts and times every route that declares `config.hook`, and serves the registry at /metrics.
 * Wrapped with fastify-plugin so its onResponse hook sees the routes registered beside it, not only its own.
 */
export const metricsPlugin = fp(async function metricsRoutes(
  app: FastifyInstance,
  opts: { metrics: HookMetrics },
): Promise<void> {
  const { metrics } = opts;
  app.addHook('onResponse', async (request, reply) => {
    const hook = (request.routeOptions.config as { hook?: string }).hook;
    if (!hook) return;
    metrics.requests.inc({ hook, code: String(reply.statusCode) });
    metrics.duration.observe({ hook }, reply.elapsedTime / 1000);
  });
  app.get('/metrics', async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
});
