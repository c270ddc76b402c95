// The Job commands' settings as typed values: the raw settings (src/contract/settings.ts) read, checked and
// turned into what the pipeline takes. Every problem is listed; the commands throw them all at once.

import { readFileSync } from 'node:fs';
import { AgeError, parseIdentities, parseRecipients } from '../api/age-keys.js';
import type { Compression } from './codec/compression.js';
import type { S3Settings } from './s3/client.js';
import type { ObjectProtection } from './s3/upload.js';
import { Problems, SETTINGS, type RawSettings } from '../contract/settings.js';
import type { StoredFormat } from './pipeline/snapshot.js';

export function readFile(path: string, what: string, problems: Problems): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    problems.list.push(`cannot read the ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return undefined;
  }
}

export function s3Settings(raw: RawSettings, problems: Problems): S3Settings {
  const caBundlePem = raw.caBundle ? readFile(raw.caBundle, 'CA bundle', problems) : undefined;
  return {
    region: problems.required(raw, 'region'),
    endpoint: problems.url(raw, 'endpoint'),
    forcePathStyle: problems.boolean(raw, 'forcePathStyle'),
    insecureSkipTLSVerify: problems.boolean(raw, 'insecureSkipTLSVerify'),
    caBundlePem,
    // Keys come through the SDK's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, web identity, ...).
  };
}

const COMPRESSIONS: readonly Compression[] = ['none', 'gzip', 'zstd'];

export function storedFormat(raw: RawSettings, problems: Problems): StoredFormat {
  let compression = (raw.compression ?? 'none') as Compression;
  if (!COMPRESSIONS.includes(compression)) {
    problems.list.push(`${SETTINGS.compression.env} (--${SETTINGS.compression.flag}) must be none, gzip or zstd, got ${JSON.stringify(raw.compression)}`);
    compression = 'none'; // the problem is listed; the checks that follow (the key's suffix) need a known one
  }
  let recipients: string[] = [];
  const listed = (raw.ageRecipients ?? '').split(/[\s,]+/).filter(Boolean);
  try {
    recipients = parseRecipients(listed);
  } catch (error) {
    if (!(error instanceof AgeError)) throw error;
    problems.list.push(`${SETTINGS.ageRecipients.env} (--${SETTINGS.ageRecipients.flag}): ${error.message}`);
  }
  return { compression, recipients };
}

/** The identities in AGE_IDENTITY_FILE (none when unset). The file's content is never echoed. */
export function identities(raw: RawSettings, problems: Problems): string[] {
  if (!raw.ageIdentity) return [];
  const text = readFile(raw.ageIdentity, 'age identity file', problems);
  if (text === undefined) return [];
  try {
    return parseIdentities(text);
  } catch (error) {
    if (!(error instanceof AgeError)) throw error;
    problems.list.push(`${SETTINGS.ageIdentity.env} (--${SETTINGS.ageIdentity.flag}) ${raw.ageIdentity}: ${error.message}`);
    return [];
  }
}

export function protection(raw: RawSettings, problems: Problems): ObjectProtection {
  const out: ObjectProtection = {};
  if (raw.sse !== undefined && raw.sse !== '') {
    if (raw.sse !== 'AES256' && raw.sse !== 'aws:kms') problems.list.push(`${SETTINGS.sse.env} (--${SETTINGS.sse.flag}) must be AES256 or aws:kms, got ${JSON.stringify(raw.sse)}`);
    out.serverSideEncryption = { algorithm: raw.sse as 'AES256' | 'aws:kms', kmsKeyId: raw.sseKmsKeyId || undefined };
  }
  if (raw.sseKmsKeyId && raw.sse !== 'aws:kms') problems.list.push(`${SETTINGS.sseKmsKeyId.env} (--${SETTINGS.sseKmsKeyId.flag}) needs ${SETTINGS.sse.env}=aws:kms`);
  const mode = raw.objectLockMode || undefined;
  const days = raw.objectLockRetainDays || undefined;
  if (mode !== undefined || days !== undefined) {
    if (mode !== 'GOVERNANCE' && mode !== 'COMPLIANCE') problems.list.push(`${SETTINGS.objectLockMode.env} (--${SETTINGS.objectLockMode.flag}) must be GOVERNANCE or COMPLIANCE${mode === undefined ? ` when ${SETTINGS.objectLockRetainDays.env} is set` : `, got ${JSON.stringify(mode)}`}`);
    const retainDays = Number(days);
    if (!Number.isInteger(retainDays) || retainDays < 1) problems.list.push(`${SETTINGS.objectLockRetainDays.env} (--${SETTINGS.objectLockRetainDays.flag}) must be a whole number of days >= 1, got ${JSON.stringify(days)}`);
    out.objectLock = { mode: mode as 'GOVERNANCE' | 'COMPLIANCE', retainDays };
  }
  return out;
}
