// planWrite, the snapshot write's decisions, without a store: each case is what the store said, and what follows.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planWrite, type ExistingObject, type WriteInputs, type WritePlan } from '../../../src/job/s3/write-plan.js';
import type { BucketLock } from '../../../src/job/s3/object-lock.js';

const UID = 'uid-of-this-backup';
const HASHES = { sha256: 'a'.repeat(64), etcdSha256: 'b'.repeat(64) };

const absent: ExistingObject = { state: 'absent' };
const ours = (recorded?: typeof HASHES): ExistingObject => ({
  state: 'present',
  owner: { namespace: 'ns', name: 'nightly', uid: UID },
  size: 4128,
  versionId: 'v1',
  recorded,
});
const noLock: BucketLock = { state: 'disabled' };
const lockNoDefault: BucketLock = { state: 'enabled', defaultRetention: false };
const lockWithDefault: BucketLock = { state: 'enabled', defaultRetention: true };
const governance = { mode: 'GOVERNANCE' as const, retainDays: 7 };

const cases: { name: string; inputs: Partial<WriteInputs>; plan: WritePlan }[] = [
  {
    name: 'a free key on a bucket without Object Lock: upload, create-only, hashes by copy, parts without checksums',
    inputs: {},
    plan: { action: 'upload', createOnly: true, recording: 'copy', checksums: false },
  },
  {
    name: 'a key the writer may not read (AccessDenied): upload all the same, create-only, so an object there is kept',
    inputs: { existing: { state: 'unknown' } },
    plan: { action: 'upload', createOnly: true, recording: 'copy', checksums: false },
  },
  {
    name: "another backup's object: refuse, naming that backup",
    inputs: {
      existing: {
        state: 'present',
        owner: { namespace: 'other-ns', name: 'weekly', uid: 'other-uid' },
        size: 9,
        versionId: undefined,
      },
    },
    plan: {
      action: 'refuse',
      reason: 'an object already exists at s3://b/k.db by backup other-ns/weekly; refusing to overwrite it',
    },
  },
  {
    name: 'an object without backup metadata: refuse, naming nobody',
    inputs: { existing: { state: 'present', owner: {}, size: 0 } },
    plan: { action: 'refuse', reason: 'an object already exists at s3://b/k.db; refusing to overwrite it' },
  },
  {
    name: "this backup's complete object (a retried Job): accept it as it is",
    inputs: { existing: ours(HASHES) },
    plan: { action: 'accept', size: 4128, versionId: 'v1', hashes: HASHES },
  },
  {
    name: "this backup's object without hashes (an earlier try died before recording them): replace it, not create-only",
    inputs: { existing: ours() },
    plan: { action: 'upload', createOnly: false, recording: 'copy', checksums: false },
  },
  {
    name: 'Object Lock asked on a bucket without it: refuse before anything is sent, saying what to do',
    inputs: { objectLock: governance },
    plan: {
      action: 'refuse',
      reason:
        'bucket b has no Object Lock configuration, so objectLock (GOVERNANCE, 7 days) cannot be applied: use a bucket created with Object Lock enabled, or remove spec.backupStorage.s3.objectLock',
    },
  },
  {
    name: "Object Lock asked on a bucket without it, with another backup's object at the key: the bucket's refusal comes first",
    inputs: { objectLock: governance, existing: { state: 'present', owner: { uid: 'other-uid' }, size: 9 } },
    plan: {
      action: 'refuse',
      reason:
        'bucket b has no Object Lock configuration, so objectLock (GOVERNANCE, 7 days) cannot be applied: use a bucket created with Object Lock enabled, or remove spec.backupStorage.s3.objectLock',
    },
  },
  {
    name: 'Object Lock asked where the bucket would not say whether it has it: upload with checksums, hashes by copy',
    inputs: { objectLock: governance, bucketLock: { state: 'unknown' } },
    plan: { action: 'upload', createOnly: true, recording: 'copy', checksums: true },
  },
  {
    name: 'a bucket with Object Lock and no default retention: parts carry checksums, hashes by copy',
    inputs: { bucketLock: lockNoDefault },
    plan: { action: 'upload', createOnly: true, recording: 'copy', checksums: true },
  },
  {
    name: 'a bucket whose default retention locks every upload: hashes by tags (a copy would be a second locked version)',
    inputs: { bucketLock: lockWithDefault, objectLock: governance },
    plan: { action: 'upload', createOnly: true, recording: 'tags', checksums: true },
  },
  {
    name: "this backup's complete object on a bucket with Object Lock: accepted, the lock is applied to it afterwards",
    inputs: { bucketLock: lockNoDefault, objectLock: governance, existing: ours(HASHES) },
    plan: { action: 'accept', size: 4128, versionId: 'v1', hashes: HASHES },
  },
];

describe('planWrite', () => {
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(
        planWrite({ bucket: 'b', key: 'k.db', existing: absent, bucketLock: noLock, uid: UID, ...c.inputs }),
        c.plan,
      );
    });
  }
});
