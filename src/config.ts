// Server configuration from environment variables: a flat mapping, checked once at start.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './api/crds.js';
import type { JobImage } from './backup/job.js';

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export const HOST_ENV = 'HOST';
export const PORT_ENV = 'PORT';
export const LOG_LEVEL_ENV = 'LOG_LEVEL';
export const BODY_LIMIT_ENV = 'BODY_LIMIT_BYTES';
export const KEEP_ALIVE_TIMEOUT_ENV = 'KEEP_ALIVE_TIMEOUT_SECONDS';
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
  /** What the backup Jobs run: the server's own image (the Helm chart sets it), its pull policy and pull secrets. */
  jobImage: JobImage;
}

export const DEFAULTS: ServerConfig = {
  host: '0.0.0.0',
  port: 8080,
  logLevel: 'info',
  // Metacontroller sends every child in full, with managedFields and a last-applied annotation that doubles
  // each object; Fastify's 1 MiB default is reached by a few dozen backups. 32 MiB is far above any schedule
  // with a sane retention, yet small enough that a runaway body cannot exhaust the pod's memory.
  bodyLimit: 32 * 1024 * 1024,
  // Go's HTTP client (Metacontroller) drops idle connections after 90 s; staying open longer means the client
  // always closes first, so it never sends a request on a connection we are closing.
  keepAliveTimeoutMs: 120_000,
  // The chart always sets JOB_IMAGE to the image it deploys; this default serves `npm start` and curl examples.
  jobImage: { image: `talos-etcd-backup:${packageVersion()}`, pullPolicy: 'IfNotPresent', pullSecrets: [] },
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
    jobImage: jobImage(env, problems),
  };
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  return config;
}
