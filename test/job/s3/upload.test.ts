// The snapshot write (prepareWrite, keepExisting, storeStream) and verifyObject against a real S3 (Ceph RGW): what
// lands at the key, what never does.

import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { before, describe, it } from 'node:test';
import {
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { createS3Client } from '../../../src/job/s3/client.js';
import {
  keepExisting,
  prepareWrite,
  S3UploadError,
  storeStream,
  type SnapshotTarget,
} from '../../../src/job/s3/upload.js';
import type { BackupIdentity } from '../../../src/job/s3/write-plan.js';
import { storedStream } from '../../../src/job/pipeline/snapshot.js';
import { IntegrityError } from '../../../src/job/etcd/trailer.js';
import { readBack, SinkError, VerificationError, verifyObject } from '../../../src/job/pipeline/verify.js';
import { startEtcd } from '../../harness/etcd.js';
import { useRgw } from '../../harness/rgw.js';

const MIB = 1024 * 1024;

/** A real (small) etcd database, taken once: verifyObject checks the bolt structure of what it reads back. */
let etcdDatabase: Buffer;

/**
 * A snapshot of about `bytes`: the real database, then random pages past its end (bolt ignores pages beyond the
 * meta page's page count, as in a database file copied from disk), then etcd's trailer over all of it.
 */
function snapshot(bytes: number): Buffer {
  const padding = randomBytes(Math.max(0, Math.ceil(bytes / 4096) * 4096 - etcdDatabase.length));
  const db = Buffer.concat([etcdDatabase, padding]);
  return Buffer.concat([db, createHash('sha256').update(db).digest()]);
}

const identity = (): BackupIdentity => ({ namespace: 'talos-backup', name: 'nightly-1767232800', uid: randomUUID() });

/** A write of `data` through the verifier, in 1 KiB chunks as Talos sends it, as the snapshot pipeline runs it. */
function upload(
  client: SnapshotTarget['client'],
  bucket: string,
  key: string,
  data: Buffer,
  who: BackupIdentity,
  extra: Partial<SnapshotTarget> = {},
) {
  let opened = false;
  const run = (async () => {
    const write = await prepareWrite({ client, bucket, key, identity: who, partSize: 5 * MIB, queueSize: 2, ...extra });
    if (write.action === 'accept') return keepExisting(write);
    opened = true;
    const chunks = function* () {
      for (let at = 0; at < data.length; at += 1024) yield data.subarray(at, at + 1024);
    };
    return storeStream(write, storedStream(Readable.from(chunks()), []));
  })();
  return { run, opened: () => opened };
}

describe('the snapshot write and verifyObject on Ceph RGW', () => {
  const rgw = useRgw();
  before(async () => {
    const etcd = await startEtcd();
    try {
      etcdDatabase = (await etcd.snapshot()).subarray(0, -32);
    } finally {
      await etcd.stop();
    }
  });
  let bucketCount = 0;
  async function bucket(opts?: { objectLock?: boolean }): Promise<string> {
    const name = `backups-${(bucketCount += 1)}`;
    await rgw().createBucket(name, opts);
    return name;
  }
  const client = () =>
    createS3Client({
      region: rgw().region,
      endpoint: rgw().endpoint,
      credentials: { accessKeyId: rgw().accessKeyId, secretAccessKey: rgw().secretAccessKey },
    });
  const pending = async (b: string) =>
    (
      await rgw()
        .client()
        .send(new ListMultipartUploadsCommand({ Bucket: b }))
    ).Uploads ?? [];
  const exists = async (b: string, key: string) =>
    rgw()
      .client()
      .send(new HeadObjectCommand({ Bucket: b, Key: key }))
      .then(
        () => true,
        () => false,
      );

  it('stores the exact snapshot (multipart) with the backup identity and both hashes, and verify agrees', async () => {
    const b = await bucket();
    const data = snapshot(12 * MIB);
    const who = identity();
    const outcome = await upload(client(), b, 'p/c/etcd-snapshot.db', data, who).run;
    assert.equal(outcome.alreadyUploaded, false);
    assert.equal(outcome.size, data.length);
    const stored = await rgw()
      .client()
      .send(new GetObjectCommand({ Bucket: b, Key: 'p/c/etcd-snapshot.db' }));
    assert.ok(Buffer.from(await stored.Body!.transformToByteArray()).equals(data));
    assert.deepEqual(stored.Metadata, {
      'backup-namespace': who.namespace,
      'backup-name': who.name,
      'backup-uid': who.uid,
      sha256: createHash('sha256').update(data).digest('hex'),
      'etcd-sha256': data.subarray(-32).toString('hex'),
    });
    assert.deepEqual(await pending(b), []);
    const verified = await verifyObject(client(), b, 'p/c/etcd-snapshot.db');
    assert.equal(verified.size, data.length);
  });

  it('a corrupt stream leaves no object at the key and no pending multipart upload', async () => {
    const b = await bucket();
    const data = snapshot(12 * MIB);
    data[7 * MIB]! ^= 1;
    await assert.rejects(
      upload(client(), b, 'k.db', data, identity()).run,
      (error: unknown) => error instanceof IntegrityError,
    );
    assert.equal(await exists(b, 'k.db'), false);
    assert.deepEqual(await pending(b), []);
  });

  it('a truncated small stream (single PUT) leaves nothing either', async () => {
    const b = await bucket();
    await assert.rejects(
      upload(client(), b, 'k.db', snapshot(64 * 1024).subarray(0, 40_000), identity()).run,
      /Snapshot integrity check failed/,
    );
    assert.equal(await exists(b, 'k.db'), false);
  });

  it('never overwrites an object another backup wrote', async () => {
    const b = await bucket();
    const first = snapshot(64 * 1024);
    await upload(client(), b, 'k.db', first, identity()).run;
    const second = upload(client(), b, 'k.db', snapshot(64 * 1024), identity());
    await assert.rejects(second.run, (error: unknown) => {
      assert.ok(error instanceof S3UploadError);
      assert.match(
        error.message,
        /^Failed to upload snapshot to S3: an object already exists at s3:\/\/backups-\d+\/k\.db by backup talos-backup\/nightly-1767232800; refusing to overwrite it$/,
      );
      return true;
    });
    assert.equal(second.opened(), false, 'the Talos stream is never opened');
    const stored = await rgw()
      .client()
      .send(new GetObjectCommand({ Bucket: b, Key: 'k.db' }));
    assert.ok(Buffer.from(await stored.Body!.transformToByteArray()).equals(first));
  });

  it('also refuses a foreign object without our metadata', async () => {
    const b = await bucket();
    await rgw()
      .client()
      .send(new PutObjectCommand({ Bucket: b, Key: 'k.db', Body: 'someone else' }));
    await assert.rejects(
      upload(client(), b, 'k.db', snapshot(4096), identity()).run,
      /an object already exists at s3:\/\/backups-\d+\/k\.db; refusing/,
    );
  });

  it('a retried Job finds its own complete object and uploads nothing', async () => {
    const b = await bucket();
    const who = identity();
    const data = snapshot(64 * 1024);
    await upload(client(), b, 'k.db', data, who).run;
    const retry = upload(client(), b, 'k.db', snapshot(64 * 1024), who);
    const outcome = await retry.run;
    assert.equal(outcome.alreadyUploaded, true);
    assert.equal(outcome.hashes.etcdSha256, data.subarray(-32).toString('hex'));
    assert.equal(retry.opened(), false);
  });

  it('a retried Job aborts the multipart upload a killed attempt left at its key (and only at its key)', async () => {
    const b = await bucket();
    const s3 = rgw().client();
    const leftover = await s3.send(new CreateMultipartUploadCommand({ Bucket: b, Key: 'k.db' }));
    await s3.send(
      new UploadPartCommand({
        Bucket: b,
        Key: 'k.db',
        UploadId: leftover.UploadId,
        PartNumber: 1,
        Body: Buffer.alloc(5 * MIB),
      }),
    );
    const neighbour = await s3.send(new CreateMultipartUploadCommand({ Bucket: b, Key: 'k.db.other' }));
    await upload(client(), b, 'k.db', snapshot(64 * 1024), identity()).run;
    assert.deepEqual(
      (await pending(b)).map((u) => u.UploadId),
      [neighbour.UploadId],
    );
  });

  it('a retried Job replaces its own object when it lacks the hashes (the earlier try died before recording them)', async () => {
    const b = await bucket();
    const who = identity();
    await rgw()
      .client()
      .send(new PutObjectCommand({ Bucket: b, Key: 'k.db', Body: 'partial', Metadata: { 'backup-uid': who.uid } }));
    const data = snapshot(64 * 1024);
    const outcome = await upload(client(), b, 'k.db', data, who).run;
    assert.equal(outcome.alreadyUploaded, false);
    assert.equal((await verifyObject(client(), b, 'k.db')).size, data.length);
  });

  it("never labels another writer's object with this snapshot's hashes (a write racing the completion)", async () => {
    const b = await bucket();
    const racing = client();
    // Right before the upload's own HEAD (after its completion), someone else overwrites the key.
    racing.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'HeadObjectCommand')
          await rgw()
            .client()
            .send(new PutObjectCommand({ Bucket: b, Key: 'k.db', Body: 'intruder' }));
        return next(args);
      },
      { step: 'initialize', name: 'raceBeforeHead' },
    );
    await assert.rejects(upload(racing, b, 'k.db', snapshot(12 * MIB), identity()).run, /not the one just uploaded/);
    const stored = await rgw()
      .client()
      .send(new GetObjectCommand({ Bucket: b, Key: 'k.db' }));
    assert.equal(await stored.Body!.transformToString(), 'intruder');
    assert.equal(stored.Metadata?.sha256, undefined);
  });

  it('copies objects above the single-copy limit part by part, keeping the bytes', async () => {
    const b = await bucket();
    const data = snapshot(12 * MIB);
    await upload(client(), b, 'big.db', data, identity(), { maxSingleCopyBytes: 5 * MIB }).run;
    const verified = await verifyObject(client(), b, 'big.db');
    assert.equal(verified.sha256, createHash('sha256').update(data).digest('hex'));
  });

  it('on a versioned bucket leaves exactly one version: the one with the hashes', async () => {
    const b = await bucket({ objectLock: true });
    await upload(client(), b, 'k.db', snapshot(64 * 1024), identity()).run;
    const versions = await rgw()
      .client()
      .send(new ListObjectVersionsCommand({ Bucket: b }));
    assert.equal(versions.Versions?.length, 1);
    await verifyObject(client(), b, 'k.db');
  });

  const failures: {
    name: string;
    client: () => ReturnType<typeof createS3Client>;
    bucket?: string;
    message: RegExp;
  }[] = [
    {
      name: 'a missing bucket',
      client,
      bucket: 'no-such-bucket',
      message: /^Failed to upload snapshot to S3: NoSuchBucket \(HTTP 404\)/,
    },
    {
      name: 'an unknown access key',
      client: () =>
        createS3Client({
          region: 'us-east-1',
          endpoint: rgw().endpoint,
          credentials: { accessKeyId: 'NOSUCHKEY0000000', secretAccessKey: 'x'.repeat(40) },
        }),
      message: /^Failed to upload snapshot to S3: InvalidAccessKeyId \(HTTP 403\)/,
    },
    {
      name: 'a wrong secret key',
      client: () =>
        createS3Client({
          region: 'us-east-1',
          endpoint: rgw().endpoint,
          credentials: { accessKeyId: rgw().accessKeyId, secretAccessKey: 'wrong-secret-key-0123456789' },
        }),
      message: /^Failed to upload snapshot to S3: SignatureDoesNotMatch \(HTTP 403\)/,
    },
    {
      name: 'an S3 endpoint that is down',
      client: () =>
        createS3Client({
          region: 'us-east-1',
          endpoint: 'http://127.0.0.1:9',
          credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
        }),
      message: /^Failed to upload snapshot to S3: .*ECONNREFUSED/,
    },
  ];
  for (const f of failures) {
    it(`fails clearly, before opening the Talos stream, on ${f.name}`, async () => {
      const b = f.bucket ?? (await bucket());
      const attempt = upload(f.client(), b, 'k.db', snapshot(4096), identity());
      await assert.rejects(attempt.run, (error: unknown) => {
        assert.ok(error instanceof S3UploadError, String(error));
        assert.match(error.message, f.message);
        assert.ok(!error.message.includes(rgw().secretAccessKey) && !error.message.includes('wrong-secret-key'));
        return true;
      });
      assert.equal(attempt.opened(), false);
    });
  }

  it("a failing output (restore's file) is reported as the output's failure, not the backup's, and never hangs", async () => {
    const data = snapshot(256 * 1024);
    for (const failAt of ['write', 'final'] as const) {
      const sink = new Writable({
        highWaterMark: 1024,
        write: (_chunk, _encoding, callback) =>
          failAt === 'write' ? callback(new Error('ENOSPC: no space left on device')) : setImmediate(callback),
        final: (callback) => callback(failAt === 'final' ? new Error('EIO: i/o error') : null),
      });
      const chunks = function* () {
        for (let at = 0; at < data.length; at += 4096) yield data.subarray(at, at + 4096);
      };
      await assert.rejects(
        readBack(Readable.from(chunks()), 'the object', { compression: 'none', encrypted: false, sink }),
        (error: unknown) => {
          assert.ok(error instanceof SinkError, String(error));
          assert.match((error as Error).message, failAt === 'write' ? /ENOSPC/ : /EIO/);
          return true;
        },
      );
    }
  });

  it('verify reports a missing object, missing metadata and a corrupt object', async () => {
    const b = await bucket();
    await assert.rejects(
      verifyObject(client(), b, 'nope.db'),
      /Snapshot verification failed: cannot read s3:\/\/.*NoSuchKey \(HTTP 404\)$/,
    );
    await rgw()
      .client()
      .send(new PutObjectCommand({ Bucket: b, Key: 'plain.db', Body: snapshot(4096) }));
    await assert.rejects(verifyObject(client(), b, 'plain.db'), /has no recorded sha256 \(metadata or tags\)/);
    const data = snapshot(4096);
    const meta = {
      sha256: createHash('sha256').update(data).digest('hex'),
      'etcd-sha256': data.subarray(-32).toString('hex'),
    };
    data[10]! ^= 1;
    await rgw()
      .client()
      .send(new PutObjectCommand({ Bucket: b, Key: 'bad.db', Body: data, Metadata: meta }));
    await assert.rejects(
      verifyObject(client(), b, 'bad.db'),
      (error: unknown) => error instanceof VerificationError && /etcd trailer: .*does not match/.test(error.message),
    );
  });
});
