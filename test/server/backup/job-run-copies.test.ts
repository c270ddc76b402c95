// Copies (spec.backupStorage.copies) through the Jobs the hooks emit, on a real control plane: the copy is another
// RGW user's bucket (another trust domain, its own Secret, Object Lock COMPLIANCE), the test kubelet resolves the
// copy's Secret refs into S3_COPY_1_*, the pod stores the same snapshot in both buckets in one pass and each restores
// with etcdutl; the status with status.snapshot.copies[] is kept by the CRD as written; the Job's ServiceAccount
// reads no Secret; no key of either user is in the pod's output, the status or the Events. A required copy without
// its Secret fails at once, storing nothing anywhere. deletionPolicy Delete: the delete Job removes the primary and
// an unlocked copy, and keeps (and reports) a locked copy.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { BACKUP_PLURAL, GROUP, JOB_KEY, SCHEDULED_TIME_ANNOTATION, VERSION } from '../../../src/api/constants.js';
import type { BackupStatus, StoredCopy } from '../../../src/api/types.js';
import { finalizeBackup } from '../../../src/server/backup/finalize.js';
import type { RgwUser } from '../../harness/rgw.js';
import { restoreSnapshot } from '../../harness/etcd.js';
import {
  BUCKET,
  IMAGE,
  NAMESPACE,
  mergePatch,
  useJobCluster,
  type AuditEvent,
  type JobCluster,
  type Obj,
} from './job-cluster.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const b64 = (text: string) => Buffer.from(text).toString('base64');
/** The other trust domain's buckets: Object Lock (COMPLIANCE) for the 3-2-1 copy, a plain one for the rest. */
const LOCKED = 'etcd-offsite-locked';
const PLAIN = 'etcd-offsite-plain';
const EMPTY = 'etcd-offsite-empty';
const REPORTING_CONTROLLER = 'talos.alperen.cloud/talos-etcd-backup';

const condition = (s: BackupStatus, type: string) => (s.conditions ?? []).find((x) => x.type === type);
const jobCondition = (job: Obj) =>
  ((job.status as { conditions?: { type: string; status: string; reason?: string }[] }).conditions ?? []).find(
    (x) => (x.type === 'Complete' || x.type === 'Failed') && x.status === 'True',
  );
const re = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('copies through the snapshot and delete Jobs on a real control plane', () => {
  const cluster = useJobCluster();
  let c: JobCluster;
  let offsite: RgwUser;
  /** Case 1's backup, deleted in case 3. */
  let first: { backup: Obj; jobName: string; status: BackupStatus } | undefined;

  const copySpec = (bucket: string, secret: string, extra: Record<string, unknown> = {}) => ({
    name: 'offsite',
    bucket,
    region: c.rgw.region,
    endpoint: c.rgw.endpoint,
    prefix: 'offsite',
    accessKeyID: { name: secret, key: 'access-key-id' },
    secretAccessKey: { name: secret, key: 'secret-access-key' },
    ...extra,
  });
  const withCopy =
    (copy: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    (s: Record<string, any>) => ({
      ...s,
      backupStorage: { ...s.backupStorage, copies: [copy] },
      ...extra,
    });
  const keysOfBoth = () => [c.rgw.accessKeyId, c.rgw.secretAccessKey, offsite.accessKeyId, offsite.secretAccessKey];
  const noKeyIn = (text: string, where: string) => {
    for (const key of keysOfBoth()) {
      assert.ok(!text.includes(key), `an S3 key in ${where}`);
      assert.ok(!text.includes(b64(key)), `an S3 key (base64) in ${where}`);
    }
  };
  const exists = (client: S3Client, bucket: string, key: string) =>
    client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(
      () => true,
      () => false,
    );
  const pending = async (client: S3Client, bucket: string) =>
    (await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
  const eventsOf = async (backupName: string) => {
    const listed = await c.cp.kubectl(['get', 'events.events.k8s.io', '-n', NAMESPACE, '-o', 'json']);
    assert.equal(listed.code, 0, listed.stderr);
    return (JSON.parse(listed.stdout) as { items: Obj[] }).items
      .filter((e) => e.regarding?.name === backupName && e.reportingController === REPORTING_CONTROLLER)
      .sort((a, b) => String(a.eventTime).localeCompare(String(b.eventTime)));
  };
  const restoresEveryKey = async (client: S3Client, bucket: string, key: string, file: string) => {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    await writeFile(file, Buffer.from(await object.Body!.transformToByteArray()));
    const restored = await restoreSnapshot(file, { version: '3.5' }); // etcdutl snapshot restore
    try {
      for (const [k, value] of c.keys) assert.equal(await restored.get(k), value, `${bucket}: ${k}`);
    } finally {
      await restored.stop();
    }
  };
  /** The snapshot Job ran and its outcome is recorded: the next sync drops it, Metacontroller deletes it. */
  const retireSnapshotJob = async (backup: Obj, jobName: string) => {
    const next = await c.sync(backup.metadata.name);
    assert.equal(next.outcome, 'finished');
    assert.deepEqual(next.response.attachments, []);
    await c.deleteAttachments(backup);
    await c.kubelet.waitFor('the snapshot Job to be gone', async () => (await c.jobNow(jobName)) === undefined, 30_000);
  };
  /** kubectl delete, the finalize hook's delete Job run to its end; returns its pod's run and the finished Job. */
  const runDeleteJob = async (name: string) => {
    await c.custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NAMESPACE,
      plural: BACKUP_PLURAL,
      name,
    });
    const deleting = await c.backupNow(name);
    assert.ok(deleting.metadata.deletionTimestamp);
    const held = finalizeBackup({ object: deleting, attachments: {}, related: {}, finalizing: true }, IMAGE);
    assert.equal(held.outcome, 'deleting', 'an unlocked primary: the delete Job runs');
    assert.equal(held.response.finalized, false);
    const job = held.response.attachments[0]!;
    assert.deepEqual(await c.applyAttachments(deleting, held.response.attachments), [`Job/${name}-delete`]);
    const run = await c.kubelet.waitForPod({ namespace: NAMESPACE, job: job.metadata.name }, 'Terminated');
    const finished = await c.jobFinished(job.metadata.name);
    return { run, finished, jobName: job.metadata.name };
  };
  /** The finalize hook sees the delete Job Complete and lets the backup go; Metacontroller drops its finalizer. */
  const release = async (name: string, deleteJobName: string, finished: Obj) => {
    const released = finalizeBackup(
      {
        object: await c.backupNow(name),
        attachments: { [JOB_KEY]: { [deleteJobName]: finished } },
        related: {},
        finalizing: true,
      },
      IMAGE,
    );
    assert.equal(released.response.finalized, true);
    await c.custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace: NAMESPACE,
        plural: BACKUP_PLURAL,
        name,
        body: { metadata: { finalizers: null } },
      },
      mergePatch(),
    );
    await c.kubelet.waitFor(
      'the backup to be gone',
      () =>
        c.backupNow(name).then(
          () => false,
          (e: { code?: number }) => e.code === 404,
        ),
      30_000,
    );
  };

  it("stores the snapshot in the primary and in another user's locked bucket in one pass, verifies both, and the status keeps status.snapshot.copies as written", async () => {
    c = cluster();
    offsite = await c.rgw.createUser('offsite');
    await offsite.createBucket(LOCKED, { objectLock: true });
    await offsite.createBucket(PLAIN);
    await offsite.createBucket(EMPTY);
    // Another trust domain indeed: the primary's keys cannot read the copy's bucket.
    await assert.rejects(c.rgw.client().send(new ListObjectsV2Command({ Bucket: LOCKED })), /AccessDenied/);
    await c.core.createNamespacedSecret({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'offsite-s3' },
        data: { 'access-key-id': b64(offsite.accessKeyId), 'secret-access-key': b64(offsite.secretAccessKey) },
      },
    });
    const backup = await c.createBackup({
      finalizer: true,
      spec: withCopy(copySpec(LOCKED, 'offsite-s3', { objectLock: { mode: 'COMPLIANCE', retainDays: 1 } }), {
        verify: true,
        deletionPolicy: 'Delete',
      }),
    });
    const name = backup.metadata.name;
    const { jobName, run } = await c.runJob(backup);
    assert.equal(run.exitCode, 0, run.stderr);
    // The kubelet resolved the copy's Secret refs into the pod's environment (secretKeyRef), the values as stored.
    assert.equal(run.env!.S3_COPY_1_ACCESS_KEY_ID, offsite.accessKeyId);
    assert.equal(run.env!.S3_COPY_1_SECRET_ACCESS_KEY, offsite.secretAccessKey);
    noKeyIn(run.stdout + run.stderr, "the pod's output");

    await c.jobFinished(jobName);
    const { response, outcome } = await c.sync(name);
    assert.equal(outcome, 'succeeded');
    const status = response.status as BackupStatus;
    const snapshot = status.snapshot!;
    assert.equal(status.phase, 'Succeeded');
    assert.equal(snapshot.bucket, BUCKET);
    assert.equal(snapshot.verified, true);
    const time = (backup.metadata.annotations as Record<string, string>)[SCHEDULED_TIME_ANNOTATION]!.replace(/:/g, '-');
    assert.equal(snapshot.key, `talos-operator-etcd-backups/prod/etcd-snapshot-${time}.db`);
    const copies = snapshot.copies!;
    assert.equal(copies.length, 1);
    const copy = copies[0]!;
    assert.deepEqual(
      { ...copy, retainUntil: undefined },
      {
        name: 'offsite',
        bucket: LOCKED,
        key: `offsite/prod/etcd-snapshot-${time}.db`,
        size: snapshot.size,
        sha256: snapshot.sha256,
        retainUntil: undefined,
        verified: true,
        verification: 'Full',
      } satisfies StoredCopy,
      "the copy is the primary's bytes at the copy's prefix, read back",
    );
    assert.equal(snapshot.verification, 'Full', 'the same full check as the primary (etcd trailer and database)');
    const until = Date.parse(copy.retainUntil!);
    assert.ok(until > Date.now() + 23 * 3600_000 && until < Date.now() + 25 * 3600_000, copy.retainUntil);
    assert.equal(snapshot.retainUntil, undefined, 'the primary is not locked');
    const ready = condition(status, 'Ready')!;
    assert.equal(ready.status, 'True');
    assert.match(
      ready.message,
      new RegExp(
        `; copies: offsite at s3://${LOCKED}/${re(copy.key)} \\(locked until ${re(copy.retainUntil!)}, verified\\)$`,
      ),
    );
    // Metacontroller's UpdateStatus: the CRD keeps status.snapshot.copies (and everything else) exactly as written.
    const stored = await c.writeStatus(name, response.status as Record<string, unknown>);
    assert.deepEqual(stored.status, response.status);
    assert.deepEqual((stored.status as BackupStatus).snapshot!.copies, copies);
    noKeyIn(JSON.stringify(stored), 'the backup (spec, status and report)');

    // Both objects, read with each bucket's own user: the same bytes, the copy under COMPLIANCE lock.
    const primaryHead = await c.rgw.client().send(new HeadObjectCommand({ Bucket: BUCKET, Key: snapshot.key }));
    const copyHead = await offsite.client().send(new HeadObjectCommand({ Bucket: LOCKED, Key: copy.key }));
    assert.equal(primaryHead.ContentLength, snapshot.size);
    assert.equal(copyHead.ContentLength, snapshot.size);
    assert.equal(copyHead.ObjectLockMode, 'COMPLIANCE');
    assert.equal(copyHead.ObjectLockRetainUntilDate?.toISOString(), new Date(copy.retainUntil!).toISOString());
    assert.equal(copyHead.Metadata?.['backup-uid'], backup.metadata.uid);
    await restoresEveryKey(c.rgw.client(), BUCKET, snapshot.key, join(c.dir, `${name}-primary.db`));
    await restoresEveryKey(offsite.client(), LOCKED, copy.key, join(c.dir, `${name}-offsite.db`));

    // The kubelet read the Secrets, not the Job: its ServiceAccount only patched its status and created Events.
    const calls = (await c.audit(jobName)).map(
      (e: AuditEvent) => `${e.verb} ${e.objectRef?.resource}/${e.objectRef?.subresource ?? ''}`,
    );
    assert.ok(calls.length > 0);
    assert.deepEqual([...new Set(calls)].sort(), ['create events/', 'patch talosetcdbackups/status'], calls.join(', '));
    const events = await eventsOf(name);
    assert.deepEqual(
      events.map((e) => e.reason),
      ['BackupStarted', 'BackupSucceeded'],
    );
    assert.match(events[1]!.note, new RegExp(`^Stored s3://${BUCKET}/${re(snapshot.key)}: ${snapshot.size} bytes `));
    assert.match(events[1]!.note, new RegExp(`; copies: offsite s3://${copies[0]!.bucket}/${re(copies[0]!.key)}$`));
    noKeyIn(JSON.stringify(events), 'the Events');
    first = { backup, jobName, status };
  });

  it('a required copy whose Secret does not exist fails the backup at once: "Failed to get secret" naming it, exit 2, nothing stored anywhere, no upload pending', async () => {
    const backup = await c.createBackup({ spec: withCopy(copySpec(EMPTY, 'no-such-offsite-s3')) });
    const { jobName, run } = await c.runJob(backup);
    assert.equal(run.exitCode, 2, run.stderr);
    assert.match(
      run.stderr,
      /^Failed to get secret: secret talos-backup\/no-such-offsite-s3 key access-key-id .*secret-access-key/,
    );
    assert.equal(
      run.env!.S3_COPY_1_ACCESS_KEY_ID,
      undefined,
      'an optional secretKeyRef: unset, not a failed pod start',
    );
    const report = ((await c.backupNow(backup.metadata.name)).status as BackupStatus).report!;
    assert.deepEqual([report.state, report.retryable], ['Failed', false]);
    assert.match(
      report.message ?? '',
      /^Failed to get secret: secret talos-backup\/no-such-offsite-s3 key access-key-id/,
    );
    const job = await c.jobFinished(jobName);
    assert.deepEqual([jobCondition(job)?.type, jobCondition(job)?.reason], ['Failed', 'PodFailurePolicy']);
    assert.deepEqual(
      c.kubelet
        .pods()
        .filter((r) => r.job === jobName)
        .map((r) => r.attempt),
      [1],
      'one pod: no retry was spent',
    );
    const { response } = await c.sync(backup.metadata.name);
    const status = response.status as BackupStatus;
    assert.equal(status.phase, 'Failed');
    assert.match(status.message ?? '', /Failed to get secret: secret talos-backup\/no-such-offsite-s3/);

    const time = (backup.metadata.annotations as Record<string, string>)[SCHEDULED_TIME_ANNOTATION]!.replace(/:/g, '-');
    assert.equal(
      await exists(c.rgw.client(), BUCKET, `talos-operator-etcd-backups/prod/etcd-snapshot-${time}.db`),
      false,
      'nothing at the primary key',
    );
    const listed = await offsite.client().send(new ListObjectsV2Command({ Bucket: EMPTY }));
    assert.deepEqual(listed.Contents ?? [], [], "nothing in the copy's bucket");
    assert.deepEqual(await pending(c.rgw.client(), BUCKET), []);
    assert.deepEqual(await pending(offsite.client(), EMPTY), []);
  });

  it('deletionPolicy Delete: the delete Job removes the primary, keeps the locked copy and reports it; an unlocked copy is deleted', async () => {
    assert.ok(first, 'the first case stored the backup');
    const { backup, jobName, status } = first;
    const name = backup.metadata.name;
    const snapshot = status.snapshot!;
    const copy = snapshot.copies![0]!;
    await retireSnapshotJob(backup, jobName);
    const { run, finished, jobName: deleteJobName } = await runDeleteJob(name);
    assert.equal(run.exitCode, 0, run.stderr);
    assert.equal(run.env!.S3_COPY_1_ACCESS_KEY_ID, offsite.accessKeyId, 'the copy is deleted with its own keys');
    noKeyIn(run.stdout + run.stderr, "the delete pod's output");
    const lockedUntil = new Date(copy.retainUntil!).toISOString();
    assert.deepEqual(JSON.parse(run.stdout), {
      bucket: BUCKET,
      key: snapshot.key,
      deleted: true,
      copies: [
        {
          name: 'offsite',
          bucket: LOCKED,
          key: copy.key,
          deleted: false,
          detail: `the object at s3://${LOCKED}/${copy.key} is protected by Object Lock (COMPLIANCE until ${lockedUntil}): S3 refuses to delete it before then, so it was kept (a lifecycle rule can expire it afterwards)`,
          protectedUntil: lockedUntil,
        },
      ],
    });
    assert.equal(jobCondition(finished)?.type, 'Complete', 'a kept locked copy is an outcome, not a failure');
    assert.equal(await exists(c.rgw.client(), BUCKET, snapshot.key), false, 'the primary is deleted');
    const head = await offsite.client().send(new HeadObjectCommand({ Bucket: LOCKED, Key: copy.key }));
    assert.equal(head.ContentLength, snapshot.size, 'the locked copy is kept');
    await release(name, deleteJobName, finished);

    // The same with an unlocked copy (verify off): both objects go, each with its own keys.
    const plain = await c.createBackup({
      finalizer: true,
      spec: withCopy(copySpec(PLAIN, 'offsite-s3'), { deletionPolicy: 'Delete' }),
    });
    const stored = await c.runJob(plain);
    assert.equal(stored.run.exitCode, 0, stored.run.stderr);
    await c.jobFinished(stored.jobName);
    const done = await c.sync(plain.metadata.name);
    assert.equal(done.outcome, 'succeeded');
    await c.writeStatus(plain.metadata.name, done.response.status as Record<string, unknown>);
    const plainSnapshot = (done.response.status as BackupStatus).snapshot!;
    const plainCopy = plainSnapshot.copies![0]!;
    assert.equal(plainCopy.retainUntil, undefined);
    assert.equal(await exists(offsite.client(), PLAIN, plainCopy.key), true);
    await retireSnapshotJob(plain, stored.jobName);
    const deleted = await runDeleteJob(plain.metadata.name);
    assert.equal(deleted.run.exitCode, 0, deleted.run.stderr);
    assert.deepEqual(JSON.parse(deleted.run.stdout), {
      bucket: BUCKET,
      key: plainSnapshot.key,
      deleted: true,
      copies: [{ name: 'offsite', bucket: PLAIN, key: plainCopy.key, deleted: true }],
    });
    assert.equal(await exists(c.rgw.client(), BUCKET, plainSnapshot.key), false);
    assert.equal(await exists(offsite.client(), PLAIN, plainCopy.key), false, 'the unlocked copy is deleted');
    await release(plain.metadata.name, deleted.jobName, deleted.finished);
  });
});
