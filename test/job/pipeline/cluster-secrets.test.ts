// The cluster's secrets stored beside the snapshot, on real parts: etcd → Talos API double (mTLS) → Ceph RGW, the
// Secret's keys read from a directory laid out as the kubelet lays out a Secret volume, written as a Secret
// manifest, age-encrypted (real age) beside the snapshot; read back and decrypted with an independent age, verified
// (a damaged object fails with a message saying so), locked with the snapshot, deleted with it, restored next to
// it. No value of the Secret appears in any output or message.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  GetObjectCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { Decrypter, Encrypter, generateIdentity, identityToRecipient } from 'age-encryption';
import { parse } from 'yaml';
import { packageRoot } from '../../../src/api/crds.js';
import type { RawSettings } from '../../../src/contract/settings.js';
import { checkRequiredInputs } from '../../../src/job/required-inputs.js';
import { deleteCommand, restoreCommand, snapshotCommand, verifyCommand } from '../../../src/job/commands.js';
import { isPermanentFailure } from '../../../src/job/errors.js';
import { secretManifest } from '../../../src/job/pipeline/cluster-secrets.js';
import { startEtcd, type Etcd } from '../../harness/etcd.js';
import { createTalosPki, talosconfigYaml } from '../../harness/pki.js';
import { useRgw } from '../../harness/rgw.js';
import { startTalosDouble, type TalosDouble } from '../../doubles/talos.js';

const BUCKET = 'secrets-backups';
const LOCKED_BUCKET = 'secrets-locked';
const MAIN = join(packageRoot(), 'dist', 'src', 'main.js');
/** Values no output may ever show. */
const BUNDLE = 'cluster:\n  id: Zm9v\nsecrets:\n  secretboxencryptionsecret: NEVER-PRINT-sbx-4f2c9a\n';
const CONFIG = 'machine:\n  token: NEVER-PRINT-token-77ab1e\n';
const BINARY = Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 13]);
const SECRET_VALUES = ['NEVER-PRINT-sbx-4f2c9a', 'NEVER-PRINT-token-77ab1e'];

describe('cluster secrets stored beside the snapshot (real etcd, Talos double, Ceph RGW, age)', () => {
  const rgw = useRgw();
  let etcd: Etcd;
  let talos: TalosDouble;
  let dir: string;
  let talosconfig: string;
  let identityFile: string;
  let identity: string;
  let recipient: string;
  let secretDir: string;
  let count = 0;

  before(async () => {
    etcd = await startEtcd();
    await etcd.putMany(200, 'registry/secrets-test/', 100);
    const pki = await createTalosPki();
    const client = await pki.clientCert(['os:etcd:backup']);
    talos = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    dir = await mkdtemp(join(tmpdir(), 'cluster-secrets-test-'));
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
    identity = await generateIdentity();
    recipient = await identityToRecipient(identity);
    identityFile = join(dir, 'identity.txt');
    await writeFile(identityFile, `${identity}\n`, { mode: 0o600 });
    // A Secret volume as the kubelet writes it: a timestamped directory, `..data` pointing at it, and one symlink
    // per key (the kubelet's own entries begin with `..`).
    secretDir = join(dir, 'prod-talos-secrets');
    const data = join(secretDir, '..2026_11_21_10_00_00.000000001');
    await mkdir(data, { recursive: true });
    await writeFile(join(data, 'secrets.yaml'), BUNDLE);
    await writeFile(join(data, 'controlplane.yaml'), CONFIG);
    await writeFile(join(data, 'blob'), BINARY);
    await symlink('..2026_11_21_10_00_00.000000001', join(secretDir, '..data'));
    for (const key of ['secrets.yaml', 'controlplane.yaml', 'blob'])
      await symlink(`..data/${key}`, join(secretDir, key));
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

  function settings(overrides: RawSettings = {}): RawSettings {
    count += 1;
    return {
      talosconfig,
      bucket: BUCKET,
      region: rgw().region,
      endpoint: rgw().endpoint,
      prefix: 'backups',
      cluster: 'prod',
      time: `2026-11-21T11:00:${String(count).padStart(2, '0')}Z`,
      partSize: '5',
      queueSize: '2',
      connectTimeout: '5',
      idleTimeout: '5',
      backupNamespace: 'talos-backup',
      backupName: `with-secrets-${count}`,
      backupUid: `uid-${count}`,
      ageRecipients: recipient,
      clusterSecretsDir: secretDir,
      ...overrides,
    };
  }
  const s3 = (bucket = BUCKET) => ({ bucket, region: rgw().region, endpoint: rgw().endpoint });
  const getObject = async (key: string, bucket = BUCKET) => {
    const object = await rgw()
      .client()
      .send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return { bytes: Buffer.from(await object.Body!.transformToByteArray()), metadata: object.Metadata ?? {} };
  };
  const exists = (key: string, bucket = BUCKET) =>
    rgw()
      .client()
      .send(new HeadObjectCommand({ Bucket: bucket, Key: key }))
      .then(
        () => true,
        () => false,
      );
  /** Decrypted with age-encryption directly (not the project's codec) and parsed as YAML. */
  const decrypt = async (bytes: Buffer) => {
    const decrypter = new Decrypter();
    decrypter.addIdentity(identity);
    return Buffer.from(await decrypter.decrypt(bytes)).toString('utf8');
  };
  const noSecretIn = (text: string, where: string) => {
    for (const value of SECRET_VALUES) assert.ok(!text.includes(value), `a secret value in ${where}`);
    assert.ok(
      !text.includes(BUNDLE.slice(0, 20)) && !text.includes(Buffer.from(BUNDLE).toString('base64').slice(0, 16)),
      where,
    );
  };

  it('stores an encrypted Secret manifest beside the snapshot that decrypts to the Secret’s keys; its sha256 is recorded and verified', async () => {
    const s = settings({ verify: 'true', ageIdentity: identityFile });
    const result = await snapshotCommand(s);
    const secretsKey = result.key.replace(/\.db\.age$/, '.secrets.yaml.age');
    assert.match(result.key, /^backups\/prod\/etcd-snapshot-2026-11-21T11-00-\d\dZ\.db\.age$/);
    assert.deepEqual(result.secrets, {
      source: 'clusterSecretsRef',
      secretName: 'prod-talos-secrets',
      key: secretsKey,
      size: result.secrets!.size,
      sha256: result.secrets!.sha256,
    });
    assert.equal(result.verified, true);
    const { bytes, metadata } = await getObject(secretsKey);
    assert.equal(bytes.length, result.secrets!.size);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), result.secrets!.sha256);
    assert.equal(metadata.sha256, result.secrets!.sha256, 'the hash is recorded with the object');
    assert.equal(metadata['backup-uid'], s.backupUid);
    assert.equal(bytes.subarray(0, 22).toString(), 'age-encryption.org/v1\n', 'age-encrypted');
    noSecretIn(bytes.toString('latin1'), 'the stored bytes');

    const manifest = parse(await decrypt(bytes)) as {
      apiVersion: string;
      kind: string;
      metadata: Record<string, unknown>;
      data: Record<string, string>;
    };
    assert.deepEqual(
      { apiVersion: manifest.apiVersion, kind: manifest.kind, metadata: manifest.metadata },
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'prod-talos-secrets', namespace: 'talos-backup' } },
    );
    assert.deepEqual(Object.keys(manifest.data).sort(), ['blob', 'controlplane.yaml', 'secrets.yaml'], 'no `..` entry');
    assert.equal(Buffer.from(manifest.data['secrets.yaml']!, 'base64').toString(), BUNDLE);
    assert.equal(Buffer.from(manifest.data['controlplane.yaml']!, 'base64').toString(), CONFIG);
    assert.deepEqual(Buffer.from(manifest.data.blob!, 'base64'), BINARY, 'binary values survive');
    noSecretIn(JSON.stringify(result), 'the result');

    // The verify command reads both back; the listing of the cluster's snapshots does not see the secrets.
    const verified = await verifyCommand({ ...s3(), key: result.key, secretsKey, ageIdentity: identityFile });
    assert.deepEqual(verified.secrets, {
      key: secretsKey,
      size: result.secrets!.size,
      sha256: result.secrets!.sha256,
      keys: ['blob', 'controlplane.yaml', 'secrets.yaml'],
    });
    const listed = await rgw()
      .client()
      .send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'backups/prod/' }));
    assert.ok(listed.Contents?.some((o) => o.Key === secretsKey));
  });

  it("talos-operator's state Secret: labelled as talos-operator labels it; missing, recorded as not stored and nothing uploaded", async () => {
    const state = await snapshotCommand(
      settings({ clusterSecretsSource: 'talosOperatorState', clusterSecretsName: 'prod-state' }),
    );
    const { bytes } = await getObject(state.secrets!.key!);
    const manifest = parse(await decrypt(bytes)) as { metadata: Record<string, unknown> };
    assert.deepEqual(manifest.metadata, {
      name: 'prod-state',
      namespace: 'talos-backup',
      labels: { 'talos.alperen.cloud/type': 'state' },
    });

    // An optional Secret that does not exist: the kubelet mounts an empty directory.
    const empty = join(dir, 'empty');
    await mkdir(empty, { recursive: true });
    const missing = await snapshotCommand(
      settings({
        clusterSecretsDir: empty,
        clusterSecretsSource: 'talosOperatorState',
        clusterSecretsName: 'prod-state',
      }),
    );
    assert.deepEqual(missing.secrets, {
      source: 'talosOperatorState',
      secretName: 'prod-state',
      notStored: 'the Secret talos-backup/prod-state does not exist or has no keys',
    });
    assert.equal(await exists(missing.key.replace(/\.db\.age$/, '.secrets.yaml.age')), false);
    assert.equal(await exists(missing.key), true, 'the snapshot is stored all the same');
  });

  it('refuses to store the secrets without age encryption: a permanent settings error before anything is sent', async () => {
    const s = settings({ ageRecipients: undefined });
    await assert.rejects(snapshotCommand(s), (error: Error) => {
      assert.match(
        error.message,
        /CLUSTER_SECRETS_DIR \(--cluster-secrets-dir\) needs AGE_RECIPIENTS \(--age-recipients\): the cluster's secrets are stored only age-encrypted, never in plaintext/,
      );
      assert.ok(isPermanentFailure(error));
      return true;
    });
    const listed = await rgw()
      .client()
      .send(
        new ListObjectsV2Command({
          Bucket: BUCKET,
          Prefix: `backups/prod/etcd-snapshot-${s.time!.replace(/:/g, '-')}`,
        }),
      );
    assert.equal(listed.KeyCount ?? 0, 0, 'nothing uploaded');
  });

  it('a required whole Secret that did not arrive fails with "Failed to get secret", naming it', () => {
    const json = JSON.stringify([{ kind: 'Secret', name: 'prod-talos-secrets', pathEnv: 'CLUSTER_SECRETS_DIR' }]);
    assert.throws(
      () => checkRequiredInputs(json, 'talos-backup', { CLUSTER_SECRETS_DIR: join(dir, 'no-such-dir') }),
      /^JobError: Failed to get secret: secret talos-backup\/prod-talos-secrets \(the Secret does not exist or has no keys\)$/,
    );
    checkRequiredInputs(json, 'talos-backup', { CLUSTER_SECRETS_DIR: secretDir });
  });

  it('a retried Job keeps its own complete secrets object; another backup’s object at the key is never overwritten', async () => {
    const s = settings();
    const first = await snapshotCommand(s);
    const again = await snapshotCommand({ ...s });
    assert.equal(again.alreadyUploaded, true);
    assert.deepEqual(again.secrets, first.secrets, 'the same object, not a second encryption');
    // Another backup (another uid) with the same key: the snapshot is refused before any secret is read or sent.
    await assert.rejects(snapshotCommand({ ...s, backupUid: 'someone-else' }), /an object already exists at s3:\/\//);
    // A foreign object at the secrets key alone: refused, and it stays.
    const t = settings();
    const foreignKey = `backups/prod/etcd-snapshot-${t.time!.replace(/:/g, '-')}.secrets.yaml.age`;
    await rgw()
      .client()
      .send(
        new PutObjectCommand({ Bucket: BUCKET, Key: foreignKey, Body: 'not ours', Metadata: { 'backup-uid': 'x' } }),
      );
    await assert.rejects(snapshotCommand(t), (error: Error) => {
      assert.match(
        error.message,
        /^Failed to upload snapshot to S3: an object already exists at s3:\/\/secrets-backups\/.*\.secrets\.yaml\.age; refusing to overwrite it$/,
      );
      return true;
    });
    assert.equal((await getObject(foreignKey)).bytes.toString(), 'not ours');
  });

  it('a damaged secrets object fails verify with a message saying so (and a wrong identity too), exit 2 from the CLI', async () => {
    const result = await snapshotCommand(settings());
    const secretsKey = result.secrets!.key!;
    const { bytes, metadata } = await getObject(secretsKey);
    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 5]! ^= 0x01;
    await rgw()
      .client()
      .send(new PutObjectCommand({ Bucket: BUCKET, Key: secretsKey, Body: damaged, Metadata: metadata }));
    await assert.rejects(
      verifyCommand({ ...s3(), key: result.key, secretsKey, ageIdentity: identityFile }),
      (error: Error) => {
        assert.match(
          error.message,
          /^Snapshot verification failed: the cluster secrets at s3:\/\/secrets-backups\/.*\.secrets\.yaml\.age have sha256 [0-9a-f]{64} \(\d+ bytes\), but [0-9a-f]{64} was recorded when they were stored: their bytes changed since \(damaged, truncated or replaced\)$/,
        );
        assert.ok(isPermanentFailure(error));
        return true;
      },
    );
    const env = { ...process.env, S3_BUCKET: BUCKET, S3_REGION: rgw().region, S3_ENDPOINT: rgw().endpoint };
    const cli = spawnSync(process.execPath, [MAIN, 'verify', '--key', result.key, '--secrets-key', secretsKey], {
      encoding: 'utf8',
      env,
      timeout: 60_000,
    });
    assert.equal(cli.status, 2, cli.stderr);
    assert.match(cli.stderr, /^Snapshot verification failed: the cluster secrets at .* have sha256 /);
    // Bytes that match their recorded hash but are not for this identity: the decryption says so.
    const fresh = await snapshotCommand(settings());
    const encrypter = new Encrypter();
    encrypter.addRecipient(await identityToRecipient(await generateIdentity()));
    const foreign = Buffer.from(await encrypter.encrypt('apiVersion: v1\nkind: Secret\n'));
    const stored = await getObject(fresh.secrets!.key!);
    await rgw()
      .client()
      .send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: fresh.secrets!.key!,
          Body: foreign,
          Metadata: { ...stored.metadata, sha256: createHash('sha256').update(foreign).digest('hex') },
        }),
      );
    await assert.rejects(
      verifyCommand({ ...s3(), key: fresh.key, secretsKey: fresh.secrets!.key!, ageIdentity: identityFile }),
      /^VerificationError: Snapshot verification failed: the cluster secrets at s3:\/\/secrets-backups\/.*\.secrets\.yaml\.age: the age identity does not match any of the backup's recipients$/,
    );
    // Without an identity only the stored bytes are checked, and they match their hash.
    const bytesOnly = await verifyCommand({ ...s3(), key: fresh.key, secretsKey: fresh.secrets!.key! });
    assert.equal(bytesOnly.secrets?.keys, undefined);
  });

  it('restore writes the decrypted secrets next to the snapshot file, owner-only, verified against the recorded hash', async () => {
    const result = await snapshotCommand(settings());
    const output = join(dir, `restored-${count}.db`);
    const restored = await restoreCommand({ ...s3(), key: result.key, ageIdentity: identityFile, output });
    assert.deepEqual(restored.secrets, {
      key: result.secrets!.key,
      output: `${output}.secrets.yaml`,
      keys: ['blob', 'controlplane.yaml', 'secrets.yaml'],
    });
    const file = await readFile(`${output}.secrets.yaml`, 'utf8');
    assert.equal((await stat(`${output}.secrets.yaml`)).mode & 0o777, 0o600);
    assert.equal((await stat(output)).mode & 0o777, 0o600);
    const manifest = parse(file) as { data: Record<string, string> };
    assert.equal(Buffer.from(manifest.data['secrets.yaml']!, 'base64').toString(), BUNDLE);
    // What `kubectl apply -f` gets is exactly the manifest that was stored.
    assert.equal(file, await decrypt((await getObject(result.secrets!.key!)).bytes));
    noSecretIn(JSON.stringify(restored), 'the restore result');

    // restore --backup's way: the hash from the status; one that does not match fails before the download, no file.
    const out2 = join(dir, `restored-${count}-b.db`);
    await assert.rejects(
      restoreCommand(
        { ...s3(), key: result.key, ageIdentity: identityFile, output: out2 },
        { secrets: { key: result.secrets!.key!, expected: { sha256: 'f'.repeat(64) } } },
      ),
      /Snapshot verification failed: the cluster secrets at .* but f{64} was recorded when they were stored/,
    );
    assert.equal(await stat(out2).catch(() => undefined), undefined);
    assert.equal(await stat(`${out2}.secrets.yaml`).catch(() => undefined), undefined);

    // A backup without secrets restores the snapshot alone.
    const plain = await snapshotCommand(settings({ clusterSecretsDir: undefined }));
    const out3 = join(dir, `restored-${count}-plain.db`);
    const alone = await restoreCommand({ ...s3(), key: plain.key, ageIdentity: identityFile, output: out3 });
    assert.equal(alone.secrets, undefined);
    assert.equal(await stat(`${out3}.secrets.yaml`).catch(() => undefined), undefined);
  });

  it('deletionPolicy Delete: the delete command removes the secrets object with the snapshot, only this backup’s', async () => {
    const s = settings();
    const result = await snapshotCommand(s);
    const secretsKey = result.secrets!.key!;
    const refused = deleteCommand({ ...s3(), key: result.key, secretsKey, backupUid: 'someone-else' });
    await assert.rejects(refused, /belongs to backup talos-backup\/with-secrets-\d+, not this one/);
    const deleted = await deleteCommand({ ...s3(), key: result.key, secretsKey, backupUid: s.backupUid });
    assert.deepEqual(deleted, {
      bucket: BUCKET,
      key: result.key,
      deleted: true,
      secrets: { key: secretsKey, deleted: true },
    });
    assert.equal(await exists(result.key), false);
    assert.equal(await exists(secretsKey), false);
    const again = await deleteCommand({ ...s3(), key: result.key, secretsKey, backupUid: s.backupUid });
    assert.equal(again.secrets?.deleted, false, 'already deleted counts as done');
  });

  it('Object Lock: the secrets object is locked like the snapshot, and the delete command keeps it', async () => {
    const s = settings({ bucket: LOCKED_BUCKET, objectLockMode: 'GOVERNANCE', objectLockRetainDays: '1' });
    const result = await snapshotCommand(s);
    const secretsKey = result.secrets!.key!;
    const retention = await rgw()
      .client()
      .send(new GetObjectRetentionCommand({ Bucket: LOCKED_BUCKET, Key: secretsKey }));
    assert.equal(retention.Retention?.Mode, 'GOVERNANCE');
    assert.ok(retention.Retention!.RetainUntilDate!.getTime() > Date.now() + 23 * 3600_000);
    const deleted = await deleteCommand({ ...s3(LOCKED_BUCKET), key: result.key, secretsKey, backupUid: s.backupUid });
    assert.ok(deleted.secrets?.protectedUntil, JSON.stringify(deleted));
    assert.equal(await exists(secretsKey, LOCKED_BUCKET), true);
  });

  it('the manifest is what kubectl apply takes, one line per value (a key can be cut out with sed)', () => {
    const text = secretManifest({
      name: 'prod-state',
      namespace: 'talos-backup',
      source: 'talosOperatorState',
      data: new Map([
        ['secretBundle', Buffer.from('x'.repeat(400))],
        ['config', Buffer.from('y')],
      ]),
    });
    const lines = text.split('\n');
    assert.match(lines[0]!, /^# talos-operator's state Secret, stored beside an etcd snapshot by talos-etcd-backup\./);
    assert.deepEqual(parse(text), {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'prod-state', namespace: 'talos-backup', labels: { 'talos.alperen.cloud/type': 'state' } },
      data: { config: 'eQ==', secretBundle: Buffer.from('x'.repeat(400)).toString('base64') },
    });
    assert.ok(lines.includes(`  secretBundle: ${Buffer.from('x'.repeat(400)).toString('base64')}`));
  });
});
