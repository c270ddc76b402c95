// The whole snapshot pipeline, for real: etcd → Talos API double (mTLS, 1 KiB messages) → verified stream →
// Ceph RGW, then `etcdctl snapshot restore` proves the stored object is a usable backup. Faults on either side
// must leave nothing at the final key and no pending multipart upload, and say clearly what went wrong.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { packageRoot } from '../../../src/api/crds.js';
import { snapshotCommand, verifyCommand } from '../../../src/job/commands.js';
import type { RawSettings } from '../../../src/contract/settings.js';
import { restoreSnapshot, startEtcd, type Etcd } from '../../harness/etcd.js';
import { createTalosPki, talosconfigYaml } from '../../harness/pki.js';
import { useRgw } from '../../harness/rgw.js';
import { startTalosDouble, type TalosDouble } from '../../doubles/talos.js';

const BUCKET = 'etcd-backups';
const UNUSED_ENDPOINT = '127.0.0.1:9'; // discard port: nothing listens, connections are refused

describe('snapshot pipeline: Talos API → S3, end to end', () => {
  const rgw = useRgw();
  let etcd: Etcd;
  let keys: Map<string, string>;
  let cp1: TalosDouble;
  let cp2: TalosDouble;
  let worker: TalosDouble;
  let dir: string;
  let talosconfig: string;
  let readerTalosconfig: string;
  let count = 0;

  before(async () => {
    etcd = await startEtcd();
    keys = await etcd.putMany(3000, 'registry/test/');
    const pki = await createTalosPki();
    const backup = await pki.clientCert(['os:etcd:backup']);
    const reader = await pki.clientCert(['os:reader']);
    cp1 = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    cp2 = await startTalosDouble({ pki, etcd, hostname: 'cp-2' });
    worker = await startTalosDouble({ pki, hostname: 'worker-1', controlPlane: false });
    dir = await mkdtemp(join(tmpdir(), 'pipeline-test-'));
    talosconfig = join(dir, 'talosconfig');
    readerTalosconfig = join(dir, 'talosconfig-reader');
    await writeFile(
      talosconfig,
      talosconfigYaml({
        context: 'prod',
        endpoints: [cp1.endpoint, cp2.endpoint],
        caPem: pki.caPem,
        certPem: backup.certPem,
        keyPem: backup.keyPem,
      }),
    );
    await writeFile(
      readerTalosconfig,
      talosconfigYaml({
        context: 'prod',
        endpoints: [cp1.endpoint],
        caPem: pki.caPem,
        certPem: reader.certPem,
        keyPem: reader.keyPem,
      }),
    );
    await rgw().createBucket(BUCKET);
    process.env.AWS_ACCESS_KEY_ID = rgw().accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = rgw().secretAccessKey;
  });
  after(async () => {
    await Promise.all([cp1?.stop(), cp2?.stop(), worker?.stop()]);
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Settings for one run, with a fresh key (each run gets its own second). */
  function settings(overrides: RawSettings = {}): RawSettings & { key: string } {
    count += 1;
    return {
      talosconfig,
      bucket: BUCKET,
      region: rgw().region,
      endpoint: rgw().endpoint,
      key: `talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-01T00-00-${String(count).padStart(2, '0')}Z.db`,
      partSize: '5',
      queueSize: '2',
      connectTimeout: '5',
      idleTimeout: '2',
      backupNamespace: 'talos-backup',
      backupName: `manual-${count}`,
      ...overrides,
    };
  }
  const objectExists = (key: string) =>
    rgw()
      .client()
      .send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))
      .then(
        () => true,
        () => false,
      );
  const pendingUploads = async () =>
    (
      await rgw()
        .client()
        .send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))
    ).Uploads ?? [];

  it('streams a snapshot into S3 that etcdctl restores with every key', async () => {
    const s = settings();
    const result = await snapshotCommand(s);
    assert.equal(result.key, s.key);
    assert.equal(result.endpoint, cp1.endpoint);
    assert.equal(result.size % 512, 32);
    assert.deepEqual(result.failedEndpoints, []);

    // Downloaded with an independent client, the object is the exact etcd snapshot, trailer included.
    const object = await rgw()
      .client()
      .send(new GetObjectCommand({ Bucket: BUCKET, Key: s.key }));
    const bytes = Buffer.from(await object.Body!.transformToByteArray());
    assert.equal(bytes.length, result.size);
    assert.equal(bytes.subarray(-32).toString('hex'), result.etcdSha256);
    const file = join(dir, 'restored.db');
    await writeFile(file, bytes);
    const restored = await restoreSnapshot(file);
    try {
      for (const [key, value] of keys) assert.equal(await restored.get(key), value, key);
    } finally {
      await restored.stop();
    }
    const verified = await verifyCommand({
      bucket: BUCKET,
      key: s.key,
      region: rgw().region,
      endpoint: rgw().endpoint,
    });
    assert.equal(verified.sha256, result.sha256);
  });

  it('pins the snapshot to a node with the node metadata', async () => {
    const result = await snapshotCommand(settings({ endpoints: cp1.endpoint, node: 'cp-1' }));
    assert.equal(result.node, 'cp-1');
    assert.equal(cp1.records.at(-1)?.node, 'cp-1', 'the node metadata reached apid');
    // A node apid cannot reach fails the call instead of being served by whichever node answers.
    const s = settings({ endpoints: cp1.endpoint, node: 'cp-9' });
    await assert.rejects(
      snapshotCommand(s),
      /^TalosError: Failed to take etcd snapshot: cannot reach the Talos API at node cp-9 via 127\.0\.0\.1:\d+/,
    );
    assert.equal(cp1.records.at(-1)?.node, 'cp-9');
  });

  const recovered: { name: string; fault: Parameters<TalosDouble['setFault']>[0]; message: RegExp }[] = [
    { name: 'the first endpoint is down', fault: undefined, message: /cannot reach the Talos API at 127\.0\.0\.1:9/ },
    {
      name: 'the first stream breaks mid-way',
      fault: { kind: 'break', afterBytes: 40_000, times: 1 },
      message: /Unavailable/,
    },
    {
      name: 'the first stream stalls',
      fault: { kind: 'stall', afterBytes: 40_000, times: 1 },
      message: /no more snapshot data from 127\.0\.0\.1:\d+ within 2s/,
    },
    {
      name: 'the first stream ends early with status OK',
      fault: { kind: 'truncate', afterBytes: 40_000, times: 1 },
      message: /Snapshot integrity check failed: the stream ended after 40000 bytes/,
    },
    {
      name: 'apid reports an upstream error inside the stream',
      fault: { kind: 'metadata-error', afterBytes: 20_000, times: 1 },
      message: /reported an error inside the stream/,
    },
  ];
  for (const r of recovered) {
    it(`fails over to the next endpoint and starts over when ${r.name}`, async () => {
      cp1.setFault(r.fault);
      const first = r.fault ? cp1.endpoint : UNUSED_ENDPOINT;
      const s = settings({ endpoints: `${first},${cp2.endpoint}` });
      try {
        const result = await snapshotCommand(s);
        assert.equal(result.endpoint, cp2.endpoint, 'the second endpoint served');
        assert.equal(result.failedEndpoints.length, 1);
        assert.match(result.failedEndpoints[0]!.message, r.message);
        const verified = await verifyCommand({
          bucket: BUCKET,
          key: s.key,
          region: rgw().region,
          endpoint: rgw().endpoint,
        });
        assert.equal(verified.size, result.size, 'the stored object is the whole snapshot from the second endpoint');
        assert.deepEqual(await pendingUploads(), []);
      } finally {
        cp1.setFault(undefined);
      }
    });
  }

  const failures: { name: string; setup?: () => void; overrides: () => RawSettings; message: RegExp }[] = [
    {
      name: 'a stream that ends early',
      setup: () => cp1.setFault({ kind: 'truncate', afterBytes: 100_000 }),
      overrides: () => ({ endpoints: cp1.endpoint }),
      message: /^Snapshot integrity check failed: the stream ended after 100000 bytes/,
    },
    {
      name: 'a corrupted byte',
      setup: () => cp1.setFault({ kind: 'corrupt', atByte: 50_000 }),
      overrides: () => ({ endpoints: cp1.endpoint }),
      message:
        /^Snapshot integrity check failed: the database's sha256 [0-9a-f]{64} does not match the snapshot's trailer/,
    },
    {
      name: 'every endpoint down',
      overrides: () => ({ endpoints: `${UNUSED_ENDPOINT},127.0.0.1:7` }),
      message:
        /^Failed to take etcd snapshot: cannot reach the Talos API at 127\.0\.0\.1:7 .*\(all 2 endpoints failed: 127\.0\.0\.1:9: /,
    },
    {
      name: 'a worker node (Unimplemented)',
      overrides: () => ({ endpoints: worker.endpoint }),
      message:
        /^Failed to take etcd snapshot: 127\.0\.0\.1:\d+ is not a control-plane node: etcd snapshots are only available on control-plane nodes/,
    },
    {
      name: 'a role that may not take snapshots',
      overrides: () => ({ talosconfig: readerTalosconfig }),
      message:
        /^Failed to take etcd snapshot: 127\.0\.0\.1:\d+ refused the snapshot: the talosconfig's role needs os:etcd:backup/,
    },
    {
      name: 'a missing bucket',
      overrides: () => ({ bucket: 'no-such-bucket' }),
      message: /^Failed to upload snapshot to S3: NoSuchBucket \(HTTP 404\)/,
    },
    {
      name: 'an S3 endpoint that is down',
      overrides: () => ({ endpoint: `http://${UNUSED_ENDPOINT}` }),
      message: /^Failed to upload snapshot to S3: .*ECONNREFUSED/,
    },
    {
      name: 'a talosconfig that is not one',
      setup: () => undefined,
      overrides: () => ({ talosconfig: join(packageRoot(), 'package.json') }),
      message: /^Failed to read talosconfig .*package\.json: talosconfig has no contexts/,
    },
  ];
  for (const f of failures) {
    it(`leaves nothing at the key and says why on ${f.name}`, async () => {
      f.setup?.();
      const s = settings(f.overrides());
      try {
        await assert.rejects(snapshotCommand(s), (error: unknown) => {
          assert.match((error as Error).message, f.message);
          return true;
        });
        assert.equal(await objectExists(s.key), false);
        assert.deepEqual(await pendingUploads(), []);
      } finally {
        cp1.setFault(undefined);
      }
    });
  }

  it('refuses to overwrite an object another backup wrote', async () => {
    const s = settings();
    await rgw()
      .client()
      .send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: s.key,
          Body: 'older backup',
          Metadata: { 'backup-uid': 'someone-else', 'backup-name': 'other', 'backup-namespace': 'talos-backup' },
        }),
      );
    await assert.rejects(
      snapshotCommand(s),
      /^S3UploadError: Failed to upload snapshot to S3: an object already exists at s3:\/\/etcd-backups\/.* by backup talos-backup\/other; refusing to overwrite it$/,
    );
    const kept = await rgw()
      .client()
      .send(new GetObjectCommand({ Bucket: BUCKET, Key: s.key }));
    assert.equal(await kept.Body!.transformToString(), 'older backup');
  });

  /** Runs the real command in a child process. */
  function cli(
    args: string[],
    env: Record<string, string>,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [join(packageRoot(), 'dist/src/main.js'), ...args], {
        env: { PATH: process.env.PATH ?? '', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  it('talos-etcd-backup snapshot prints one JSON line; verify confirms it', async () => {
    const env = {
      TALOSCONFIG: talosconfig,
      S3_BUCKET: BUCKET,
      S3_REGION: rgw().region,
      S3_ENDPOINT: rgw().endpoint,
      CLUSTER_NAME: 'prod',
      BACKUP_TIME: '2026-02-03T04:05:06Z',
      AWS_ACCESS_KEY_ID: rgw().accessKeyId,
      AWS_SECRET_ACCESS_KEY: rgw().secretAccessKey,
    };
    const run = await cli(['snapshot'], env);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const result = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(result.key, 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-02-03T04-05-06Z.db');
    for (const field of ['size', 'sha256', 'etcdSha256', 'node', 'durationMs']) assert.ok(field in result, field);
    const verify = await cli(['verify', '--key', String(result.key)], env);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal(JSON.parse(verify.stdout).verified, true);
  });

  it('a failure is one line on stderr, exit code 2 when no retry can help, and never shows a secret', async () => {
    const secret = 'Sup3rSecretKeyThatMustNeverBePrinted';
    const env = {
      TALOSCONFIG: talosconfig,
      S3_BUCKET: BUCKET,
      S3_REGION: rgw().region,
      S3_ENDPOINT: rgw().endpoint,
      CLUSTER_NAME: 'prod',
      BACKUP_TIME: '2026-02-03T04:05:07Z',
      AWS_ACCESS_KEY_ID: rgw().accessKeyId,
      AWS_SECRET_ACCESS_KEY: secret,
    };
    const run = await cli(['snapshot'], env);
    assert.equal(run.code, 2, 'a wrong secret key fails the same way on every retry');
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /^Failed to upload snapshot to S3: SignatureDoesNotMatch \(HTTP 403\)[^\n]*\n$/);
    assert.ok(!run.stderr.includes(secret) && !run.stderr.includes(rgw().accessKeyId));
  });

  it('a configuration mistake lists every problem and exits 2', async () => {
    const run = await cli(['snapshot'], { TALOSCONFIG: join(dir, 'missing') });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /S3_BUCKET \(--bucket\) is required/);
    assert.match(run.stderr, /S3_REGION \(--region\) is required/);
    assert.match(run.stderr, /CLUSTER_NAME \(--cluster\) is required/);
    assert.match(run.stderr, /cannot read the talosconfig .*missing: ENOENT/);
  });
});
