// Smoke test of the Ceph RGW harness: it starts fast, it is real S3 (SigV4, multipart abort, conditional
// writes, Object Lock are enforced), two instances run side by side, and stop() leaves nothing behind.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it, test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type S3ServiceException,
} from '@aws-sdk/client-s3';
import { startRgw, useRgw, type Rgw } from './rgw.js';

/** Asserts that `promise` rejects with an S3 error of this name and HTTP status. */
async function rejectsWith(promise: Promise<unknown>, name: string, status: number): Promise<void> {
  await assert.rejects(promise, (err: S3ServiceException) => {
    assert.equal(err.name, name, `expected ${name}, got ${err.name}: ${err.message}`);
    assert.equal(err.$metadata?.httpStatusCode, status);
    return true;
  });
}

/** Ceph processes still running from this run directory (pgrep lists zombies by name only, so they do not match). */
function cephProcessesIn(dir: string): string[] {
  try {
    return execFileSync('pgrep', ['-a', '-f', dir], { encoding: 'utf8' }).trim().split('\n');
  } catch (err) {
    if ((err as { status?: number }).status === 1) return []; // pgrep: nothing matched
    throw err;
  }
}

test('starts in about a second, runs side by side with a second instance, and stop() leaves nothing behind', async (t) => {
  const started = performance.now();
  const a = await startRgw();
  const ms = Math.round(performance.now() - started);
  t.diagnostic(`startRgw() took ${ms} ms`);
  let b: Rgw | undefined;
  try {
    assert.match(a.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(a.region, 'us-east-1');
    b = await startRgw({ memstoreBytes: 256 * 1024 ** 2 });
    assert.notEqual(a.endpoint, b.endpoint);
    assert.notEqual(a.dir, b.dir);
    await a.createBucket('only-in-a');
    const listA = await a.client().send(new ListBucketsCommand({}));
    const listB = await b.client().send(new ListBucketsCommand({}));
    assert.deepEqual(
      listA.Buckets?.map((x) => x.Name),
      ['only-in-a'],
    );
    assert.deepEqual(listB.Buckets ?? [], []);
    assert.notEqual(cephProcessesIn(a.dir).length, 0, 'daemons should be running before stop()');
  } finally {
    await Promise.all([a.stop(), b?.stop()]);
  }
  await a.stop(); // idempotent
  for (const rgw of [a, b!]) {
    assert.deepEqual(cephProcessesIn(rgw.dir), []);
    assert.equal(existsSync(rgw.dir), false, `${rgw.dir} should be removed`);
  }
});

describe('RGW behaves like real S3', () => {
  const rgw = useRgw();
  const bucket = 'smoke';

  it('creates a bucket and round-trips an object', async () => {
    await rgw().createBucket(bucket);
    const s3 = rgw().client();
    await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'a/hello.txt', Body: 'hello, ceph', ContentType: 'text/plain' }),
    );
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/hello.txt' }));
    assert.equal(await got.Body?.transformToString(), 'hello, ceph');
    assert.equal(got.ContentType, 'text/plain');
  });

  it('checks SigV4: a wrong secret key is rejected', async () => {
    const bad = rgw().client({
      credentials: { accessKeyId: rgw().accessKeyId, secretAccessKey: 'not-the-secret-key' },
    });
    await rejectsWith(bad.send(new ListBucketsCommand({})), 'SignatureDoesNotMatch', 403);
    await rejectsWith(
      bad.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/hello.txt' })),
      'SignatureDoesNotMatch',
      403,
    );
  });

  it('an aborted multipart upload leaves no object and no pending upload', async () => {
    const s3 = rgw().client();
    const Key = 'multipart/aborted.bin';
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
    assert.ok(UploadId);
    await s3.send(
      new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: Buffer.alloc(64 * 1024, 7) }),
    );
    const pending = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual(
      pending.Uploads?.map((u) => u.UploadId),
      [UploadId],
    );

    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
    const after = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual(after.Uploads ?? [], []);
    await rejectsWith(s3.send(new HeadObjectCommand({ Bucket: bucket, Key })), 'NotFound', 404);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'multipart/' }));
    assert.equal(listed.KeyCount, 0);
  });

  it("refuses to overwrite an existing key under If-None-Match: '*'", async () => {
    const s3 = rgw().client();
    const Key = 'once.txt';
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: 'first', IfNoneMatch: '*' }));
    await rejectsWith(
      s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: 'second', IfNoneMatch: '*' })),
      'PreconditionFailed',
      412,
    );
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key }));
    assert.equal(await got.Body?.transformToString(), 'first');
  });

  it('enforces Object Lock: a retained version cannot be deleted before its retain-until date', async () => {
    const locked = 'locked';
    await rgw().createBucket(locked, { objectLock: true });
    const s3 = rgw().client();
    const Key = 'backup.db';
    const retainUntil = new Date(Date.now() + 24 * 3600 * 1000);
    // GOVERNANCE, not COMPLIANCE, so that the version could still be removed with bypass (stop() wipes it anyway).
    const put = await s3.send(
      new PutObjectCommand({
        Bucket: locked,
        Key,
        Body: 'snapshot',
        ObjectLockMode: 'GOVERNANCE',
        ObjectLockRetainUntilDate: retainUntil,
      }),
    );
    const VersionId = put.VersionId;
    assert.ok(VersionId, 'an Object Lock bucket is versioned');
    const retention = await s3.send(new GetObjectRetentionCommand({ Bucket: locked, Key, VersionId }));
    assert.equal(retention.Retention?.Mode, 'GOVERNANCE');

    await rejectsWith(s3.send(new DeleteObjectCommand({ Bucket: locked, Key, VersionId })), 'AccessDenied', 403);
    const got = await s3.send(new GetObjectCommand({ Bucket: locked, Key, VersionId }));
    assert.equal(await got.Body?.transformToString(), 'snapshot');

    await s3.send(new DeleteObjectCommand({ Bucket: locked, Key, VersionId, BypassGovernanceRetention: true }));
    await rejectsWith(s3.send(new HeadObjectCommand({ Bucket: locked, Key, VersionId })), 'NotFound', 404);
  });
});
