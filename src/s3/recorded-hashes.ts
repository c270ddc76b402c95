// Where a stored snapshot's hashes live. They are known only once the upload has ended, and S3 metadata is fixed
// when it starts, so they are added afterwards: as metadata through a copy of the object onto itself (the
// default: every S3-compatible store can copy), or as object tags (a bucket with Object Lock, where a copy would
// be a second locked version, and stores that cannot copy the object, e.g. Ceph RGW 16 with SSE-KMS).

import { GetObjectTaggingCommand, PutObjectTaggingCommand, type S3Client } from '@aws-sdk/client-s3';

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

export async function tagHashes(client: S3Client, bucket: string, key: string, versionId: string | undefined, hashes: UploadedHashes): Promise<void> {
  const TagSet = Object.entries(hashMetadata(hashes)).map(([Key, Value]) => ({ Key, Value }));
  await client.send(new PutObjectTaggingCommand({ Bucket: bucket, Key: key, ...(versionId && { VersionId: versionId }), Tagging: { TagSet } }));
}

/**
 * The hashes recorded for an object: from its metadata, else from its tags. undefined when neither has them (an
 * upload that did not finish recording them) or the tags cannot be read (no permission, not implemented).
 */
export async function readRecordedHashes(client: S3Client, bucket: string, key: string, metadata: Record<string, string>, versionId?: string): Promise<UploadedHashes | undefined> {
  const inMetadata = fromRecord(metadata);
  if (inMetadata) return inMetadata;
  try {
    const { TagSet } = await client.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: key, ...(versionId && { VersionId: versionId }) }));
    return fromRecord(Object.fromEntries((TagSet ?? []).map((t) => [t.Key ?? '', t.Value])));
  } catch {
    return undefined;
  }
}
