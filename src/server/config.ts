// The hook server's settings: environment variables (`--host` and `--port` override the first two), checked once
// at start. `serve --help` and the README's table are derived from this table.

import { packageVersion } from '../api/crds.js';
import { boolean, integerFrom, list, oneOf, SettingsReader, type Parser, type Setting } from '../api/settings.js';
import type { JobImage } from './backup/job.js';
import { DEFAULT_BACKUP_HOOK_SETTINGS, type BackupHookSettings } from './backup/settings.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;

const imageReference: Parser<string> = (value) =>
  /\s/.test(value.trim())
    ? { problem: `must be an image reference without spaces, got ${JSON.stringify(value.trim())}` }
    : { value: value.trim() };

/** Every setting of `serve`, in the order `--help` and the README list them. */
export const SERVER_SETTINGS = {
  host: { env: 'HOST', flag: 'host', help: 'address to listen on', default: '0.0.0.0' },
  port: { env: 'PORT', flag: 'port', help: 'port to listen on', default: '8080', parse: integerFrom(0, 65535) },
  logLevel: {
    env: 'LOG_LEVEL',
    help: LOG_LEVELS.map((l) => `\`${l}\``).join(', '),
    default: 'info',
    parse: oneOf(LOG_LEVELS),
  },
  // Metacontroller sends every child in full, with managedFields and a last-applied annotation that doubles
  // each object: 1,000 backups (the most `retention` keeps) are 5.4 MiB and 276,169 JSON values (bench/fixtures.ts),
  // and Fastify's 1 MiB default is reached by about 190. The value limit derived from 16 MiB (http/json-body.ts)
  // admits ~1,500 such backups (8.2 MiB), the bytes leave room for larger objects, and the worst body both admit
  // peaks at 221 MiB of RSS (277 MiB for four at once), inside the chart's 384 MiB (`npm run bench`, "worst
  // bodies"; test/server/http/memory.test.ts). 32 MiB of `[]` in the template took the server to 2,225 MiB.
  bodyLimit: {
    env: 'BODY_LIMIT_BYTES',
    help: 'largest hook request',
    details:
      'Metacontroller sends every child in full, with `managedFields` and a last-applied annotation: 1,000 backups (the most `retention` keeps) are 5.4 MiB and 276,169 JSON values. With it come limits checked on the text before anything is parsed: at most `BODY_LIMIT_BYTES` / 40 values (419,430: ~1,500 such backups, 8.2 MiB; the CRD lets a schedule keep at most 1,100), 100 levels of nesting, and in bodies over 1 MiB 1,536 distinct keys in small objects. Raising it raises the value limit and the memory a request may take: raise `resources.limits.memory` in proportion.',
    default: String(16 * 1024 * 1024),
    parse: integerFrom(1024, 1024 * 1024 * 1024),
  },
  // Go's HTTP client (Metacontroller) drops idle connections after 90 s; staying open longer means the client
  // always closes first, so it never sends a request on a connection we are closing.
  keepAliveTimeout: {
    env: 'KEEP_ALIVE_TIMEOUT_SECONDS',
    help: "idle keep-alive timeout; longer than the 90 s after which Go's HTTP client (Metacontroller) drops idle connections, so the client always closes first",
    default: '120',
    parse: integerFrom(1, 3600),
  },
  // Metacontroller gives up on a hook call after 10 s (its default hook timeout, the chart's
  // metacontroller.hookTimeout). In the cluster a 16 MiB body arrives in well under a second; a request still
  // arriving after 5 s is a stuck or hostile client, and leaves the answer no time anyway.
  requestTimeout: {
    env: 'REQUEST_TIMEOUT_SECONDS',
    help: 'time a client has to send a whole request (headers and body); a slower one gets 408 and is disconnected',
    details: "Below Metacontroller's hook timeout (10 s), after which it has given up anyway.",
    default: '5',
    parse: integerFrom(1, 300),
  },
  // Kubernetes removes a terminating pod from its Service's endpoints at the same time as it sends SIGTERM, and
  // kube-proxy and the clients need a few seconds to notice: until then new connections still arrive. Serving on
  // for 5 s (the usual preStop sleep) lets them land; a human's Ctrl-C (SIGINT) does not wait.
  shutdownDelay: {
    env: 'SHUTDOWN_DELAY_SECONDS',
    help: 'after SIGTERM, how long the server keeps serving before it stops accepting connections (0: close at once)',
    default: '5',
    parse: integerFrom(0, 300),
  },
  // A snapshot or delete Job not there 10 minutes after it was asked for was refused (src/server/backup/settings.ts).
  attachmentDeadline: {
    env: 'ATTACHMENT_DEADLINE_SECONDS',
    help: "how long a backup's snapshot Job may be asked for without appearing before the backup fails, and its delete Job before a deleted backup is let go with its object kept (Metacontroller never tells the hook that a create was refused); 30 to 86400",
    default: String(DEFAULT_BACKUP_HOOK_SETTINGS.attachmentDeadlineSeconds),
    parse: integerFrom(30, 86_400),
  },
  // Metacontroller resyncs every schedule and backup each resyncPeriodSeconds (the chart's 300 s), so a schedule
  // still there is synced well within 15 minutes: one not synced for that long is gone (or Metacontroller is).
  metricsExpiry: {
    env: 'METRICS_EXPIRY_SECONDS',
    help: "how long a schedule's series stay on /metrics without a sync of the schedule or of one of its backups; above Metacontroller's resync period",
    details: 'The chart sets it to three resync periods (`metacontroller.resyncPeriodSeconds`), at least 900.',
    default: '900',
    parse: integerFrom(60, 86_400),
  },
  // TalosControlPlanes are asked for unless the chart found no such CRD at install time.
  talosOperator: {
    env: 'TALOS_OPERATOR',
    help: "`false`: never ask Metacontroller for TalosControlPlanes (talos-operator's CRD is not installed); `talosControlPlaneRef` backups then fail at once, saying so",
    details: 'The chart sets it from `talosOperator.enabled`.',
    default: String(DEFAULT_BACKUP_HOOK_SETTINGS.talosOperator),
    parse: boolean,
  },
  // The chart always sets JOB_IMAGE to the image it deploys; the default serves `npm start` and curl examples.
  jobImage: {
    env: 'JOB_IMAGE',
    help: "the image the snapshot and delete Jobs run: this server's own image (the Helm chart sets it)",
    details: 'The Jobs run `node --max-semi-space-size=2 --single-threaded-gc /app/dist/src/main.js snapshot` in it.',
    parse: imageReference,
  },
  jobImagePullPolicy: {
    env: 'JOB_IMAGE_PULL_POLICY',
    help: '`Always`, `IfNotPresent` or `Never`',
    default: 'IfNotPresent',
    parse: oneOf(PULL_POLICIES),
  },
  jobImagePullSecrets: {
    env: 'JOB_IMAGE_PULL_SECRETS',
    help: 'comma-separated names of image pull Secrets, which must exist in every namespace with backups',
    parse: list,
  },
} satisfies Record<string, Setting>;

type ServerSettingName = keyof typeof SERVER_SETTINGS;

/** The default image of the Jobs: this package's own version. */
const defaultJobImage = (): string => `talos-etcd-backup:${packageVersion()}`;

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
  /** How long a schedule's series stay on /metrics without being refreshed by a sync, in seconds. */
  metricsExpirySeconds: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads the server configuration; throws a ConfigError listing every problem at once. */
export function parseServerConfig(env: NodeJS.ProcessEnv): ServerConfig {
  const raw: Partial<Record<ServerSettingName, string>> = {};
  for (const [name, setting] of Object.entries(SERVER_SETTINGS) as [ServerSettingName, Setting][]) {
    const value = env[setting.env] || setting.default;
    if (value !== undefined) raw[name] = value;
  }
  const settings = new SettingsReader(SERVER_SETTINGS, raw, (name) => SERVER_SETTINGS[name].env);
  // Every setting has a default, so a missing value below means an invalid one, already listed.
  const config: ServerConfig = {
    logLevel: settings.get('logLevel')!,
    host: settings.get('host')!,
    port: settings.get('port')!,
    bodyLimit: settings.get('bodyLimit')!,
    keepAliveTimeoutMs: settings.get('keepAliveTimeout')! * 1000,
    requestTimeoutMs: settings.get('requestTimeout')! * 1000,
    shutdownDelayMs: settings.get('shutdownDelay')! * 1000,
    jobImage: {
      pullPolicy: settings.get('jobImagePullPolicy')!,
      image: settings.get('jobImage') || defaultJobImage(),
      pullSecrets: settings.get('jobImagePullSecrets') ?? [],
    },
    backupHooks: {
      attachmentDeadlineSeconds: settings.get('attachmentDeadline')!,
      talosOperator: settings.get('talosOperator')!,
    },
    metricsExpirySeconds: settings.get('metricsExpiry')!,
  };
  const summary = settings.summary();
  if (summary) throw new ConfigError(summary);
  return config;
}

export const DEFAULTS: ServerConfig = parseServerConfig({});
