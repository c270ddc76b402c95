// `talos-etcd-backup snapshot`, `verify`, `delete` (the Jobs' commands) and `restore` (a person's). One JSON line on
// stdout on success; one line on stderr and a non-zero exit on failure (see errors.ts).

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { deleteSnapshotObject, deleteSnapshotObjectAfterSnapshot, type DeleteOutcome } from './s3/delete.js';
import { DEFAULT_PREFIX, secretsKeyOf, storedFormatOf } from '../contract/object-key.js';
import { readClusterSecrets, storeClusterSecrets } from './pipeline/cluster-secrets.js';
import { createS3Client, type S3Settings } from './s3/client.js';
import { SettingsError, type RawSettings } from '../contract/settings.js';
import { checkRequiredInputs } from './required-inputs.js';
import { defaultOutput, newestBackup, restoreBackup, type RestoreResult } from './pipeline/restore.js';
import { takeSnapshot, type SnapshotOutcome } from './pipeline/snapshot.js';
import {
  deleteSettings,
  reportSettings,
  restoreSettings,
  restoreTestSettings,
  snapshotSettings,
  verifySettings,
} from './settings.js';
import type { StatusReporter } from './kubernetes/status-report.js';
import { verifyObject, type ExpectedObject, type VerifiedObject } from './pipeline/verify.js';
import { normalizeEndpoint, parseTalosconfig, TalosconfigError } from './talos/talosconfig.js';
import { JobError } from './errors.js';
import { checkStep, ETCD_SOCKET, fetchStep, readFetched } from './restore-test/steps.js';
import type { RestoreTestReporter } from './restore-test/report.js';
import type { RestoreTestFigures } from '../api/types.js';
import { formatTime } from '../api/conditions.js';

export interface SnapshotHooks {
  onProgress?: (bytesUploaded: number) => void;
  signal?: AbortSignal;
}

/** `snapshot`: one etcd snapshot from the Talos API into S3, read back and verified when VERIFY=true. */
export async function snapshotCommand(
  raw: RawSettings,
  env: NodeJS.ProcessEnv = process.env,
  now: () => Date = () => new Date(),
  hooks: SnapshotHooks = {},
): Promise<SnapshotOutcome> {
  checkRequiredInputs(raw.requiredSecrets, raw.backupNamespace ?? '', env);
  const {
    bucket,
    key,
    s3,
    partSize,
    queueSize,
    connectTimeoutMs,
    idleTimeoutMs,
    format,
    protection: objectProtection,
    verify,
    verifyIdentities,
    talosconfig,
    secrets: secretsInput,
  } = snapshotSettings(raw, now());

  let context;
  try {
    context = parseTalosconfig(talosconfig.text, raw.context);
  } catch (error) {
    if (!(error instanceof TalosconfigError)) throw error;
    throw new JobError('talosconfig', error.detail, { subject: talosconfig.path, permanent: true, cause: error });
  }
  const endpoints = raw.endpoints
    ? raw.endpoints
        .split(',')
        .map((e) => e.trim())
        .filter(Boolean)
        .map(normalizeEndpoint)
    : context.endpoints;
  const client = createS3Client(s3);
  // Without a uid a manual run gets a unique one, so it never mistakes another object for its own.
  const identity = {
    namespace: raw.backupNamespace ?? '',
    name: raw.backupName ?? '',
    uid: raw.backupUid ?? randomUUID(),
  };
  const snapshot = await takeSnapshot({
    talos: { context, endpoints, node: raw.node, connectTimeoutMs, idleTimeoutMs },
    s3: { client, bucket, key, partSize, queueSize, protection: objectProtection },
    format,
    identity,
    ...hooks,
  });
  // The secrets after the snapshot: a backup whose snapshot failed stores nothing.
  const secrets =
    secretsInput &&
    (await storeClusterSecrets(
      {
        client,
        bucket,
        key: secretsKeyOf(key),
        identity,
        partSize,
        queueSize,
        protection: objectProtection,
        ...(hooks.signal && { signal: hooks.signal }),
      },
      secretsInput,
      format.recipients,
    ));
  const stored = { ...snapshot, ...(secrets && { secrets }) };
  if (!verify) return { ...stored, verified: false };
  // What was uploaded is known exactly: the objects read back must be those bytes.
  const checked = await verifyObject(client, bucket, key, {
    identities: verifyIdentities,
    expected: { size: stored.size, sha256: stored.sha256, etcdSha256: stored.etcdSha256 },
  });
  if (secrets?.key)
    await readClusterSecrets(client, bucket, secrets.key, {
      identities: verifyIdentities,
      expected: { size: secrets.size, sha256: secrets.sha256 },
    });
  return {
    ...stored,
    verified: true,
    verifiedAt: now().toISOString(),
    verification: checked.verification,
    ...(checked.database && { revision: checked.database.revision, keys: checked.database.keys }),
  };
}

/** `verify`: read a stored snapshot (and its cluster secrets) back and check them against the hashes recorded with them. */
export async function verifyCommand(
  raw: RawSettings,
  signal?: AbortSignal,
): Promise<VerifiedObject & { secrets?: { key: string; size: number; sha256: string; keys?: string[] } }> {
  const { bucket, key, secretsKey, s3, identities } = verifySettings(raw);
  const client = createS3Client(s3);
  const verified = await verifyObject(client, bucket, key, { identities, signal });
  if (!secretsKey) return verified;
  const { manifest: _plain, ...secrets } = (await readClusterSecrets(client, bucket, secretsKey, {
    identities,
    signal,
  }))!;
  return { ...verified, secrets: { key: secretsKey, ...secrets } };
}

export interface RestoreHooks {
  onProgress?: (bytesRead: number, total: number | undefined) => void;
  /** Told which key will be restored before the download starts. */
  onKey?: (key: string, skipped: string[]) => void;
  signal?: AbortSignal;
  /** What the object must be (`restore --backup`: the backup's recorded hashes); else those stored with it. */
  expected?: ExpectedObject;
  /** S3 keys and a CA bundle read from the cluster (`restore --backup`), over the settings' own. */
  s3?: Pick<S3Settings, 'credentials' | 'caBundlePem'>;
  /**
   * The cluster secrets a backup's status records (`restore --backup`), false when it records none; undefined:
   * those beside the snapshot's key, if there are any.
   */
  secrets?: { key: string; expected: { size?: number | undefined; sha256?: string | undefined } } | false;
}

/** `restore`: a backup (S3_KEY, else the newest of CLUSTER_NAME under S3_PREFIX) into a verified snapshot file. */
export async function restoreCommand(raw: RawSettings, hooks: RestoreHooks = {}): Promise<RestoreResult> {
  const { bucket, s3, identities: ids } = restoreSettings(raw);
  const client = createS3Client({
    ...s3,
    ...(hooks.s3?.credentials && { credentials: hooks.s3.credentials }),
    ...(hooks.s3?.caBundlePem && { caBundlePem: hooks.s3.caBundlePem }),
  });
  const { key, skipped } = raw.key
    ? { key: raw.key, skipped: [] }
    : await newestBackup(client, bucket, raw.prefix ?? DEFAULT_PREFIX, raw.cluster!);
  hooks.onKey?.(key, skipped);
  const secrets =
    hooks.secrets === undefined
      ? storedFormatOf(key).encrypted && { key: secretsKeyOf(key), optional: true }
      : hooks.secrets && { ...hooks.secrets, optional: false };
  return restoreBackup({
    ...(secrets && { secrets }),
    client,
    bucket,
    key,
    identities: ids,
    output: raw.output ?? defaultOutput(key),
    ...(hooks.expected && { expected: hooks.expected }),
    ...(hooks.onProgress && { onProgress: hooks.onProgress }),
    ...(hooks.signal && { signal: hooks.signal }),
  });
}

/** `delete`: remove a backup's object from S3, only if that backup (BACKUP_UID) wrote it. */
export async function deleteCommand(
  raw: RawSettings,
  env: NodeJS.ProcessEnv = process.env,
): Promise<DeleteOutcome & { bucket: string; key: string; secrets?: DeleteOutcome & { key: string } }> {
  checkRequiredInputs(raw.requiredSecrets, raw.backupNamespace ?? '', env);
  const { bucket, key, secretsKey, uid, waitSeconds, s3 } = deleteSettings(raw);
  const client = createS3Client(s3);
  const snapshot =
    waitSeconds === 0
      ? await deleteSnapshotObject(client, bucket, key, uid)
      : await deleteSnapshotObjectAfterSnapshot(client, bucket, key, uid, waitSeconds);
  if (!secretsKey) return { bucket, key, ...snapshot };
  // After the snapshot's wait (if any) the snapshot pod is gone: one pass deletes what it stored.
  const secrets = await deleteSnapshotObject(client, bucket, secretsKey, uid);
  return { bucket, key, ...snapshot, secrets: { key: secretsKey, ...secrets } };
}
/**
 * Writes progress and the outcome into the backup's status when REPORT_STATUS=true (the snapshot Job), and
 * records Events on the backup (best effort): BackupStarted once the first report landed, BackupSucceeded after
 * the final report, BackupFailed with the same one line as status.report.message, whether that report landed or not.
 */
export async function statusReporterFor(raw: RawSettings, env: NodeJS.ProcessEnv): Promise<StatusReporter | undefined> {
  const settings = reportSettings(raw);
  if (!settings) return undefined;
  const [{ inClusterApi, KubernetesApiError }, { statusReporter }, { backupEvents }, { redact }] = await Promise.all([
    import('./kubernetes/in-cluster.js'),
    import('./kubernetes/status-report.js'),
    import('./kubernetes/events.js'),
    import('./errors.js'),
  ]);
  let api;
  try {
    api = inClusterApi(env);
  } catch (error) {
    throw new SettingsError(`REPORT_STATUS=true, but the Kubernetes API is not usable: ${(error as Error).message}`);
  }
  const warn = (message: string) => process.stderr.write(`${redact(message, env)}\n`);
  const reporter = statusReporter({ api, ...settings, warn });
  const events = backupEvents({
    api,
    backup: { namespace: settings.namespace, name: settings.name, uid: raw.backupUid },
    // The pod's name (downward API); a pod's host name is its name when POD_NAME is not set.
    instance: settings.pod || hostname(),
    warn,
  });
  // A first report refused for good (403 after the wait): the Role or RoleBinding is missing, so an Event would be
  // refused as well; the failure's one line says it all, without a second line about the Event.
  let forbidden = false;
  return {
    ...reporter,
    running: async () => {
      try {
        await reporter.running();
      } catch (error) {
        forbidden = error instanceof KubernetesApiError && error.status === 403;
        throw error;
      }
      await events.started();
    },
    succeeded: async (outcome) => {
      await reporter.succeeded(outcome);
      await events.succeeded(outcome);
    },
    failed: async (message, retryable) => {
      try {
        await reporter.failed(message, retryable);
      } finally {
        if (!forbidden) await events.failed(message);
      }
    },
  };
}

/** `restore-test-fetch`: the backup, verified against its record, into the restore-test pod's directory. */
export async function restoreTestFetchCommand(
  raw: RawSettings,
  env: NodeJS.ProcessEnv,
  startedAt: string,
  signal?: AbortSignal,
): Promise<{ bucket: string; key: string; revision: number; keys: number; size: number; secretsKeys?: number }> {
  checkRequiredInputs(raw.requiredSecrets, raw.backupNamespace ?? '', env);
  const test = restoreTestSettings(raw);
  const { bucket, key, s3, identities } = verifySettings(raw);
  const fetched = await fetchStep({
    client: createS3Client(s3),
    bucket,
    key,
    identities,
    dir: test.dir,
    recorded: test.recorded,
    ...(raw.secretsKey && { secrets: { key: raw.secretsKey, sha256: raw.expectedSecretsSha256 } }),
    startedAt,
    ...(signal && { signal }),
  });
  return { bucket, key, ...fetched };
}

/** `restore-test-check`: the etcd restored from the backup serves it. */
export async function restoreTestCheckCommand(raw: RawSettings): Promise<RestoreTestFigures> {
  const test = restoreTestSettings(raw);
  const { etcdClient } = await import('./etcd/client.js');
  // A unix socket's path is limited to 108 bytes: it is reached relative to the directory.
  process.chdir(test.dir);
  const etcd = etcdClient(`unix:${ETCD_SOCKET}`);
  try {
    return await checkStep({ etcd, recorded: test.recorded, startTimeoutMs: test.etcdStartTimeoutMs });
  } finally {
    etcd.close();
  }
}

/** When the test started: fetch's own start, which check finds in the directory. */
export async function restoreTestStart(raw: RawSettings, step: 'fetch' | 'check', now: Date): Promise<string> {
  if (step === 'check' && raw.restoreTestDir) {
    const fetched = await readFetched(raw.restoreTestDir);
    if (fetched.startedAt) return fetched.startedAt;
  }
  return formatTime(now);
}

/** The restore-test Job's reports and Events, when REPORT_STATUS=true. */
export async function restoreTestReporterFor(
  raw: RawSettings,
  env: NodeJS.ProcessEnv,
  startedAt: string,
): Promise<RestoreTestReporter | undefined> {
  const settings = reportSettings(raw);
  if (!settings) return undefined;
  const [{ inClusterApi }, { restoreTestReporter }, { redact }] = await Promise.all([
    import('./kubernetes/in-cluster.js'),
    import('./restore-test/report.js'),
    import('./errors.js'),
  ]);
  let api;
  try {
    api = inClusterApi(env);
  } catch (error) {
    throw new SettingsError(`REPORT_STATUS=true, but the Kubernetes API is not usable: ${(error as Error).message}`);
  }
  return restoreTestReporter({
    api,
    namespace: settings.namespace,
    name: settings.name,
    uid: raw.backupUid,
    pod: settings.pod || hostname(),
    requestedAt: restoreTestSettings(raw).requestedAt,
    startedAt,
    permissionWaitMs: settings.permissionWaitMs,
    warn: (message) => process.stderr.write(`${redact(message, env)}\n`),
  });
}
