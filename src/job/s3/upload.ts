// Streams a snapshot into S3 with bounded memory, never overwriting another backup's object. In three steps, each
// called by the snapshot pipeline in turn: prepareWrite reads what the write depends on and plans it
// (write-plan.ts); then either keepExisting (this backup's complete object is already there) or storeStream: the
// upload, then the hashes recorded, then the lock.
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
  PutObjectCommand,
  S3ServiceException,
  UploadPartCopyCommand,
  type CompleteMultipartUploadCommandOutput,
  type S3Client,
  type ServerSideEncryption,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { JobError } from '../errors.js';
import { describeS3Error, isPermanentS3Error } from './errors.js';
import { bucketObjectLock, lockVersion, ObjectLockError, retainUntil, type ObjectLockRequest } from './object-lock.js';
import { hashMetadata, readRecordedHashes, tagHashes, type UploadedHashes } from './recorded-hashes.js';
import {
  identityMetadata,
  occupied,
  ownerOf,
  planWrite,
  type BackupIdentity,
  type ExistingObject,
  type WritePlan,
} from './write-plan.js';

export interface ObjectProtection {
  serverSideEncryption?: { algorithm: 'AES256' | 'aws:kms'; kmsKeyId?: string | undefined } | undefined;
  objectLock?: ObjectLockRequest | undefined;
}

/** Where and how a snapshot is stored. */
export interface SnapshotTarget {
  client: S3Client;
  bucket: string;
  key: string;
  identity: BackupIdentity;
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

/** A planned write that sends or keeps an object (a refused one is thrown): where, how, and locked until when. */
export type PreparedWrite = Exclude<WritePlan, { action: 'refuse' }> & {
  target: SnapshotTarget;
  lockUntil: Date | undefined;
};
export type UploadWrite = Extract<PreparedWrite, { action: 'upload' }>;

/** What the stored bytes amount to, known once they have all gone by. */
export interface StoredFigures extends UploadedHashes {
  size: number;
}

/** The bytes to store, and their figures: a promise that resolves as the bytes end, and rejects if they fail. */
export interface StoredStream {
  body: Readable;
  figures: Promise<StoredFigures>;
}

export interface UploadOutcome {
  /** true when this backup's complete object was already there (a retried Job): nothing was uploaded. */
  alreadyUploaded: boolean;
  size: number;
  hashes: UploadedHashes;
  /** With Object Lock: the date the stored version is locked until. */
  retainUntil?: Date;
}

/** An S3 failure or refusal (FAILURE_PREFIX.upload); permanent, unless said, when S3's answer is. */
export class S3UploadError extends JobError {
  override name = 'S3UploadError';
  constructor(detail: string, options: { cause?: unknown; permanent?: boolean | undefined } = {}) {
    const permanent = options.permanent ?? isPermanentS3Error(options.cause);
    super('upload', detail, { cause: options.cause, permanent });
  }
}

const FIVE_GIB = 5 * 1024 ** 3;
const COPY_PART_BYTES = 1024 ** 3;

/**
 * What is at the key now, and for this backup's own object the hashes recorded with it. A ranged GET rather than a
 * HEAD: HEAD answers have no body, so a wrong key, a missing bucket or a bad signature would all read "403"/"404"
 * with no code. AccessDenied is 'unknown', and the atomic If-None-Match guard on the upload still protects an
 * existing object.
 */
async function readKey<H>(
  target: SnapshotTarget,
  readRecorded: (metadata: Record<string, string>, versionId: string | undefined) => Promise<H | undefined>,
): Promise<ExistingObject<H>> {
  const { client, bucket, key } = target;
  let object;
  try {
    object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: 'bytes=0-0' }));
    await object.Body?.transformToByteArray(); // drain the one byte so the connection is reused
  } catch (error) {
    if (error instanceof S3ServiceException) {
      if (error.name === 'NoSuchKey') return { state: 'absent' };
      if (error.name === 'InvalidRange') return { state: 'present', owner: {}, size: 0 }; // an empty object is there
      if (error.name === 'AccessDenied') return { state: 'unknown' };
    }
    throw new S3UploadError(describeS3Error(error), { cause: error });
  }
  const metadata = object.Metadata ?? {};
  const size = Number(/\/(\d+)$/.exec(object.ContentRange ?? '')?.[1] ?? object.ContentLength ?? 0);
  const found = { state: 'present' as const, owner: ownerOf(metadata), size, versionId: object.VersionId };
  if (found.owner.uid !== target.identity.uid) return found;
  try {
    return { ...found, recorded: await readRecorded(metadata, found.versionId) };
  } catch (error) {
    const detail = `cannot tell whether this backup's object at s3://${bucket}/${key} is complete: ${describeS3Error(error)}`;
    throw new S3UploadError(detail, { cause: error });
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
 * After a failed attempt to several destinations: aborts every multipart upload still open at the target's key. A
 * destination that stalled mid-part cannot finish its own abort (lib-storage waits for the stalled part first), so
 * this is sent anew, on another connection. Best effort, like abortLeftoverUploads.
 */
export async function abortOpenUploads(target: SnapshotTarget): Promise<void> {
  await abortLeftoverUploads(target.client, target.bucket, target.key, new Date(8.64e15));
}

/**
 * Reads the bucket's Object Lock configuration and what is at the key, and plans the write (write-plan.ts). A
 * refused write is thrown here, before any byte is sent; for an upload, what an earlier attempt left is cleared.
 */
export async function prepareWrite(target: SnapshotTarget): Promise<PreparedWrite> {
  const { client, bucket, key } = target;
  return prepare(target, (metadata, versionId) => readRecordedHashes(client, bucket, key, metadata, versionId));
}

/** prepareWrite for an object whose recorded hashes `readRecorded` reads. */
async function prepare<H>(
  target: SnapshotTarget,
  readRecorded: (metadata: Record<string, string>, versionId: string | undefined) => Promise<H | undefined>,
): Promise<Exclude<WritePlan<H>, { action: 'refuse' }> & { target: SnapshotTarget; lockUntil: Date | undefined }> {
  const { client, bucket, key } = target;
  const lockRequest = target.protection?.objectLock;
  const lockUntil = lockRequest && retainUntil((target.clock ?? (() => new Date()))(), lockRequest.retainDays);
  let bucketLock;
  try {
    bucketLock = await bucketObjectLock(client, bucket);
  } catch (error) {
    throw new S3UploadError(describeS3Error(error), { cause: error });
  }
  const existing = await readKey(target, readRecorded);
  const plan = planWrite<H>({ bucket, key, existing, bucketLock, uid: target.identity.uid, objectLock: lockRequest });
  if (plan.action === 'refuse') throw new S3UploadError(plan.reason, { permanent: true });
  if (plan.action === 'upload') await abortLeftoverUploads(client, bucket, key, new Date());
  return { ...plan, target, lockUntil };
}

/**
 * The parameters of every request that writes the object: the upload, and the copy that adds the hashes (single
 * or multipart). A copy is a new object: without the encryption parameters it would get the bucket's default.
 */
function writeParams(write: UploadWrite, request: 'upload' | 'copy', metadata: Record<string, string>) {
  const lockRequest = write.target.protection?.objectLock;
  // The version that will hold the hashes is locked after recording them. When the hashes go on as tags that is
  // the uploaded one, and asking for the lock here too makes it atomic where the store honours it (AWS); when they
  // go on by a copy, the uploaded version must stay unlocked, so that it can be removed once the copy exists.
  const uploadLockedUntil = request === 'upload' && write.recording === 'tags' && lockRequest && write.lockUntil;
  return protectionParams(write.target.protection, metadata, {
    checksums: request === 'upload' && write.checksums,
    lockUntil: uploadLockedUntil || undefined,
  });
}

/**
 * Metadata, server-side encryption, part checksums and the Object Lock asked for at upload time, as S3 request
 * parameters: the one place every request that writes an object gets them from.
 */
function protectionParams(
  protection: ObjectProtection | undefined,
  metadata: Record<string, string>,
  opts: { checksums: boolean; lockUntil: Date | undefined },
) {
  const sse = protection?.serverSideEncryption;
  const lockRequest = protection?.objectLock;
  return {
    Metadata: metadata,
    ContentType: 'application/octet-stream',
    ...(sse && { ServerSideEncryption: sse.algorithm as ServerSideEncryption }),
    ...(sse?.kmsKeyId && { SSEKMSKeyId: sse.kmsKeyId }),
    // S3 refuses uploads to a bucket that locks objects unless every part carries a checksum (the client sends
    // them only when required, for stores that reject them).
    ...(opts.checksums && { ChecksumAlgorithm: 'CRC32' as const }),
    ...(lockRequest &&
      opts.lockUntil && { ObjectLockMode: lockRequest.mode, ObjectLockRetainUntilDate: opts.lockUntil }),
  };
}

/** Locks the stored version when Object Lock was asked for; returns the date it is locked until. */
async function lock(
  write: { target: SnapshotTarget; lockUntil: Date | undefined },
  versionId: string | undefined,
): Promise<Date | undefined> {
  const { client, bucket, key, protection } = write.target;
  const lockRequest = protection?.objectLock;
  if (!lockRequest || !write.lockUntil) return undefined;
  try {
    return await lockVersion(client, bucket, key, versionId, lockRequest.mode, write.lockUntil);
  } catch (error) {
    // A store that accepts the lock but does not show it will not show it on a retry either.
    const unhonoured = error instanceof ObjectLockError;
    const detail = `the snapshot was uploaded to s3://${bucket}/${key} but locking it failed: ${unhonoured ? error.message : describeS3Error(error)}`;
    throw new S3UploadError(detail, { cause: error, permanent: unhonoured || undefined });
  }
}

/** This backup's complete object, found by a retried Job: kept as it is, and locked if asked. */
export async function keepExisting(write: Extract<PreparedWrite, { action: 'accept' }>): Promise<UploadOutcome> {
  const locked = await lock(write, write.versionId);
  return { alreadyUploaded: true, size: write.size, hashes: write.hashes, ...(locked && { retainUntil: locked }) };
}

interface Uploaded {
  figures: StoredFigures;
  etag: string | undefined;
  versionId: string | undefined;
}

/**
 * Uploads the stream. Any failure aborts the multipart upload, so nothing is left at the key and no upload stays
 * pending. Errors from the body (Talos, integrity) are rethrown unchanged; S3's are S3UploadErrors.
 */
async function upload(write: UploadWrite, stream: StoredStream): Promise<Uploaded> {
  const { client, bucket, key, identity, signal } = write.target;
  const { body } = stream;
  // The body's own failure (a broken Talos stream, a failed integrity check) is the real cause even when
  // lib-storage's abort call fails too and replaces it.
  let bodyError: Error | undefined;
  body.once('error', (error: Error) => (bodyError = error));
  const upload = new Upload({
    client,
    params: {
      Bucket: bucket,
      Key: key,
      Body: body,
      // Atomic "create only": loses no race with another writer. Not when replacing this backup's own partial object.
      ...(write.createOnly && { IfNoneMatch: '*' }),
      ...writeParams(write, 'upload', identityMetadata(identity)),
    },
    partSize: write.target.partSize,
    queueSize: write.target.queueSize,
    leavePartsOnError: false,
  });
  const report = write.target.onProgress;
  if (report) upload.on('httpUploadProgress', (progress) => progress.loaded !== undefined && report(progress.loaded));
  const abort = () => void upload.abort().catch(() => undefined);
  signal?.addEventListener('abort', abort, { once: true });
  let result: CompleteMultipartUploadCommandOutput;
  try {
    if (signal?.aborted) throw new Error('stopped before the upload started');
    result = await upload.done();
  } catch (error) {
    if (signal?.aborted) {
      throw new S3UploadError(`stopped (${String(signal.reason ?? 'aborted')}); the multipart upload was aborted`, {
        cause: error,
      });
    }
    if (bodyError) throw bodyError;
    if (error instanceof S3ServiceException && error.$metadata?.httpStatusCode === 412) {
      throw new S3UploadError(occupied(bucket, key, ' (written while this upload ran)'), { permanent: true });
    }
    throw new S3UploadError(describeS3Error(error), { cause: error });
  } finally {
    signal?.removeEventListener('abort', abort);
    body.destroy(); // after a failed upload, stop the Talos stream instead of leaving it blocked on backpressure
  }
  // The body has ended, so its figures are known.
  return { figures: await stream.figures, etag: result.ETag, versionId: result.VersionId };
}

/**
 * Replaces the object's metadata by copying it onto itself, only if it is still the object just uploaded. Returns
 * the copy's version id (versioned buckets).
 */
async function addMetadata(
  write: UploadWrite,
  etag: string,
  size: number,
  metadata: Record<string, string>,
): Promise<string | undefined> {
  const { client, bucket, key } = write.target;
  const source = `${bucket}/${encodeURIComponent(key)}`;
  const singleCopyLimit = write.target.maxSingleCopyBytes ?? FIVE_GIB;
  const params = writeParams(write, 'copy', metadata);
  if (size <= singleCopyLimit) {
    const copy = {
      Bucket: bucket,
      Key: key,
      CopySource: source,
      CopySourceIfMatch: etag,
      MetadataDirective: 'REPLACE' as const,
    };
    const copied = await client.send(new CopyObjectCommand({ ...copy, ...params }));
    return copied.VersionId;
  }
  // Above the single-copy limit: a multipart copy, part by part, still entirely inside the store.
  // Parts of 1 GiB, never above the single-copy limit (a test lowers that limit to exercise this path).
  const partBytes = Math.max(Math.min(singleCopyLimit, COPY_PART_BYTES), 5 * 1024 * 1024);
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ...params }));
  try {
    const parts = [];
    for (let start = 0, number = 1; start < size; start += partBytes, number += 1) {
      const end = Math.min(start + partBytes, size) - 1;
      const { CopyPartResult } = await client.send(
        new UploadPartCopyCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          PartNumber: number,
          CopySource: source,
          CopySourceIfMatch: etag,
          CopySourceRange: `bytes=${start}-${end}`,
        }),
      );
      parts.push({ PartNumber: number, ETag: CopyPartResult?.ETag });
    }
    const completed = await client.send(
      new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }),
    );
    return completed.VersionId;
  } catch (error) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined);
    throw error;
  }
}

/** Adds the hashes as metadata by a copy; undefined when the store cannot copy this object (then tags record them). */
async function copiedWithHashes(
  write: UploadWrite,
  etag: string,
  size: number,
  hashes: UploadedHashes,
): Promise<{ versionId: string | undefined } | undefined> {
  try {
    return {
      versionId: await addMetadata(write, etag, size, {
        ...identityMetadata(write.target.identity),
        ...hashMetadata(hashes),
      }),
    };
  } catch (error) {
    // Ceph RGW 16 cannot copy an SSE-KMS object (501 NotImplemented).
    if (
      error instanceof S3ServiceException &&
      (error.name === 'NotImplemented' || error.$metadata?.httpStatusCode === 501)
    )
      return undefined;
    throw error;
  }
}

interface Recorded {
  /** The version that holds the hashes: the one to lock. */
  versionId: string | undefined;
  /** On a versioned bucket, the uploaded version a copy made redundant. */
  superseded?: string | undefined;
}

/** Records the hashes on the object just uploaded: by a copy, or as tags (the plan says, or the store cannot copy). */
async function recordHashes(write: UploadWrite, uploaded: Uploaded): Promise<Recorded> {
  const { client, bucket, key, identity } = write.target;
  const { sha256, etcdSha256 } = uploaded.figures;
  const hashes = { sha256, etcdSha256 };
  try {
    const head = await client.send(
      new HeadObjectCommand({ Bucket: bucket, Key: key, ...(uploaded.versionId && { VersionId: uploaded.versionId }) }),
    );
    const size = head.ContentLength ?? 0;
    // The copy must be conditional on this upload's object. Some stores (Ceph RGW) answer a multipart
    // completion with an empty ETag; then the HEAD's is used, once the HEAD shows this backup's uid and size.
    const etag = uploaded.etag || head.ETag;
    if (!etag || head.Metadata?.['backup-uid'] !== identity.uid || size !== uploaded.figures.size) {
      throw new Error(
        `the object at the key is not the one just uploaded (someone wrote it meanwhile?); its hashes were not recorded`,
      );
    }
    const versionId = uploaded.versionId ?? head.VersionId;
    const copy = write.recording === 'copy' ? await copiedWithHashes(write, etag, size, hashes) : undefined;
    if (copy) return { versionId: copy.versionId, superseded: versionId };
    await tagHashes(client, bucket, key, versionId, hashes);
    return { versionId };
  } catch (error) {
    const detail = `the snapshot was uploaded to s3://${bucket}/${key} but recording its sha256 failed: ${describeS3Error(error)}`;
    throw new S3UploadError(detail, { cause: error });
  }
}

/** Uploads the stream to the key, records its hashes and locks it. */
export async function storeStream(write: UploadWrite, stream: StoredStream): Promise<UploadOutcome> {
  const { client, bucket, key } = write.target;
  const uploaded = await upload(write, stream);
  const recorded = await recordHashes(write, uploaded);
  const locked = await lock(write, recorded.versionId);
  // Removing the version without hashes is housekeeping: a writer without s3:DeleteObjectVersion keeps a harmless
  // extra version, not a failed backup.
  if (recorded.superseded) {
    await client
      .send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: recorded.superseded }))
      .catch(() => undefined);
  }
  const { size, sha256, etcdSha256 } = uploaded.figures;
  return { alreadyUploaded: false, size, hashes: { sha256, etcdSha256 }, ...(locked && { retainUntil: locked }) };
}

/** What storeObject stored (or found stored by an earlier attempt of the same backup). */
export interface StoredObject {
  alreadyUploaded: boolean;
  size: number;
  /** Hex SHA-256 of the stored bytes, recorded as `x-amz-meta-sha256`. */
  sha256: string;
  retainUntil?: Date;
}

/**
 * Stores a small object held in memory (the cluster secrets beside a snapshot) at `target.key` with the same
 * guarantees as a snapshot: never over another backup's object (refused) or this backup's complete one (kept, as a
 * retried Job finds it), server-side encryption and Object Lock as asked, and its sha256 recorded. A single PUT:
 * the bytes, and so their hash, are known before it starts, so the metadata is complete from the first byte.
 */
export async function storeObject(target: SnapshotTarget, bytes: Buffer, sha256: string): Promise<StoredObject> {
  const { client, bucket, key, identity } = target;
  const write = await prepare(target, async (metadata) =>
    metadata['sha256'] ? { sha256: metadata['sha256'] } : undefined,
  );
  if (write.action === 'accept') {
    const locked = await lock(write, write.versionId);
    const kept = { alreadyUploaded: true, size: write.size, sha256: write.hashes.sha256 };
    return { ...kept, ...(locked && { retainUntil: locked }) };
  }
  let versionId: string | undefined;
  try {
    const put = await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: bytes,
        ...(write.createOnly && { IfNoneMatch: '*' }),
        ...protectionParams(
          target.protection,
          { ...identityMetadata(identity), sha256 },
          { checksums: write.checksums, lockUntil: write.lockUntil },
        ),
      }),
      { ...(target.signal && { abortSignal: target.signal }) },
    );
    versionId = put.VersionId;
  } catch (error) {
    if (error instanceof S3ServiceException && error.$metadata?.httpStatusCode === 412) {
      throw new S3UploadError(occupied(bucket, key, ' (written while this upload ran)'), { permanent: true });
    }
    throw new S3UploadError(describeS3Error(error), { cause: error });
  }
  const locked = await lock(write, versionId);
  return { alreadyUploaded: false, size: bytes.length, sha256, ...(locked && { retainUntil: locked }) };
}
