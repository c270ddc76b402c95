// `talos-etcd-backup snapshot`, `verify`, `delete` (the Jobs' commands) and `restore` (a person's). One JSON line on
// stdout on success; one line on stderr and a non-zero exit on failure (see errors.ts).

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import {
  deleteSnapshotObject,
  deleteSnapshotObjectAfterSnapshot,
  S3DeleteError,
  type DeleteOutcome,
} from './s3/delete.js';
import { DEFAULT_PREFIX, secretsKeyOf, storedFormatOf } from '../contract/object-key.js';
import { readClusterSecrets, storeClusterSecrets } from './pipeline/cluster-secrets.js';
import { createS3Client, type S3Settings } from './s3/client.js';
import { SettingsError, type RawSettings } from '../contract/settings.js';
import { checkRequiredInputs } from './required-inputs.js';
import { defaultOutput, newestBackup, restoreBackup, type RestoreResult } from './pipeline/restore.js';
import { takeSnapshot, type CopyOutcome, type CopyTarget, type SnapshotOutcome } from './pipeline/snapshot.js';
import type { ObjectProtection } from './s3/upload.js';
import type { S3Client } from '@aws-sdk/client-s3';
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
import type { RestoreTestFigures, StoredCopy, StoredSecrets } from '../api/types.js';
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
    copies: copySettings,
  } = snapshotSettings(raw, now(), env);

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
  const copyTargets: CopyTarget[] = copySettings.map((copy) => ({
    ...copy,
    client: createS3Client(copy.s3),
  }));
  const { copies: copyOutcomes, ...snapshot } = await takeSnapshot({
    talos: { context, endpoints, node: raw.node, connectTimeoutMs, idleTimeoutMs },
    s3: { client, bucket, key, partSize, queueSize, protection: objectProtection },
    format,
    copies: copyTargets,
    identity,
    ...hooks,
  });
  // The secrets after the snapshot: a backup whose snapshot failed stores nothing. Beside every stored copy too
  // (a rebuild from the offsite copy needs them as much).
  const storeSecrets = (where: { client: S3Client; bucket: string; key: string; protection: ObjectProtection }) =>
    storeClusterSecrets(
      {
        client: where.client,
        bucket: where.bucket,
        key: secretsKeyOf(where.key),
        identity,
        partSize,
        queueSize,
        protection: where.protection,
        ...(hooks.signal && { signal: hooks.signal }),
      },
      secretsInput!,
      format.recipients,
    );
  const secrets = secretsInput && (await storeSecrets({ client, bucket, key, protection: objectProtection }));
  const stored = { ...snapshot, ...(secrets && { secrets }) };
  // What was uploaded is known exactly: the objects read back must be those bytes.
  const expected = { size: stored.size, sha256: stored.sha256, etcdSha256: stored.etcdSha256 };
  const readBackAt = async (where: { client: S3Client; bucket: string; key: string }, secretsKey?: string) => {
    const checked = await verifyObject(where.client, where.bucket, where.key, {
      identities: verifyIdentities,
      expected,
    });
    if (secretsKey && secrets?.key)
      await readClusterSecrets(where.client, where.bucket, secretsKey, {
        identities: verifyIdentities,
        expected: { size: secrets.size, sha256: secrets.sha256 },
      });
    return checked;
  };
  const copies = await Promise.all(
    copyOutcomes.map((outcome, i) =>
      finishCopy(outcome, copyTargets[i]!, { storeSecrets, readBackAt, secrets, verify }),
    ),
  );
  const withCopies = { ...stored, ...(copies.length > 0 && { copies }) };
  if (!verify) return { ...withCopies, verified: false };
  const checked = await readBackAt({ client, bucket, key }, secrets?.key);
  return {
    ...withCopies,
    verified: true,
    verifiedAt: now().toISOString(),
    verification: checked.verification,
    ...(checked.database && { revision: checked.database.revision, keys: checked.database.keys }),
  };
}

/**
 * A copy after the snapshot's pass: its cluster secrets stored and, with verify, both read back, as the primary's.
 * A required copy's failure fails the backup (the error names it); an optional one's is its record's `error`.
 */
async function finishCopy(
  outcome: CopyOutcome,
  target: CopyTarget,
  steps: {
    storeSecrets: (where: {
      client: S3Client;
      bucket: string;
      key: string;
      protection: ObjectProtection;
    }) => Promise<StoredSecrets>;
    readBackAt: (
      where: { client: S3Client; bucket: string; key: string },
      secretsKey?: string,
    ) => Promise<VerifiedObject>;
    secrets: StoredSecrets | undefined;
    verify: boolean;
  },
): Promise<StoredCopy> {
  const { name, bucket, key } = outcome;
  if (!outcome.stored) return { name, bucket, key, error: outcome.error ?? 'not stored' };
  const record: StoredCopy = {
    name,
    bucket,
    key,
    size: outcome.stored.size,
    sha256: outcome.stored.hashes.sha256,
    ...(outcome.stored.retainUntil && { retainUntil: outcome.stored.retainUntil.toISOString() }),
  };
  try {
    const where = { client: target.client, bucket, key, protection: target.protection ?? {} };
    const secrets = steps.secrets?.key ? await steps.storeSecrets(where) : undefined;
    const secretsKey = secrets?.key;
    const withSecrets = { ...record, ...(secretsKey && { secretsKey }) };
    if (!steps.verify) return { ...withSecrets, verified: false };
    const checked = await steps.readBackAt(where, secretsKey);
    return { ...withSecrets, verified: true, verification: checked.verification };
  } catch (error) {
    const where = `copy ${name} (s3://${bucket}/${key})`;
    const detail = error instanceof JobError ? error.message : (error as Error).message;
    if (target.required) {
      throw new JobError(undefined, `${where}: ${detail}`, {
        cause: error,
        permanent: error instanceof JobError ? error.permanent : false,
      });
    }
    return { ...record, error: `${where}: ${detail}` };
  }
}

/** `verify`: read a stored snapshot (and its cluster secrets) back and check them against the hashes recorded with them. */
export async function verifyCommand(
  raw: RawSettings,
  signal?: AbortSignal,
  env: NodeJS.ProcessEnv = process.env,
): Promise<VerifiedObject & { secrets?: { key: string; size: number; sha256: string; keys?: string[] } }> {
  const { bucket, key, secretsKey, s3, identities } = verifySettings(raw, env);
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
  /** Where copies' S3 keys are read from (S3_COPY_<N>_*); default process.env. */
  env?: NodeJS.ProcessEnv;
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
  const { bucket, key: chosenKey, s3, identities: ids } = restoreSettings(raw, hooks.env);
  const client = createS3Client({
    ...s3,
    ...(hooks.s3?.credentials && { credentials: hooks.s3.credentials }),
    ...(hooks.s3?.caBundlePem && { caBundlePem: hooks.s3.caBundlePem }),
  });
  const { key, skipped } = chosenKey
    ? { key: chosenKey, skipped: [] }
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
): Promise<
  DeleteOutcome & {
    bucket: string;
    key: string;
    secrets?: DeleteOutcome & { key: string };
    copies?: (DeleteOutcome & { name: string; bucket: string; key: string })[];
  }
> {
  checkRequiredInputs(raw.requiredSecrets, raw.backupNamespace ?? '', env);
  const { bucket, key, secretsKey, uid, waitSeconds, s3, copies } = deleteSettings(raw, env);
  const deleteAt = async (client: S3Client, bucket: string, key: string, secretsKey: string | undefined) => {
    const snapshot =
      waitSeconds === 0
        ? await deleteSnapshotObject(client, bucket, key, uid)
        : await deleteSnapshotObjectAfterSnapshot(client, bucket, key, uid, waitSeconds);
    if (!secretsKey) return { bucket, key, ...snapshot };
    // After the snapshot's wait (if any) the snapshot pod is gone: one pass deletes what it stored.
    const secrets = await deleteSnapshotObject(client, bucket, secretsKey, uid);
    return { bucket, key, ...snapshot, secrets: { key: secretsKey, ...secrets } };
  };
  // Every destination, each with its own keys, in parallel (the waits overlap). A required copy that cannot be
  // deleted fails the Job, naming it, after the others were tried; an optional one (required: false, which the
  // backup could be Ready without) is kept and reported, as a locked one: its keys may be gone with the store.
  const [primary, ...rest] = await Promise.allSettled([
    deleteAt(createS3Client(s3), bucket, key, secretsKey),
    ...copies.map((copy) =>
      copy.unusable
        ? Promise.reject(new S3DeleteError(copy.unusable, { permanent: true }))
        : deleteAt(createS3Client(copy.s3), copy.bucket, copy.key, copy.secretsKey),
    ),
  ]);
  if (primary!.status === 'rejected') throw primary!.reason;
  const detailOf = (error: Error) => (error instanceof JobError ? error.detail : error.message);
  const failed = rest.findIndex((r, i) => r.status === 'rejected' && copies[i]!.required);
  if (failed >= 0) {
    const copy = copies[failed]!;
    const error = (rest[failed] as PromiseRejectedResult).reason as Error;
    throw new S3DeleteError(`copy ${copy.name} (s3://${copy.bucket}/${copy.key}): ${detailOf(error)}`, {
      cause: error,
      permanent: error instanceof JobError ? error.permanent : false,
    });
  }
  const deletedCopies = rest.map((r, i) => {
    const { name, bucket, key } = copies[i]!;
    if (r.status === 'fulfilled') return { name, ...r.value };
    const detail = `not deleted (an optional copy, kept): ${detailOf(r.reason as Error)}`;
    return { name, bucket, key, deleted: false, detail };
  });
  return { ...primary!.value, ...(deletedCopies.length > 0 && { copies: deletedCopies }) };
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
