// Builds the hook server (without listening): routes, JSON parsing, limits. Starting it is cli/serve.ts's job.

import { STATUS_CODES } from 'node:http';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { Ajv } from 'ajv';
import formats from 'ajv-formats';
import { compileSchemas } from './api/validation.js';
import { DEFAULTS } from './config.js';
import type { JobImage } from './backup/job.js';
import { backupHookRoutes } from './http/backup-hooks.js';
import { healthRoutes } from './http/health.js';
import { createMetrics, metricsPlugin } from './http/metrics.js';
import { scheduleSyncRoute } from './http/schedule-sync.js';

const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * Client errors (bad JSON, a body that is not a hook request, too large) answer with their 4xx and a message
 * naming the problem; anything else is a bug: 500 so Metacontroller retries, details only in the log.
 */
function answerError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const statusCode = error.statusCode !== undefined && error.statusCode >= 400 ? error.statusCode : 500;
  if (statusCode >= 500) {
    request.log.error({ err: error }, 'hook failed');
    return reply.code(500).send({ statusCode: 500, error: STATUS_CODES[500], message: 'internal error: see the hook server log' });
  }
  const message = error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? 'the request body is not valid JSON' : error.message;
  request.log.info({ statusCode, code: error.code, message }, 'request rejected');
  return reply.code(statusCode).send({ statusCode, code: error.code, error: STATUS_CODES[statusCode], message });
}

export interface AppOptions {
  /** The hooks' only clock; tests pass a simulated one. */
  clock?: () => Date;
  logger?: FastifyServerOptions['logger'];
  bodyLimit?: number;
  keepAliveTimeoutMs?: number;
  /** Image, pull policy and pull secrets of the backup Jobs. */
  jobImage?: JobImage;
}

export async function buildApp(opts: AppOptions = {}): Promise<FastifyInstance> {
  compileSchemas(); // a broken CRD file fails here, at start, not on the first hook call
  const bodyLimit = opts.bodyLimit ?? DEFAULTS.bodyLimit;
  const options: FastifyServerOptions = {
    logger: opts.logger ?? false,
    // Probes and scrapes arrive every few seconds; logging each would bury the hook calls.
    logController: new LogController({ disableRequestLogging: (request: { url?: string }) => QUIET_PATHS.has(request.url ?? '') }),
    bodyLimit,
    keepAliveTimeout: opts.keepAliveTimeoutMs ?? DEFAULTS.keepAliveTimeoutMs,
    ajv: {
      // Check hook bodies as they are: no type coercion, no defaults, nothing removed.
      customOptions: { coerceTypes: false, useDefaults: false, removeAdditional: false, allErrors: false },
      plugins: [(ajv: Ajv) => formats.default(ajv, { mode: 'fast', formats: ['date-time'] })],
    },
  };
  const app = Fastify(options);
  app.setErrorHandler(answerError);
  // Metacontroller always sends application/json; a hand-written `curl -d @body.json` sends a form type.
  // Every body is parsed as JSON, so a mislabelled but valid body works and garbage is a clear 400.
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit }, app.getDefaultJsonParser('error', 'error'));

  const clock = opts.clock ?? (() => new Date());
  const metrics = createMetrics();
  await app.register(healthRoutes);
  await app.register(metricsPlugin, { metrics });
  await app.register(scheduleSyncRoute, { clock, metrics });
  await app.register(backupHookRoutes, { clock, metrics, jobImage: opts.jobImage ?? DEFAULTS.jobImage });
  return app;
}
