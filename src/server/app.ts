// Builds the hook server (without listening): routes, JSON parsing, limits. Starting it is serve.ts's job.

import { STATUS_CODES, type Server } from 'node:http';
import Fastify, {
  LogController,
  type FastifyError,
  type FastifyHttpOptions,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import type { Ajv } from 'ajv';
import formats from 'ajv-formats';
import { compileSchemas } from '../api/validation.js';
import { DEFAULTS } from './config.js';
import type { JobImage } from './backup/job.js';
import type { BackupHookSettings } from './backup/settings.js';
import { backupHookRoutes } from './http/backup-hooks.js';
import { BodyBudget, registerBodyBudget } from './http/body-budget.js';
import { DrainState, healthRoutes } from './http/health.js';
import { jsonLimitsFor, registerJsonBodyParser, type JsonLimits } from './http/json-body.js';
import { createMetrics, metricsPlugin } from './http/metrics.js';
import { scheduleSyncRoute } from './http/schedule-sync.js';

const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/** The path of a request URL: a query string is never logged (nothing here reads one, and it may carry anything). */
export function pathOf(url: string | undefined): string {
  const end = url === undefined ? -1 : url.search(/[?#]/);
  return end === -1 ? (url ?? '') : url!.slice(0, end);
}

// How often Node checks the request timeout of open connections (its default, 30 s, would let a slow client
// hold a connection for up to 30 s beyond the timeout).
const CONNECTIONS_CHECK_INTERVAL_MS = 500;

/**
 * What an error is about, for the log: the status and code, and for a body that is not a hook request the schema
 * rule it broke. Never the message: it quotes the request (an object name, a map key, a value), and the log
 * carries no request content.
 */
function errorFields(error: FastifyError, statusCode: number): Record<string, unknown> {
  const first = error.validation?.[0];
  return { statusCode, code: error.code, ...(first && { keyword: first.keyword, schemaPath: first.schemaPath }) };
}

/**
 * Client errors (bad JSON, a body that is not a hook request, too large, too deep) answer with their 4xx and a
 * message naming the problem; anything else is a bug: 500 so Metacontroller retries, details only in the log.
 */
function answerError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const statusCode =
    error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
  if (statusCode >= 500) {
    // Our own code threw: a bug to fix, so the error and its stack are logged (our messages quote no request content).
    request.log.error({ err: error }, 'hook failed');
    return reply
      .code(500)
      .send({ statusCode: 500, error: STATUS_CODES[500], message: 'internal error: see the hook server log' });
  }
  const message = error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? 'the request body is not valid JSON' : error.message;
  request.log.info(errorFields(error, statusCode), 'request rejected');
  return reply.code(statusCode).send({ statusCode, code: error.code, error: STATUS_CODES[statusCode], message });
}

export interface AppOptions {
  /** The hooks' only clock; tests pass a simulated one. */
  clock?: () => Date;
  logger?: FastifyServerOptions['logger'];
  bodyLimit?: number;
  /** Depth and value limits checked before a body is parsed; default from the body limit (http/json-body.ts). */
  jsonLimits?: JsonLimits;
  keepAliveTimeoutMs?: number;
  /** Time a client has to send a whole request (headers and body). */
  requestTimeoutMs?: number;
  /** Image, pull policy and pull secrets of the backup Jobs. */
  jobImage?: JobImage;
  /** The backup hooks' deadlines and talos-operator support (BackupHookSettings). */
  backupHooks?: BackupHookSettings;
  /** How long a schedule's series stay on /metrics without a sync refreshing them. */
  metricsExpirySeconds?: number;
  /** Set to draining on SIGTERM (serve.ts): /readyz answers 503 and every answer closes its connection. */
  drain?: DrainState;
}

/** Logger options with serializers that keep request content out of every line. */
function loggerOptions(logger: FastifyServerOptions['logger']): FastifyServerOptions['logger'] {
  if (logger === undefined || logger === false || logger === true) return logger ?? false;
  const base = logger as Record<string, unknown>;
  return {
    ...base,
    serializers: {
      req: (req: { method?: string; url?: string; host?: string; ip?: string; socket?: { remotePort?: number } }) => ({
        method: req.method,
        url: pathOf(req.url),
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort,
      }),
      ...(base.serializers as Record<string, unknown> | undefined),
    },
  } as FastifyServerOptions['logger'];
}

export async function buildApp(opts: AppOptions = {}): Promise<FastifyInstance> {
  compileSchemas(); // a broken CRD file fails here, at start, not on the first hook call
  const bodyLimit = opts.bodyLimit ?? DEFAULTS.bodyLimit;
  const requestTimeout = opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
  const drain = opts.drain ?? new DrainState();
  const options: FastifyHttpOptions<Server> = {
    logger: loggerOptions(opts.logger),
    // Probes and scrapes arrive every few seconds; logging each would bury the hook calls.
    logController: new LogController({
      disableRequestLogging: (request: { url?: string }) => QUIET_PATHS.has(pathOf(request.url)),
    }),
    bodyLimit,
    keepAliveTimeout: opts.keepAliveTimeoutMs ?? DEFAULTS.keepAliveTimeoutMs,
    // A client that sends its headers and then trickles (or never finishes) its body gets 408 and is disconnected
    // once this passes, instead of holding a connection (and a shutdown) forever.
    requestTimeout,
    http: {
      requestTimeout,
      headersTimeout: requestTimeout,
      connectionsCheckingInterval: CONNECTIONS_CHECK_INTERVAL_MS,
    },
    ajv: {
      // Check hook bodies as they are: no type coercion, no defaults, nothing removed.
      customOptions: { coerceTypes: false, useDefaults: false, removeAdditional: false, allErrors: false },
      plugins: [(ajv: Ajv) => formats.default(ajv, { mode: 'fast', formats: ['date-time'] })],
    },
  };
  const app = Fastify(options);
  app.setErrorHandler(answerError);
  // Fastify's own 404 logs the URL with its query string.
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({
      statusCode: 404,
      error: STATUS_CODES[404],
      message: `Route ${request.method}:${pathOf(request.url)} not found`,
    }),
  );
  registerJsonBodyParser(app, bodyLimit, opts.jsonLimits ?? jsonLimitsFor(bodyLimit));
  // Large bodies take turns: the limits bound one request, this bounds how many are held at once.
  registerBodyBudget(app, new BodyBudget(bodyLimit), bodyLimit);
  app.addHook('onSend', async (_request, reply) => {
    if (drain.draining) reply.header('connection', 'close');
  });

  const clock = opts.clock ?? (() => new Date());
  const metrics = createMetrics({ expirySeconds: opts.metricsExpirySeconds ?? DEFAULTS.metricsExpirySeconds, clock });
  await app.register(healthRoutes, { drain });
  await app.register(metricsPlugin, { metrics });
  await app.register(scheduleSyncRoute, { clock, metrics });
  await app.register(backupHookRoutes, {
    clock,
    metrics,
    jobImage: opts.jobImage ?? DEFAULTS.jobImage,
    settings: opts.backupHooks ?? DEFAULTS.backupHooks,
  });
  return app;
}
