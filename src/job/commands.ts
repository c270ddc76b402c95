// `talos-etcd-backup snapshot`, `verify`, `delete` (the Jobs' commands) and `restore` (a person's). One JSON line on
// stdout on success; one line on stderr and a non-zero exit on failure. Secrets are redacted from anything printed.

import { randomUUID } from 'node:crypto';
import { deleteSnapshotObject, deleteSnapshotObjectAfterSnapshot, type DeleteOutcome } from './s3/delete.js';
import { DEFAULT_PREFIX } from '../contract/object-key.js';
import { createS3Client } from './s3/client.js';
import { SettingsError, type RawSettings } from '../contract/settings.js';
import { checkRequiredInputs } from './required-inputs.js';
import { defaultOutput, newestBackup, restoreBackup, type RestoreResult } from './pipeline/restore.js';
import { takeSnapshot, type SnapshotOutcome, type SnapshotResult } from './pipeline/snapshot.js';
import { deleteSettings, reportSettings, restoreSettings, snapshotSettings, verifySettings } from './settings.js';
import type { StatusReporter } from './kubernetes/status-report.js';
import { verifyObject, type VerifiedObject } from './pipeline/verify.js';
import { normalizeEndpoint, parseTalosconfig, TalosconfigError } from './talos/talosconfig.js';
import { TalosError } from './talos/client.js';

export interface SnapshotHooks {
  onProgress?: (bytesUploaded: number) => void;
  signal?: AbortSignal;
}

/** `snapshot`: one etcd snapshot from the Talos API into S3, read back and verified when VERIFY=true. */
export async function snapshotCommand(raw: RawSettings, env: NodeJS.ProcessEnv = process.env, now: () => Date = () => new Date(), hooks: SnapshotHooks = {}): Promise<SnapshotOutcome> {
  checkRequiredInputs(raw.requiredSecrets, raw.backupNamespace ?? '', env);
  const { bucket, key, s3, partSize, queueSize, connectTimeoutMs, idleTimeoutMs, format, protection: objectProtection, verify, verifyIdentities, talosconfig } = snapshotSettings(raw, now());

  let context;
  try {
    context = parseTalosconfig(talosconfig.text, raw.context);
  } catch (error) {
    if (error instanceof TalosconfigError) throw new TalosconfigError(`Failed to read talosconfig ${talosconfig.path}: ${error.message}`);
    throw error;
  }
  const endpoints = raw.endpoints ? raw.endpoints.split(',').map((e) => e.trim()).filter(Boolean).map(normalizeEndpoint) : context.endpoints;
  const client = createS3Client(s3);
  let stored: SnapshotResult;
  try {
    stored = await takeSnapshot({
      talos: { context, endpoints, node: raw.node, connectTimeoutMs, idleTimeoutMs },
      s3: { client, bucket, key, partSize, queueSize, protection: objectProtection },
      format,
      // Without a uid a manual run gets a unique one, so it never mistakes another object for its own.
      identity: { namespace: raw.backupNamespace ?? '', name: raw.backupName ?? '', uid: raw.backupUid ?? randomUUID() },
      ...hooks,
    });
  } catch (error) {
    if (error instanceof TalosError) throw new TalosError(`Failed to take etcd snapshot: ${error.message}`, error.endpoint, error.failover);
    throw error;
  }
  if (!verify) return { ...stored, verified: false };
  // What was uploaded is known exactly: the object read back must be those bytes.
  const checked = await verifyObject(client, bucket, key, { identities: verifyIdentities, expected: { size: stored.size, sha256: stored.sha256, etcdSha256: stored.etcdSha256 } });
  return {
    ...stored,
    verified: true,
    verifiedAt: now().toISOString(),
    verification: checked.verification,
    ...(checked.database && { revision: checked.database.revision, keys: checked.database.keys }),
  };
}

/** `verify`: read a stored snapshot back and check it against the hashes recorded with it. */
export async function verifyCommand(raw: RawSettings, signal?: AbortSignal): Promise<VerifiedObject> {
  const { bucket, key, s3, identities } = verifySettings(raw);
  return verifyObject(createS3Client(s3), bucket, key, { identities, signal });
}

export interface RestoreHooks {
  onProgress?: (bytesRead: number, total: number | undefined) => void;
  /** Told which key will be restored before the download starts. */
  onKey?: (key: string, skipped: string[]) => void;
  signal?: AbortSignal;
}

/** `restore`: a backup (S3_KEY, else the newest of CLUSTER_NAME under S3_PREFIX) into a verified snapshot file. */
export async function restoreCommand(raw: RawSettings, hooks: RestoreHooks = {}): Promise<RestoreResult> {
  const { bucket, s3, identities: ids } = restoreSettings(raw);
  const client = createS3Client(s3);
  const { key, skipped } = raw.key ? { key: raw.key, skipped: [] } : await newestBackup(client, bucket, raw.prefix ?? DEFAULT_PREFIX, raw.cluster!);
  hooks.onKey?.(key, skipped);
  return restoreBackup({ client, bucket, key, identities: ids, output: raw.output ?? defaultOutput(key), ...(hooks.onProgress && { onProgress: hooks.onProgress }), ...(hooks.signal && { signal: hooks.signal }) });
}

/** `delete`: remove a backup's object from S3, only if that backup (BACKUP_UID) wrote it. */
export async function deleteCommand(raw: RawSettings, env: NodeJS.ProcessEnv = process.env): Promise<DeleteOutcome & { bucket: string; key: string }> {
  checkRequiredInputs(raw.requiredSecrets, raw.backupNamespace ?? '', env);
  const { bucket, key, uid, waitSeconds, s3 } = deleteSettings(raw);
  const client = createS3Client(s3);
  if (waitSeconds === 0) return { bucket, key, ...(await deleteSnapshotObject(client, bucket, key, uid)) };
  return { bucket, key, ...(await deleteSnapshotObjectAfterSnapshot(client, bucket, key, uid, waitSeconds)) };
}

/** Removes secret values (and anything after a secret-looking key) from text that is about to be printed. */
export function redact(text: string, env: NodeJS.ProcessEnv): string {
  let out = text.replace(/[\r\n]+/g, ' ');
  for (const name of ['AWS_SECRET_ACCESS_KEY', 'AWS_ACCESS_KEY_ID', 'AWS_SESSION_TOKEN']) {
    const value = env[name];
    if (value && value.length >= 4) out = out.split(value).join(`[${name} redacted]`);
  }
  // No message is meant to carry an age identity; should one ever do, it is not printed.
  return out.replace(/AGE-SECRET-KEY-[A-Z0-9-]+/gi, '[age identity redacted]');
}

/** Writes progress and the outcome into the backup's status when REPORT_STATUS=true (the snapshot Job). */
export async function statusReporterFor(raw: RawSettings, env: NodeJS.ProcessEnv): Promise<StatusReporter | undefined> {
  const settings = reportSettings(raw);
  if (!settings) return undefined;
  const [{ inClusterApi }, { statusReporter }] = await Promise.all([import('./kubernetes/in-cluster.js'), import('./kubernetes/status-report.js')]);
  let api;
  try {
    api = inClusterApi(env);
  } catch (error) {
    throw new SettingsError(`REPORT_STATUS=true, but the Kubernetes API is not usable: ${(error as Error).message}`);
  }
  return statusReporter({ api, ...settings, warn: (message) => process.stderr.write(`${message}\n`) });
}
