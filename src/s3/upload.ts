// Streams a snapshot into S3 with bounded memory, never overwriting another backup's object.
//
// S3 user metadata is fixed when an upload starts, but a snapshot's hashes are known only at its end. So the
// object is uploaded with the backup's identity, and once the upload has completed (which the integrity
// check gates: see verifyingStream) a server-side copy onto itself, conditional on the uploaded ETag, adds the
// hashes. No byte goes through this process twice.

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
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { VerifiedSnapshot } from '../snapshot/etcd-trailer.js';
import { describeS3Error, isPermanentS3Error } from './errors.js';

/** Who wrote an object: stored as x-amz-meta-backup-{namespace,name,uid}. */
export interface BackupIdentity {
  namespace: string;
  name: string;
  uid: string;
}

export interface UploadedHashes {
  sha256: string;
  etcdSha256: string;
}

export interface SnapshotUpload {
  client: S3Client;
  bucket: string;
  key: string;
  identity: BackupIdentity;
  /** Opens the snapshot stream; called only once the key is known to be free (or this backup's own). */
  openBody: () => Readable;
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
}

export interface UploadOutcome {
  /** true when this backup's complete object was already there (a retried Job): nothing was uploaded. */
  alreadyUploaded: boolean;
  size: number;
  hashes: UploadedHashes;
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

type Existing = { metadata: Record<string, string>; size: number } | 'absent' | 'unknown';

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
    return { metadata: object.Metadata ?? {}, size: total };
  } catch (error) {
    if (error instanceof S3ServiceException) {
      if (error.name === 'NoSuchKey') return 'absent';
      if (error.name === 'InvalidRange') return { metadata: {}, size: 0 }; // an empty object is there
      if (error.name === 'AccessDenied') return 'unknown';
    }
    throw error;
  }
}

/** Replaces the object's metadata by copying it onto itself, only if it is still the object just uploaded. */
async function addMetadata(up: SnapshotUpload, etag: string, size: number, metadata: Record<string, string>): Promise<void> {
  const { client, bucket, key } = up;
  const source = `${bucket}/${encodeURIComponent(key)}`;
  const singleCopyLimit = up.maxSingleCopyBytes ?? FIVE_GIB;
  if (size <= singleCopyLimit) {
    await client.send(new CopyObjectCommand({ Bucket: bucket, Key: key, CopySource: source, CopySourceIfMatch: etag, MetadataDirective: 'REPLACE', Metadata: metadata, ContentType: 'application/octet-stream' }));
    return;
  }
  // Above the single-copy limit: a multipart copy, part by part, still entirely inside the store.
  // Parts of 1 GiB, never above the single-copy limit (a test lowers that limit to exercise this path).
  const partBytes = Math.max(Math.min(singleCopyLimit, COPY_PART_BYTES), 5 * 1024 * 1024);
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, Metadata: metadata, ContentType: 'application/octet-stream' }));
  try {
    const parts = [];
    for (let start = 0, number = 1; start < size; start += partBytes, number += 1) {
      const end = Math.min(start + partBytes, size) - 1;
      const { CopyPartResult } = await client.send(
        new UploadPartCopyCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: number, CopySource: source, CopySourceIfMatch: etag, CopySourceRange: `bytes=${start}-${end}` }),
      );
      parts.push({ PartNumber: number, ETag: CopyPartResult?.ETag });
    }
    await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
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
 * Uploads a snapshot to `key`. If an object is already there: a complete one from this same backup (same uid,
 * with hashes) is accepted as is — a retried Job — and the body is never opened; anything else written by another
 * backup is refused, never overwritten. Any failure aborts the multipart upload, so nothing is left at the key
 * and no upload stays pending. Errors from the body (Talos, integrity) are rethrown unchanged; S3's are
 * S3UploadErrors.
 */
export async function uploadSnapshot(up: SnapshotUpload): Promise<UploadOutcome> {
  const { client, bucket, key, identity } = up;
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
  if (typeof existing === 'object' && existing.metadata.sha256 && existing.metadata['etcd-sha256']) {
    return { alreadyUploaded: true, size: existing.size, hashes: { sha256: existing.metadata.sha256, etcdSha256: existing.metadata['etcd-sha256'] } };
  }

  await abortLeftoverUploads(client, bucket, key, new Date());

  // The body's own failure (a broken Talos stream, a failed integrity check) is the real cause even when
  // lib-storage's abort call fails too and replaces it.
  let bodyError: Error | undefined;
  const body = up.openBody();
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
  try {
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    const size = head.ContentLength ?? 0;
    // The copy must be conditional on this upload's object. Some stores (Ceph RGW) answer a multipart
    // completion with an empty ETag; then the HEAD's is used, once the HEAD shows this backup's uid and size.
    const etag = result.ETag || head.ETag;
    if (!etag || head.Metadata?.['backup-uid'] !== identity.uid || size !== verified.size) {
      throw new Error(`the object at the key is not the one just uploaded (someone wrote it meanwhile?); its hashes were not recorded`);
    }
    await addMetadata(up, etag, size, { ...identityMetadata(identity), sha256: verified.sha256, 'etcd-sha256': verified.etcdSha256 });
    // On a versioned bucket the copy is a new version and the one without hashes is redundant. Removing it is
    // housekeeping: a writer without s3:DeleteObjectVersion keeps a harmless extra version, not a failed backup.
    if (result.VersionId) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: result.VersionId })).catch(() => undefined);
    return { alreadyUploaded: false, size, hashes: { sha256: verified.sha256, etcdSha256: verified.etcdSha256 } };
  } catch (error) {
    throw new S3UploadError(`the snapshot was uploaded to s3://${bucket}/${key} but recording its sha256 failed: ${describeS3Error(error)}`, { cause: error });
  }
}
