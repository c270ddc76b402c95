// Deletes a backup's snapshot object (deletionPolicy: Delete), but only the backup's own: the object's
// x-amz-meta-backup-uid must be the backup's uid. Idempotent: a key with no object is success (a retried Job).
// An object that S3 Object Lock protects is kept, and that is an outcome, not a failure: no retry can delete it
// before its retention ends, and holding the backup in Terminating for months would block its namespace.

import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  S3ServiceException,
  type S3Client,
} from '@aws-sdk/client-s3';
import { setTimeout as delay } from 'node:timers/promises';
import { JobError } from '../errors.js';
import { describeS3Error, isPermanentS3Error } from './errors.js';

/** An S3 failure or refusal (FAILURE_PREFIX.delete); permanent: a foreign object, a missing bucket, a denied request. */
export class S3DeleteError extends JobError {
  override name = 'S3DeleteError';
  constructor(detail: string, options: { cause?: unknown; permanent: boolean }) {
    super('delete', detail, options);
  }
}

export interface DeleteOutcome {
  deleted: boolean;
  /** why nothing was deleted, when deleted is false */
  detail?: string;
  /** Set when Object Lock kept the object: until when (if the store said), or 'legal hold'. */
  protectedUntil?: string;
}

function s3Error(error: unknown, suffix = ''): S3DeleteError {
  return new S3DeleteError(`${describeS3Error(error)}${suffix}`, {
    cause: error,
    permanent: isPermanentS3Error(error),
  });
}

interface Found {
  metadata: Record<string, string>;
  versionId?: string | undefined;
  etag?: string | undefined;
  lockMode?: string | undefined;
  retainUntil?: Date | undefined;
  legalHold?: string | undefined;
}

/**
 * The object at the key now, or undefined if there is none. A ranged GET rather than a HEAD: a HEAD answer has
 * no body, so a missing bucket would read as a bare 404 — indistinguishable from an already deleted object, and
 * a typo in the bucket would then "succeed". The GET's error codes (NoSuchKey vs NoSuchBucket) tell them apart.
 */
async function probe(client: S3Client, bucket: string, key: string): Promise<Found | undefined> {
  let object;
  try {
    object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: 'bytes=0-0' }));
    await object.Body?.transformToByteArray(); // drain the one byte so the connection is reused
  } catch (error) {
    if (error instanceof S3ServiceException && error.name === 'NoSuchKey') return undefined;
    // An empty object has no byte 0: it exists, and a HEAD (no longer ambiguous) gives its metadata.
    if (!(error instanceof S3ServiceException && error.name === 'InvalidRange')) throw error;
    object = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  }
  return {
    metadata: object.Metadata ?? {},
    versionId: object.VersionId,
    etag: object.ETag,
    lockMode: object.ObjectLockMode,
    retainUntil: object.ObjectLockRetainUntilDate,
    legalHold: object.ObjectLockLegalHoldStatus,
  };
}

/**
 * Deletes the snapshot object at `key` if it is the backup `uid`'s own. No object there: `deleted: false`.
 * Another backup's object (or one without our metadata) is never deleted: S3DeleteError. On a versioned bucket
 * the current version itself is deleted, so the data is really gone rather than hidden behind a delete marker.
 */
export async function deleteSnapshotObject(
  client: S3Client,
  bucket: string,
  key: string,
  uid: string,
): Promise<DeleteOutcome> {
  const where = `s3://${bucket}/${key}`;
  let found: Found | undefined;
  try {
    found = await probe(client, bucket, key);
  } catch (error) {
    // Without s3:GetObject the owner cannot be checked; AWS also answers AccessDenied for a missing key when
    // the role may not s3:ListBucket.
    const denied = error instanceof S3ServiceException && error.name === 'AccessDenied';
    throw s3Error(error, denied ? ` (cannot read ${where} to check that it is this backup's object)` : '');
  }
  if (!found) return { deleted: false, detail: `no object at ${where} (already deleted)` };

  const meta = found.metadata;
  if (meta['backup-uid'] !== uid) {
    const owner = meta['backup-name']
      ? `backup ${meta['backup-namespace']}/${meta['backup-name']}`
      : `another backup${meta['backup-uid'] ? '' : ' (it has no backup-uid metadata)'}`;
    throw new S3DeleteError(`the object at ${where} belongs to ${owner}, not this one; it was not deleted`, {
      permanent: true,
    });
  }

  try {
    await client.send(
      new DeleteObjectCommand({
        Bucket: bucket,
        Key: key,
        // A version is immutable, so deleting it by id is exact. Without versions, If-Match makes the delete
        // conditional on the object just checked where the store supports it (AWS; RGW 16 ignores it).
        ...(found.versionId ? { VersionId: found.versionId } : found.etag && { IfMatch: found.etag }),
      }),
    );
  } catch (error) {
    if (error instanceof S3ServiceException && error.$metadata?.httpStatusCode === 412) {
      throw new S3DeleteError(`the object at ${where} changed while it was being deleted; it was not deleted`, {
        cause: error,
        permanent: false,
      });
    }
    if (lockedOut(error, found)) {
      const until = found.retainUntil
        ? ` (${found.lockMode ?? 'retention'} until ${found.retainUntil.toISOString()})`
        : '';
      const hold = found.legalHold === 'ON' ? ' (legal hold)' : '';
      return {
        deleted: false,
        detail: `the object at ${where} is protected by Object Lock${until}${hold}: S3 refuses to delete it before then, so it was kept (a lifecycle rule can expire it afterwards)`,
        protectedUntil: found.legalHold === 'ON' ? 'legal hold' : (found.retainUntil?.toISOString() ?? 'unknown'),
      };
    }
    throw s3Error(error);
  }
  return { deleted: true };
}

/**
 * Whether a failed delete was refused by Object Lock. RGW 16 answers AccessDenied (HTTP 403) "forbidden by object
 * lock", AWS AccessDenied "... protected by object lock"; a plain AccessDenied counts when the object showed a lock.
 */
function lockedOut(error: unknown, found: Found): boolean {
  if (!(error instanceof S3ServiceException) || !['AccessDenied', 'InvalidRequest'].includes(error.name)) return false;
  const locked =
    (found.retainUntil !== undefined && found.retainUntil.getTime() > Date.now()) || found.legalHold === 'ON';
  return locked || /object ?lock|retention|legal hold/i.test(error.message);
}

export interface SweptOutcome extends DeleteOutcome {
  /** Incomplete multipart uploads at the key aborted after the wait. */
  abortedUploads: number;
}

/**
 * deleteSnapshotObject for a backup whose snapshot may still be running: the decorator removes the snapshot Job
 * before it asks for the delete Job, but the Job's pod outlives it by its termination grace period, and an upload
 * completing in that window would leave an object nobody deletes. So: delete, wait `waitSeconds` (longer than the
 * snapshot pod's grace period), then abort any multipart upload still open at the key and delete again what
 * appeared meanwhile (only this backup's object, as always).
 */
export async function deleteSnapshotObjectAfterSnapshot(
  client: S3Client,
  bucket: string,
  key: string,
  uid: string,
  waitSeconds: number,
  sleep: (ms: number) => Promise<unknown> = delay,
): Promise<SweptOutcome> {
  const first = await deleteSnapshotObject(client, bucket, key, uid);
  if (first.protectedUntil || waitSeconds <= 0) return { ...first, abortedUploads: 0 };
  await sleep(waitSeconds * 1000);
  let abortedUploads = 0;
  try {
    const listed = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
    for (const upload of listed.Uploads ?? []) {
      if (upload.Key !== key || !upload.UploadId) continue; // the key is this backup's own: see objectKey
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: upload.UploadId }));
      abortedUploads += 1;
    }
  } catch (error) {
    throw s3Error(error, ` (while aborting uploads left at s3://${bucket}/${key})`);
  }
  const second = await deleteSnapshotObject(client, bucket, key, uid);
  return { ...(second.deleted || second.protectedUntil ? second : first), abortedUploads };
}
