// The Job the backup hook emits, run for real: its container's command, args and env, resolved as the kubelet
// would (Secrets, volumes, the service-account token) against a local Kubernetes API that enforces the RBAC of
// the Role the hook emitted, streams a real etcd's snapshot through the Talos API double into Ceph RGW, reports
// through the API, and the hook turns the report into Ready; etcdctl restores the object with every key.

import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { API_VERSION, BACKUP_KIND, JOB_KEY } from '../../src/api/constants.js';
import { packageRoot } from '../../src/api/crds.js';
import type { BackupStatus } from '../../src/api/types.js';
import type { JobImage } from '../../src/backup/job.js';
import { finalizeBackup, syncBackup } from '../../src/backup/sync.js';
import type { KubernetesObject } from '../../src/metacontroller/types.js';
import { restoreSnapshot, startEtcd, type Etcd } from '../support/etcd.js';
import { startFakeKubeApi, type FakeKubeApi, type KubeObject } from '../support/kube-api.js';
import { prepareContainer, runContainer } from '../support/kubelet.js';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createTalosPki, talosconfigYaml, type TalosPki } from '../support/pki.js';
import { useRgw } from '../support/rgw.js';
import { startTalosDouble, type TalosDouble } from '../support/talos-double.js';
import { generateIdentity, identityToRecipient } from 'age-encryption';

const NAMESPACE = 'talos-backup';
const BUCKET = 'etcd-backups';
const IMAGE: JobImage = { image: 'talos-etcd-backup:test', pullPolicy: 'IfNotPresent', pullSecrets: [] };
const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('the snapshot Job, run as the kubelet would run it', () => {
  const rgw = useRgw();
  let etcd: Etcd;
  let keys: Map<string, string>;
  let pki: TalosPki;
  let cp: TalosDouble;
  let big: TalosDouble;
  let api: FakeKubeApi;
  let dir: string;
  let talosconfig: string;
  let bigTalosconfig: string;

  before(async () => {
    etcd = await startEtcd();
    keys = await etcd.putMany(2000, 'registry/job/');
    pki = await createTalosPki();
    const client = await pki.clientCert(['os:etcd:backup']);
    cp = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    // 48 MiB of synthetic snapshot (valid trailer) for the progress test: several 5 MiB parts.
    const db = Buffer.alloc(48 * 1024 * 1024, 7);
    big = await startTalosDouble({ pki, hostname: 'cp-big', source: Buffer.concat([db, createHash('sha256').update(db).digest()]) });
    talosconfig = talosconfigYaml({ context: 'prod', endpoints: [cp.endpoint], caPem: pki.caPem, certPem: client.certPem, keyPem: client.keyPem });
    bigTalosconfig = talosconfigYaml({ context: 'prod', endpoints: [big.endpoint], caPem: pki.caPem, certPem: client.certPem, keyPem: client.keyPem });
    api = await startFakeKubeApi();
    await rgw().createBucket(BUCKET);
    dir = await mkdtemp(join(tmpdir(), 'job-run-test-'));
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'etcd-backup', namespace: NAMESPACE }, data: { config: b64(talosconfig) } });
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'etcd-backup-big', namespace: NAMESPACE }, data: { config: b64(bigTalosconfig) } });
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's3-credentials', namespace: NAMESPACE }, data: { 'access-key-id': b64(rgw().accessKeyId), 'secret-access-key': b64(rgw().secretAccessKey) } });
  });
  after(async () => {
    await Promise.all([cp?.stop(), big?.stop(), api?.close()]);
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  let count = 0;
  /** A new TalosEtcdBackup in the API, as kubectl apply would create it. */
  function createBackup(overrides: { talosconfigSecret?: string; s3Secret?: string } = {}): KubeObject {
    count += 1;
    return api.put({
      apiVersion: API_VERSION,
      kind: BACKUP_KIND,
      metadata: { name: `job-run-${count}`, namespace: NAMESPACE, uid: randomUUID(), generation: 1, creationTimestamp: `2026-11-21T10:00:0${count}Z` },
      spec: {
        talosConfigSecretRef: { name: overrides.talosconfigSecret ?? 'etcd-backup', key: 'config' },
        clusterName: 'prod',
        backupStorage: {
          s3: {
            bucket: BUCKET,
            region: rgw().region,
            endpoint: rgw().endpoint,
            accessKeyID: { name: overrides.s3Secret ?? 's3-credentials', key: 'access-key-id' },
            secretAccessKey: { name: overrides.s3Secret ?? 's3-credentials', key: 'secret-access-key' },
          },
        },
      },
    });
  }

  const backupNow = (backup: KubeObject) => api.get(API_VERSION, BACKUP_KIND, NAMESPACE, backup.metadata.name)! as unknown as KubernetesObject;

  /**
   * Does what Metacontroller does with the hook's first answer (creates the attachments, the identity objects
   * in the API), then what the Job controller and kubelet do: runs the Job's container.
   */
  async function runJob(backup: KubeObject, opts: { withoutRole?: boolean; env?: Record<string, string> } = {}) {
    const { response } = syncBackup({ object: backupNow(backup), attachments: {}, related: {} }, new Date('2026-11-21T10:01:00Z'), IMAGE);
    const job = response.attachments.find((a) => a.kind === 'Job')!;
    for (const object of response.attachments.filter((a) => a.kind !== 'Job' && !(opts.withoutRole && a.kind === 'Role'))) api.put(object as KubeObject);
    const template = (job.spec as { template: Parameters<typeof prepareContainer>[0] }).template;
    const prepared = await prepareContainer(template, { api, namespace: NAMESPACE, imagePaths: { '/app': packageRoot() } });
    try {
      assert.deepEqual(prepared.configErrors, [], 'the kubelet would start the container');
      Object.assign(prepared.env, opts.env);
      const started = Date.now();
      const result = await runContainer(prepared, { timeoutMs: 120_000 });
      return { job, result, seconds: (Date.now() - started) / 1000 };
    } finally {
      await prepared.cleanup();
    }
  }

  /** The hook's answer once the Job finished, as Metacontroller would ask (the Job's status as the Job controller sets it). */
  function syncAfter(backup: KubeObject, job: KubernetesObject, jobStatus: Record<string, unknown>) {
    const observedJob = { ...job, metadata: { ...job.metadata, uid: randomUUID() }, status: jobStatus };
    return syncBackup({ object: backupNow(backup), attachments: { [JOB_KEY]: { [job.metadata.name]: observedJob } }, related: {} }, new Date('2026-11-21T10:02:00Z'), IMAGE);
  }

  it('uploads a restorable snapshot, reports it, and the backup becomes Ready', async () => {
    const backup = createBackup();
    const { job, result } = await runJob(backup);
    assert.equal(result.code, 0, result.stderr);
    const printed = JSON.parse(result.stdout) as { key: string; size: number; sha256: string };
    assert.match(printed.key, /^talos-operator-etcd-backups\/prod\/etcd-snapshot-2026-11-21T10-00-0\dZ\.db$/);

    const report = (backupNow(backup).status as BackupStatus).report!;
    assert.equal(report.state, 'Succeeded');
    assert.equal(report.snapshot?.key, printed.key);
    assert.match(report.pod ?? '', /-local$/);

    const complete = { succeeded: 1, conditions: [{ type: 'Complete', status: 'True', lastTransitionTime: '2026-11-21T10:01:30Z' }] };
    const { response, outcome } = syncAfter(backup, job, complete);
    assert.equal(outcome, 'succeeded');
    const status = response.status as BackupStatus;
    assert.equal(status.phase, 'Succeeded');
    assert.equal(status.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    assert.deepEqual({ key: status.snapshot?.key, size: status.snapshot?.size, sha256: status.snapshot?.sha256 }, { key: printed.key, size: printed.size, sha256: printed.sha256 });

    // The only API calls the Job made: patches of its own backup's status, all allowed.
    const calls = api.requests.filter((r) => r.user === `system:serviceaccount:${NAMESPACE}:${job.metadata.name}`);
    assert.ok(calls.length >= 2, 'a Running report and a Succeeded report');
    for (const call of calls) assert.deepEqual([call.verb, call.resource, call.subresource, call.name, call.status], ['patch', 'talosetcdbackups', 'status', backup.metadata.name, 200]);

    // Downloaded with an independent client and restored by etcdctl: every key is there.
    const object = await rgw().client().send(new GetObjectCommand({ Bucket: BUCKET, Key: printed.key }));
    const file = join(dir, `${backup.metadata.name}.db`);
    await writeFile(file, Buffer.from(await object.Body!.transformToByteArray()));
    const restored = await restoreSnapshot(file);
    try {
      for (const [key, value] of keys) assert.equal(await restored.get(key), value, key);
    } finally {
      await restored.stop();
    }
  });

  it('a missing Secret fails the backup at once with "Failed to get secret", no retry, nothing uploaded', async () => {
    const backup = createBackup({ s3Secret: 'no-such-secret' });
    const { job, result, seconds } = await runJob(backup);
    assert.equal(result.code, 2, 'exit code 2: the podFailurePolicy fails the Job without retries');
    assert.ok(seconds < 20, `failed in ${seconds}s`);
    assert.match(result.stderr, /^Failed to get secret: secret talos-backup\/no-such-secret key access-key-id/);
    const report = (backupNow(backup).status as BackupStatus).report!;
    assert.equal(report.state, 'Failed');
    assert.equal(report.retryable, false);

    // The hook records the failure even before the Job controller marks the Job failed.
    const { response } = syncAfter(backup, job, { active: 1 });
    const status = response.status as BackupStatus;
    assert.equal(status.phase, 'Failed');
    assert.match(status.message ?? '', /^Failed to get secret: secret talos-backup\/no-such-secret key access-key-id .*secret-access-key/);
    assert.equal(status.conditions?.find((c) => c.type === 'Failed')?.status, 'True');
    assert.equal(status.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
    assert.deepEqual((await rgw().client().send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))).Uploads ?? [], []);
  });

  it('a talosconfig Secret without the key fails the same way, naming it', async () => {
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'talosconfig-wrong-key', namespace: NAMESPACE }, data: { talosconfig: b64(talosconfig) } });
    const backup = createBackup({ talosconfigSecret: 'talosconfig-wrong-key' });
    const { result } = await runJob(backup);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /^Failed to get secret: secret talos-backup\/talosconfig-wrong-key key config \(the Secret does not exist or has no key "config"\)/);
  });

  it('without the Role the hook emits, the Job may not write its report: the RBAC is what makes it work', async () => {
    const backup = createBackup();
    const { job, result } = await runJob(backup, { withoutRole: true });
    assert.equal(result.code, 2, 'a Job that may not report fails without retries');
    assert.match(result.stderr, /^the Kubernetes API answered 403: .*cannot patch resource "talosetcdbackups\/status"/);
    assert.ok(api.requests.some((r) => r.user.endsWith(`:${job.metadata.name}`) && r.status === 403));
    assert.equal(backupNow(backup).status, undefined, 'nothing was written');
  });

  it('reports progress while a larger snapshot streams, at a bounded rate', async () => {
    const backup = createBackup({ talosconfigSecret: 'etcd-backup-big' });
    const intervalSeconds = 0.1;
    const before = api.requests.length;
    const { job, result, seconds } = await runJob(backup, { env: { PROGRESS_INTERVAL_SECONDS: String(intervalSeconds), S3_PART_SIZE_MIB: '5' } });
    assert.equal(result.code, 0, result.stderr);
    const patches = api.requests.slice(before).filter((r) => r.user.endsWith(`:${job.metadata.name}`) && r.verb === 'patch');
    // Running at start, then at most one per interval while streaming, then Succeeded.
    assert.ok(patches.length >= 3, `expected progress reports between start and end, got ${patches.length} patches`);
    assert.ok(patches.length <= seconds / intervalSeconds + 3, `${patches.length} patches in ${seconds}s exceed one per ${intervalSeconds}s`);
    const head = await rgw().client().send(new HeadObjectCommand({ Bucket: BUCKET, Key: JSON.parse(result.stdout).key }));
    assert.equal((backupNow(backup).status as BackupStatus).report?.bytesUploaded, head.ContentLength);
  });

  it('a deleted Job (SIGTERM to its pod) aborts the multipart upload: nothing at the key, nothing pending', async () => {
    const backup = createBackup({ talosconfigSecret: 'etcd-backup-big' });
    const { response } = syncBackup({ object: backupNow(backup), attachments: {}, related: {} }, new Date('2026-11-21T10:01:00Z'), IMAGE);
    for (const object of response.attachments.filter((a) => a.kind !== 'Job')) api.put(object as KubeObject);
    const job = response.attachments.find((a) => a.kind === 'Job')!;
    const prepared = await prepareContainer((job.spec as { template: Parameters<typeof prepareContainer>[0] }).template, { api, namespace: NAMESPACE, imagePaths: { '/app': packageRoot() } });
    // The stream stalls after two 5 MiB parts' worth: the multipart upload exists, the snapshot is not complete.
    big.setFault({ kind: 'stall', afterBytes: 12 * 1024 * 1024, times: 1 });
    try {
      const child = spawn(prepared.command[0]!, prepared.command.slice(1), { env: { ...prepared.env, S3_PART_SIZE_MIB: '5' }, cwd: prepared.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const deadline = Date.now() + 30_000;
      const pending = async () => (await rgw().client().send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))).Uploads ?? [];
      while ((await pending()).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.equal((await pending()).length, 1, 'a multipart upload is in progress');
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      assert.equal(code, 1, stderr);
      assert.match(stderr, /stopped \(SIGTERM\); the multipart upload was aborted/);
      assert.deepEqual(await pending(), []);
      assert.equal((backupNow(backup).status as BackupStatus).report?.state, 'Failed');
    } finally {
      big.setFault(undefined);
      await prepared.cleanup();
    }
  });

  it('deletionPolicy Delete: the delete Job the finalize hook emits removes the object, then the backup is let go', async () => {
    const backup = createBackup();
    const { job, result } = await runJob(backup);
    assert.equal(result.code, 0, result.stderr);
    const key = (JSON.parse(result.stdout) as { key: string }).key;
    // The backup as the controller left it (Succeeded), now being deleted with deletionPolicy Delete.
    const done = syncAfter(backup, job, { succeeded: 1, conditions: [{ type: 'Complete', status: 'True' }] }).response.status;
    const deleting = { ...backupNow(backup), status: done, spec: { ...(backupNow(backup).spec as object), deletionPolicy: 'Delete' } } as KubernetesObject;
    deleting.metadata.deletionTimestamp = '2026-11-21T11:00:00Z';
    const held = finalizeBackup({ object: deleting, attachments: {}, related: {}, finalizing: true }, IMAGE);
    assert.equal(held.response.finalized, false);
    const deleteJob = held.response.attachments[0]!;
    const template = (deleteJob.spec as { template: Parameters<typeof prepareContainer>[0] }).template;
    const prepared = await prepareContainer(template, { api, namespace: NAMESPACE, imagePaths: { '/app': packageRoot() } });
    try {
      assert.deepEqual(prepared.configErrors, []);
      assert.equal(prepared.env.KUBERNETES_SERVICE_ACCOUNT_DIR, undefined, 'the delete Job gets no API token');
      const run = await runContainer(prepared, { timeoutMs: 60_000 });
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual(JSON.parse(run.stdout), { bucket: BUCKET, key, deleted: true });
    } finally {
      await prepared.cleanup();
    }
    const gone = await rgw().client().send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })).then(() => false, () => true);
    assert.ok(gone, 'the object is deleted');
    const observed = { ...deleteJob, status: { succeeded: 1, conditions: [{ type: 'Complete', status: 'True' }] } };
    const released = finalizeBackup({ object: deleting, attachments: { [JOB_KEY]: { [deleteJob.metadata.name]: observed } }, related: {}, finalizing: true }, IMAGE);
    assert.equal(released.response.finalized, true);
    assert.deepEqual(released.response.attachments, []);
  });

  it('every protection at once: zstd, age, Object Lock and verify with the identity Secret; Ready, locked, and kept when deleted', async () => {
    const locked = 'etcd-backups-locked';
    await rgw().createBucket(locked, { objectLock: true });
    const identity = await generateIdentity();
    const recipient = await identityToRecipient(identity);
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'etcd-backup-age', namespace: NAMESPACE }, data: { 'identity.txt': b64(`# the backups' identity\n${identity}\n`) } });
    const base = createBackup();
    const backup = api.put({
      ...base,
      spec: {
        ...(base.spec as Record<string, unknown>),
        backupStorage: { s3: { ...((base.spec as { backupStorage: { s3: Record<string, unknown> } }).backupStorage.s3), bucket: locked, objectLock: { mode: 'COMPLIANCE', retainDays: 1 } } },
        compression: 'zstd',
        encryption: { age: { recipients: [recipient], identitySecretRef: { name: 'etcd-backup-age', key: 'identity.txt' } } },
        verify: true,
        deletionPolicy: 'Delete',
      },
    });
    const { job, result } = await runJob(backup);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(!result.stdout.includes(identity) && !result.stderr.includes(identity), 'the identity never appears in the output');
    const complete = { succeeded: 1, conditions: [{ type: 'Complete', status: 'True', lastTransitionTime: '2026-11-21T10:01:30Z' }] };
    const { response } = syncAfter(backup, job, complete);
    const status = response.status as BackupStatus;
    assert.equal(status.phase, 'Succeeded');
    assert.match(status.snapshot!.key, /\.db\.zst\.age$/);
    assert.equal(status.snapshot!.compression, 'zstd');
    assert.equal(status.snapshot!.encrypted, true);
    assert.equal(status.snapshot!.verified, true);
    assert.equal(status.snapshot!.verification, 'Full');
    assert.ok((status.snapshot!.keys ?? 0) >= keys.size);
    assert.ok(Date.parse(status.snapshot!.retainUntil!) > Date.now() + 23 * 3600_000);
    assert.match(status.conditions!.find((c) => c.type === 'Ready')!.message, /age-encrypted, locked until .*; verified: read back, etcd trailer and database structure sound \(revision \d+, \d+ keys\)$/);
    assert.ok(!JSON.stringify(status).includes(identity), 'the identity never appears in the status');

    // Deleting it with deletionPolicy Delete: the lock holds, so the backup goes at once and the object stays.
    api.put({ ...backupNow(backup), status: status as Record<string, unknown> } as KubeObject);
    const deleting = { ...backupNow(backup), metadata: { ...backupNow(backup).metadata, deletionTimestamp: '2026-11-21T10:05:00Z' } };
    const finalized = finalizeBackup({ object: deleting, attachments: {}, related: {}, finalizing: true }, IMAGE, new Date());
    assert.equal(finalized.outcome, 'kept-locked');
    assert.equal(finalized.response.finalized, true);
    assert.deepEqual(finalized.response.attachments, []);
    const head = await rgw().client().send(new HeadObjectCommand({ Bucket: locked, Key: status.snapshot!.key }));
    assert.equal(head.ContentLength, status.snapshot!.size);
  });
});
