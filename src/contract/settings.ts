// Settings of the `snapshot` and `verify` commands: environment variables (how the Job passes them), each with
// a flag of the same meaning (how a person passes them). Flags win. Every problem is reported at once.

import { DEFAULT_PREFIX } from './object-key.js';

export interface Setting {
  env: string;
  flag: string;
  help: string;
  default?: string;
}

/** Every setting, in the order `--help` and the README list them. */
export const SETTINGS = {
  talosconfig: { env: 'TALOSCONFIG', flag: 'talosconfig', help: 'path of the talosconfig', default: '/var/run/secrets/talos.dev/config' },
  context: { env: 'TALOS_CONTEXT', flag: 'context', help: "talosconfig context (default: the file's current context)" },
  endpoints: { env: 'TALOS_ENDPOINTS', flag: 'endpoints', help: "comma-separated Talos API endpoints, host or host:port (default: the talosconfig's)" },
  node: { env: 'TALOS_NODE', flag: 'node', help: 'pin the snapshot to this control-plane node (default: the first endpoint that answers serves)' },
  connectTimeout: { env: 'TALOS_CONNECT_TIMEOUT_SECONDS', flag: 'connect-timeout', help: 'seconds to wait for the first bytes from an endpoint before trying the next', default: '30' },
  idleTimeout: { env: 'TALOS_IDLE_TIMEOUT_SECONDS', flag: 'idle-timeout', help: 'seconds without data after which a stream counts as broken', default: '60' },
  bucket: { env: 'S3_BUCKET', flag: 'bucket', help: 'S3 bucket (required)' },
  region: { env: 'S3_REGION', flag: 'region', help: 'S3 region (required; AWS_REGION is used when unset)' },
  endpoint: { env: 'S3_ENDPOINT', flag: 'endpoint', help: 'S3-compatible endpoint URL (default: AWS)' },
  forcePathStyle: { env: 'S3_FORCE_PATH_STYLE', flag: 'force-path-style', help: 'true|false (default: true with an endpoint)' },
  insecureSkipTLSVerify: { env: 'S3_INSECURE_SKIP_TLS_VERIFY', flag: 'insecure-skip-tls-verify', help: 'true|false: do not verify the endpoint certificate', default: 'false' },
  caBundle: { env: 'S3_CA_BUNDLE', flag: 'ca-bundle', help: 'path of a PEM CA bundle for the endpoint' },
  prefix: { env: 'S3_PREFIX', flag: 'prefix', help: 'first segment(s) of the object key', default: DEFAULT_PREFIX },
  cluster: { env: 'CLUSTER_NAME', flag: 'cluster', help: 'the <cluster> segment of the object key (required unless --key)' },
  key: { env: 'S3_KEY', flag: 'key', help: 'the whole object key (snapshot: overrides prefix/cluster/time; verify, delete: required; restore: default the newest backup of --cluster under --prefix)' },
  time: { env: 'BACKUP_TIME', flag: 'time', help: 'RFC 3339 time for the key (default: now)' },
  partSize: { env: 'S3_PART_SIZE_MIB', flag: 'part-size-mib', help: 'multipart part size in MiB (memory is about part size x (queue size + 2); objects up to 10000 parts)', default: '8' },
  queueSize: { env: 'S3_QUEUE_SIZE', flag: 'queue-size', help: 'parts uploaded concurrently', default: '2' },
  backupNamespace: { env: 'BACKUP_NAMESPACE', flag: 'backup-namespace', help: 'namespace of the TalosEtcdBackup (object metadata)', default: '' },
  backupName: { env: 'BACKUP_NAME', flag: 'backup-name', help: 'name of the TalosEtcdBackup (object metadata)', default: 'manual' },
  backupUid: { env: 'BACKUP_UID', flag: 'backup-uid', help: 'uid of the TalosEtcdBackup: a retry with the same uid may complete its own object (default: random)' },
  compression: { env: 'COMPRESSION', flag: 'compression', help: 'none|gzip|zstd: compress the snapshot while it streams (key suffix .gz/.zst)', default: 'none' },
  ageRecipients: { env: 'AGE_RECIPIENTS', flag: 'age-recipients', help: 'comma-separated age public keys (age1...): encrypt the snapshot to them while it streams (key suffix .age)' },
  ageIdentity: { env: 'AGE_IDENTITY_FILE', flag: 'age-identity', help: 'path of an age identity file (AGE-SECRET-KEY-1...): decrypts for verify and restore' },
  sse: { env: 'S3_SSE', flag: 'sse', help: 'AES256|aws:kms: server-side encryption of the object' },
  sseKmsKeyId: { env: 'S3_SSE_KMS_KEY_ID', flag: 'sse-kms-key-id', help: 'KMS key id or ARN for --sse aws:kms (default: the account\'s S3 key)' },
  objectLockMode: { env: 'S3_OBJECT_LOCK_MODE', flag: 'object-lock-mode', help: 'GOVERNANCE|COMPLIANCE: lock the object with S3 Object Lock (the bucket must have it enabled)' },
  objectLockRetainDays: { env: 'S3_OBJECT_LOCK_RETAIN_DAYS', flag: 'object-lock-retain-days', help: 'days the object stays locked, with --object-lock-mode' },
  verify: { env: 'VERIFY', flag: 'verify', help: 'true|false: after the upload, read the object back and prove it restorable', default: 'false' },
  output: { env: 'RESTORE_OUTPUT', flag: 'output', help: 'restore: the file to write (default: the key\'s file name without .gz/.zst/.age, in the current directory); never overwritten' },
  reportStatus: { env: 'REPORT_STATUS', flag: 'report-status', help: "true|false: write progress and the outcome into the TalosEtcdBackup's status.report (BACKUP_NAMESPACE/BACKUP_NAME) through the Kubernetes API (in-cluster service account)", default: 'false' },
  progressInterval: { env: 'PROGRESS_INTERVAL_SECONDS', flag: 'progress-interval', help: 'with REPORT_STATUS: least seconds between two progress reports', default: '10' },
  reportPermissionWait: { env: 'REPORT_PERMISSION_WAIT_SECONDS', flag: 'report-permission-wait', help: 'with REPORT_STATUS: how long the first report waits for its permission (403: the RoleBinding Metacontroller creates last may not exist yet)', default: '60' },
  requiredSecrets: { env: 'REQUIRED_SECRETS', flag: 'required-secrets', help: 'JSON list of the Secret/ConfigMap keys the Job mounts, [{"kind","name","key","env"|"pathEnv"}] (the variable holding the value, or the path of the file): a missing one fails at once, naming it' },
  deleteWait: { env: 'DELETE_WAIT_SECONDS', flag: 'wait-seconds', help: "delete: after deleting, wait this long, then abort uploads left open at the key and delete this backup's object again if one appeared (a snapshot pod still terminating)", default: '0' },
  podName: { env: 'POD_NAME', flag: 'pod-name', help: 'name of the pod, recorded in status.report' },
} satisfies Record<string, Setting>;

export type SettingName = keyof typeof SETTINGS;
export type RawSettings = Partial<Record<SettingName, string>>;

export class SettingsError extends Error {
  override name = 'SettingsError';
}

/** Flag values over environment values over defaults. */
export function resolveSettings(env: NodeJS.ProcessEnv, flags: Record<string, string | undefined>): RawSettings {
  const raw: RawSettings = {};
  for (const [name, setting] of Object.entries(SETTINGS) as [SettingName, Setting][]) {
    const value = flags[setting.flag] ?? (env[setting.env] || undefined) ?? setting.default;
    if (value !== undefined) raw[name] = value;
  }
  if (raw.region === undefined && env.AWS_REGION) raw.region = env.AWS_REGION;
  return raw;
}

// RFC 3339 date-time: date, `T` or space, time with optional fraction, and a zone (`Z` or an offset). Date.parse
// alone would also take "2026", "March 1" or a time without zone (read in the machine's own zone).
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export class Problems {
  readonly list: string[] = [];
  required(raw: RawSettings, name: SettingName): string {
    const value = raw[name];
    if (value === undefined || value === '') this.list.push(`${SETTINGS[name].env} (--${SETTINGS[name].flag}) is required`);
    return value ?? '';
  }
  positive(raw: RawSettings, name: SettingName): number {
    const value = Number(raw[name]);
    if (!Number.isFinite(value) || value <= 0) this.list.push(`${SETTINGS[name].env} (--${SETTINGS[name].flag}) must be a positive number, got ${JSON.stringify(raw[name])}`);
    return value;
  }
  boolean(raw: RawSettings, name: SettingName): boolean | undefined {
    const value = raw[name];
    if (value === undefined) return undefined;
    if (value !== 'true' && value !== 'false') this.list.push(`${SETTINGS[name].env} (--${SETTINGS[name].flag}) must be true or false, got ${JSON.stringify(value)}`);
    return value === 'true';
  }
  /** An RFC 3339 time; when invalid, the problem is listed and `fallback` returned, so later steps still run. */
  time(raw: RawSettings, name: SettingName, fallback: Date): Date {
    if (raw[name] === undefined) return fallback;
    const date = new Date(raw[name]!);
    if (Number.isNaN(date.getTime()) || !RFC3339.test(raw[name]!)) {
      this.list.push(`${SETTINGS[name].env} (--${SETTINGS[name].flag}) must be an RFC 3339 time such as 2026-01-15T02:00:00Z, got ${JSON.stringify(raw[name])}`);
      return fallback;
    }
    return date;
  }
  /** An http:// or https:// URL; its value is echoed only when it carries no credentials. */
  url(raw: RawSettings, name: SettingName): string | undefined {
    const value = raw[name];
    if (value === undefined || value === '') return undefined;
    const where = `${SETTINGS[name].env} (--${SETTINGS[name].flag})`;
    let url: URL | undefined;
    try {
      url = new URL(value);
    } catch {
      url = undefined;
    }
    if (url && (url.username || url.password)) {
      this.list.push(`${where} must not carry credentials (user:password@): S3 keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`);
    } else if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
      this.list.push(`${where} must be an http:// or https:// URL such as https://minio.example.com:9000, got ${JSON.stringify(value)}`);
    }
    return value;
  }
  throwIfAny(): void {
    if (this.list.length > 0) throw new SettingsError(`invalid configuration: ${this.list.join('; ')}`);
  }
}

/**
 * Flags the snapshot Job starts node with (the backup controller's Job command and the benchmark both use this).
 * A 1 GiB snapshot is a million 1 KiB gRPC messages, each leaving short-lived garbage: V8's default young
 * generation (16 MiB semi-spaces) grows to ~50 MiB of heap for it. 2 MiB semi-spaces keep the heap near 20 MiB;
 * measured with `npm run bench`: peak RSS 148 instead of 213 MiB at 1 GiB, for more frequent scavenges.
 */
export const SNAPSHOT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

/**
 * Environment the snapshot Job runs with, for the same reason. glibc's malloc would otherwise keep the freed
 * 8 MiB part buffers in its heap (its mmap threshold grows to fit them) spread over several arenas; a fixed 1 MiB
 * threshold returns them to the system on free. Measured with `npm run bench`: peak RSS 145–161 MiB at 1 GiB
 * instead of 163–166 MiB. (Other C libraries ignore these variables.)
 */
export const SNAPSHOT_RUNTIME_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '1048576' };
