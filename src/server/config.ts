// Server configuration from environment variables: a flat mapping, checked once at start.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../api/crds.js';
import type { JobImage } from './backup/job.js';
import { DEFAULT_BACKUP_HOOK_SETTINGS, type BackupHookSettings } from './backup/settings.js';

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export const HOST_ENV = 'HOST';
export const PORT_ENV = 'PORT';
export const LOG_LEVEL_ENV = 'LOG_LEVEL';
export const BODY_LIMIT_ENV = 'BODY_LIMIT_BYTES';
export const KEEP_ALIVE_TIMEOUT_ENV = 'KEEP_ALIVE_TIMEOUT_SECONDS';
export const REQUEST_TIMEOUT_ENV = 'REQUEST_TIMEOUT_SECONDS';
export const SHUTDOWN_DELAY_ENV = 'SHUTDOWN_DELAY_SECONDS';
export const ATTACHMENT_DEADLINE_ENV = 'ATTACHMENT_DEADLINE_SECONDS';
export const TALOS_OPERATOR_ENV = 'TALOS_OPERATOR';
export const JOB_IMAGE_ENV = 'JOB_IMAGE';
export const JOB_IMAGE_PULL_POLICY_ENV = 'JOB_IMAGE_PULL_POLICY';
export const JOB_IMAGE_PULL_SECRETS_ENV = 'JOB_IMAGE_PULL_SECRETS';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;

export interface ServerConfig {
  host: string;
  port: number;
  logLevel: LogLevel;
  /** Largest hook request accepted, in bytes. */
  bodyLimit: number;
  /** How long an idle keep-alive connection stays open, in milliseconds. */
  keepAliveTimeoutMs: number;
  /** How long a client may take to send a whole request (headers and body), in milliseconds. */
  requestTimeoutMs: number;
  /** After SIGTERM, how long the server keeps serving (readyz 503) before it stops accepting, in milliseconds. */
  shutdownDelayMs: number;
  /** What the backup Jobs run: the server's own image (the Helm chart sets it), its pull policy and pull secrets. */
  jobImage: JobImage;
  /** The backup hooks' deadlines and whether talos-operator's TalosControlPlane kind may be asked for. */
  backupHooks: BackupHookSettings;
}

export const DEFAULTS: ServerConfig = {
  host: '0.0.0.0',
  port: 8080,
  logLevel: 'info',
  // Metacontroller sends every child in full, with managedFields and a last-applied annotation that doubles
  // each object: 1,000 backups (the most `retention` keeps) are 5.4 MiB and 276,169 JSON values (bench/fixtures.ts),
  // and Fastify's 1 MiB default is reached by about 190. The value limit derived from 16 MiB (http/json-body.ts)
  // admits ~1,500 such backups (8.2 MiB), the bytes leave room for larger objects, and the worst body both admit
  // peaks at 221 MiB of RSS (277 MiB for four at once), inside the chart's 384 MiB (`npm run bench`, "worst
  // bodies"; test/server/http/memory.test.ts). 32 MiB of `[]` in the template took the server to 2,225 MiB.
  bodyLimit: 16 * 1024 * 1024,
  // Go's HTTP client (Metacontroller) drops idle connections after 90 s; staying open longer means the client
  // always closes first, so it never sends a request on a connection we are closing.
  keepAliveTimeoutMs: 120_000,
  // Metacontroller gives up on a hook call after 10 s (its default hook timeout, the chart's
  // metacontroller.hookTimeout). In the cluster a 16 MiB body arrives in well under a second; a request still
  // arriving after 5 s is a stuck or hostile client, and leaves the answer no time anyway.
  requestTimeoutMs: 5_000,
  // Kubernetes removes a terminating pod from its Service's endpoints at the same time as it sends SIGTERM, and
  // kube-proxy and the clients need a few seconds to notice: until then new connections still arrive. Serving on
  // for 5 s (the usual preStop sleep) lets them land; a human's Ctrl-C (SIGINT) does not wait.
  shutdownDelayMs: 5_000,
  // The chart always sets JOB_IMAGE to the image it deploys; this default serves `npm start` and curl examples.
  jobImage: { image: `talos-etcd-backup:${packageVersion()}`, pullPolicy: 'IfNotPresent', pullSecrets: [] },
  // A snapshot or delete Job not there 10 minutes after it was asked for was refused (see src/server/backup/sync.ts
  // and finalize.ts); TalosControlPlanes are asked for unless the chart found no such CRD at install time.
  backupHooks: DEFAULT_BACKUP_HOOK_SETTINGS,
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function integer(env: NodeJS.ProcessEnv, name: string, min: number, max: number, fallback: number, problems: string[]): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
    return fallback;
  }
  return value;
}

function boolean(env: NodeJS.ProcessEnv, name: string, fallback: boolean, problems: string[]): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === 'false') return raw === 'true';
  problems.push(`${name} must be true or false, got ${JSON.stringify(raw)}`);
  return fallback;
}

function jobImage(env: NodeJS.ProcessEnv, problems: string[]): JobImage {
  const pullPolicy = (env[JOB_IMAGE_PULL_POLICY_ENV] || DEFAULTS.jobImage.pullPolicy) as JobImage['pullPolicy'];
  if (!PULL_POLICIES.includes(pullPolicy)) problems.push(`${JOB_IMAGE_PULL_POLICY_ENV} must be one of ${PULL_POLICIES.join(', ')}, got ${JSON.stringify(pullPolicy)}`);
  const image = env[JOB_IMAGE_ENV]?.trim() || DEFAULTS.jobImage.image;
  if (/\s/.test(image)) problems.push(`${JOB_IMAGE_ENV} must be an image reference without spaces, got ${JSON.stringify(image)}`);
  const pullSecrets = (env[JOB_IMAGE_PULL_SECRETS_ENV] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return { image, pullPolicy, pullSecrets };
}

/** Reads the server configuration; throws a ConfigError listing every problem at once. */
export function parseServerConfig(env: NodeJS.ProcessEnv): ServerConfig {
  const problems: string[] = [];
  const logLevel = (env[LOG_LEVEL_ENV] || DEFAULTS.logLevel) as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`${LOG_LEVEL_ENV} must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  const config: ServerConfig = {
    host: env[HOST_ENV] || DEFAULTS.host,
    port: integer(env, PORT_ENV, 0, 65535, DEFAULTS.port, problems),
    logLevel,
    bodyLimit: integer(env, BODY_LIMIT_ENV, 1024, 1024 * 1024 * 1024, DEFAULTS.bodyLimit, problems),
    keepAliveTimeoutMs: integer(env, KEEP_ALIVE_TIMEOUT_ENV, 1, 3600, DEFAULTS.keepAliveTimeoutMs / 1000, problems) * 1000,
    requestTimeoutMs: integer(env, REQUEST_TIMEOUT_ENV, 1, 300, DEFAULTS.requestTimeoutMs / 1000, problems) * 1000,
    shutdownDelayMs: integer(env, SHUTDOWN_DELAY_ENV, 0, 300, DEFAULTS.shutdownDelayMs / 1000, problems) * 1000,
    jobImage: jobImage(env, problems),
    backupHooks: {
      attachmentDeadlineSeconds: integer(env, ATTACHMENT_DEADLINE_ENV, 30, 86_400, DEFAULTS.backupHooks.attachmentDeadlineSeconds, problems),
      talosOperator: boolean(env, TALOS_OPERATOR_ENV, DEFAULTS.backupHooks.talosOperator, problems),
    },
  };
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  return config;
}
