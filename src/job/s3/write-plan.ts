// What a snapshot write does, decided from what the store said before any byte is sent: whether the key is free,
// this backup's own (complete: accept it as is; unfinished: replace it) or someone else's (refuse: a backup is
// never overwritten), and how the object is written. Pure: upload.ts reads the inputs and carries the plan out.

import type { BucketLock, ObjectLockRequest } from './object-lock.js';
import type { UploadedHashes } from './recorded-hashes.js';

/** Who wrote an object: stored as x-amz-meta-backup-{namespace,name,uid}. */
export interface BackupIdentity {
  namespace: string;
  name: string;
  uid: string;
}

export function identityMetadata(identity: BackupIdentity): Record<string, string> {
  return { 'backup-namespace': identity.namespace, 'backup-name': identity.name, 'backup-uid': identity.uid };
}

/** The writer named by an object's metadata, as far as it says. */
export function ownerOf(metadata: Record<string, string>): Partial<BackupIdentity> {
  return { namespace: metadata['backup-namespace'], name: metadata['backup-name'], uid: metadata['backup-uid'] };
}

/**
 * What is at the key. unknown: the store would not say (AWS answers AccessDenied for a missing key when the
 * writer may not list the bucket). `recorded`: the hashes an object of this backup's carries, if it has them.
 */
export type ExistingObject<H = UploadedHashes> =
  | { state: 'absent' | 'unknown' }
  | {
      state: 'present';
      owner: Partial<BackupIdentity>;
      size: number;
      versionId?: string | undefined;
      recorded?: H | undefined;
    };

/** `H`: the hashes a complete object carries (a snapshot's two; the cluster secrets' one). */
export interface WriteInputs<H = UploadedHashes> {
  bucket: string;
  key: string;
  existing: ExistingObject<H>;
  bucketLock: BucketLock;
  /** This backup's uid: an object with it is this backup's own (a retried Job). */
  uid: string;
  /** The Object Lock asked for, if any. */
  objectLock?: ObjectLockRequest | undefined;
}

/**
 * accept: this backup's complete object is there (a retried Job); nothing is uploaded. refuse: no byte may be
 * sent, for `reason`. upload: `createOnly`, the upload may only create the object (If-None-Match: *), unless it
 * replaces this backup's own unfinished one; `recording`, how the hashes get onto it (see recorded-hashes.ts);
 * `checksums`, whether every part carries one (S3 requires it on buckets that lock objects).
 */
export type WritePlan<H = UploadedHashes> =
  | { action: 'accept'; size: number; versionId: string | undefined; hashes: H }
  | { action: 'refuse'; reason: string }
  | { action: 'upload'; createOnly: boolean; recording: 'copy' | 'tags'; checksums: boolean };

/** The refusal of a key someone else wrote; `owner` says who, as far as is known. */
export function occupied(bucket: string, key: string, owner: string): string {
  return `an object already exists at s3://${bucket}/${key}${owner}; refusing to overwrite it`;
}

/** The write's plan, from what the store said (its cases: test/job/s3/write-plan.test.ts). */
export function planWrite<H = UploadedHashes>(inputs: WriteInputs<H>): WritePlan<H> {
  const { bucket, key, existing, bucketLock, objectLock } = inputs;
  // The bucket first: a backup that asks for a lock the bucket cannot give fails the same way whatever the key holds.
  if (objectLock && bucketLock.state === 'disabled') {
    const asked = `objectLock (${objectLock.mode}, ${objectLock.retainDays} days)`;
    return {
      action: 'refuse',
      reason:
        `bucket ${bucket} has no Object Lock configuration, so ${asked} cannot be applied: ` +
        'use a bucket created with Object Lock enabled, or remove spec.backupStorage.s3.objectLock',
    };
  }
  if (existing.state === 'present') {
    const { owner, size, versionId, recorded } = existing;
    if (owner.uid !== inputs.uid) {
      return {
        action: 'refuse',
        reason: occupied(bucket, key, owner.name ? ` by backup ${owner.namespace}/${owner.name}` : ''),
      };
    }
    if (recorded) return { action: 'accept', size, versionId, hashes: recorded };
  }
  const locking = bucketLock.state === 'enabled';
  return {
    action: 'upload',
    createOnly: existing.state !== 'present',
    // Tags only where the bucket's default retention locks the uploaded version: a copy would leave a second
    // locked version behind.
    recording: locking && bucketLock.defaultRetention ? 'tags' : 'copy',
    checksums: locking || Boolean(objectLock),
  };
}
