// Each Job command's settings as the typed values its pipeline takes: the raw settings read through the contract's
// table (src/contract/settings.ts), files read, and the rules between settings checked. Every problem is listed
// and thrown at once (SettingsError), before anything is sent anywhere.

import { readFileSync } from 'node:fs';
import { formatTime } from '../api/conditions.js';
import { basename } from 'node:path';
import { AgeError, parseIdentities, parseRecipients } from '../api/age-keys.js';
import { objectKey, storedFormatOf } from '../contract/object-key.js';
import { Problems, settingLabel, SETTINGS, SettingsError, type RawSettings } from '../contract/settings.js';
import type { S3Settings } from './s3/client.js';
import type { ObjectProtection } from './s3/upload.js';
import type { StoredFormat } from './pipeline/snapshot.js';
import type { ClusterSecretsInput } from './pipeline/cluster-secrets.js';
import { copyCredentialEnv, type CopySetting } from '../contract/copies.js';

const MIB = 1024 * 1024;

function readFile(path: string, what: string, problems: Problems): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    problems.list.push(
      `cannot read the ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
    return undefined;
  }
}

function s3Settings(raw: RawSettings, problems: Problems): S3Settings {
  const caBundlePem = raw.caBundle ? readFile(raw.caBundle, 'CA bundle', problems) : undefined;
  return {
    region: problems.required('region') ?? '',
    endpoint: problems.get('endpoint'),
    forcePathStyle: problems.get('forcePathStyle'),
    insecureSkipTLSVerify: problems.get('insecureSkipTLSVerify'),
    caBundlePem,
    // Keys come through the SDK's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, web identity, ...).
  };
}

function storedFormat(problems: Problems): StoredFormat {
  // An invalid compression is listed; the checks that follow (the key's suffix) go on with a known one.
  const compression = problems.get('compression') ?? 'none';
  let recipients: string[] = [];
  try {
    recipients = parseRecipients(problems.get('ageRecipients') ?? []);
  } catch (error) {
    if (!(error instanceof AgeError)) throw error;
    problems.add('ageRecipients', `: ${error.message}`);
  }
  return { compression, recipients };
}

/** The identities in AGE_IDENTITY_FILE (none when unset). The file's content is never echoed. */
function identities(raw: RawSettings, problems: Problems): string[] {
  if (!raw.ageIdentity) return [];
  const text = readFile(raw.ageIdentity, 'age identity file', problems);
  if (text === undefined) return [];
  try {
    return parseIdentities(text);
  } catch (error) {
    if (!(error instanceof AgeError)) throw error;
    problems.add('ageIdentity', `${raw.ageIdentity}: ${error.message}`);
    return [];
  }
}

function protection(raw: RawSettings, problems: Problems): ObjectProtection {
  const out: ObjectProtection = {};
  const algorithm = problems.get('sse');
  if (raw.sse)
    out.serverSideEncryption = {
      // Without a valid algorithm a problem is recorded and these settings are refused: any placeholder does.
      algorithm: algorithm ?? 'AES256',
      kmsKeyId: raw.sseKmsKeyId || undefined,
    };
  if (raw.sseKmsKeyId && raw.sse !== 'aws:kms') problems.add('sseKmsKeyId', `needs ${SETTINGS.sse.env}=aws:kms`);
  if (raw.objectLockMode || raw.objectLockRetainDays) {
    const mode = problems.get('objectLockMode');
    const retainDays = problems.get('objectLockRetainDays');
    if (!raw.objectLockMode)
      problems.add(
        'objectLockMode',
        `must be GOVERNANCE or COMPLIANCE when ${SETTINGS.objectLockRetainDays.env} is set`,
      );
    if (!raw.objectLockRetainDays)
      problems.add('objectLockRetainDays', `is required with ${SETTINGS.objectLockMode.env}`);
    out.objectLock = { mode: mode ?? 'GOVERNANCE', retainDays: retainDays ?? 0 };
  }
  return out;
}

/** A further destination of the same stored bytes (S3_COPIES), resolved: N from 1, its key, client settings, protection. */
export interface CopyDestination {
  n: number;
  name: string;
  required: boolean;
  bucket: string;
  key: string;
  secretsKey?: string | undefined;
  s3: S3Settings;
  protection: ObjectProtection;
  /** Why this copy cannot be written at all (its keys did not arrive); an optional copy is then only reported. */
  unusable?: string;
}

/** S3_COPIES, with each copy's keys (S3_COPY_<N>_*) and CA bundle read; `keyOf` makes a copy's key from its prefix. */
function copyDestinations(
  raw: RawSettings,
  env: NodeJS.ProcessEnv,
  problems: Problems,
  keyOf: (copy: CopySetting) => string,
): CopyDestination[] {
  const copies = problems.get('copies') ?? [];
  return copies.map((copy, i) => {
    const n = i + 1;
    const names = copyCredentialEnv(n);
    const accessKeyId = env[names.accessKeyId] || undefined;
    const secretAccessKey = env[names.secretAccessKey] || undefined;
    let unusable: string | undefined;
    if (Boolean(accessKeyId) !== Boolean(secretAccessKey))
      problems.list.push(`${names.accessKeyId} and ${names.secretAccessKey} must be set together (copy ${copy.name})`);
    else if (copy.keysFromEnv && !accessKeyId)
      unusable = `its S3 keys (${names.accessKeyId}, ${names.secretAccessKey}) are not set: their Secret or key is missing`;
    // An optional copy's missing CA bundle (or keys) costs that copy only, never the backup.
    const caProblems = copy.required ? problems : new Problems(raw);
    const caBundlePem = copy.caBundle
      ? readFile(copy.caBundle, `CA bundle of copy ${copy.name}`, caProblems)
      : undefined;
    if (caProblems !== problems && caProblems.list.length > 0) unusable ??= caProblems.list.join('; ');
    const protection: ObjectProtection = {
      ...(copy.sse && { serverSideEncryption: { algorithm: copy.sse, kmsKeyId: copy.sseKmsKeyId } }),
      ...(copy.objectLockMode && {
        objectLock: { mode: copy.objectLockMode, retainDays: copy.objectLockRetainDays ?? 0 },
      }),
    };
    return {
      n,
      name: copy.name,
      required: copy.required,
      bucket: copy.bucket,
      key: keyOf(copy),
      ...(copy.secretsKey && { secretsKey: copy.secretsKey }),
      s3: {
        region: copy.region,
        endpoint: copy.endpoint,
        forcePathStyle: copy.forcePathStyle,
        insecureSkipTLSVerify: copy.insecureSkipTLSVerify,
        caBundlePem,
        ...(accessKeyId && secretAccessKey && { credentials: { accessKeyId, secretAccessKey } }),
      },
      protection,
      ...(unusable && { unusable }),
    };
  });
}

/** The destination `--copy N` names (0: the primary), as verify and restore read it. */
function chosenDestination(
  raw: RawSettings,
  env: NodeJS.ProcessEnv,
  problems: Problems,
  primary: { bucket: string; key: string | undefined; secretsKey: string | undefined; s3: S3Settings },
): { bucket: string; key: string | undefined; secretsKey: string | undefined; s3: S3Settings } {
  const n = problems.get('copy') ?? 0;
  if (n === 0) return primary;
  const copies = copyDestinations(raw, env, problems, (copy) => copy.key ?? primary.key ?? '');
  const copy = copies[n - 1];
  if (!copy) {
    problems.add(
      'copy',
      `is ${n}, but ${settingLabel('copies')} lists ${copies.length} cop${copies.length === 1 ? 'y' : 'ies'}`,
    );
    return primary;
  }
  if (copy.unusable) problems.list.push(`copy ${copy.name}: ${copy.unusable}`);
  return { bucket: copy.bucket, key: copy.key || undefined, secretsKey: copy.secretsKey, s3: copy.s3 };
}

export interface SnapshotCommandSettings {
  bucket: string;
  key: string;
  s3: S3Settings;
  partSize: number;
  queueSize: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  format: StoredFormat;
  protection: ObjectProtection;
  verify: boolean;
  /** The identities the read-back decrypts with (read only when verify is on). */
  verifyIdentities: string[];
  talosconfig: { path: string; text: string };
  /** The Secret to store beside the snapshot (CLUSTER_SECRETS_DIR), when there is one. */
  secrets?: ClusterSecretsInput;
  /** Further destinations of the same stored bytes (S3_COPIES). */
  copies: CopyDestination[];
}

/** CLUSTER_SECRETS_*: the Secret to store beside the snapshot; refused without age recipients. */
function clusterSecrets(raw: RawSettings, format: StoredFormat, problems: Problems): ClusterSecretsInput | undefined {
  const source = problems.get('clusterSecretsSource') ?? 'clusterSecretsRef';
  if (!raw.clusterSecretsDir) return undefined;
  if (format.recipients.length === 0)
    problems.add(
      'clusterSecretsDir',
      `needs ${settingLabel('ageRecipients')}: the cluster's secrets are stored only age-encrypted, never in plaintext`,
    );
  const dir = raw.clusterSecretsDir;
  const name = raw.clusterSecretsName || basename(dir.replace(/\/+$/, ''));
  return { dir, name, namespace: raw.backupNamespace ?? '', source };
}

/** `snapshot`: everything it needs, or a SettingsError listing every problem. */
export function snapshotSettings(
  raw: RawSettings,
  now: Date,
  env: NodeJS.ProcessEnv = process.env,
): SnapshotCommandSettings {
  const problems = new Problems(raw);
  const bucket = problems.required('bucket') ?? '';
  const s3 = s3Settings(raw, problems);
  const partSizeMib = problems.get('partSize');
  const queueSize = problems.get('queueSize');
  const connectTimeout = problems.get('connectTimeout');
  const idleTimeout = problems.get('idleTimeout');
  const time = problems.get('time') ?? now;
  const format = storedFormat(problems);
  const objectProtection = protection(raw, problems);
  const verify = problems.get('verify') ?? false;
  const verifyIdentities = verify ? identities(raw, problems) : [];
  const encrypted = format.recipients.length > 0;
  const cluster = raw.key === undefined ? (problems.required('cluster') ?? '') : '';
  const key =
    raw.key ?? objectKey({ prefix: raw.prefix ?? '', cluster, time, compression: format.compression, encrypted });
  // verify and restore read the format from the key's suffixes: a key given by hand must say it.
  const suffixes = storedFormatOf(key);
  if (suffixes.compression !== format.compression || suffixes.encrypted !== encrypted) {
    const suffix = objectKey({
      prefix: '',
      cluster: '',
      time: new Date(0),
      compression: format.compression,
      encrypted,
    }).replace(/^.*\.db/, '.db');
    problems.add(
      'key',
      `must end with ${suffix} for this compression and encryption (verify and restore read the format from it)`,
    );
  }
  if (partSizeMib !== undefined && partSizeMib < 5)
    problems.add('partSize', "must be at least 5 (S3's minimum part size)");
  const talosconfigPath = raw.talosconfig ?? '';
  const talosconfigText = readFile(talosconfigPath, 'talosconfig', problems);
  const secrets = clusterSecrets(raw, format, problems);
  // A copy's key: the primary's with the copy's prefix (the same cluster, time and suffixes); `--key` sets every one.
  const fileOf = key.slice(key.lastIndexOf('/') + 1);
  const copies = copyDestinations(raw, env, problems, (copy) =>
    copy.key !== undefined
      ? copy.key
      : raw.key !== undefined
        ? key
        : objectKey({
            prefix: copy.prefix ?? raw.prefix ?? '',
            cluster,
            time,
            compression: format.compression,
            encrypted,
          }),
  );
  for (const copy of copies) {
    if (storedFormatOf(copy.key).compression !== format.compression || storedFormatOf(copy.key).encrypted !== encrypted)
      problems.list.push(`copy ${copy.name}: its key must end like the primary's (${fileOf.replace(/^[^.]*/, '')})`);
  }
  problems.throwIfAny();
  return {
    copies,
    bucket,
    key,
    s3,
    partSize: partSizeMib! * MIB,
    queueSize: Math.round(queueSize!),
    connectTimeoutMs: connectTimeout! * 1000,
    idleTimeoutMs: idleTimeout! * 1000,
    format,
    protection: objectProtection,
    verify,
    verifyIdentities,
    talosconfig: { path: talosconfigPath, text: talosconfigText! },
    ...(secrets && { secrets }),
  };
}

/** `verify`: the object to read back and how to decrypt it. */
export function verifySettings(
  raw: RawSettings,
  env: NodeJS.ProcessEnv = process.env,
): {
  bucket: string;
  key: string;
  secretsKey: string | undefined;
  s3: S3Settings;
  identities: string[];
} {
  const problems = new Problems(raw);
  const copy = (problems.get('copy') ?? 0) > 0;
  // With --copy N the copy's bucket and key (S3_COPIES) replace the primary's, which need not be given.
  const primary = {
    bucket: copy ? (raw.bucket ?? '') : (problems.required('bucket') ?? ''),
    key: copy ? raw.key : (problems.required('key') ?? ''),
    secretsKey: raw.secretsKey || undefined,
    s3: copy ? { region: raw.region ?? '' } : s3Settings(raw, problems),
  };
  const chosen = chosenDestination(raw, env, problems, primary);
  if (!chosen.key)
    problems.list.push(`copy ${raw.copy}: no key (give it in ${settingLabel('copies')} or ${settingLabel('key')})`);
  const ids = identities(raw, problems);
  problems.throwIfAny();
  return {
    bucket: chosen.bucket,
    key: chosen.key ?? '',
    secretsKey: chosen.secretsKey,
    s3: chosen.s3,
    identities: ids,
  };
}

/** `restore`: a key, or the cluster whose newest backup to restore. */
export function restoreSettings(
  raw: RawSettings,
  env: NodeJS.ProcessEnv = process.env,
): { bucket: string; key: string | undefined; s3: S3Settings; identities: string[] } {
  const problems = new Problems(raw);
  const copy = (problems.get('copy') ?? 0) > 0;
  const primary = {
    bucket: copy ? (raw.bucket ?? '') : (problems.required('bucket') ?? ''),
    key: raw.key,
    secretsKey: undefined,
    s3: copy ? { region: raw.region ?? '' } : s3Settings(raw, problems),
  };
  const chosen = chosenDestination(raw, env, problems, primary);
  if (!chosen.key && !raw.cluster) {
    problems.list.push(
      `${settingLabel('key')} or ${settingLabel('cluster')} is required: the backup to restore, or the cluster whose newest backup to restore`,
    );
  }
  const ids = identities(raw, problems);
  problems.throwIfAny();
  return { bucket: chosen.bucket, key: chosen.key, s3: chosen.s3, identities: ids };
}

/** `delete`: the object, the backup that may delete it, and the wait before its second pass. */
export function deleteSettings(
  raw: RawSettings,
  env: NodeJS.ProcessEnv = process.env,
): {
  bucket: string;
  key: string;
  secretsKey: string | undefined;
  uid: string;
  waitSeconds: number;
  s3: S3Settings;
  copies: CopyDestination[];
} {
  const problems = new Problems(raw);
  const bucket = problems.required('bucket') ?? '';
  const key = problems.required('key') ?? '';
  const uid = problems.required('backupUid') ?? '';
  const waitSeconds = problems.get('deleteWait') ?? 0;
  const s3 = s3Settings(raw, problems);
  const copies = copyDestinations(raw, env, problems, (copy) => copy.key ?? '');
  for (const copy of copies) if (!copy.key) problems.list.push(`copy ${copy.name}: delete needs its key`);
  problems.throwIfAny();
  return { bucket, key, secretsKey: raw.secretsKey || undefined, uid, waitSeconds, s3, copies };
}

export interface ReportSettings {
  namespace: string;
  name: string;
  pod: string | undefined;
  intervalMs: number;
  permissionWaitMs: number;
}

/** With REPORT_STATUS=true: the backup the snapshot Job reports into; undefined when it does not report. */
export function reportSettings(raw: RawSettings): ReportSettings | undefined {
  const problems = new Problems(raw);
  if (!problems.get('reportStatus')) {
    problems.throwIfAny();
    return undefined;
  }
  const namespace = raw.backupNamespace ?? '';
  const name = raw.backupName ?? '';
  if (!namespace || !name) throw new SettingsError('REPORT_STATUS=true needs BACKUP_NAMESPACE and BACKUP_NAME');
  const interval = problems.get('progressInterval');
  const permissionWait = problems.get('reportPermissionWait');
  problems.throwIfAny();
  return { namespace, name, pod: raw.podName, intervalMs: interval! * 1000, permissionWaitMs: permissionWait! * 1000 };
}

export interface RestoreTestStepSettings {
  dir: string;
  requestedAt?: string | undefined;
  recorded: { size?: number; sha256?: string; etcdSha256?: string; revision?: number; keys?: number };
  etcdStartTimeoutMs: number;
}

/** `restore-test-fetch` and `restore-test-check`: the pod's directory and what the backup recorded. */
export function restoreTestSettings(raw: RawSettings): RestoreTestStepSettings {
  const problems = new Problems(raw);
  const dir = problems.required('restoreTestDir') ?? '';
  const requestedAt = problems.get('requestedAt');
  const recorded = {
    ...(raw.expectedSize !== undefined && { size: problems.get('expectedSize') }),
    ...(raw.expectedSha256 && { sha256: raw.expectedSha256 }),
    ...(raw.expectedEtcdSha256 && { etcdSha256: raw.expectedEtcdSha256 }),
    ...(raw.expectedRevision !== undefined && { revision: problems.get('expectedRevision') }),
    ...(raw.expectedKeys !== undefined && { keys: problems.get('expectedKeys') }),
  };
  const timeout = problems.get('etcdStartTimeout') ?? 300;
  problems.throwIfAny();
  return {
    dir,
    requestedAt: requestedAt && formatTime(requestedAt),
    recorded: recorded as RestoreTestStepSettings['recorded'],
    etcdStartTimeoutMs: timeout * 1000,
  };
}
