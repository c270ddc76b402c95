// `talos-etcd-backup snapshot`, `verify`, `delete` (the Jobs' commands) and `restore` (a person's). One JSON line on
// stdout on success; one line on stderr and a non-zero exit on failure (see errors.ts).

import { randomUUID } from 'node:crypto';
import { deleteSnapshotObject, deleteSnapshotObjectAfterSnapshot, type DeleteOutcome } from './s3/delete.js';
import { DEFAULT_PREFIX, objectKey, storedFormatOf } from '../contract/object-key.js';
import { createS3Client } from './s3/client.js';
import { Problems, SETTINGS, type RawSettings } from '../contract/settings.js';
import { checkRequiredInputs } from './required-inputs.js';
import { defaultOutput, newestBackup, restoreBackup, type RestoreResult } from './pipeline/restore.js';
import { takeSnapshot, type SnapshotOutcome } from './pipeline/snapshot.js';
import { identities, protection, readFile, s3Settings, storedFormat } from './settings.js';
import { verifyObject, type VerifiedObject } from './pipeline/verify.js';
import { normalizeEndpoint, parseTalosconfig, TalosconfigError } from './talos/talosconfig.js';
import { JobError } from './errors.js';

const MIB = 1024 * 1024;

export interface SnapshotHooks {
  onProgress?: (bytesUploaded: number) => void;
  signal?: AbortSignal;
}

/** `snapshot`: one etcd snapshot from the Talos API into S3, read back and verified when VERIFY=true. */
export async function snapshotCommand(raw: RawSettings, env: NodeJS.ProcessEnv = process.env, now: () => Date = () => new Date(), hooks: SnapshotHooks = {}): Promise<SnapshotOutcome> {
  checkRequiredInputs(raw.requiredSecrets, raw.backupNamespace ?? '', env);
  const problems = new Problems();
  const bucket = problems.required(raw, 'bucket');
  const s3 = s3Settings(raw, problems);
  const partSize = problems.positive(raw, 'partSize') * MIB;
  const queueSize = Math.round(problems.positive(raw, 'queueSize'));
  const connectTimeoutMs = problems.positive(raw, 'connectTimeout') * 1000;
  const idleTimeoutMs = problems.positive(raw, 'idleTimeout') * 1000;
  const time = problems.time(raw, 'time', now());
  const format = storedFormat(raw, problems);
  const objectProtection = protection(raw, problems);
  const verify = problems.boolean(raw, 'verify') ?? false;
  const verifyIdentities = verify ? identities(raw, problems) : [];
  const encrypted = format.recipients.length > 0;
  const key = raw.key ?? objectKey({ prefix: raw.prefix ?? '', cluster: problems.required(raw, 'cluster'), time, compression: format.compression, encrypted });
  // verify and restore read the format from the key's suffixes: a key given by hand must say it.
  const suffixes = storedFormatOf(key);
  if (suffixes.compression !== format.compression || suffixes.encrypted !== encrypted) {
    problems.list.push(`${SETTINGS.key.env} (--${SETTINGS.key.flag}) must end with ${objectKey({ prefix: '', cluster: '', time: new Date(0), compression: format.compression, encrypted }).replace(/^.*\.db/, '.db')} for this compression and encryption (verify and restore read the format from it)`);
  }
  if (partSize < 5 * MIB) problems.list.push('S3_PART_SIZE_MIB (--part-size-mib) must be at least 5 (S3\'s minimum part size)');
  const talosconfigText = readFile(raw.talosconfig ?? '', 'talosconfig', problems);
  problems.throwIfAny();

  let context;
  try {
    context = parseTalosconfig(talosconfigText!, raw.context);
  } catch (error) {
    if (!(error instanceof TalosconfigError)) throw error;
    throw new JobError('talosconfig', error.detail, { subject: raw.talosconfig, permanent: true, cause: error });
  }
  const endpoints = raw.endpoints ? raw.endpoints.split(',').map((e) => e.trim()).filter(Boolean).map(normalizeEndpoint) : context.endpoints;
  const client = createS3Client(s3);
  const stored = await takeSnapshot({
    talos: { context, endpoints, node: raw.node, connectTimeoutMs, idleTimeoutMs },
    s3: { client, bucket, key, partSize, queueSize, protection: objectProtection },
    format,
    // Without a uid a manual run gets a unique one, so it never mistakes another object for its own.
    identity: { namespace: raw.backupNamespace ?? '', name: raw.backupName ?? '', uid: raw.backupUid ?? randomUUID() },
    ...hooks,
  });
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
  const problems = new Problems();
  const bucket = problems.required(raw, 'bucket');
  const key = problems.required(raw, 'key');
  const s3 = s3Settings(raw, problems);
  const ids = identities(raw, problems);
  problems.throwIfAny();
  return verifyObject(createS3Client(s3), bucket, key, { identities: ids, signal });
}

export interface RestoreHooks {
  onProgress?: (bytesRead: number, total: number | undefined) => void;
  /** Told which key will be restored before the download starts. */
  onKey?: (key: string, skipped: string[]) => void;
  signal?: AbortSignal;
}

/** `restore`: a backup (S3_KEY, else the newest of CLUSTER_NAME under S3_PREFIX) into a verified snapshot file. */
export async function restoreCommand(raw: RawSettings, hooks: RestoreHooks = {}): Promise<RestoreResult> {
  const problems = new Problems();
  const bucket = problems.required(raw, 'bucket');
  if (!raw.key && !raw.cluster) problems.list.push(`${SETTINGS.key.env} (--${SETTINGS.key.flag}) or ${SETTINGS.cluster.env} (--${SETTINGS.cluster.flag}) is required: the backup to restore, or the cluster whose newest backup to restore`);
  const s3 = s3Settings(raw, problems);
  const ids = identities(raw, problems);
  problems.throwIfAny();
  const client = createS3Client(s3);
  const { key, skipped } = raw.key ? { key: raw.key, skipped: [] } : await newestBackup(client, bucket, raw.prefix ?? DEFAULT_PREFIX, raw.cluster!);
  hooks.onKey?.(key, skipped);
  return restoreBackup({ client, bucket, key, identities: ids, output: raw.output ?? defaultOutput(key), ...(hooks.onProgress && { onProgress: hooks.onProgress }), ...(hooks.signal && { signal: hooks.signal }) });
}

/** `delete`: remove a backup's object from S3, only if that backup (BACKUP_UID) wrote it. */
export async function deleteCommand(raw: RawSettings, env: NodeJS.ProcessEnv = process.env): Promise<DeleteOutcome & { bucket: string; key: string }> {
  checkRequiredInputs(raw.requiredSecrets, raw.backupNamespace ?? '', env);
  const problems = new Problems();
  const bucket = problems.required(raw, 'bucket');
  const key = problems.required(raw, 'key');
  const uid = problems.required(raw, 'backupUid');
  const waitSeconds = raw.deleteWait === undefined || raw.deleteWait === '0' ? 0 : problems.positive(raw, 'deleteWait');
  const s3 = s3Settings(raw, problems);
  problems.throwIfAny();
  const client = createS3Client(s3);
  if (waitSeconds === 0) return { bucket, key, ...(await deleteSnapshotObject(client, bucket, key, uid)) };
  return { bucket, key, ...(await deleteSnapshotObjectAfterSnapshot(client, bucket, key, uid, waitSeconds)) };
}
