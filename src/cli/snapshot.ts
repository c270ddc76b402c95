// `talos-etcd-backup snapshot`, `verify` and `delete`: the Jobs' commands. One JSON line on stdout on success; one line
// on stderr and a non-zero exit on failure. Secrets are redacted from anything printed.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { deleteSnapshotObject, type DeleteOutcome } from '../s3/delete.js';
import { objectKey } from '../s3/object-key.js';
import { createS3Client, type S3Settings } from '../s3/client.js';
import { Problems, type RawSettings } from '../snapshot/config.js';
import { checkRequiredInputs } from '../snapshot/required-inputs.js';
import { takeSnapshot, type SnapshotResult } from '../snapshot/run.js';
import { verifyObject, type VerifiedObject } from '../snapshot/verify-object.js';
import { normalizeEndpoint, parseTalosconfig, TalosconfigError } from '../talos/talosconfig.js';
import { TalosError } from '../talos/client.js';

const MIB = 1024 * 1024;

function readFile(path: string, what: string, problems: Problems): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    problems.list.push(`cannot read the ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return undefined;
  }
}

function s3Settings(raw: RawSettings, problems: Problems): S3Settings {
  const caBundlePem = raw.caBundle ? readFile(raw.caBundle, 'CA bundle', problems) : undefined;
  return {
    region: problems.required(raw, 'region'),
    endpoint: raw.endpoint,
    forcePathStyle: problems.boolean(raw, 'forcePathStyle'),
    insecureSkipTLSVerify: problems.boolean(raw, 'insecureSkipTLSVerify'),
    caBundlePem,
    // Keys come through the SDK's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, web identity, ...).
  };
}

export interface SnapshotHooks {
  onProgress?: (bytesUploaded: number) => void;
  signal?: AbortSignal;
}

/** `snapshot`: one etcd snapshot from the Talos API into S3. */
export async function snapshotCommand(raw: RawSettings, env: NodeJS.ProcessEnv = process.env, now: () => Date = () => new Date(), hooks: SnapshotHooks = {}): Promise<SnapshotResult> {
  checkRequiredInputs(raw.requiredSecrets, raw.backupNamespace ?? '', env);
  const problems = new Problems();
  const bucket = problems.required(raw, 'bucket');
  const s3 = s3Settings(raw, problems);
  const partSize = problems.positive(raw, 'partSize') * MIB;
  const queueSize = Math.round(problems.positive(raw, 'queueSize'));
  const connectTimeoutMs = problems.positive(raw, 'connectTimeout') * 1000;
  const idleTimeoutMs = problems.positive(raw, 'idleTimeout') * 1000;
  const time = problems.time(raw, 'time', now());
  const key = raw.key ?? objectKey({ prefix: raw.prefix ?? '', cluster: problems.required(raw, 'cluster'), time });
  if (partSize < 5 * MIB) problems.list.push('S3_PART_SIZE_MIB (--part-size-mib) must be at least 5 (S3\'s minimum part size)');
  const talosconfigText = readFile(raw.talosconfig ?? '', 'talosconfig', problems);
  problems.throwIfAny();

  let context;
  try {
    context = parseTalosconfig(talosconfigText!, raw.context);
  } catch (error) {
    if (error instanceof TalosconfigError) throw new TalosconfigError(`Failed to read talosconfig ${raw.talosconfig}: ${error.message}`);
    throw error;
  }
  const endpoints = raw.endpoints ? raw.endpoints.split(',').map((e) => e.trim()).filter(Boolean).map(normalizeEndpoint) : context.endpoints;
  try {
    return await takeSnapshot({
      talos: { context, endpoints, node: raw.node, connectTimeoutMs, idleTimeoutMs },
      s3: { client: createS3Client(s3), bucket, key, partSize, queueSize },
      // Without a uid a manual run gets a unique one, so it never mistakes another object for its own.
      identity: { namespace: raw.backupNamespace ?? '', name: raw.backupName ?? '', uid: raw.backupUid ?? randomUUID() },
      ...hooks,
    });
  } catch (error) {
    if (error instanceof TalosError) throw new TalosError(`Failed to take etcd snapshot: ${error.message}`, error.endpoint, error.failover);
    throw error;
  }
}

/** `verify`: read a stored snapshot back and check it. */
export async function verifyCommand(raw: RawSettings): Promise<VerifiedObject> {
  const problems = new Problems();
  const bucket = problems.required(raw, 'bucket');
  const key = problems.required(raw, 'key');
  const s3 = s3Settings(raw, problems);
  problems.throwIfAny();
  return verifyObject(createS3Client(s3), bucket, key);
}

/** `delete`: remove a backup's object from S3, only if that backup (BACKUP_UID) wrote it. */
export async function deleteCommand(raw: RawSettings, env: NodeJS.ProcessEnv = process.env): Promise<DeleteOutcome & { bucket: string; key: string }> {
  checkRequiredInputs(raw.requiredSecrets, raw.backupNamespace ?? '', env);
  const problems = new Problems();
  const bucket = problems.required(raw, 'bucket');
  const key = problems.required(raw, 'key');
  const uid = problems.required(raw, 'backupUid');
  const s3 = s3Settings(raw, problems);
  problems.throwIfAny();
  return { bucket, key, ...(await deleteSnapshotObject(createS3Client(s3), bucket, key, uid)) };
}

/** Removes secret values (and anything after a secret-looking key) from text that is about to be printed. */
export function redact(text: string, env: NodeJS.ProcessEnv): string {
  let out = text.replace(/[\r\n]+/g, ' ');
  for (const name of ['AWS_SECRET_ACCESS_KEY', 'AWS_ACCESS_KEY_ID', 'AWS_SESSION_TOKEN']) {
    const value = env[name];
    if (value && value.length >= 4) out = out.split(value).join(`[${name} redacted]`);
  }
  return out;
}
