// Copies (backupStorage.copies) for real: one Talos read streamed to two Ceph RGW users' buckets (different keys:
// another trust domain; the copy's bucket with Object Lock COMPLIANCE), each object restored with etcdutl. A copy
// whose keys are wrong fails the backup naming it and leaves nothing in either bucket; a copy that stalls (a proxy
// that stops forwarding mid-part) fails the attempt within the idle timeout, naming it, and leaves nothing either;
// an optional copy's failure is a warning, not a failure; delete removes every copy (a locked one is kept).

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  GetObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { deleteCommand, restoreCommand, snapshotCommand, verifyCommand } from '../../../src/job/commands.js';
import { formatCopies, type CopySetting } from '../../../src/contract/copies.js';
import type { RawSettings } from '../../../src/contract/settings.js';
import { renderFailure } from '../../../src/job/errors.js';
import { restoreSnapshot, startEtcd, type Etcd } from '../../harness/etcd.js';
import { createTalosPki, talosconfigYaml } from '../../harness/pki.js';
import { useRgw, type RgwUser } from '../../harness/rgw.js';
import { startStallProxy } from '../../harness/stall-proxy.js';
import { startTalosDouble, type TalosDouble } from '../../doubles/talos.js';

const PRIMARY = 'etcd-backups';
const OFFSITE = 'etcd-backups-offsite';

describe('copies: one Talos read, every destination stored', () => {
  const rgw = useRgw();
  let etcd: Etcd;
  let keys: Map<string, string>;
  let cp: TalosDouble;
  let dir: string;
  let talosconfig: string;
  let offsite: RgwUser;
  let count = 0;

  before(async () => {
    etcd = await startEtcd();
    keys = await etcd.putMany(3000, 'registry/copies/', 4096); // a snapshot of several parts (5 MiB)
    const pki = await createTalosPki();
    const backup = await pki.clientCert(['os:etcd:backup']);
    cp = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    dir = await mkdtemp(join(tmpdir(), 'copies-test-'));
    talosconfig = join(dir, 'talosconfig');
    await writeFile(
      talosconfig,
      talosconfigYaml({
        context: 'prod',
        endpoints: [cp.endpoint],
        caPem: pki.caPem,
        certPem: backup.certPem,
        keyPem: backup.keyPem,
      }),
    );
    await rgw().createBucket(PRIMARY);
    offsite = await rgw().createUser('offsite');
    await offsite.createBucket(OFFSITE, { objectLock: true });
    process.env.AWS_ACCESS_KEY_ID = rgw().accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = rgw().secretAccessKey;
  });
  after(async () => {
    await cp?.stop();
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const offsiteCopy = (overrides: Partial<CopySetting> = {}): CopySetting => ({
    name: 'offsite',
    required: true,
    bucket: OFFSITE,
    region: rgw().region,
    endpoint: rgw().endpoint,
    prefix: 'offsite-prefix',
    objectLockMode: 'COMPLIANCE',
    objectLockRetainDays: 1,
    keysFromEnv: true,
    ...overrides,
  });
  const offsiteEnv = (secret = offsite.secretAccessKey): NodeJS.ProcessEnv => ({
    ...process.env,
    S3_COPY_1_ACCESS_KEY_ID: offsite.accessKeyId,
    S3_COPY_1_SECRET_ACCESS_KEY: secret,
  });
  function settings(copies: CopySetting[], overrides: RawSettings = {}): RawSettings {
    count += 1;
    return {
      talosconfig,
      bucket: PRIMARY,
      region: rgw().region,
      endpoint: rgw().endpoint,
      prefix: 'talos-operator-etcd-backups',
      cluster: 'prod',
      time: `2026-01-01T00:00:${String(count).padStart(2, '0')}Z`,
      partSize: '5',
      queueSize: '2',
      connectTimeout: '5',
      idleTimeout: '2',
      backupNamespace: 'talos-backup',
      backupName: `copies-${count}`,
      copies: formatCopies(copies),
      ...overrides,
    };
  }
  /** Objects (every version) and pending multipart uploads in a bucket. */
  async function leftIn(client: S3Client, bucket: string): Promise<{ objects: string[]; uploads: string[] }> {
    const versions = await client.send(new ListObjectVersionsCommand({ Bucket: bucket }));
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    return {
      objects: (versions.Versions ?? []).map((v) => v.Key!),
      uploads: (uploads.Uploads ?? []).map((u) => u.Key!),
    };
  }
  const objectsUnder = async (client: S3Client, bucket: string, cluster: string) => {
    const left = await leftIn(client, bucket);
    return {
      objects: left.objects.filter((k) => k.includes(`/${cluster}/`)),
      uploads: left.uploads.filter((k) => k.includes(`/${cluster}/`)),
    };
  };

  async function restoresEveryKey(client: S3Client, bucket: string, key: string, size: number): Promise<void> {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const bytes = Buffer.from(await object.Body!.transformToByteArray());
    assert.equal(bytes.length, size);
    const file = join(dir, `restored-${bucket}.db`);
    await writeFile(file, bytes);
    const restored = await restoreSnapshot(file);
    try {
      for (const [k, v] of [...keys].slice(0, 200)) assert.equal(await restored.get(k), v, k);
      assert.equal(await restored.get([...keys.keys()].at(-1)!), [...keys.values()].at(-1));
    } finally {
      await restored.stop();
    }
  }

  it('stores the same bytes in both trust domains from one Talos read, locked offsite, and each restores', async () => {
    const reads = cp.records.length;
    const s = settings([offsiteCopy()], { verify: 'true' });
    const result = await snapshotCommand(s, offsiteEnv());
    assert.equal(cp.records.length - reads, 1, 'Talos was read once');
    assert.ok(result.size > 10 * 1024 * 1024, `several parts (${result.size} bytes)`);
    assert.equal(result.verified, true);
    const [copy] = result.copies ?? [];
    assert.ok(copy);
    assert.equal(copy.name, 'offsite');
    assert.equal(copy.bucket, OFFSITE);
    assert.equal(copy.key, result.key.replace(/^talos-operator-etcd-backups\//, 'offsite-prefix/'));
    assert.equal(copy.size, result.size);
    assert.equal(copy.sha256, result.sha256);
    assert.equal(copy.verified, true);
    assert.equal(copy.verification, 'Full');
    assert.equal(copy.error, undefined);
    assert.ok(copy.retainUntil && Date.parse(copy.retainUntil) > Date.now() + 23 * 3600_000, 'locked for a day');
    assert.equal(result.retainUntil, undefined, 'the primary asked for no lock');

    // Different trust domains: neither user sees the other's bucket.
    const mine = await rgw().client().send(new ListBucketsCommand({}));
    assert.deepEqual(
      mine.Buckets?.map((b) => b.Name),
      [PRIMARY],
    );
    const theirs = await offsite.client().send(new ListBucketsCommand({}));
    assert.deepEqual(
      theirs.Buckets?.map((b) => b.Name),
      [OFFSITE],
    );

    await restoresEveryKey(rgw().client(), PRIMARY, result.key, result.size);
    await restoresEveryKey(offsite.client(), OFFSITE, copy.key, copy.size!);

    // verify and restore read copy N (`--copy 1`) with its own keys.
    const verified = await verifyCommand(
      { region: rgw().region, copies: formatCopies([offsiteCopy({ key: copy.key })]), copy: '1' },
      undefined,
      offsiteEnv(),
    );
    assert.equal(verified.bucket, OFFSITE);
    assert.equal(verified.sha256, result.sha256);
    const output = join(dir, 'from-copy.db');
    const restored = await restoreCommand(
      { region: rgw().region, copies: formatCopies([offsiteCopy({ key: copy.key })]), copy: '1', output },
      { env: offsiteEnv() },
    );
    assert.equal(restored.etcdSha256, result.etcdSha256);
  });

  it('fails on a copy whose keys are wrong, naming it, before reading Talos, leaving nothing anywhere', async () => {
    const reads = cp.records.length;
    const s = settings([offsiteCopy()]);
    const failure = await snapshotCommand(s, offsiteEnv('wrong-secret-key-wrong-secret-key-wrong0')).then(
      () => assert.fail('the backup succeeded'),
      (error: unknown) => error,
    );
    const { message, exitCode } = renderFailure(failure, offsiteEnv('wrong-secret-key-wrong-secret-key-wrong0'));
    assert.match(
      message,
      /^Failed to upload snapshot to S3: copy offsite \(s3:\/\/etcd-backups-offsite\/offsite-prefix\/prod\/etcd-snapshot-[^)]+\): SignatureDoesNotMatch \(HTTP 403\)/,
    );
    assert.equal(exitCode, 2, 'no retry can help');
    assert.doesNotMatch(message, /wrong-secret-key/, 'the key is never printed');
    assert.equal(cp.records.length, reads, 'Talos was not read');
    assert.deepEqual(await leftIn(rgw().client(), PRIMARY).then((l) => l.uploads), []);
    assert.deepEqual(
      (await leftIn(rgw().client(), PRIMARY)).objects.filter((k) => k.includes(s.time!.replace(/:/g, '-'))),
      [],
    );
    assert.deepEqual(
      (await leftIn(offsite.client(), OFFSITE)).objects.filter((k) => k.includes(s.time!.replace(/:/g, '-'))),
      [],
    );
    assert.deepEqual((await leftIn(offsite.client(), OFFSITE)).uploads, []);
  });

  it('reports an optional copy that could not be stored as a warning, and stores the primary', async () => {
    const s = settings([offsiteCopy({ required: false })]);
    const result = await snapshotCommand(s, offsiteEnv('wrong-secret-key-wrong-secret-key-wrong0'));
    assert.equal(result.copies?.length, 1);
    assert.match(result.copies![0]!.error!, /^Failed to upload snapshot to S3: copy offsite .*SignatureDoesNotMatch/);
    assert.equal(result.copies![0]!.sha256, undefined);
    await restoresEveryKey(rgw().client(), PRIMARY, result.key, result.size);
  });

  it('fails the attempt on a copy that stalls mid-part within the idle timeout, naming it, leaving nothing', async () => {
    const proxy = await startStallProxy(rgw().endpoint, { afterBytes: 1024 * 1024, lifetimeMs: 60_000 });
    try {
      const s = settings([offsiteCopy({ endpoint: proxy.endpoint, prefix: 'stalled' })], { cluster: 'stall' });
      const started = Date.now();
      const failure = await snapshotCommand(s, offsiteEnv()).then(
        () => assert.fail('the backup succeeded'),
        (error: unknown) => error as Error,
      );
      const took = Date.now() - started;
      assert.match(
        failure.message,
        /^Failed to upload snapshot to S3: copy offsite \(s3:\/\/etcd-backups-offsite\/stalled\/stall\/[^)]+\) took no bytes for 2s: the store or the way to it stalls; every upload of this attempt was aborted$/,
      );
      assert.ok(proxy.stalled() >= 1, 'the proxy did stall a part');
      assert.ok(took < 15_000, `failed after ${took} ms (idle timeout 2 s)`);
      assert.deepEqual(await objectsUnder(rgw().client(), PRIMARY, 'stall'), { objects: [], uploads: [] });
      assert.deepEqual(await objectsUnder(offsite.client(), OFFSITE, 'stall'), { objects: [], uploads: [] });
    } finally {
      await proxy.close();
    }
  });

  it('deletes every copy with its own keys, and keeps and reports the one Object Lock protects', async () => {
    const s = settings(
      [
        offsiteCopy(),
        offsiteCopy({
          name: 'unlocked',
          objectLockMode: undefined,
          objectLockRetainDays: undefined,
          bucket: 'etcd-backups-second',
          prefix: 'second',
        }),
      ],
      {
        backupUid: 'uid-delete',
      },
    );
    await offsite.createBucket('etcd-backups-second');
    const env = {
      ...offsiteEnv(),
      S3_COPY_2_ACCESS_KEY_ID: offsite.accessKeyId,
      S3_COPY_2_SECRET_ACCESS_KEY: offsite.secretAccessKey,
    };
    const result = await snapshotCommand(s, env);
    const [locked, unlocked] = result.copies!;
    const deleted = await deleteCommand(
      {
        bucket: PRIMARY,
        key: result.key,
        region: rgw().region,
        endpoint: rgw().endpoint,
        backupUid: 'uid-delete',
        copies: formatCopies([
          offsiteCopy({ key: locked!.key }),
          offsiteCopy({ name: 'unlocked', bucket: 'etcd-backups-second', key: unlocked!.key }),
        ]),
      },
      env,
    );
    assert.equal(deleted.deleted, true);
    assert.equal(deleted.copies?.[0]?.deleted, false);
    assert.match(deleted.copies![0]!.detail!, /protected by Object Lock \(COMPLIANCE until/);
    assert.ok(deleted.copies![0]!.protectedUntil);
    assert.equal(deleted.copies?.[1]?.deleted, true);
    assert.deepEqual(
      (await leftIn(rgw().client(), PRIMARY)).objects.filter((k) => k === result.key),
      [],
    );
    assert.deepEqual((await leftIn(offsite.client(), 'etcd-backups-second')).objects, []);
  });
  it("an optional copy that cannot be deleted (its keys' Secret is gone) is kept and reported; a required one fails the delete", async () => {
    const s = settings(
      [
        offsiteCopy({
          name: 'optional',
          required: false,
          objectLockMode: undefined,
          objectLockRetainDays: undefined,
          bucket: 'etcd-backups-third',
          prefix: 'third',
        }),
      ],
      { backupUid: 'uid-optional' },
    );
    await offsite.createBucket('etcd-backups-third');
    const result = await snapshotCommand(s, offsiteEnv());
    const copyKey = result.copies![0]!.key;
    const { S3_COPY_1_ACCESS_KEY_ID: _id, S3_COPY_1_SECRET_ACCESS_KEY: _secret, ...keysGone } = offsiteEnv();
    const raw = (required: boolean): RawSettings => ({
      bucket: PRIMARY,
      key: result.key,
      region: rgw().region,
      endpoint: rgw().endpoint,
      backupUid: 'uid-optional',
      copies: formatCopies([offsiteCopy({ name: 'optional', required, bucket: 'etcd-backups-third', key: copyKey })]),
    });
    await assert.rejects(deleteCommand(raw(true), keysGone), (error: Error) => {
      assert.match(
        error.message,
        /copy optional \(s3:\/\/etcd-backups-third\/third\/[^)]+\): its S3 keys \(S3_COPY_1_ACCESS_KEY_ID, S3_COPY_1_SECRET_ACCESS_KEY\) are not set/,
      );
      return true;
    });
    // The required attempt deleted the primary already (every destination is tried); this one finds it gone.
    const deleted = await deleteCommand(raw(false), keysGone);
    assert.equal((await leftIn(rgw().client(), PRIMARY)).objects.includes(result.key), false);
    assert.deepEqual(
      { ...deleted.copies![0]!, detail: undefined },
      { name: 'optional', bucket: 'etcd-backups-third', key: copyKey, deleted: false, detail: undefined },
    );
    assert.match(
      deleted.copies![0]!.detail!,
      /^not deleted \(an optional copy, kept\): its S3 keys \(S3_COPY_1_ACCESS_KEY_ID/,
    );
    assert.deepEqual((await leftIn(offsite.client(), 'etcd-backups-third')).objects, [copyKey]);
  });
});
