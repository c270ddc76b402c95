// deleteSnapshotObject against a real S3 (Ceph RGW): only the backup's own object goes, and really goes.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import { deleteCommand } from '../../../src/job/commands.js';
import { createS3Client } from '../../../src/job/s3/client.js';
import { deleteSnapshotObject, deleteSnapshotObjectAfterSnapshot, S3DeleteError } from '../../../src/job/s3/delete.js';
import { isPermanentS3Error as isPermanentDeleteError } from '../../../src/job/s3/errors.js';
import { useRgw } from '../../harness/rgw.js';

const KEY = 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-01T02-00-00Z.db';

describe('deleteSnapshotObject on Ceph RGW', () => {
  const rgw = useRgw();
  let bucketCount = 0;
  async function bucket(opts?: { objectLock?: boolean }): Promise<string> {
    const name = `deletes-${(bucketCount += 1)}`;
    await rgw().createBucket(name, opts);
    return name;
  }
  const client = () =>
    createS3Client({
      region: rgw().region,
      endpoint: rgw().endpoint,
      credentials: { accessKeyId: rgw().accessKeyId, secretAccessKey: rgw().secretAccessKey },
    });
  const exists = async (b: string, key = KEY) =>
    rgw()
      .client()
      .send(new HeadObjectCommand({ Bucket: b, Key: key }))
      .then(
        () => true,
        () => false,
      );
  /** Writes an object as a backup would: with its identity (or with `metadata` as given). */
  async function put(b: string, uid: string | undefined, extra: Partial<PutObjectCommandInput> = {}) {
    const metadata: Record<string, string> = uid
      ? {
          'backup-namespace': 'talos-backup',
          'backup-name': `nightly-${uid.slice(0, 8)}`,
          'backup-uid': uid,
          sha256: 'a'.repeat(64),
          'etcd-sha256': 'b'.repeat(64),
        }
      : {};
    return rgw()
      .client()
      .send(new PutObjectCommand({ Bucket: b, Key: KEY, Body: 'snapshot bytes', Metadata: metadata, ...extra }));
  }
  async function refusal(run: Promise<unknown>): Promise<S3DeleteError> {
    const error = await run.then(
      () => assert.fail('expected an S3DeleteError'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof S3DeleteError, String(error));
    return error;
  }

  it("deletes the backup's own object", async () => {
    const b = await bucket();
    const uid = randomUUID();
    await put(b, uid);
    assert.deepEqual(await deleteSnapshotObject(client(), b, KEY, uid), { deleted: true });
    assert.equal(await exists(b), false);
  });

  it("deletes the backup's own empty object too", async () => {
    const b = await bucket();
    const uid = randomUUID();
    await put(b, uid, { Body: '' });
    assert.deepEqual(await deleteSnapshotObject(client(), b, KEY, uid), { deleted: true });
    assert.equal(await exists(b), false);
  });

  it('succeeds without deleting anything when there is no object (a retried Job)', async () => {
    const b = await bucket();
    const uid = randomUUID();
    await put(b, uid);
    await deleteSnapshotObject(client(), b, KEY, uid);
    assert.deepEqual(await deleteSnapshotObject(client(), b, KEY, uid), {
      deleted: false,
      detail: `no object at s3://${b}/${KEY} (already deleted)`,
    });
  });

  it("refuses another backup's object, naming that backup, and leaves it", async () => {
    const b = await bucket();
    const other = randomUUID();
    await put(b, other);
    const error = await refusal(deleteSnapshotObject(client(), b, KEY, randomUUID()));
    assert.equal(
      error.message,
      `Failed to delete snapshot from S3: the object at s3://${b}/${KEY} belongs to backup talos-backup/nightly-${other.slice(0, 8)}, not this one; it was not deleted`,
    );
    assert.equal(isPermanentDeleteError(error), true);
    assert.equal(await exists(b), true);
  });

  it('refuses an object without backup metadata and leaves it', async () => {
    const b = await bucket();
    await put(b, undefined);
    const error = await refusal(deleteSnapshotObject(client(), b, KEY, randomUUID()));
    assert.match(
      error.message,
      new RegExp(
        `^Failed to delete snapshot from S3: the object at s3://${b}/${KEY} belongs to another backup .*; it was not deleted$`,
      ),
    );
    assert.equal(isPermanentDeleteError(error), true);
    assert.equal(await exists(b), true);
  });

  it('on a versioned bucket removes the version itself: no version and no delete marker remain', async () => {
    const b = await bucket({ objectLock: true });
    const uid = randomUUID();
    await put(b, uid);
    assert.deepEqual(await deleteSnapshotObject(client(), b, KEY, uid), { deleted: true });
    const listed = await rgw()
      .client()
      .send(new ListObjectVersionsCommand({ Bucket: b, Prefix: KEY }));
    assert.deepEqual(listed.Versions ?? [], []);
    assert.deepEqual(listed.DeleteMarkers ?? [], []);
  });

  for (const mode of ['GOVERNANCE', 'COMPLIANCE'] as const) {
    it(`keeps an object under Object Lock ${mode} retention and reports until when (no retry could delete it)`, async () => {
      const b = await bucket({ objectLock: true });
      const uid = randomUUID();
      const until = new Date(Math.ceil((Date.now() + 24 * 3600_000) / 1000) * 1000);
      await put(b, uid, { ObjectLockMode: mode, ObjectLockRetainUntilDate: until });
      const outcome = await deleteSnapshotObject(client(), b, KEY, uid);
      assert.deepEqual(outcome, {
        deleted: false,
        detail: `the object at s3://${b}/${KEY} is protected by Object Lock (${mode} until ${until.toISOString()}): S3 refuses to delete it before then, so it was kept (a lifecycle rule can expire it afterwards)`,
        protectedUntil: until.toISOString(),
      });
      assert.equal(await exists(b), true);
      const listed = await rgw()
        .client()
        .send(new ListObjectVersionsCommand({ Bucket: b, Prefix: KEY }));
      assert.equal(listed.Versions?.length, 1);
      assert.deepEqual(listed.DeleteMarkers ?? [], []);
    });
  }

  it('keeps an object under an Object Lock legal hold', async () => {
    const b = await bucket({ objectLock: true });
    const uid = randomUUID();
    await put(b, uid, { ObjectLockLegalHoldStatus: 'ON' });
    const outcome = await deleteSnapshotObject(client(), b, KEY, uid);
    assert.equal(outcome.deleted, false);
    assert.equal(outcome.protectedUntil, 'legal hold');
    assert.match(
      outcome.detail!,
      /is protected by Object Lock \(legal hold\): S3 refuses to delete it before then, so it was kept/,
    );
    assert.equal(await exists(b), true);
  });

  const failures = [
    {
      name: 'a missing bucket',
      client,
      bucket: 'no-such-bucket',
      message: /^Failed to delete snapshot from S3: NoSuchBucket \(HTTP 404\)/,
      permanent: true,
    },
    {
      name: 'an unknown access key',
      client: () =>
        createS3Client({
          region: 'us-east-1',
          endpoint: rgw().endpoint,
          credentials: { accessKeyId: 'NOSUCHKEY0000000', secretAccessKey: 'x'.repeat(40) },
        }),
      message: /^Failed to delete snapshot from S3: InvalidAccessKeyId \(HTTP 403\)/,
      permanent: true,
    },
    {
      name: 'a wrong secret key',
      client: () =>
        createS3Client({
          region: 'us-east-1',
          endpoint: rgw().endpoint,
          credentials: { accessKeyId: rgw().accessKeyId, secretAccessKey: 'wrong-secret-key-0123456789' },
        }),
      message: /^Failed to delete snapshot from S3: SignatureDoesNotMatch \(HTTP 403\)/,
      permanent: true,
    },
    {
      name: 'an S3 endpoint that is down',
      client: () =>
        createS3Client({
          region: 'us-east-1',
          endpoint: 'http://127.0.0.1:9',
          credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
        }),
      message: /^Failed to delete snapshot from S3: .*ECONNREFUSED/,
      permanent: false,
    },
  ];
  for (const f of failures) {
    it(`fails clearly on ${f.name}, and leaves the object`, async () => {
      const b = await bucket();
      const uid = randomUUID();
      await put(b, uid);
      const error = await refusal(deleteSnapshotObject(f.client(), f.bucket ?? b, KEY, uid));
      assert.match(error.message, f.message);
      assert.ok(!error.message.includes(rgw().secretAccessKey) && !error.message.includes('wrong-secret-key'));
      assert.equal(isPermanentDeleteError(error), f.permanent);
      assert.equal(await exists(b), true);
    });
  }

  it('isPermanentDeleteError says no for errors a retry may fix', () => {
    assert.equal(isPermanentDeleteError(new Error('socket hang up')), false);
    assert.equal(isPermanentDeleteError(new S3DeleteError('x', { permanent: false })), false);
  });

  it('after a snapshot that may still run: waits, then aborts the upload left open at the key and deletes the object that appeared meanwhile', async () => {
    const b = await bucket();
    const uid = randomUUID();
    await put(b, uid);
    // What a snapshot pod still terminating does while the delete waits: completes its object, and leaves an
    // upload open at the same key.
    const during = async (ms: number) => {
      assert.equal(ms, 40_000, 'the wait asked for');
      assert.equal(await exists(b), false, 'the first delete already ran');
      await put(b, uid);
      await rgw()
        .client()
        .send(new CreateMultipartUploadCommand({ Bucket: b, Key: KEY }));
    };
    const outcome = await deleteSnapshotObjectAfterSnapshot(client(), b, KEY, uid, 40, during);
    assert.deepEqual(outcome, { deleted: true, abortedUploads: 1 });
    assert.equal(await exists(b), false);
    assert.deepEqual(
      (
        await rgw()
          .client()
          .send(new ListMultipartUploadsCommand({ Bucket: b }))
      ).Uploads ?? [],
      [],
    );
    // Nothing appearing: still one outcome, nothing aborted; no wait asked: no second pass.
    await put(b, uid);
    assert.deepEqual(await deleteSnapshotObjectAfterSnapshot(client(), b, KEY, uid, 1, async () => undefined), {
      deleted: true,
      abortedUploads: 0,
    });
    assert.deepEqual(
      await deleteSnapshotObjectAfterSnapshot(client(), b, KEY, uid, 0, async () => assert.fail('no wait')),
      { deleted: false, detail: `no object at s3://${b}/${KEY} (already deleted)`, abortedUploads: 0 },
    );
  });

  it("after a snapshot: another backup's object that appeared meanwhile is still refused", async () => {
    const b = await bucket();
    const uid = randomUUID();
    await put(b, uid);
    const error = await refusal(
      deleteSnapshotObjectAfterSnapshot(client(), b, KEY, uid, 1, async () => put(b, randomUUID())),
    );
    assert.match(error.message, /belongs to backup talos-backup\/nightly-/);
    assert.equal(await exists(b), true);
  });

  it('the delete command takes the second pass with DELETE_WAIT_SECONDS (what the delete Job of an unfinished backup sets)', async () => {
    const b = await bucket();
    const uid = randomUUID();
    await put(b, uid);
    await rgw()
      .client()
      .send(new CreateMultipartUploadCommand({ Bucket: b, Key: KEY }));
    // The command's S3 client takes the SDK's default credentials, as in the Job (secretKeyRef env).
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: rgw().accessKeyId, AWS_SECRET_ACCESS_KEY: rgw().secretAccessKey });
    try {
      const outcome = await deleteCommand({
        bucket: b,
        key: KEY,
        region: rgw().region,
        endpoint: rgw().endpoint,
        backupUid: uid,
        deleteWait: '1',
      });
      assert.deepEqual(outcome, { bucket: b, key: KEY, deleted: true, abortedUploads: 1 });
    } finally {
      for (const [name, value] of [
        ['AWS_ACCESS_KEY_ID', saved.id],
        ['AWS_SECRET_ACCESS_KEY', saved.secret],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});
