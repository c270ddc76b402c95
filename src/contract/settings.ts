// The Job's settings: environment variables (how the hook server's Job passes them, src/server/backup/job.ts),
// each with a flag of the same meaning (how a person passes them). Flags win. The CLI's parsing and `--help`
// (src/cli.ts), the typed reading (src/job/settings.ts) and the README's settings table are derived from this table.

import {
  boolean,
  choice,
  httpUrl,
  list,
  positiveNumber,
  rfc3339Time,
  seconds,
  wholeNumberAtLeast,
  SettingsReader,
  type Setting,
} from '../api/settings.js';
import {
  CLUSTER_SECRETS_SOURCES,
  COMPRESSIONS,
  OBJECT_LOCK_MODES,
  SSE_ALGORITHMS,
  type BackupSpec,
} from '../api/types.js';
import { copiesParser } from './copies.js';
import { DEFAULT_PREFIX } from './object-key.js';

/** Every setting, in the order `--help` and the README list them. */
export const SETTINGS = {
  talosconfig: {
    env: 'TALOSCONFIG',
    flag: 'talosconfig',
    help: 'path of the talosconfig',
    default: '/var/run/secrets/talos.dev/config',
  },
  context: { env: 'TALOS_CONTEXT', flag: 'context', help: "talosconfig context (default: the file's current context)" },
  endpoints: {
    env: 'TALOS_ENDPOINTS',
    flag: 'endpoints',
    help: "comma-separated Talos API endpoints, host or host:port (default: the talosconfig's)",
  },
  node: {
    env: 'TALOS_NODE',
    flag: 'node',
    help: 'pin the snapshot to this control-plane node (default: the first endpoint that answers serves)',
  },
  connectTimeout: {
    env: 'TALOS_CONNECT_TIMEOUT_SECONDS',
    flag: 'connect-timeout',
    help: 'seconds to wait for the first bytes from an endpoint before trying the next',
    default: '30',
    parse: positiveNumber,
  },
  idleTimeout: {
    env: 'TALOS_IDLE_TIMEOUT_SECONDS',
    flag: 'idle-timeout',
    help: 'seconds without data after which a stream counts as broken',
    default: '60',
    parse: positiveNumber,
  },
  bucket: { env: 'S3_BUCKET', flag: 'bucket', help: 'S3 bucket (required)' },
  region: { env: 'S3_REGION', flag: 'region', help: 'S3 region (required; AWS_REGION is used when unset)' },
  endpoint: { env: 'S3_ENDPOINT', flag: 'endpoint', help: 'S3-compatible endpoint URL (default: AWS)', parse: httpUrl },
  forcePathStyle: {
    env: 'S3_FORCE_PATH_STYLE',
    flag: 'force-path-style',
    help: 'true|false (default: true with an endpoint)',
    parse: boolean,
  },
  insecureSkipTLSVerify: {
    env: 'S3_INSECURE_SKIP_TLS_VERIFY',
    flag: 'insecure-skip-tls-verify',
    help: 'true|false: do not verify the endpoint certificate',
    default: 'false',
    parse: boolean,
  },
  caBundle: { env: 'S3_CA_BUNDLE', flag: 'ca-bundle', help: 'path of a PEM CA bundle for the endpoint' },
  prefix: { env: 'S3_PREFIX', flag: 'prefix', help: 'first segment(s) of the object key', default: DEFAULT_PREFIX },
  cluster: {
    env: 'CLUSTER_NAME',
    flag: 'cluster',
    help: 'the <cluster> segment of the object key (required unless --key)',
  },
  key: {
    env: 'S3_KEY',
    flag: 'key',
    help: 'the whole object key (snapshot: overrides prefix/cluster/time; verify, delete: required; restore: default the newest backup of `--cluster` under `--prefix`)',
  },
  time: { env: 'BACKUP_TIME', flag: 'time', help: 'RFC 3339 time for the key (default: now)', parse: rfc3339Time },
  partSize: {
    env: 'S3_PART_SIZE_MIB',
    flag: 'part-size-mib',
    help: 'multipart part size in MiB (memory is about part size x (queue size + 2); objects up to 10000 parts)',
    default: '8',
    parse: positiveNumber,
  },
  queueSize: {
    env: 'S3_QUEUE_SIZE',
    flag: 'queue-size',
    help: 'parts uploaded concurrently',
    default: '2',
    parse: positiveNumber,
  },
  backupNamespace: {
    env: 'BACKUP_NAMESPACE',
    flag: 'backup-namespace',
    help: 'namespace of the TalosEtcdBackup (object metadata)',
    default: '',
  },
  backupName: {
    env: 'BACKUP_NAME',
    flag: 'backup-name',
    help: 'name of the TalosEtcdBackup (object metadata)',
    default: 'manual',
  },
  backupUid: {
    env: 'BACKUP_UID',
    flag: 'backup-uid',
    help: 'uid of the TalosEtcdBackup: a retry with the same uid may complete its own object (default: random)',
  },
  compression: {
    env: 'COMPRESSION',
    flag: 'compression',
    help: '`none`|`gzip`|`zstd`: compress the snapshot while it streams (key suffix `.gz`/`.zst`)',
    default: 'none',
    parse: choice(COMPRESSIONS),
  },
  ageRecipients: {
    env: 'AGE_RECIPIENTS',
    flag: 'age-recipients',
    help: 'comma-separated age public keys (`age1...`): encrypt the snapshot to them while it streams (key suffix `.age`)',
    parse: list,
  },
  ageIdentity: {
    env: 'AGE_IDENTITY_FILE',
    flag: 'age-identity',
    help: 'path of an age identity file (`AGE-SECRET-KEY-1...`, as `age-keygen` writes it): decrypts for verify and restore',
  },
  sse: {
    env: 'S3_SSE',
    flag: 'sse',
    help: '`AES256`|`aws:kms`: server-side encryption of the object',
    parse: choice(SSE_ALGORITHMS),
  },
  sseKmsKeyId: {
    env: 'S3_SSE_KMS_KEY_ID',
    flag: 'sse-kms-key-id',
    help: "KMS key id or ARN for `--sse aws:kms` (default: the account's S3 key)",
  },
  objectLockMode: {
    env: 'S3_OBJECT_LOCK_MODE',
    flag: 'object-lock-mode',
    help: '`GOVERNANCE`|`COMPLIANCE`: lock the object with S3 Object Lock (the bucket must have it enabled)',
    parse: choice(OBJECT_LOCK_MODES),
  },
  objectLockRetainDays: {
    env: 'S3_OBJECT_LOCK_RETAIN_DAYS',
    flag: 'object-lock-retain-days',
    help: 'days the object stays locked, with `--object-lock-mode`',
    parse: wholeNumberAtLeast(1, 'days'),
  },
  copies: {
    env: 'S3_COPIES',
    flag: 'copies',
    help: 'JSON list of further S3 destinations written in the same pass, `[{"name","required","bucket","region","endpoint","forcePathStyle","insecureSkipTLSVerify","caBundle","prefix","key","sse","sseKmsKeyId","objectLockMode","objectLockRetainDays"}]` (`caBundle`: a file path; copy N\'s keys in `S3_COPY_<N>_ACCESS_KEY_ID`/`S3_COPY_<N>_SECRET_ACCESS_KEY`, N from 1; the Job sets it from `backupStorage.copies`); delete: every copy\'s `key` (and `secretsKey`) is deleted too',
    parse: copiesParser,
  },
  copy: {
    env: 'S3_COPY',
    flag: 'copy',
    help: 'verify, restore: read copy N of `--copies` (from 1) instead of the primary destination; 0 = the primary',
    default: '0',
    parse: wholeNumberAtLeast(0, 'copies'),
  },
  verify: {
    env: 'VERIFY',
    flag: 'verify',
    help: 'true|false: after the upload, read the object back and prove it restorable',
    default: 'false',
    parse: boolean,
  },
  clusterSecretsDir: {
    env: 'CLUSTER_SECRETS_DIR',
    flag: 'cluster-secrets-dir',
    help: "snapshot: a directory of a Secret's keys, one file each (a Secret volume): stored beside the snapshot as a Secret manifest, age-encrypted to `--age-recipients` (required: never stored in plaintext), at the snapshot's key with `.secrets.yaml.age`; an empty directory is recorded as not stored",
  },
  clusterSecretsName: {
    env: 'CLUSTER_SECRETS_NAME',
    flag: 'cluster-secrets-name',
    help: "snapshot: the Secret's name in the stored manifest (default: the directory's name); its namespace is `BACKUP_NAMESPACE`",
  },
  clusterSecretsSource: {
    env: 'CLUSTER_SECRETS_SOURCE',
    flag: 'cluster-secrets-source',
    help: "snapshot: what the Secret is, recorded with it: `clusterSecretsRef`, or `talosOperatorState` (talos-operator's `<TalosControlPlane>-state`, labelled `talos.alperen.cloud/type: state` in the manifest, as talos-operator labels it)",
    default: 'clusterSecretsRef',
    parse: choice(CLUSTER_SECRETS_SOURCES),
  },
  secretsKey: {
    env: 'CLUSTER_SECRETS_KEY',
    flag: 'secrets-key',
    help: "verify, delete, restore-test-fetch: the key of the backup's cluster secrets (`….secrets.yaml.age`), read back or deleted with the snapshot",
  },
  output: {
    env: 'RESTORE_OUTPUT',
    flag: 'output',
    help: "restore: the file to write (default: the key's file name without `.gz`/`.zst`/`.age`, in the current directory), and beside it `<file>.secrets.yaml` when the backup stored the cluster's secrets; never overwritten",
  },
  reportStatus: {
    env: 'REPORT_STATUS',
    flag: 'report-status',
    help: "true|false: write progress and the outcome into the TalosEtcdBackup's `status.report` (`BACKUP_NAMESPACE`/`BACKUP_NAME`) through the Kubernetes API, as the pod's service account (the Job sets it)",
    default: 'false',
    parse: boolean,
  },
  progressInterval: {
    env: 'PROGRESS_INTERVAL_SECONDS',
    flag: 'progress-interval',
    help: 'with `REPORT_STATUS`: least seconds between two progress reports',
    default: '10',
    parse: positiveNumber,
  },
  reportPermissionWait: {
    env: 'REPORT_PERMISSION_WAIT_SECONDS',
    flag: 'report-permission-wait',
    help: 'with `REPORT_STATUS`: how long the first report retries a 403 (the RoleBinding Metacontroller creates last may not exist yet when the pod starts); after it, exit 2',
    default: '60',
    parse: seconds,
  },
  requiredSecrets: {
    env: 'REQUIRED_SECRETS',
    flag: 'required-secrets',
    help: 'JSON list of the Secret/ConfigMap keys the Job mounts, `[{"kind","name","key","env"|"pathEnv"}]` (the variable holding the value, or the path of the file; without `key`, the directory of a whole Secret): a missing one fails at once with `Failed to get secret: ...` (the Job sets it)',
  },
  deleteWait: {
    env: 'DELETE_WAIT_SECONDS',
    flag: 'wait-seconds',
    help: "`delete`: after deleting, wait this long, then abort uploads left open at the key and delete this backup's object again if one appeared meanwhile",
    details:
      "The delete Job of a backup deleted before it finished sets 40 (the snapshot pod's 30 s grace period + 10): the snapshot Job is gone before the delete Job is asked for, but its pod may still be stopping, and an upload completing then would leave an object nobody deletes.",
    default: '0',
    parse: seconds,
  },
  restoreTestDir: {
    env: 'RESTORE_TEST_DIR',
    flag: 'restore-test-dir',
    help: "restore tests: the pod's emptyDir, where `restore-test-fetch` writes the snapshot and etcd listens on the unix socket `etcd.sock:2379` (the Job sets it)",
  },
  requestedAt: {
    env: 'RESTORE_TEST_REQUESTED_AT',
    flag: 'requested-at',
    help: 'restore tests: the request the test answers, recorded with its outcome (the Job sets it)',
    parse: rfc3339Time,
  },
  expectedSize: {
    env: 'EXPECTED_SIZE',
    flag: 'expected-size',
    help: 'restore tests: the stored size the backup recorded (the Job sets it)',
    parse: wholeNumberAtLeast(0, 'bytes'),
  },
  expectedSha256: {
    env: 'EXPECTED_SHA256',
    flag: 'expected-sha256',
    help: "restore tests: the stored bytes' sha256 the backup recorded (the Job sets it)",
  },
  expectedEtcdSha256: {
    env: 'EXPECTED_ETCD_SHA256',
    flag: 'expected-etcd-sha256',
    help: "restore tests: the snapshot's sha256 trailer the backup recorded (the Job sets it)",
  },
  expectedSecretsSha256: {
    env: 'EXPECTED_SECRETS_SHA256',
    flag: 'expected-secrets-sha256',
    help: "restore tests: the cluster secrets' sha256 the backup recorded, with `CLUSTER_SECRETS_KEY` (the Job sets it)",
  },
  expectedRevision: {
    env: 'EXPECTED_REVISION',
    flag: 'expected-revision',
    help: 'restore tests: the etcd revision the backup recorded (the Job sets it)',
    parse: wholeNumberAtLeast(0, 'revision'),
  },
  expectedKeys: {
    env: 'EXPECTED_KEYS',
    flag: 'expected-keys',
    help: 'restore tests: the keys (revisions) the backup recorded (the Job sets it)',
    parse: wholeNumberAtLeast(0, 'keys'),
  },
  etcdStartTimeout: {
    env: 'ETCD_START_TIMEOUT_SECONDS',
    flag: 'etcd-start-timeout',
    help: '`restore-test-check`: how long the restored etcd may take to answer',
    default: '300',
    parse: positiveNumber,
  },
  podName: {
    env: 'POD_NAME',
    flag: 'pod-name',
    help: 'name of the pod, recorded in `status.report` (the Job sets it from the downward API)',
  },
} satisfies Record<string, Setting & { flag: string }>;

export type SettingName = keyof typeof SETTINGS;
/** The settings as text, after flags, environment and defaults (resolveSettings). */
export type RawSettings = Partial<Record<SettingName, string>>;

export type JobCommand = 'snapshot' | 'verify' | 'delete' | 'restore' | 'restore-test-fetch' | 'restore-test-check';

const S3: SettingName[] = [
  'bucket',
  'key',
  'region',
  'endpoint',
  'forcePathStyle',
  'insecureSkipTLSVerify',
  'caBundle',
];

const RESTORE_TEST: SettingName[] = [
  'restoreTestDir',
  'requestedAt',
  'expectedSize',
  'expectedSha256',
  'expectedEtcdSha256',
  'expectedSecretsSha256',
  'expectedRevision',
  'expectedKeys',
  'etcdStartTimeout',
];
const REPORTING: SettingName[] = [
  'backupNamespace',
  'backupName',
  'backupUid',
  'reportStatus',
  'reportPermissionWait',
  'podName',
];

/** The settings each command takes, in its `--help` order: snapshot takes all but restore's, secretsKey and the restore test's. */
export const COMMAND_SETTINGS: Record<JobCommand, readonly SettingName[]> = {
  snapshot: (Object.keys(SETTINGS) as SettingName[]).filter(
    (name) => name !== 'output' && name !== 'secretsKey' && name !== 'copy' && !RESTORE_TEST.includes(name),
  ),
  verify: [...S3, 'secretsKey', 'ageIdentity', 'copies', 'copy'],
  delete: [...S3, 'secretsKey', 'backupUid', 'backupNamespace', 'deleteWait', 'requiredSecrets', 'copies'],
  restore: [...S3, 'prefix', 'cluster', 'ageIdentity', 'output', 'copies', 'copy'],
  'restore-test-fetch': [...S3, 'secretsKey', 'ageIdentity', ...RESTORE_TEST, ...REPORTING, 'requiredSecrets'],
  'restore-test-check': [...RESTORE_TEST, ...REPORTING],
};

export class SettingsError extends Error {
  override name = 'SettingsError';
}

/**
 * Flag values over environment values over defaults. `explicit`: only what the flags and this tool's own variables
 * say (no defaults, no AWS_REGION), for settings that fill in what a TalosEtcdBackup already records.
 */
export function resolveSettings(
  env: NodeJS.ProcessEnv,
  flags: Record<string, string | undefined>,
  opts: { explicit?: boolean } = {},
): RawSettings {
  const raw: RawSettings = {};
  for (const [name, setting] of Object.entries(SETTINGS) as [SettingName, Setting & { flag: string }][]) {
    const value =
      flags[setting.flag] ?? (env[setting.env] || undefined) ?? (opts.explicit ? undefined : setting.default);
    if (value !== undefined) raw[name] = value;
  }
  if (!opts.explicit && raw.region === undefined && env.AWS_REGION) raw.region = env.AWS_REGION;
  return raw;
}

/**
 * Where a backup's objects are, as settings: what the hook server gives the Jobs (as their variables) and what
 * `restore --backup` reads from a TalosEtcdBackup. The S3 keys and the CA bundle come from Secrets, not from here.
 */
export function s3SettingsOf(s3: BackupSpec['backupStorage']['s3']): RawSettings {
  const text = (value: boolean | undefined) => (value === undefined ? undefined : String(value));
  const settings: RawSettings = {
    bucket: s3.bucket,
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: text(s3.forcePathStyle),
    insecureSkipTLSVerify: text(s3.insecureSkipTLSVerify),
  };
  return Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined)) as RawSettings;
}

/** How a setting is named in a message: its variable and its flag. */
export function settingLabel(name: SettingName): string {
  return `${SETTINGS[name].env} (--${SETTINGS[name].flag})`;
}

/** Reads the Job's settings through the table's parsers; `throwIfAny` reports every problem at once. */
export class Problems extends SettingsReader<typeof SETTINGS> {
  constructor(raw: RawSettings) {
    super(SETTINGS, raw, settingLabel);
  }

  throwIfAny(): void {
    const summary = this.summary();
    if (summary) throw new SettingsError(summary);
  }
}
