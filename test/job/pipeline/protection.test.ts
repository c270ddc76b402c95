// Data protection end to end, on real parts: etcd → Talos API double (mTLS) → compression × age encryption →
// Ceph RGW (with SSE-KMS and Object Lock) → read back → `restore` → `etcdctl snapshot restore` → every key read
// back. And the read-back verification catching what it must: flipped bytes, truncation, a wrong identity, and
// a database whose structure is damaged although its etcd trailer was recomputed.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectRetentionCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutObjectCommand,
  PutObjectLockConfigurationCommand,
} from '@aws-sdk/client-s3';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { packageRoot } from '../../../src/api/crds.js';
import { sniffFormat } from '../../helpers/stored-format.js';
import { deleteCommand, restoreCommand, snapshotCommand, verifyCommand } from '../../../src/job/commands.js';
import { isPermanentFailure } from '../../../src/job/errors.js';
import type { RawSettings } from '../../../src/contract/settings.js';
import { restoreSnapshot, snapshotStatus, startEtcd, type Etcd } from '../../harness/etcd.js';
import { createTalosPki, talosconfigYaml } from '../../harness/pki.js';
import { RGW_TEST_KMS_KEY_ID, useRgw } from '../../harness/rgw.js';
import { damageSnapshot } from '../../helpers/snapshot-damage.js';
import { startTalosDouble, type TalosDouble } from '../../doubles/talos.js';

const BUCKET = 'protected-backups';
const MAIN = join(packageRoot(), 'dist', 'src', 'main.js');
const LOCKED_BUCKET = 'locked-backups';

describe('data protection: compression, age, SSE-KMS, Object Lock, verify and restore', () => {
  const rgw = useRgw();
  let etcd: Etcd;
  let keys: Map<string, string>;
  let talos: TalosDouble;
  let dir: string;
  let talosconfig: string;
  let identityFile: string;
  let otherIdentityFile: string;
  let recipients: string[];
  let count = 0;

  before(async () => {
    etcd = await startEtcd();
    keys = await etcd.putMany(2000, 'registry/protected/', 200);
    const pki = await createTalosPki();
    const client = await pki.clientCert(['os:etcd:backup']);
    talos = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    dir = await mkdtemp(join(tmpdir(), 'protection-test-'));
    talosconfig = join(dir, 'talosconfig');
    await writeFile(
      talosconfig,
      talosconfigYaml({
        context: 'prod',
        endpoints: [talos.endpoint],
        caPem: pki.caPem,
        certPem: client.certPem,
        keyPem: client.keyPem,
      }),
    );
    // Two recipients: the snapshot decrypts with either identity.
    const [mine, colleague, stranger] = await Promise.all([generateIdentity(), generateIdentity(), generateIdentity()]);
    recipients = await Promise.all([identityToRecipient(mine), identityToRecipient(colleague)]);
    identityFile = join(dir, 'identity.txt');
    await writeFile(identityFile, `# created: 2026-11-21T00:00:00Z\n# public key: ${recipients[1]}\n${colleague}\n`, {
      mode: 0o600,
    });
    otherIdentityFile = join(dir, 'other-identity.txt');
    await writeFile(otherIdentityFile, `${stranger}\n`, { mode: 0o600 });
    await rgw().createBucket(BUCKET);
    await rgw().createBucket(LOCKED_BUCKET, { objectLock: true });
    process.env.AWS_ACCESS_KEY_ID = rgw().accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = rgw().secretAccessKey;
  });
  after(async () => {
    await talos?.stop();
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Settings for one run: each gets its own second in the key. */
  function settings(overrides: RawSettings = {}): RawSettings {
    count += 1;
    return {
      talosconfig,
      bucket: BUCKET,
      region: rgw().region,
      endpoint: rgw().endpoint,
      prefix: 'backups',
      cluster: 'prod',
      time: `2026-11-21T10:00:${String(count).padStart(2, '0')}Z`,
      partSize: '5',
      queueSize: '2',
      connectTimeout: '5',
      idleTimeout: '5',
      backupName: `manual-${count}`,
      ...overrides,
    };
  }
  const s3 = (bucket = BUCKET) => ({ bucket, region: rgw().region, endpoint: rgw().endpoint });
  const getObject = async (key: string, bucket = BUCKET) => {
    const object = await rgw()
      .client()
      .send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return {
      bytes: Buffer.from(await object.Body!.transformToByteArray()),
      metadata: object.Metadata ?? {},
      versionId: object.VersionId,
    };
  };
  /** Replaces an object's bytes, keeping the hashes recorded with it (what a damaged store would serve). */
  const replaceBytes = async (key: string, bytes: Buffer, metadata: Record<string, string>) =>
    rgw()
      .client()
      .send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bytes, Metadata: metadata }));

  async function restoreAndRead(file: string): Promise<void> {
    const restored = await restoreSnapshot(file);
    try {
      for (const [key, value] of keys) assert.equal(await restored.get(key), value, key);
    } finally {
      await restored.stop();
    }
  }

  for (const compression of ['none', 'gzip', 'zstd'] as const) {
    for (const encrypted of [false, true]) {
      it(`compression ${compression}, ${encrypted ? 'age-encrypted to two recipients' : 'not encrypted'}: snapshot, verify, restore, etcdctl restore`, async () => {
        const s = settings({
          compression,
          ...(encrypted && { ageRecipients: recipients.join(','), ageIdentity: identityFile }),
          verify: 'true',
        });
        const result = await snapshotCommand(s);
        const suffix = `.db${{ none: '', gzip: '.gz', zstd: '.zst' }[compression]}${encrypted ? '.age' : ''}`;
        assert.equal(result.key, `backups/prod/etcd-snapshot-${s.time!.replace(/:/g, '-')}${suffix}`);
        assert.equal(result.compression, compression);
        assert.equal(result.encrypted, encrypted);
        assert.equal(result.verified, true);
        assert.equal(result.verification, 'Full');

        // The object is what the settings say: its bytes, size and sha256 as reported.
        const { bytes } = await getObject(result.key);
        assert.equal(bytes.length, result.size);
        assert.equal(createHash('sha256').update(bytes).digest('hex'), result.sha256);
        assert.equal(
          sniffFormat(bytes.subarray(0, 64)),
          encrypted ? 'age' : compression === 'none' ? 'raw' : compression,
        );

        // restore writes the plain snapshot, which etcdctl checks (trailer) and restores with every key.
        const output = join(dir, `restored-${count}.db`);
        const restored = await restoreCommand({
          ...s3(),
          key: result.key,
          ...(encrypted && { ageIdentity: identityFile }),
          output,
        });
        assert.equal(restored.output, output);
        assert.equal(restored.etcdSha256, result.etcdSha256);
        const plain = await readFile(output);
        assert.equal(plain.subarray(-32).toString('hex'), result.etcdSha256);
        const status = await snapshotStatus(output);
        assert.equal(restored.database?.revision, status.revision);
        assert.equal(restored.database?.totalKeys, status.totalKey);
        assert.equal(result.revision, status.revision);
        await restoreAndRead(output);
      });
    }
  }

  it('restores the newest complete backup of a cluster, skipping an unfinished upload', async () => {
    const older = await snapshotCommand(settings({ cluster: 'newest', compression: 'zstd' }));
    const newer = await snapshotCommand(settings({ cluster: 'newest', compression: 'gzip' }));
    // An upload that never recorded its hashes, with a later time in its name.
    await rgw()
      .client()
      .send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: 'backups/newest/etcd-snapshot-2026-11-21T23-59-59Z.db',
          Body: 'partial',
        }),
      );
    const seen: string[][] = [];
    const output = join(dir, 'newest.db');
    const restored = await restoreCommand(
      { ...s3(), prefix: 'backups', cluster: 'newest', output },
      { onKey: (key, skipped) => seen.push([key, ...skipped]) },
    );
    assert.equal(restored.key, newer.key);
    assert.notEqual(restored.key, older.key);
    assert.deepEqual(seen, [[newer.key, 'backups/newest/etcd-snapshot-2026-11-21T23-59-59Z.db']]);
    // Never overwrites: the same output again is refused before anything is downloaded.
    await assert.rejects(
      restoreCommand({ ...s3(), key: newer.key, output }),
      /Restore failed: .*newest\.db exists \(restore never overwrites/,
    );
    await assert.rejects(
      restoreCommand({ ...s3(), prefix: 'backups', cluster: 'nobody', output: join(dir, 'x.db') }),
      /Restore failed: no backups of cluster nobody under s3:\/\/protected-backups\/backups\//,
    );
  });

  it('the restore command: one JSON line and exit 0; a damaged backup: one line on stderr, exit 2, no file', async () => {
    const result = await snapshotCommand(settings({ compression: 'zstd', ageRecipients: recipients.join(',') }));
    const env = {
      ...process.env,
      S3_BUCKET: BUCKET,
      S3_REGION: rgw().region,
      S3_ENDPOINT: rgw().endpoint,
      S3_PREFIX: 'backups',
      AGE_IDENTITY_FILE: identityFile,
    };
    const output = join(dir, 'cli.db');
    const ok = spawnSync(process.execPath, [MAIN, 'restore', '--key', result.key, '--output', output], {
      encoding: 'utf8',
      env,
      timeout: 60_000,
    });
    assert.equal(ok.status, 0, ok.stderr);
    const printed = JSON.parse(ok.stdout) as { output: string; etcdSha256: string; verification: string };
    assert.equal(printed.output, output);
    assert.equal(printed.etcdSha256, result.etcdSha256);
    assert.equal(printed.verification, 'Full');
    assert.equal(ok.stderr, '', 'no progress bar when stderr is not a terminal');
    assert.equal((await readFile(output)).subarray(-32).toString('hex'), result.etcdSha256);

    const { bytes, metadata } = await getObject(result.key);
    bytes[100]! ^= 0xff;
    await replaceBytes(result.key, bytes, metadata);
    const bad = spawnSync(
      process.execPath,
      [MAIN, 'restore', '--key', result.key, '--output', join(dir, 'cli-bad.db')],
      { encoding: 'utf8', env, timeout: 60_000 },
    );
    assert.equal(bad.status, 2);
    assert.equal(bad.stdout, '');
    assert.match(
      bad.stderr,
      /^Snapshot verification failed: s3:\/\/\S+ has sha256 \S+ \(\d+ bytes\), but \S+ was recorded when it was stored: its bytes changed since \(damaged, truncated or replaced\); reading it: \S/,
    );
    assert.equal(bad.stderr.trim().split('\n').length, 1);
    await assert.rejects(readFile(join(dir, 'cli-bad.db')), /ENOENT/);
  });

  it('restore writes the snapshot readable by its owner only; a stopped restore (Ctrl-C) leaves nothing behind', async () => {
    const result = await snapshotCommand(settings({ compression: 'gzip' }));
    const output = join(dir, 'private.db');
    await restoreCommand({ ...s3(), key: result.key, output });
    assert.equal((await stat(output)).mode & 0o777, 0o600);

    const stop = new AbortController();
    const stopped = join(dir, 'stopped.db');
    const error = await restoreCommand(
      { ...s3(), key: result.key, output: stopped },
      { signal: stop.signal, onProgress: () => stop.abort('SIGINT') },
    ).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.match(String(error), /Snapshot verification failed: reading s3:\/\/\S+ failed: .*stopped \(SIGINT\)/);
    assert.equal(isPermanentFailure(error), false);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.startsWith('stopped.db')),
      [],
    );
  });

  it('a key given by hand must carry the suffixes of the format, which verify and restore read', async () => {
    const error = await snapshotCommand(
      settings({ key: 'backups/prod/by-hand.db', compression: 'zstd', ageRecipients: recipients[0]! }),
    ).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.match(String(error), /S3_KEY \(--key\) must end with \.db\.zst\.age for this compression and encryption/);
    assert.ok(isPermanentFailure(error));
  });

  it('restore of an encrypted backup without an identity says what to pass, and leaves no file', async () => {
    const result = await snapshotCommand(settings({ ageRecipients: recipients[0]! }));
    const output = join(dir, 'no-identity.db');
    const error = await restoreCommand({ ...s3(), key: result.key, output }).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.match(
      String(error),
      /Restore failed: s3:\/\/protected-backups\/\S+\.db\.age is age-encrypted: give the identity file of one of its recipients with --age-identity/,
    );
    assert.ok(isPermanentFailure(error));
    await assert.rejects(readFile(output), /ENOENT/);
  });

  it('verify without the identity checks the stored bytes only, and says so', async () => {
    const result = await snapshotCommand(settings({ ageRecipients: recipients[0]!, verify: 'true' }));
    assert.equal(result.verified, true);
    assert.equal(result.verification, 'StoredBytes');
    assert.equal(result.revision, undefined);
  });

  describe('verify catches a damaged object with a clear message', () => {
    it('a flipped byte in the stored object', async () => {
      const result = await snapshotCommand(settings({ compression: 'gzip' }));
      const { bytes, metadata } = await getObject(result.key);
      bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
      await replaceBytes(result.key, bytes, metadata);
      const error = await verifyCommand({ ...s3(), key: result.key }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.match(
        String(error),
        new RegExp(
          `Snapshot verification failed: s3://${BUCKET}/\\S+ has sha256 [0-9a-f]{64} \\(${bytes.length} bytes\\), but ${result.sha256} was recorded when it was stored: its bytes changed since \\(damaged, truncated or replaced\\); reading it: gzip`,
        ),
      );
      assert.ok(isPermanentFailure(error));
    });

    it('a truncated object', async () => {
      const result = await snapshotCommand(settings());
      const { bytes, metadata } = await getObject(result.key);
      const cut = bytes.length - 1000;
      await replaceBytes(result.key, bytes.subarray(0, cut), metadata);
      await assert.rejects(
        verifyCommand({ ...s3(), key: result.key }),
        new RegExp(
          `Snapshot verification failed: .* has sha256 [0-9a-f]{64} \\(${cut} bytes\\), but ${result.sha256} was recorded .*; reading it: etcd trailer: the stream ended after ${cut} bytes, which is not a whole etcd snapshot`,
        ),
      );
    });

    it('a wrong identity', async () => {
      const result = await snapshotCommand(settings({ compression: 'zstd', ageRecipients: recipients.join(',') }));
      await assert.rejects(
        verifyCommand({ ...s3(), key: result.key, ageIdentity: otherIdentityFile }),
        /Snapshot verification failed: the age identity does not match any of the backup's recipients/,
      );
      // The Job's own verification fails the same way, and no retry can help.
      const error = await snapshotCommand(
        settings({ ageRecipients: recipients[0]!, ageIdentity: otherIdentityFile, verify: 'true' }),
      ).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.match(
        String(error),
        /Snapshot verification failed: the age identity does not match any of the backup's recipients/,
      );
      assert.ok(isPermanentFailure(error));
    });

    it('a database whose bolt structure is damaged although its etcd trailer (and recorded sha256) were recomputed', async () => {
      const result = await snapshotCommand(settings());
      const { bytes, metadata } = await getObject(result.key);
      const damaged = damageSnapshot(bytes, 'branch-child');
      const sha256 = createHash('sha256').update(damaged).digest('hex');
      const etcdSha256 = damaged.subarray(-32).toString('hex');
      assert.notEqual(etcdSha256, result.etcdSha256, 'the trailer was recomputed');
      await replaceBytes(result.key, damaged, { ...metadata, sha256, 'etcd-sha256': etcdSha256 });
      await assert.rejects(
        verifyCommand({ ...s3(), key: result.key }),
        /^VerificationError: Snapshot verification failed: database structure: /,
      );
      // A restore of it leaves no file behind.
      const output = join(dir, 'damaged.db');
      await assert.rejects(restoreCommand({ ...s3(), key: result.key, output }), /database structure/);
      await assert.rejects(readFile(output), /ENOENT/);
    });
  });

  it('SSE-KMS: the object is stored encrypted with the key, its hashes recorded, and it verifies', async () => {
    const result = await snapshotCommand(
      settings({ sse: 'aws:kms', sseKmsKeyId: RGW_TEST_KMS_KEY_ID, compression: 'zstd', verify: 'true' }),
    );
    const head = await rgw()
      .client()
      .send(new HeadObjectCommand({ Bucket: BUCKET, Key: result.key }));
    assert.equal(head.ServerSideEncryption, 'aws:kms');
    assert.equal(head.SSEKMSKeyId, RGW_TEST_KMS_KEY_ID);
    assert.equal(result.verification, 'Full');
    // RGW 16 cannot copy an SSE-KMS object: the hashes went into tags, where verify finds them.
    const verified = await verifyCommand({ ...s3(), key: result.key });
    assert.equal(verified.sha256, result.sha256);
    // A key the KMS does not know fails the backup, permanently, naming it; nothing is left pending.
    const error = await snapshotCommand(settings({ sse: 'aws:kms', sseKmsKeyId: 'no-such-key' })).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.match(String(error), /Failed to upload snapshot to S3: .*no-such-key/);
    const pending = await rgw()
      .client()
      .send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    assert.deepEqual(pending.Uploads ?? [], []);
  });

  describe('Object Lock', () => {
    it('locks the uploaded version until its retain-until date: the store refuses to delete it, and the delete command reports it kept', async () => {
      const started = Date.now();
      const result = await snapshotCommand(
        settings({
          bucket: LOCKED_BUCKET,
          objectLockMode: 'COMPLIANCE',
          objectLockRetainDays: '1',
          compression: 'gzip',
          verify: 'true',
        }),
      );
      const until = Date.parse(result.retainUntil!);
      assert.ok(until >= started + 86_400_000 - 1000 && until <= Date.now() + 86_400_000 + 1000, result.retainUntil);
      const { versionId } = await getObject(result.key, LOCKED_BUCKET);
      assert.ok(versionId);
      // One version only, the locked one, and its (immutable) metadata holds the hashes: the unlocked upload the
      // copy replaced is gone.
      const versions = await rgw()
        .client()
        .send(new ListObjectVersionsCommand({ Bucket: LOCKED_BUCKET, Prefix: result.key }));
      assert.deepEqual(
        versions.Versions?.map((v) => v.VersionId),
        [versionId],
      );
      assert.equal((await getObject(result.key, LOCKED_BUCKET)).metadata.sha256, result.sha256);
      await assert.rejects(
        rgw()
          .client()
          .send(new DeleteObjectCommand({ Bucket: LOCKED_BUCKET, Key: result.key, VersionId: versionId })),
        /AccessDenied|forbidden/i,
      );
      const verified = await verifyCommand({ ...s3(LOCKED_BUCKET), key: result.key });
      assert.equal(verified.sha256, result.sha256);
      // deletionPolicy Delete's Job: the object is kept, and that is reported, not retried forever.
      const outcome = await deleteCommand({ ...s3(LOCKED_BUCKET), key: result.key, backupUid: 'not-it' }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.match(
        String(outcome),
        /belongs to backup \/manual-\d+, not this one; it was not deleted/,
        'the owner check still comes first',
      );
    });

    it('the delete Job keeps a locked object of its own backup and says until when', async () => {
      const s = settings({
        bucket: LOCKED_BUCKET,
        objectLockMode: 'GOVERNANCE',
        objectLockRetainDays: '2',
        backupUid: 'uid-locked',
      });
      const result = await snapshotCommand(s);
      const outcome = await deleteCommand({ ...s3(LOCKED_BUCKET), key: result.key, backupUid: 'uid-locked' });
      assert.equal(outcome.deleted, false);
      assert.equal(outcome.protectedUntil, result.retainUntil);
      assert.match(
        outcome.detail!,
        /is protected by Object Lock \(GOVERNANCE until .*\): S3 refuses to delete it before then, so it was kept/,
      );
      assert.ok(await getObject(result.key, LOCKED_BUCKET));
    });

    it('a bucket whose default retention locks every upload: the hashes go on as tags, and one version stays', async () => {
      const bucket = 'default-retention';
      await rgw().createBucket(bucket, { objectLock: true });
      await rgw()
        .client()
        .send(
          new PutObjectLockConfigurationCommand({
            Bucket: bucket,
            ObjectLockConfiguration: {
              ObjectLockEnabled: 'Enabled',
              Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 1 } },
            },
          }),
        );
      const result = await snapshotCommand(settings({ bucket, compression: 'gzip', verify: 'true' }));
      const versions = await rgw()
        .client()
        .send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: result.key }));
      assert.equal(versions.Versions?.length, 1, 'no second, locked copy');
      const tags = await rgw()
        .client()
        .send(new GetObjectTaggingCommand({ Bucket: bucket, Key: result.key }));
      assert.deepEqual(Object.fromEntries((tags.TagSet ?? []).map((t) => [t.Key, t.Value])), {
        sha256: result.sha256,
        'etcd-sha256': result.etcdSha256,
      });
      const retention = await rgw()
        .client()
        .send(new GetObjectRetentionCommand({ Bucket: bucket, Key: result.key }));
      assert.equal(retention.Retention?.Mode, 'GOVERNANCE');
      assert.equal((await verifyCommand({ ...s3(bucket), key: result.key })).sha256, result.sha256);
    });

    it('a bucket without Object Lock fails the backup before any byte is sent, saying what to do', async () => {
      const s = settings({ objectLockMode: 'COMPLIANCE', objectLockRetainDays: '7' });
      const error = await snapshotCommand(s).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.match(
        String(error),
        /Failed to upload snapshot to S3: bucket protected-backups has no Object Lock configuration, so objectLock \(COMPLIANCE, 7 days\) cannot be applied: use a bucket created with Object Lock enabled, or remove spec\.backupStorage\.s3\.objectLock/,
      );
      assert.ok(isPermanentFailure(error));
      const listed = await rgw()
        .client()
        .send(
          new ListObjectsV2Command({
            Bucket: BUCKET,
            Prefix: `backups/prod/etcd-snapshot-${s.time!.replace(/:/g, '-')}`,
          }),
        );
      assert.equal(listed.KeyCount, 0);
    });
  });
});
