// Where a stored snapshot's hashes live. They are known only once the upload has ended, and S3 metadata is fixed
// when it starts, so they are added afterwards: as metadata through a copy of the object onto itself (the
// default: every S3-compatible store can copy, and a locked version's metadata cannot change), or as object tags
// where a copy cannot be made or cleaned up: a bucket whose default retention locks the uploaded version (the
// copy would be a second locked version), and stores that cannot copy the object (Ceph RGW 16 with SSE-KMS).

import {
  GetObjectTaggingCommand,
  PutObjectTaggingCommand,
  S3ServiceException,
  type S3Client,
} from '@aws-sdk/client-s3';
import { JobError } from '../errors.js';
import { describeS3Error } from './errors.js';

export interface UploadedHashes {
  /** Hex SHA-256 of the stored bytes. */
  sha256: string;
  /** Hex SHA-256 of the etcd database: the snapshot's own trailer. */
  etcdSha256: string;
}

const SHA256 = 'sha256';
const ETCD_SHA256 = 'etcd-sha256';

export function hashMetadata(hashes: UploadedHashes): Record<string, string> {
  return { [SHA256]: hashes.sha256, [ETCD_SHA256]: hashes.etcdSha256 };
}

function fromRecord(record: Record<string, string | undefined>): UploadedHashes | undefined {
  const sha256 = record[SHA256];
  const etcdSha256 = record[ETCD_SHA256];
  return sha256 && etcdSha256 ? { sha256, etcdSha256 } : undefined;
}

export async function tagHashes(
  client: S3Client,
  bucket: string,
  key: string,
  versionId: string | undefined,
  hashes: UploadedHashes,
): Promise<void> {
  const TagSet = Object.entries(hashMetadata(hashes)).map(([Key, Value]) => ({ Key, Value }));
  await client.send(
    new PutObjectTaggingCommand({
      Bucket: bucket,
      Key: key,
      ...(versionId && { VersionId: versionId }),
      Tagging: { TagSet },
    }),
  );
}

/**
 * The hashes recorded for an object: from its metadata, else from its tags. undefined when neither has them (an
 * upload that did not finish recording them). A failure to read the tags (s3:GetObjectTagging denied, the store
 * unavailable) is thrown: taking it for "no hashes" would call a complete backup unfinished.
 */
export async function readRecordedHashes(
  client: S3Client,
  bucket: string,
  key: string,
  metadata: Record<string, string>,
  versionId?: string,
): Promise<UploadedHashes | undefined> {
  const inMetadata = fromRecord(metadata);
  if (inMetadata) return inMetadata;
  try {
    const { TagSet } = await client.send(
      new GetObjectTaggingCommand({ Bucket: bucket, Key: key, ...(versionId && { VersionId: versionId }) }),
    );
    return fromRecord(Object.fromEntries((TagSet ?? []).map((t) => [t.Key ?? '', t.Value])));
  } catch (error) {
    if (error instanceof S3ServiceException && (error.name === 'NoSuchTagSet' || error.name === 'NoSuchTagSetError'))
      return undefined;
    if (error instanceof S3ServiceException && error.name === 'AccessDenied') {
      const detail = describeS3Error(error, "(reading an object's tags needs s3:GetObjectTagging)");
      throw new JobError(undefined, detail, { permanent: true, cause: error });
    }
    throw error;
  }
}
