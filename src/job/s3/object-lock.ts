// S3 Object Lock: whether a bucket can lock objects, and locking an uploaded version until a date.
//
// The lock is applied to the exact version uploaded, after the upload, and then read back: stores differ in
// what they honour at upload time (Ceph RGW 16 ignores Object Lock headers on multipart uploads and copies, and
// locks only through PutObjectRetention), so only the read-back proves the object is locked.

import {
  GetObjectLockConfigurationCommand,
  GetObjectRetentionCommand,
  PutObjectRetentionCommand,
  S3ServiceException,
  type ObjectLockRetentionMode,
  type S3Client,
} from '@aws-sdk/client-s3';

export type LockMode = 'GOVERNANCE' | 'COMPLIANCE';

export interface ObjectLockRequest {
  mode: LockMode;
  retainDays: number;
}

/**
 * enabled / disabled: the bucket said so; `defaultRetention`: every new version is locked on arrival. unknown: the
 * store would not tell (no permission, not implemented).
 */
export type BucketLock = { state: 'enabled'; defaultRetention: boolean } | { state: 'disabled' | 'unknown' };

/** Whether `bucket` has Object Lock enabled. Throws only for errors that also doom the upload (no such bucket). */
export async function bucketObjectLock(client: S3Client, bucket: string): Promise<BucketLock> {
  try {
    const answer = await client.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }));
    const config = answer.ObjectLockConfiguration;
    if (config?.ObjectLockEnabled !== 'Enabled') return { state: 'disabled' };
    return { state: 'enabled', defaultRetention: Boolean(config.Rule?.DefaultRetention?.Mode) };
  } catch (error) {
    if (error instanceof S3ServiceException) {
      if (error.name === 'ObjectLockConfigurationNotFoundError') return { state: 'disabled' };
      if (error.name === 'NoSuchBucket') throw error;
    }
    return { state: 'unknown' };
  }
}

/** The retain-until date of a lock of `retainDays` days starting at `from`, to the second. */
export function retainUntil(from: Date, retainDays: number): Date {
  return new Date(Math.ceil(from.getTime() / 1000) * 1000 + retainDays * 86_400_000);
}

export class ObjectLockError extends Error {
  override name = 'ObjectLockError';
}

async function readRetention(
  client: S3Client,
  bucket: string,
  key: string,
  versionId: string | undefined,
): Promise<{ mode?: string; until?: Date }> {
  try {
    const { Retention } = await client.send(
      new GetObjectRetentionCommand({ Bucket: bucket, Key: key, ...(versionId && { VersionId: versionId }) }),
    );
    return {
      ...(Retention?.Mode && { mode: Retention.Mode }),
      ...(Retention?.RetainUntilDate && { until: Retention.RetainUntilDate }),
    };
  } catch (error) {
    // RGW answers ObjectLockConfigurationNotFoundError for an object without retention; AWS NoSuchObjectLockConfiguration.
    if (error instanceof S3ServiceException && /ObjectLockConfiguration/.test(error.name)) return {};
    throw error;
  }
}

/**
 * Locks the version at least until `until` in `mode` (a lock already there that reaches as far is kept), then
 * reads the retention back. Returns the date the version is locked until; throws ObjectLockError when the store
 * does not show the lock afterwards.
 */
export async function lockVersion(
  client: S3Client,
  bucket: string,
  key: string,
  versionId: string | undefined,
  mode: LockMode,
  until: Date,
): Promise<Date> {
  const enough = (r: { mode?: string; until?: Date }) =>
    r.mode === mode && r.until !== undefined && r.until.getTime() >= until.getTime() - 1000;
  const current = await readRetention(client, bucket, key, versionId);
  if (enough(current)) return current.until!;
  await client.send(
    new PutObjectRetentionCommand({
      Bucket: bucket,
      Key: key,
      ...(versionId && { VersionId: versionId }),
      Retention: { Mode: mode as ObjectLockRetentionMode, RetainUntilDate: until },
    }),
  );
  const after = await readRetention(client, bucket, key, versionId);
  if (!enough(after)) {
    const shown = after.mode ? `${after.mode} until ${after.until?.toISOString() ?? '?'}` : 'no retention';
    throw new ObjectLockError(
      `the store accepted the Object Lock retention (${mode} until ${until.toISOString()}) but shows ${shown} on the object`,
    );
  }
  return after.until!;
}
