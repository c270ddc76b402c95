// The copies of a backup (spec.backupStorage.copies) as the Job takes them: one JSON list in S3_COPIES, each copy's
// S3 keys in variables of their own (S3_COPY_<N>_ACCESS_KEY_ID, S3_COPY_<N>_SECRET_ACCESS_KEY; N counts from 1 in
// list order, as `--copy N` does) and its CA bundle as a file. The hook server writes them (server/backup/job.ts),
// the Job reads them (job/settings.ts), `restore --backup` builds them from a TalosEtcdBackup. Pure.

import { OBJECT_LOCK_MODES, SSE_ALGORITHMS, type CopyStorage } from '../api/types.js';
import type { Parser } from '../api/settings.js';

/** One copy as S3_COPIES carries it: no secret, only where its keys and CA bundle are. */
export interface CopySetting {
  /** For messages and status: the spec's name, else copy-<N>. */
  name: string;
  /** false: the backup succeeds without it (reported as a warning). */
  required: boolean;
  bucket: string;
  region: string;
  endpoint?: string | undefined;
  forcePathStyle?: boolean | undefined;
  insecureSkipTLSVerify?: boolean | undefined;
  /** Path of the PEM CA bundle file. */
  caBundle?: string | undefined;
  /** The key's first segment(s) (snapshot: the key is <prefix>/<cluster>/<the primary's file name>). */
  prefix?: string | undefined;
  /** The whole key (delete, verify, restore: the copy's recorded key; snapshot: overrides prefix). */
  key?: string | undefined;
  /** The cluster secrets' key beside this copy (delete, verify). */
  secretsKey?: string | undefined;
  sse?: (typeof SSE_ALGORITHMS)[number] | undefined;
  sseKmsKeyId?: string | undefined;
  objectLockMode?: (typeof OBJECT_LOCK_MODES)[number] | undefined;
  objectLockRetainDays?: number | undefined;
  /** true: the keys come in S3_COPY_<N>_*, and their absence fails this copy (never falls back to ambient ones). */
  keysFromEnv?: boolean | undefined;
}

/** The variables holding copy N's S3 keys (N from 1). Unset both: the SDK's default chain (see the README). */
export function copyCredentialEnv(n: number): { accessKeyId: string; secretAccessKey: string } {
  return { accessKeyId: `S3_COPY_${n}_ACCESS_KEY_ID`, secretAccessKey: `S3_COPY_${n}_SECRET_ACCESS_KEY` };
}

/** Whether a variable holds a copy's S3 key (for redaction). */
export const COPY_CREDENTIAL_ENV = /^S3_COPY_\d+_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)$/;

/** A copy's name in messages: the spec's, else copy-<N>. */
export function copyName(copy: Pick<CopyStorage, 'name'>, n: number): string {
  return copy.name ?? `copy-${n}`;
}

/** S3_COPIES for a backup's copies (keys and CA bundle paths are the caller's: they depend on how it mounts them). */
export function copySettingsOf(
  copies: readonly CopyStorage[],
  extra: (copy: CopyStorage, n: number) => Partial<CopySetting> = () => ({}),
): CopySetting[] {
  return copies.map((copy, i) => {
    const n = i + 1;
    const setting: CopySetting = {
      name: copyName(copy, n),
      required: copy.required ?? true,
      bucket: copy.bucket,
      region: copy.region,
      endpoint: copy.endpoint,
      forcePathStyle: copy.forcePathStyle,
      insecureSkipTLSVerify: copy.insecureSkipTLSVerify,
      prefix: copy.prefix,
      sse: copy.serverSideEncryption?.algorithm,
      sseKmsKeyId: copy.serverSideEncryption?.kmsKeyID,
      objectLockMode: copy.objectLock?.mode,
      objectLockRetainDays: copy.objectLock?.retainDays,
      ...extra(copy, n),
    };
    return Object.fromEntries(Object.entries(setting).filter(([, v]) => v !== undefined)) as unknown as CopySetting;
  });
}

export function formatCopies(copies: readonly CopySetting[]): string {
  return JSON.stringify(copies);
}

const STRINGS = ['name', 'bucket', 'region', 'endpoint', 'caBundle', 'prefix', 'key', 'secretsKey', 'sseKmsKeyId'];
const BOOLEANS = ['required', 'forcePathStyle', 'insecureSkipTLSVerify', 'keysFromEnv'];

/** Reads S3_COPIES: a JSON list of copies, each with at least bucket and region; every problem is said at once. */
export const copiesParser: Parser<CopySetting[]> = (text) => {
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch {
    return { problem: 'must be a JSON list of copies' };
  }
  if (!Array.isArray(list)) return { problem: 'must be a JSON list of copies' };
  const problems: string[] = [];
  const copies = list.map((entry: unknown, i): CopySetting => {
    const n = i + 1;
    const copy = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
    const bad = (what: string) => problems.push(`copy ${n}: ${what}`);
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) bad('is not an object');
    for (const field of Object.keys(copy)) {
      const value = copy[field];
      if (STRINGS.includes(field) && typeof value !== 'string') bad(`${field} must be a string`);
      else if (BOOLEANS.includes(field) && typeof value !== 'boolean') bad(`${field} must be true or false`);
      else if (field === 'objectLockRetainDays' && !(Number.isInteger(value) && (value as number) >= 1))
        bad('objectLockRetainDays must be a whole number of days >= 1');
      else if (field === 'sse' && !(SSE_ALGORITHMS as readonly unknown[]).includes(value))
        bad(`sse must be ${SSE_ALGORITHMS.join(' or ')}`);
      else if (field === 'objectLockMode' && !(OBJECT_LOCK_MODES as readonly unknown[]).includes(value))
        bad(`objectLockMode must be ${OBJECT_LOCK_MODES.join(' or ')}`);
      else if (![...STRINGS, ...BOOLEANS, 'objectLockRetainDays', 'sse', 'objectLockMode'].includes(field))
        bad(`unknown field ${field}`);
    }
    for (const field of ['bucket', 'region'] as const) if (!copy[field]) bad(`${field} is required`);
    if (typeof copy.endpoint === 'string' && !/^https?:\/\/[^@/]+/.test(copy.endpoint))
      bad('endpoint must be an http(s) URL without credentials');
    if ((copy.objectLockMode === undefined) !== (copy.objectLockRetainDays === undefined))
      bad('objectLockMode and objectLockRetainDays go together');
    if (copy.sseKmsKeyId !== undefined && copy.sse !== 'aws:kms') bad('sseKmsKeyId needs sse aws:kms');
    return {
      ...(copy as unknown as CopySetting),
      name: (copy.name as string) ?? `copy-${n}`,
      required: copy.required !== false,
    };
  });
  return problems.length > 0 ? { problem: problems.join('; ') } : { value: copies };
};
