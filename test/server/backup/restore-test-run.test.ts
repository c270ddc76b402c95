// Restore tests run for real: a TalosEtcdBackup with spec.restoreTest, once Ready, gets a restore-test Job from the
// backup hook; the real Job controller makes its pod and the test kubelet runs its four containers as local processes
// (this checkout for fetch and check; etcd's image mapped to the etcd 3.6 binaries built here for etcdutl and the
// etcd sidecar). The pod downloads the backup from Ceph RGW, verifies it against the status, restores it with
// etcdutl, starts that etcd on a unix socket in its emptyDir and questions it; it reports through the real RBAC, and
// the hook turns the report into status.restoreTest and the RestoreTested condition. A good backup passes; a damaged
// object, a wrong age identity and a record whose key count differs each fail with a message that says which,
// never touching Ready.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { RESTORE_TEST_REQUEST_ANNOTATION } from '../../../src/api/constants.js';
import type { BackupStatus, RestoreTestStatus } from '../../../src/api/types.js';
import { BUCKET, NAMESPACE, useJobCluster, type JobCluster, type Obj } from './job-cluster.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const b64 = (text: string) => Buffer.from(text).toString('base64');
const conditionOf = (status: BackupStatus | undefined, type: string) =>
  (status?.conditions ?? []).find((c) => c.type === type);

describe('restore tests on a real control plane, run by the test kubelet', () => {
  const cluster = useJobCluster();
  let c: JobCluster;

  /** A backup taken, verified and recorded as Ready, its snapshot Job gone, as Metacontroller leaves it. */
  async function readyBackup(spec: (s: Record<string, any>) => Record<string, any>): Promise<Obj> {
    const backup = await c.createBackup({ spec });
    const name = backup.metadata.name;
    const { jobName, run } = await c.runJob(backup);
    assert.equal(run.exitCode, 0, run.stderr);
    await c.jobFinished(jobName);
    const { response } = await c.sync(name);
    assert.equal((response.status as BackupStatus).phase, 'Succeeded', JSON.stringify(response.status));
    await c.writeStatus(name, response.status);
    const { response: settled } = await c.sync(name);
    assert.equal(
      settled.attachments.some((a) => a.metadata.name === jobName),
      false,
      'the snapshot Job is no longer attached',
    );
    await c.deleteAttachments(await c.backupNow(name));
    return c.backupNow(name);
  }

  /** Metacontroller's part of one restore test: the attachments made, the Job run, the outcome recorded. */
  async function restoreTest(name: string): Promise<{ test: RestoreTestStatus; status: BackupStatus; pod: string }> {
    const first = await c.sync(name);
    const job = first.response.attachments.find((a) => a.kind === 'Job');
    assert.ok(job, `a restore-test Job is attached: ${JSON.stringify(first.response.status)}`);
    assert.equal(job.metadata.name, `${name}-restore-test`);
    const asked = (first.response.status as BackupStatus).restoreTest!;
    assert.equal(asked.result, 'Running');
    assert.equal(job.metadata.annotations?.[RESTORE_TEST_REQUEST_ANNOTATION], asked.requestedAt);
    await c.writeStatus(name, first.response.status);
    await c.applyAttachments(await c.backupNow(name), first.response.attachments);
    await c.jobFinished(job.metadata.name, 180_000);
    const run = await c.kubelet.waitForPod({ namespace: NAMESPACE, job: job.metadata.name }, 'Terminated', 60_000);
    const judged = await c.sync(name);
    const status = judged.response.status as BackupStatus;
    const test = status.restoreTest!;
    assert.notEqual(test.result, 'Running', `the outcome is recorded: ${JSON.stringify(test)}\n${run.stderr}`);
    assert.equal(judged.restoreTest, test.result === 'Succeeded' ? 'succeeded' : 'failed');
    assert.ok(
      judged.response.attachments.some((a) => a.kind === 'Job'),
      'the Job stays attached until its outcome is recorded',
    );
    await c.writeStatus(name, judged.response.status);
    const after = await c.sync(name);
    assert.deepEqual(after.response.attachments, [], 'once recorded, nothing is attached: the Job goes');
    assert.equal(after.restoreTest, undefined, 'the outcome is counted once');
    await c.deleteAttachments(await c.backupNow(name));
    process.stdout.write(`# ${name}: ${test.result}: ${test.message}\n`);
    return { test, status, pod: run.name };
  }

  it('a good backup passes: restored into etcd 3.6, it serves the recorded revision and every key; Ready unchanged', async () => {
    c = cluster();
    const backup = await readyBackup((s) => ({ ...s, verify: true, restoreTest: {} }));
    const name = backup.metadata.name;
    const recorded = (backup.status as BackupStatus).snapshot!;
    const readyBefore = conditionOf(backup.status as BackupStatus, 'Ready');
    const { test, status, pod } = await restoreTest(name);
    assert.equal(test.result, 'Succeeded', test.message);
    assert.equal(test.etcdImage, 'gcr.io/etcd-development/etcd:v3.6.16', 'the CRD default');
    assert.equal(test.etcdVersion, '3.6.16');
    assert.equal(test.revision, recorded.revision, 'no lease expired: the revision the backup recorded');
    assert.equal(test.keys, recorded.keys);
    assert.equal(test.servedKeys, c.keys.size, 'a consistent read at the backup revision serves every key written');
    assert.ok(test.durationSeconds !== undefined && test.durationSeconds >= 0);
    assert.match(test.message!, /served revision \d+ and 2000 keys at the backup's revision/);
    assert.deepEqual(conditionOf(status, 'Ready'), readyBefore, 'Ready is as it was');
    assert.equal(conditionOf(status, 'RestoreTested')?.status, 'True');

    const run = c.kubelet.pod({ namespace: NAMESPACE, name: pod })!;
    assert.deepEqual(
      run.initContainers.map((i) => [i.name, i.sidecar, i.exitCode === 0 || i.sidecar]),
      [
        ['fetch', false, true],
        ['etcdutl', false, true],
        ['etcd', true, true],
      ],
      run.initContainers.map((i) => `${i.name}: ${i.stderr.slice(-2000)}`).join('\n'),
    );
    assert.equal(run.exitCode, 0, run.stderr);
    const etcd = run.initContainers.find((i) => i.name === 'etcd')!;
    assert.ok(
      etcd.command.every((arg) => !/--listen-(client|peer)-urls=(?!unix:)/.test(arg)),
      `etcd listens on unix sockets only: ${etcd.command.join(' ')}`,
    );
    assert.equal(etcd.restarts, 0);

    const events = await c.cp.kubectl(['get', 'events.events.k8s.io', '-n', NAMESPACE, '-o', 'json']);
    const reasons = (JSON.parse(events.stdout) as { items: Obj[] }).items
      .filter((e) => e.regarding?.name === name)
      .map((e) => e.reason);
    assert.ok(reasons.includes('RestoreTestStarted') && reasons.includes('RestoreTestSucceeded'), reasons.join());
  });

  it('a backup damaged after upload fails the test, saying the stored bytes differ; Ready unchanged', async () => {
    const backup = await readyBackup((s) => ({ ...s, verify: true, restoreTest: {} }));
    const name = backup.metadata.name;
    const { key } = (backup.status as BackupStatus).snapshot!;
    const s3 = c.rgw.client();
    const stored = Buffer.from(
      await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray(),
    );
    const middle = Math.floor(stored.length / 2);
    stored[middle] = stored[middle]! ^ 0xff;
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: stored }));
    const { test, status } = await restoreTest(name);
    assert.equal(test.result, 'Failed');
    assert.match(test.message!, /sha256/i, test.message);
    assert.equal(conditionOf(status, 'Ready')?.status, 'True', 'a failed restore test never changes Ready');
    assert.equal(conditionOf(status, 'RestoreTested')?.status, 'False');
    assert.equal(conditionOf(status, 'RestoreTested')?.reason, 'RestoreTestFailed');
  });

  it('a wrong age identity fails the test, saying the identity does not decrypt the backup', async () => {
    const identity = await generateIdentity();
    const wrong = await generateIdentity();
    for (const [secret, id] of [
      ['restore-right-age', identity],
      ['restore-wrong-age', wrong],
    ] as const) {
      await c.core.createNamespacedSecret({
        namespace: NAMESPACE,
        body: { metadata: { name: secret }, data: { 'identity.txt': b64(`${id}\n`) } },
      });
    }
    const recipient = await identityToRecipient(identity);
    const backup = await readyBackup((s) => ({
      ...s,
      verify: true,
      encryption: {
        age: {
          recipients: [recipient],
          identitySecretRef: { name: 'restore-right-age', key: 'identity.txt' },
        },
      },
      restoreTest: { identitySecretRef: { name: 'restore-wrong-age', key: 'identity.txt' } },
    }));
    const { test, status } = await restoreTest(backup.metadata.name);
    assert.equal(test.result, 'Failed');
    assert.match(test.message!, /identit/i, test.message);
    assert.ok(!JSON.stringify(status).includes('AGE-SECRET-KEY'), 'no identity in the status');
  });

  it('an encrypted backup with its cluster secrets beside it: the test decrypts and checks both', async () => {
    const identity = await generateIdentity();
    await c.core.createNamespacedSecret({
      namespace: NAMESPACE,
      body: { metadata: { name: 'restore-secrets-age' }, data: { 'identity.txt': b64(`${identity}\n`) } },
    });
    await c.core.createNamespacedSecret({
      namespace: NAMESPACE,
      body: { metadata: { name: 'restore-bundle' }, data: { 'secrets.yaml': b64('cluster:\n  id: test\n') } },
    });
    const recipient = await identityToRecipient(identity);
    const backup = await readyBackup((s) => ({
      ...s,
      verify: true,
      encryption: {
        age: { recipients: [recipient], identitySecretRef: { name: 'restore-secrets-age', key: 'identity.txt' } },
      },
      clusterSecretsRef: { name: 'restore-bundle' },
      restoreTest: {},
    }));
    const stored = (backup.status as BackupStatus).snapshot!.secrets;
    assert.ok(stored?.key, JSON.stringify(stored));
    const { test, pod } = await restoreTest(backup.metadata.name);
    assert.equal(test.result, 'Succeeded', test.message);
    const fetch = c.kubelet.pod({ namespace: NAMESPACE, name: pod })!.initContainers.find((i) => i.name === 'fetch')!;
    assert.equal((JSON.parse(fetch.stdout) as { secretsKeys?: number }).secretsKeys, 1, fetch.stdout);
    assert.ok(!fetch.stdout.includes('cluster:'), 'no secret value in the output');
  });

  it('a record whose key count differs from the snapshot fails the test, naming both counts', async () => {
    const backup = await readyBackup((s) => ({ ...s, verify: true, restoreTest: {} }));
    const name = backup.metadata.name;
    const status = backup.status as BackupStatus;
    const keys = status.snapshot!.keys!;
    await c.writeStatus(name, { ...status, snapshot: { ...status.snapshot!, keys: keys + 5 } });
    const { test } = await restoreTest(name);
    assert.equal(test.result, 'Failed');
    assert.match(test.message!, new RegExp(`holds ${keys} keys \\(revisions\\), the backup recorded ${keys + 5}`));
  });
});
