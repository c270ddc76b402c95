// Streams a snapshot into S3 with bounded memory, never overwriting another backup's object.
//
// S3 user metadata is fixed when an upload starts, but a snapshot's hashes are known only at its end. So the
// object is uploaded with the backup's identity, and once the upload has completed (which the integrity
// check gates: see verifyingStream) a server-side copy onto itself, conditional on the uploaded ETag, adds the
// hashes (or object tags do: see recorded-hashes.ts). No byte goes through this process twice.
//
// Protection asked for by the backup: server-side encryption on every request that writes the object, and
// Object Lock on the uploaded version (object-lock.ts), checked against the bucket before any byte is sent.

import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  S3ServiceException,
  UploadPartCopyCommand,
  type S3Client,
  type ServerSideEncryption,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { VerifiedSnapshot } from '../etcd/trailer.js';
import { describeS3Error, isPermanentS3Error } from './errors.js';
import { bucketObjectLock, lockVersion, ObjectLockError, retainUntil, type ObjectLockRequest } from './object-lock.js';
import { hashMetadata, readRecordedHashes, tagHashes, type UploadedHashes } from './recorded-hashes.js';

/** Who wrote an object: stored as x-amz-meta-backup-{namespace,name,uid}. */
export interface BackupIdentity {
  namespace: string;
  name: string;
  uid: string;
}

export interface ObjectProtection {
  serverSideEncryption?: { algorithm: 'AES256' | 'aws:kms'; kmsKeyId?: string | undefined } | undefined;
  objectLock?: ObjectLockRequest | undefined;
}

export interface SnapshotUpload {
  client: S3Client;
  bucket: string;
  key: string;
  identity: BackupIdentity;
  /** Opens the snapshot stream; called only once the key is known to be free (or this backup's own). */
  openBody: () => Readable | Promise<Readable>;
  /** The verified snapshot's figures, available once the body has ended (the verifying stream reports them just before its end). */
  verified: () => VerifiedSnapshot | undefined;
  /** Bytes per part: memory is about partSize × (queueSize + 1). */
  partSize: number;
  queueSize: number;
  /** Largest object copied in one request (S3's limit is 5 GiB); above it the copy is multipart. */
  maxSingleCopyBytes?: number;
  /** Told the bytes uploaded so far, as parts complete. */
  onProgress?: (bytesUploaded: number) => void;
  /** Aborting it stops the upload (and aborts the multipart upload), e.g. on SIGTERM. */
  signal?: AbortSignal;
  protection?: ObjectProtection;
  /** The time the Object Lock retention counts from (default: now). */
  clock?: () => Date;
}

export interface UploadOutcome {
  /** true when this backup's complete object was already there (a retried Job): nothing was uploaded. */
  alreadyUploaded: boolean;
  size: number;
  hashes: UploadedHashes;
  /** With Object Lock: the date the stored version is locked until. */
  retainUntil?: Date;
}

/** An S3 failure, worded as API.md wants ("Failed to upload snapshot to S3: ..."). */
export class S3UploadError extends Error {
  override name = 'S3UploadError';
  /** true when a retry cannot help: a refused key, a missing bucket, bad credentials. */
  readonly permanent: boolean;
  constructor(detail: string, options: { cause?: unknown; permanent?: boolean } = {}) {
    super(`Failed to upload snapshot to S3: ${detail}`, options);
    this.permanent = options.permanent ?? isPermanentS3Error(options.cause);
  }
}

const FIVE_GIB = 5 * 1024 ** 3;
const COPY_PART_BYTES = 1024 ** 3;

function identityMetadata(identity: BackupIdentity): Record<string, string> {
  return { 'backup-namespace': identity.namespace, 'backup-name': identity.name, 'backup-uid': identity.uid };
}

type Existing = { metadata: Record<string, string>; size: number; versionId?: string | undefined } | 'absent' | 'unknown';

/**
 * What is at the key now. A ranged GET rather than a HEAD: HEAD answers have no body, so a wrong key, a
 * missing bucket or a bad signature would all read "403"/"404" with no code. AccessDenied is 'unknown': AWS
 * answers it for a missing key when the writer may not list the bucket, and the atomic If-None-Match guard on
 * the upload still protects an existing object.
 */
async function probeKey(client: S3Client, bucket: string, key: string): Promise<Existing> {
  try {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: 'bytes=0-0' }));
    await object.Body?.transformToByteArray(); // drain the one byte so the connection is reused
    const total = Number(/\/(\d+)$/.exec(object.ContentRange ?? '')?.[1] ?? object.ContentLength ?? 0);
    return { metadata: object.Metadata ?? {}, size: total, versionId: object.VersionId };
  } catch (error) {
    if (error instanceof S3ServiceException) {
      if (error.name === 'NoSuchKey') return 'absent';
      if (error.name === 'InvalidRange') return { metadata: {}, size: 0 }; // an empty object is there
      if (error.name === 'AccessDenied') return 'unknown';
    }
    throw error;
  }
}

/** The server-side encryption parameters of every request that writes the object (upload, copy). */
function encryptionParams(protection: ObjectProtection | undefined): { ServerSideEncryption?: ServerSideEncryption; SSEKMSKeyId?: string } {
  const sse = protection?.serverSideEncryption;
  if (!sse) return {};
  return { ServerSideEncryption: sse.algorithm as ServerSideEncryption, ...(sse.kmsKeyId && { SSEKMSKeyId: sse.kmsKeyId }) };
}

/**
 * Replaces the object's metadata by copying it onto itself, only if it is still the object just uploaded. Returns
 * the copy's version id (versioned buckets).
 */
async function addMetadata(up: SnapshotUpload, etag: string, size: number, metadata: Record<string, string>): Promise<string | undefined> {
  const { client, bucket, key } = up;
  const source = `${bucket}/${encodeURIComponent(key)}`;
  const singleCopyLimit = up.maxSingleCopyBytes ?? FIVE_GIB;
  // A copy is a new object: without the encryption parameters it would get the bucket's default encryption.
  const sse = encryptionParams(up.protection);
  if (size <= singleCopyLimit) {
    const copied = await client.send(new CopyObjectCommand({ Bucket: bucket, Key: key, CopySource: source, CopySourceIfMatch: etag, MetadataDirective: 'REPLACE', Metadata: metadata, ContentType: 'application/octet-stream', ...sse }));
    return copied.VersionId;
  }
  // Above the single-copy limit: a multipart copy, part by part, still entirely inside the store.
  // Parts of 1 GiB, never above the single-copy limit (a test lowers that limit to exercise this path).
  const partBytes = Math.max(Math.min(singleCopyLimit, COPY_PART_BYTES), 5 * 1024 * 1024);
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, Metadata: metadata, ContentType: 'application/octet-stream', ...sse }));
  try {
    const parts = [];
    for (let start = 0, number = 1; start < size; start += partBytes, number += 1) {
      const end = Math.min(start + partBytes, size) - 1;
      const { CopyPartResult } = await client.send(
        new UploadPartCopyCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: number, CopySource: source, CopySourceIfMatch: etag, CopySourceRange: `bytes=${start}-${end}` }),
      );
      parts.push({ PartNumber: number, ETag: CopyPartResult?.ETag });
    }
    const completed = await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
    return completed.VersionId;
  } catch (error) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined);
    throw error;
  }
}

/**
 * Aborts incomplete multipart uploads to exactly `key` started before `before`: an earlier attempt of this backup
 * that was killed (SIGKILL, out of memory) could not abort its own, and its parts would be stored, invisible, until
 * a lifecycle rule removes them. Keys are unique per backup, so nobody else uploads to this one. Best effort: a
 * writer without s3:ListBucketMultipartUploads simply skips this.
 */
async function abortLeftoverUploads(client: S3Client, bucket: string, key: string, before: Date): Promise<void> {
  try {
    const listed = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
    for (const upload of listed.Uploads ?? []) {
      if (upload.Key !== key || !upload.UploadId || (upload.Initiated && upload.Initiated >= before)) continue;
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: upload.UploadId }));
    }
  } catch {
    // housekeeping only
  }
}

/**
 * How the object is written: `recording`, how the hashes get onto it (see recorded-hashes.ts); `checksums`, whether
 * every part carries one (S3 requires it on buckets that lock objects).
 */
interface WritePlan {
  recording: 'copy' | 'tags';
  checksums: boolean;
}

/**
 * Checks the bucket against the protection asked for, before any byte is sent: Object Lock needs a bucket with
 * Object Lock enabled. Tags record the hashes only where the bucket's default retention locks the uploaded
 * version, so that a copy would leave a second locked version behind.
 */
async function prepareBucket(up: SnapshotUpload): Promise<WritePlan> {
  const { client, bucket } = up;
  let lock;
  try {
    lock = await bucketObjectLock(client, bucket);
  } catch (error) {
    throw new S3UploadError(describeS3Error(error), { cause: error });
  }
  if (up.protection?.objectLock && lock.state === 'disabled') {
    throw new S3UploadError(
      `bucket ${bucket} has no Object Lock configuration, so objectLock (${up.protection.objectLock.mode}, ${up.protection.objectLock.retainDays} days) cannot be applied: use a bucket created with Object Lock enabled, or remove spec.backupStorage.s3.objectLock`,
      { permanent: true },
    );
  }
  if (lock.state !== 'enabled') return { recording: 'copy', checksums: Boolean(up.protection?.objectLock) };
  return { recording: lock.defaultRetention ? 'tags' : 'copy', checksums: true };
}

/**
 * Uploads a snapshot to `key`. If an object is already there: a complete one from this same backup (same uid,
 * with hashes) is accepted as is — a retried Job — and the body is never opened; anything else written by another
 * backup is refused, never overwritten. Any failure aborts the multipart upload, so nothing is left at the key
 * and no upload stays pending. Errors from the body (Talos, integrity) are rethrown unchanged; S3's are
 * S3UploadErrors.
 */
export async function uploadSnapshot(up: SnapshotUpload): Promise<UploadOutcome> {
  const { client, bucket, key, identity } = up;
  const plan = await prepareBucket(up);
  const lockRequest = up.protection?.objectLock;
  const lockUntil = lockRequest && retainUntil((up.clock ?? (() => new Date()))(), lockRequest.retainDays);
  const lock = async (versionId: string | undefined): Promise<Date | undefined> => {
    if (!lockRequest || !lockUntil) return undefined;
    try {
      return await lockVersion(client, bucket, key, versionId, lockRequest.mode, lockUntil);
    } catch (error) {
      const detail = error instanceof ObjectLockError ? error.message : describeS3Error(error);
      throw new S3UploadError(`the snapshot was uploaded to s3://${bucket}/${key} but locking it failed: ${detail}`, { cause: error, permanent: error instanceof ObjectLockError || undefined });
    }
  };

  let existing: Existing;
  try {
    existing = await probeKey(client, bucket, key);
  } catch (error) {
    throw new S3UploadError(describeS3Error(error), { cause: error });
  }
  const refuse = (owner: string) => new S3UploadError(`an object already exists at s3://${bucket}/${key}${owner}; refusing to overwrite it`, { permanent: true });
  const ours = typeof existing === 'object' && existing.metadata['backup-uid'] === identity.uid;
  if (typeof existing === 'object' && !ours) {
    throw refuse(existing.metadata['backup-name'] ? ` by backup ${existing.metadata['backup-namespace']}/${existing.metadata['backup-name']}` : '');
  }
  let recorded;
  try {
    recorded = typeof existing === 'object' ? await readRecordedHashes(client, bucket, key, existing.metadata, existing.versionId) : undefined;
  } catch (error) {
    throw new S3UploadError(`cannot tell whether this backup's object at s3://${bucket}/${key} is complete: ${describeS3Error(error)}`, { cause: error });
  }
  if (typeof existing === 'object' && recorded) {
    const locked = await lock(existing.versionId);
    return { alreadyUploaded: true, size: existing.size, hashes: recorded, ...(locked && { retainUntil: locked }) };
  }

  await abortLeftoverUploads(client, bucket, key, new Date());

  // The body's own failure (a broken Talos stream, a failed integrity check) is the real cause even when
  // lib-storage's abort call fails too and replaces it.
  let bodyError: Error | undefined;
  const body = await up.openBody();
  body.once('error', (error: Error) => (bodyError = error));
  const upload = new Upload({
    client,
    params: {
      Bucket: bucket,
      Key: key,
      Body: body,
      ContentType: 'application/octet-stream',
      Metadata: identityMetadata(identity),
      // Atomic "create only": loses no race with another writer. Not when replacing this backup's own partial object.
      ...(!ours && { IfNoneMatch: '*' }),
      ...encryptionParams(up.protection),
      // S3 refuses uploads to a bucket that locks objects unless every part carries a checksum (the client sends
      // them only when required, for stores that reject them).
      ...(plan.checksums && { ChecksumAlgorithm: 'CRC32' as const }),
      // The version that will hold the hashes is locked below. When the hashes go on as tags that is this one, and
      // asking for the lock here too makes it atomic where the store honours it (AWS); when they go on by a copy,
      // this version must stay unlocked, so that it can be removed once the copy exists.
      ...(plan.recording === 'tags' && lockRequest && lockUntil && { ObjectLockMode: lockRequest.mode, ObjectLockRetainUntilDate: lockUntil }),
    },
    partSize: up.partSize,
    queueSize: up.queueSize,
    leavePartsOnError: false,
  });
  if (up.onProgress) {
    const report = up.onProgress;
    upload.on('httpUploadProgress', (progress) => progress.loaded !== undefined && report(progress.loaded));
  }
  const abort = () => void upload.abort().catch(() => undefined);
  up.signal?.addEventListener('abort', abort, { once: true });
  let result;
  try {
    if (up.signal?.aborted) throw new Error('stopped before the upload started');
    result = await upload.done();
  } catch (error) {
    if (up.signal?.aborted) throw new S3UploadError(`stopped (${String(up.signal.reason ?? 'aborted')}); the multipart upload was aborted`, { cause: error });
    if (bodyError) throw bodyError;
    if (error instanceof S3ServiceException && error.$metadata?.httpStatusCode === 412) throw refuse(' (written while this upload ran)');
    throw new S3UploadError(describeS3Error(error), { cause: error });
  } finally {
    up.signal?.removeEventListener('abort', abort);
    body.destroy(); // after a failed upload, stop the Talos stream instead of leaving it blocked on backpressure
  }
  const verified = up.verified();
  if (!verified) throw new S3UploadError('the upload completed without a verified snapshot (internal error)');
  const hashes = { sha256: verified.sha256, etcdSha256: verified.etcdSha256 };
  let versionId = result.VersionId;
  try {
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ...(versionId && { VersionId: versionId }) }));
    const size = head.ContentLength ?? 0;
    // The copy must be conditional on this upload's object. Some stores (Ceph RGW) answer a multipart
    // completion with an empty ETag; then the HEAD's is used, once the HEAD shows this backup's uid and size.
    const etag = result.ETag || head.ETag;
    if (!etag || head.Metadata?.['backup-uid'] !== identity.uid || size !== verified.size) {
      throw new Error(`the object at the key is not the one just uploaded (someone wrote it meanwhile?); its hashes were not recorded`);
    }
    versionId ??= head.VersionId;
    const copy = plan.recording === 'copy' ? await copiedWithHashes(up, etag, size, hashes) : undefined;
    if (copy) {
      const locked = await lock(copy.versionId);
      // On a versioned bucket the copy is a new version and the one without hashes is redundant. Removing it is
      // housekeeping: a writer without s3:DeleteObjectVersion keeps a harmless extra version, not a failed backup.
      if (versionId) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId })).catch(() => undefined);
      return { alreadyUploaded: false, size, hashes, ...(locked && { retainUntil: locked }) };
    }
    await tagHashes(client, bucket, key, versionId, hashes);
    const locked = await lock(versionId);
    return { alreadyUploaded: false, size, hashes, ...(locked && { retainUntil: locked }) };
  } catch (error) {
    if (error instanceof S3UploadError) throw error;
    throw new S3UploadError(`the snapshot was uploaded to s3://${bucket}/${key} but recording its sha256 failed: ${describeS3Error(error)}`, { cause: error });
  }
}

/** Adds the hashes as metadata by a copy; undefined when the store cannot copy this object (then tags record them). */
async function copiedWithHashes(up: SnapshotUpload, etag: string, size: number, hashes: UploadedHashes): Promise<{ versionId: string | undefined } | undefined> {
  try {
    return { versionId: await addMetadata(up, etag, size, { ...identityMetadata(up.identity), ...hashMetadata(hashes) }) };
  } catch (error) {
    // Ceph RGW 16 cannot copy an SSE-KMS object (501 NotImplemented).
    if (error instanceof S3ServiceException && (error.name === 'NotImplemented' || error.$metadata?.httpStatusCode === 501)) return undefined;
    throw error;
  }
}
