// The Job the backup hook emits, run for real on a real control plane: its attachments created through the real
// kube-apiserver as Metacontroller creates them, the real Job controller making its pod, the test kubelet running
// it (its env, Secret volumes and projected service-account token resolved as the kubelet does). The pod streams a
// real etcd's snapshot through the Talos API double into Ceph RGW, reports by a merge patch of its backup's
// status.report with its own token under the Role the hook emitted (the real RBAC), and the hook, fed the Job's
// real status, turns the report into Ready; etcdctl restores the object with every key. The API server's audit
// log shows what the pod did; what it stored proves no report field is pruned by the CRD.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { BACKUP_PLURAL, GROUP, JOB_KEY, SCHEDULED_TIME_ANNOTATION, VERSION } from '../../../src/api/constants.js';
import type { BackupReport, BackupStatus } from '../../../src/api/types.js';
import { finalizeBackup } from '../../../src/server/backup/finalize.js';
import { syncBackup } from '../../../src/server/backup/sync.js';
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

/** The reportingController of the Job's Events (independent of src/job/kubernetes/events.ts, on purpose). */
const REPORTING_CONTROLLER = 'talos.alperen.cloud/talos-etcd-backup';
// The SDK's warning that it will need Node 22 (this process runs on the machine's Node 20): not this test's subject.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const b64 = (text: string) => Buffer.from(text).toString('base64');
const statusPath = (name: string) =>
  `/apis/${GROUP}/${VERSION}/namespaces/${NAMESPACE}/${BACKUP_PLURAL}/${name}/status`;
const reportOf = (o: Obj) => (o.status as BackupStatus | undefined)?.report;
const condition = (o: Obj | BackupStatus, type: string) =>
  ((('status' in o ? (o as Obj).status : o) as BackupStatus | undefined)?.conditions ?? []).find(
    (c) => c.type === type,
  );
const jobCondition = (job: Obj) =>
  (
    (job.status as { conditions?: { type: string; status: string; reason?: string; message?: string }[] }).conditions ??
    []
  ).find((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');

/** Every leaf of a JSON value, as dotted paths. */
function leaves(value: unknown, prefix = ''): [string, unknown][] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [[prefix, value]];
  return Object.entries(value).flatMap(([k, v]) => leaves(v, prefix ? `${prefix}.${k}` : k));
}
const at = (value: unknown, path: string): unknown =>
  path
    .split('.')
    .reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), value);

describe('the snapshot Job on a real control plane, run by the test kubelet', () => {
  const cluster = useJobCluster();
  let c: JobCluster;
  const pending = async (bucket = BUCKET) =>
    (await c.rgw.client().send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];

  /** The events.k8s.io Events the snapshot Jobs recorded on a backup, oldest first (read with kubectl). */
  const eventsOf = async (backupName: string) => {
    const listed = await c.cp.kubectl(['get', 'events.events.k8s.io', '-n', NAMESPACE, '-o', 'json']);
    assert.equal(listed.code, 0, listed.stderr);
    return (JSON.parse(listed.stdout) as { items: Obj[] }).items
      .filter((e) => e.regarding?.name === backupName && e.reportingController === REPORTING_CONTROLLER)
      .sort((a, b) => String(a.eventTime).localeCompare(String(b.eventTime)));
  };
  /** `kubectl describe teb NAME`: its Events section. */
  const describedEvents = async (backupName: string) => {
    const described = await c.cp.kubectl(['describe', 'teb', backupName, '-n', NAMESPACE]);
    assert.equal(described.code, 0, described.stderr);
    return described.stdout.slice(described.stdout.indexOf('\nEvents:'));
  };

  /** The Job's API calls, from the audit log: [verb, resource/subresource, name, code]. */
  const callsOf = async (serviceAccount: string) =>
    (await c.audit(serviceAccount)).map((e: AuditEvent) => [
      e.verb,
      `${e.objectRef?.resource}/${e.objectRef?.subresource ?? ''}`,
      e.objectRef?.name,
      e.responseStatus?.code,
    ]);

  it('uploads a restorable snapshot, reports it, and the backup becomes Ready', async (t) => {
    c = cluster();
    const backup = await c.createBackup();
    const name = backup.metadata.name;
    const { jobName, run, created } = await c.runJob(backup);
    assert.deepEqual(
      created,
      [`ServiceAccount/${jobName}`, `Job/${jobName}`, `Role/${jobName}`, `RoleBinding/${jobName}`],
      "Metacontroller's order: by group, version, kind",
    );
    assert.equal(run.exitCode, 0, run.stderr);
    const printed = JSON.parse(run.stdout) as { key: string; size: number; sha256: string };
    assert.match(printed.key, /^talos-operator-etcd-backups\/prod\/etcd-snapshot-2026-11-21T10-00-\d\dZ\.db$/);

    const report = reportOf(await c.backupNow(name))!;
    assert.equal(report.state, 'Succeeded');
    assert.equal(report.snapshot?.key, printed.key);
    assert.equal(report.pod, run.name, 'the pod names itself (fieldRef metadata.name)');

    const job = await c.jobFinished(jobName);
    assert.equal(jobCondition(job)?.type, 'Complete');
    const { response, outcome } = await c.sync(name);
    assert.equal(outcome, 'succeeded');
    const status = response.status as BackupStatus;
    assert.equal(status.phase, 'Succeeded');
    assert.equal(condition(status, 'Ready')?.status, 'True');
    assert.deepEqual(
      { key: status.snapshot?.key, size: status.snapshot?.size, sha256: status.snapshot?.sha256 },
      { key: printed.key, size: printed.size, sha256: printed.sha256 },
    );
    assert.equal(status.startTime, (job.status as { startTime: string }).startTime, "the Job's real start time");
    // Metacontroller's UpdateStatus: the API server keeps the hook's status as it is (the CRD prunes nothing of it).
    const stored = await c.writeStatus(name, response.status as Record<string, unknown>);
    assert.deepEqual(stored.status, response.status);

    // Metacontroller creates the Job before its ServiceAccount: the Job controller's first pod create may be
    // refused by the ServiceAccount admission plugin, and is retried (shown, not asserted: it is a race).
    const events = await c.core.listNamespacedEvent({
      namespace: NAMESPACE,
      fieldSelector: `involvedObject.name=${jobName}`,
    });
    t.diagnostic(`Job events: ${events.items.map((e) => `${e.reason}: ${e.message}`).join(' | ')}`);
    // The only API calls the Job made: patches of its own backup's status, allowed (a 403 may only come first,
    // while the API server's RBAC cache has not yet seen the RoleBinding; the Job retries it), and two Event creates.
    const all = await callsOf(jobName);
    assert.deepEqual(
      all.filter((call) => call[1] !== 'talosetcdbackups/status').map((call) => [call[0], call[1], call[3]]),
      [
        ['create', 'events/', 201],
        ['create', 'events/', 201],
      ],
    );
    const calls = all.filter((call) => call[1] === 'talosetcdbackups/status');
    for (const call of calls) assert.deepEqual(call.slice(0, 3), ['patch', 'talosetcdbackups/status', name]);
    const codes = calls.map((call) => call[3]);
    const firstAllowed = codes.indexOf(200);
    assert.ok(
      firstAllowed >= 0 && codes.slice(0, firstAllowed).every((code) => code === 403),
      `codes ${codes.join(',')}`,
    );
    assert.ok(
      codes.slice(firstAllowed).every((code) => code === 200),
      `codes ${codes.join(',')}`,
    );
    assert.ok(codes.slice(firstAllowed).length >= 2, 'a Running report and a Succeeded report');

    // Its Events on the backup (events.k8s.io/v1), as kubectl shows them.
    const recorded = await eventsOf(name);
    assert.deepEqual(
      recorded.map((e) => [e.reason, e.type, e.action, e.reportingInstance]),
      [
        ['BackupStarted', 'Normal', 'Backup', run.name],
        ['BackupSucceeded', 'Normal', 'Backup', run.name],
      ],
    );
    for (const e of recorded) {
      assert.deepEqual(e.regarding, {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'TalosEtcdBackup',
        name,
        namespace: NAMESPACE,
        uid: backup.metadata.uid,
      });
      assert.match(e.eventTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime');
    }
    assert.match(
      recorded[1]!.note,
      new RegExp(
        `^Stored s3://${BUCKET}/${printed.key.replace(/\./g, '\\.')}: ${printed.size} bytes in \\d+\\.\\ds, not verified$`,
      ),
    );
    const section = await describedEvents(name);
    assert.match(section, /Normal\s+BackupStarted\s+.*Streaming the etcd snapshot from the Talos API into S3/);
    assert.match(section, new RegExp(`Normal\\s+BackupSucceeded\\s+.*Stored s3://${BUCKET}/`));

    // Downloaded with an independent client and restored by etcdctl: every key is there.
    const object = await c.rgw.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: printed.key }));
    const file = join(c.dir, `${name}.db`);
    await writeFile(file, Buffer.from(await object.Body!.transformToByteArray()));
    const restored = await restoreSnapshot(file);
    try {
      for (const [key, value] of c.keys) assert.equal(await restored.get(key), value, key);
    } finally {
      await restored.stop();
    }
  });

  it('a missing Secret fails the backup at once with "Failed to get secret": exit 2, the podFailurePolicy fails the Job, one pod, nothing uploaded', async () => {
    const backup = await c.createBackup({ s3Secret: 'no-such-secret' });
    const { jobName, run } = await c.runJob(backup);
    assert.equal(run.exitCode, 2, 'exit code 2: no retry can help');
    assert.match(run.stderr, /^Failed to get secret: secret talos-backup\/no-such-secret key access-key-id/);
    const report = reportOf(await c.backupNow(backup.metadata.name))!;
    assert.equal(report.state, 'Failed');
    assert.equal(report.retryable, false);
    // The Warning Event's note is the report's message: the same one line, already redacted.
    const recorded = await eventsOf(backup.metadata.name);
    assert.deepEqual(
      recorded.map((e) => [e.reason, e.type]),
      [
        ['BackupStarted', 'Normal'],
        ['BackupFailed', 'Warning'],
      ],
    );
    assert.equal(recorded[1]!.note, report.message);
    assert.equal(recorded[1]!.regarding.uid, backup.metadata.uid);
    assert.match(
      await describedEvents(backup.metadata.name),
      /Warning\s+BackupFailed\s+.*Failed to get secret: secret talos-backup\/no-such-secret key access-key-id/,
    );

    // The real Job controller: the FailJob rule on exit code 2 ends the Job with its first pod.
    const job = await c.jobFinished(jobName);
    assert.deepEqual([jobCondition(job)?.type, jobCondition(job)?.reason], ['Failed', 'PodFailurePolicy']);
    assert.equal((job.status as { failed?: number }).failed, 1);
    assert.deepEqual(
      c.kubelet
        .pods()
        .filter((r) => r.job === jobName)
        .map((r) => r.attempt),
      [1],
      'one pod: no retry was spent',
    );

    // The report decides, not the Job: the hook fails the backup also before it sees the Job failed (a lagging
    // cache), and the message is the Job's own.
    const early = syncBackup(
      { object: await c.backupNow(backup.metadata.name), attachments: {}, related: {} },
      new Date(),
      IMAGE,
    );
    assert.equal((early.response.status as BackupStatus).phase, 'Failed');
    const { response } = await c.sync(backup.metadata.name);
    const status = response.status as BackupStatus;
    assert.equal(status.phase, 'Failed');
    assert.equal(status.message, (early.response.status as BackupStatus).message);
    assert.match(
      status.message ?? '',
      /^Failed to get secret: secret talos-backup\/no-such-secret key access-key-id .*secret-access-key/,
    );
    assert.equal(condition(status, 'Failed')?.status, 'True');
    assert.equal(condition(status, 'Ready')?.status, 'False');
    assert.deepEqual(await pending(), []);
  });

  it('a talosconfig Secret without the key fails the same way, naming it', async () => {
    await c.core.createNamespacedSecret({
      namespace: NAMESPACE,
      body: { metadata: { name: 'talosconfig-wrong-key' }, data: { talosconfig: b64(c.talosconfig) } },
    });
    const backup = await c.createBackup({ talosconfigSecret: 'talosconfig-wrong-key' });
    const { jobName, run } = await c.runJob(backup);
    assert.equal(run.exitCode, 2);
    assert.match(
      run.stderr,
      /^Failed to get secret: secret talos-backup\/talosconfig-wrong-key key config \(the Secret does not exist or has no key "config"\)/,
    );
    assert.equal(jobCondition(await c.jobFinished(jobName))?.reason, 'PodFailurePolicy');
  });

  it('without the Role the hook emits, the Job may not write its report (403): the RBAC is what makes it work', async () => {
    const backup = await c.createBackup();
    const { jobName, run, created } = await c.runJob(backup, { skip: (o) => o.kind === 'Role' });
    assert.ok(!created.includes(`Role/${jobName}`));
    assert.equal(run.exitCode, 2, 'a Job that may not report fails without retries');
    assert.match(run.stderr, /^the Kubernetes API answered 403: .*cannot patch resource "talosetcdbackups\/status"/);
    const all = await callsOf(jobName);
    const calls = all.filter((call) => call[1] === 'talosetcdbackups/status');
    assert.ok(calls.length > 0);
    for (const call of calls) assert.deepEqual(call, ['patch', 'talosetcdbackups/status', backup.metadata.name, 403]);
    // No Event is tried: the same missing Role would refuse it, and the failure stays one line.
    assert.deepEqual(
      all.filter((call) => call[1] !== 'talosetcdbackups/status'),
      [],
    );
    assert.equal(run.stderr.split('\n').filter(Boolean).length, 1, run.stderr);
    assert.deepEqual(await eventsOf(backup.metadata.name), []);
    assert.equal((await c.backupNow(backup.metadata.name)).status, undefined, 'nothing was written');
    assert.equal(jobCondition(await c.jobFinished(jobName))?.reason, 'PodFailurePolicy');
  });

  it('reports progress while a larger snapshot streams, at a bounded rate', async () => {
    const backup = await c.createBackup({ talosconfigSecret: 'etcd-backup-big' });
    const { jobName, run } = await c.runJob(backup);
    assert.equal(run.exitCode, 0, run.stderr);
    const interval = Number(run.env!.PROGRESS_INTERVAL_SECONDS);
    assert.equal(interval, 0.1);
    const seconds = (run.finishedAt!.getTime() - run.startedAt!.getTime()) / 1000;
    const patches = (await c.audit(jobName)).filter((e) => e.verb === 'patch' && e.responseStatus?.code === 200);
    // Running at start, then at most one per interval while streaming, then Succeeded.
    assert.ok(patches.length >= 3, `expected progress reports between start and end, got ${patches.length} patches`);
    assert.ok(
      patches.length <= seconds / interval + 3,
      `${patches.length} patches in ${seconds}s exceed one per ${interval}s`,
    );
    const sent = patches.map((e) => (e.requestObject as { status: { report: BackupReport } }).status.report);
    assert.ok(
      sent.some((r) => r.state === 'Running' && (r.bytesUploaded ?? 0) > 0),
      'a progress report with bytes',
    );
    const head = await c.rgw
      .client()
      .send(new HeadObjectCommand({ Bucket: BUCKET, Key: (JSON.parse(run.stdout) as { key: string }).key }));
    assert.equal(reportOf(await c.backupNow(backup.metadata.name))?.bytesUploaded, head.ContentLength);
  });

  it("the pod's own token may patch its backup's status and nothing else: another backup's is refused (403)", async () => {
    const other = await c.createBackup();
    const backup = await c.createBackup({ talosconfigSecret: 'etcd-backup-big' });
    c.big.setFault({ kind: 'stall', afterBytes: 12 * 1024 * 1024, times: 1 });
    const { jobName } = await c.startJob(backup);
    try {
      const run = await c.kubelet.waitForPod({ namespace: NAMESPACE, job: jobName }, 'Running');
      await c.kubelet.waitFor(
        'the Running report',
        async () => reportOf(await c.backupNow(backup.metadata.name))?.state === 'Running',
        30_000,
      );
      const token = readFileSync(join(run.serviceAccountDir!, 'token'), 'utf8').trim();
      const user = `system:serviceaccount:${NAMESPACE}:${jobName}`;
      const patch = { status: { report: { state: 'Running', bytesUploaded: 1 } } };

      const own = await c.asToken(token, 'PATCH', `${statusPath(backup.metadata.name)}?dryRun=All`, patch);
      assert.equal(own.status, 200, own.message);
      const foreign = await c.asToken(token, 'PATCH', statusPath(other.metadata.name), patch);
      assert.equal(foreign.status, 403);
      assert.equal(
        foreign.message,
        `${BACKUP_PLURAL}.${GROUP} "${other.metadata.name}" is forbidden: User "${user}" cannot patch resource "${BACKUP_PLURAL}/status" in API group "${GROUP}" in the namespace "${NAMESPACE}"`,
      );
      assert.equal(
        (await c.backupNow(other.metadata.name)).status,
        undefined,
        "the other backup's status is untouched",
      );
      const read = await c.asToken(
        token,
        'GET',
        `/apis/${GROUP}/${VERSION}/namespaces/${NAMESPACE}/${BACKUP_PLURAL}/${backup.metadata.name}`,
      );
      assert.equal(read.status, 403, 'it may not even read its backup');
      const spec = await c.asToken(
        token,
        'PATCH',
        `/apis/${GROUP}/${VERSION}/namespaces/${NAMESPACE}/${BACKUP_PLURAL}/${backup.metadata.name}?dryRun=All`,
        { spec: { verify: true } },
      );
      assert.equal(spec.status, 403, 'nor change its spec');
      const secrets = await c.asToken(token, 'GET', `/api/v1/namespaces/${NAMESPACE}/secrets`);
      assert.equal(secrets.status, 403, 'nor list Secrets: the kubelet, not the Job, reads them');

      // Events: it may create one (RBAC cannot limit create by name), but neither read nor change any.
      const eventsPath = `/apis/events.k8s.io/v1/namespaces/${NAMESPACE}/events`;
      const event = {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name: `${backup.metadata.name}.rbac-check` },
        eventTime: new Date().toISOString().replace('Z', '000Z'),
        reportingController: REPORTING_CONTROLLER,
        reportingInstance: run.name,
        action: 'Backup',
        reason: 'BackupStarted',
        type: 'Normal',
        note: 'dry run',
        regarding: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'TalosEtcdBackup',
          name: backup.metadata.name,
          namespace: NAMESPACE,
        },
      };
      const created = await c.asToken(token, 'POST', `${eventsPath}?dryRun=All`, event, 'application/json');
      assert.equal(created.status, 201, created.message);
      assert.equal((await c.asToken(token, 'GET', eventsPath)).status, 403, 'it may not list Events');
      const changed = await c.asToken(token, 'PATCH', `${eventsPath}/${backup.metadata.name}.x?dryRun=All`, {
        note: 'x',
      });
      assert.equal(changed.status, 403, 'nor patch one');
      const coreEvent = await c.asToken(
        token,
        'POST',
        `/api/v1/namespaces/${NAMESPACE}/events?dryRun=All`,
        { metadata: { name: 'x' }, involvedObject: { name: 'x' }, reason: 'x' },
        'application/json',
      );
      assert.equal(coreEvent.status, 403, 'nor create a core/v1 Event: only events.k8s.io');
      const secret = await c.asToken(
        token,
        'POST',
        `/api/v1/namespaces/${NAMESPACE}/secrets?dryRun=All`,
        { metadata: { name: 'x' } },
        'application/json',
      );
      assert.equal(secret.status, 403, 'nor create a Secret');
    } finally {
      c.big.setFault(undefined);
      await c.batch.deleteNamespacedJob({ namespace: NAMESPACE, name: jobName, propagationPolicy: 'Background' });
      await c.kubelet.waitForPod({ namespace: NAMESPACE, job: jobName }, 'Terminated', 60_000);
    }
  });

  it('a deleted Job (Background propagation: the garbage collector deletes the pod, the kubelet SIGTERMs it) aborts the multipart upload: nothing at the key, nothing pending', async () => {
    const backup = await c.createBackup({ talosconfigSecret: 'etcd-backup-big' });
    // The stream stalls after two 5 MiB parts' worth: the multipart upload exists, the snapshot is not complete.
    c.big.setFault({ kind: 'stall', afterBytes: 12 * 1024 * 1024, times: 1 });
    try {
      const { jobName } = await c.startJob(backup);
      const run = await c.kubelet.waitForPod({ namespace: NAMESPACE, job: jobName }, 'Running');
      await c.kubelet.waitFor('a multipart upload in progress', async () => (await pending()).length === 1, 30_000);
      await c.batch.deleteNamespacedJob({ namespace: NAMESPACE, name: jobName, propagationPolicy: 'Background' });
      await c.kubelet.waitForPod({ namespace: NAMESPACE, job: jobName }, 'Terminated', 60_000);
      assert.deepEqual(run.signalsSent, ['SIGTERM'], 'the pod was deleted with its grace period: SIGTERM, no SIGKILL');
      assert.equal(run.exitCode, 1, run.stderr);
      assert.match(run.stderr, /stopped \(SIGTERM\); the multipart upload was aborted/);
      assert.deepEqual(await pending(), []);
      const report = reportOf(await c.backupNow(backup.metadata.name))!;
      assert.equal(report.state, 'Failed');
      assert.equal(report.retryable, true);
      const key = `talos-operator-etcd-backups/prod/etcd-snapshot-${(backup.metadata.annotations as Record<string, string>)[SCHEDULED_TIME_ANNOTATION]!.replace(/:/g, '-')}.db`;
      await assert.rejects(
        c.rgw.client().send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })),
        'nothing at the key',
      );
      await c.kubelet.waitFor(
        'the pod to be gone (grace-0 delete, tracking finalizer dropped)',
        async () =>
          c.core.readNamespacedPod({ namespace: NAMESPACE, name: run.name }).then(
            () => false,
            (e: { code?: number }) => e.code === 404,
          ),
        30_000,
      );
    } finally {
      c.big.setFault(undefined);
    }
  });

  it("deletionPolicy Delete: the finalize hook's delete Job removes the object, then the backup is let go and the garbage collector takes the rest", async () => {
    const backup = await c.createBackup({ finalizer: true, spec: (s) => ({ ...s, deletionPolicy: 'Delete' }) });
    const name = backup.metadata.name;
    const { jobName, run } = await c.runJob(backup);
    assert.equal(run.exitCode, 0, run.stderr);
    const key = (JSON.parse(run.stdout) as { key: string }).key;
    await c.jobFinished(jobName);
    const done = await c.sync(name);
    assert.equal(done.outcome, 'succeeded');
    await c.writeStatus(name, done.response.status as Record<string, unknown>);
    // The next sync sees the outcome recorded: nothing attached, so Metacontroller deletes the attachments.
    const next = await c.sync(name);
    assert.equal(next.outcome, 'finished');
    assert.deepEqual(next.response.attachments, []);
    await c.deleteAttachments(backup);
    await c.kubelet.waitFor('the snapshot Job to be gone', async () => (await c.jobNow(jobName)) === undefined, 30_000);

    // kubectl delete: the finalizer holds the backup; the finalize hook emits the delete Job.
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
    assert.equal(held.response.finalized, false);
    const deleteJob = held.response.attachments[0]!;
    assert.deepEqual(await c.applyAttachments(deleting, held.response.attachments), [`Job/${name}-delete`]);
    const del = await c.kubelet.waitForPod({ namespace: NAMESPACE, job: deleteJob.metadata.name }, 'Terminated');
    assert.equal(del.exitCode, 0, del.stderr);
    assert.equal(del.serviceAccountDir, undefined, 'the delete Job gets no API token');
    assert.equal(del.env!.KUBERNETES_SERVICE_ACCOUNT_DIR, undefined);
    const pod = await c.core.readNamespacedPod({ namespace: NAMESPACE, name: del.name });
    assert.ok(
      !pod.spec?.volumes?.some((v) => v.name.startsWith('kube-api-access-')),
      'automountServiceAccountToken: false keeps the token volume out',
    );
    assert.deepEqual(JSON.parse(del.stdout), { bucket: BUCKET, key, deleted: true });
    const gone = await c.rgw
      .client()
      .send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))
      .then(
        () => false,
        () => true,
      );
    assert.ok(gone, 'the object is deleted');

    const finished = await c.jobFinished(deleteJob.metadata.name);
    assert.equal(jobCondition(finished)?.type, 'Complete');
    const released = finalizeBackup(
      {
        object: await c.backupNow(name),
        attachments: { [JOB_KEY]: { [deleteJob.metadata.name]: finished } },
        related: {},
        finalizing: true,
      },
      IMAGE,
    );
    assert.equal(released.response.finalized, true);
    assert.deepEqual(released.response.attachments, []);
    // Metacontroller removes its finalizer: the backup goes, and the garbage collector its delete Job.
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
    await c.kubelet.waitFor(
      'the garbage collector to delete the delete Job',
      async () => (await c.jobNow(deleteJob.metadata.name)) === undefined,
      30_000,
    );
  });

  it('every protection at once: zstd, age, Object Lock and verify with the identity Secret; Ready, locked, and kept when deleted', async () => {
    const locked = 'etcd-backups-locked';
    await c.rgw.createBucket(locked, { objectLock: true });
    const identity = await generateIdentity();
    const recipient = await identityToRecipient(identity);
    await c.core.createNamespacedSecret({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'etcd-backup-age' },
        data: { 'identity.txt': b64(`# the backups' identity\n${identity}\n`) },
      },
    });
    const backup = await c.createBackup({
      finalizer: true,
      spec: (s) => ({
        ...s,
        backupStorage: {
          s3: { ...s.backupStorage.s3, bucket: locked, objectLock: { mode: 'COMPLIANCE', retainDays: 1 } },
        },
        compression: 'zstd',
        encryption: {
          age: { recipients: [recipient], identitySecretRef: { name: 'etcd-backup-age', key: 'identity.txt' } },
        },
        verify: true,
        deletionPolicy: 'Delete',
      }),
    });
    const name = backup.metadata.name;
    const { jobName, run } = await c.runJob(backup);
    assert.equal(run.exitCode, 0, run.stderr);
    assert.ok(
      !run.stdout.includes(identity) && !run.stderr.includes(identity),
      'the identity never appears in the output',
    );
    await c.jobFinished(jobName);
    const { response } = await c.sync(name);
    const status = response.status as BackupStatus;
    assert.equal(status.phase, 'Succeeded');
    assert.match(status.snapshot!.key, /\.db\.zst\.age$/);
    assert.equal(status.snapshot!.compression, 'zstd');
    assert.equal(status.snapshot!.encrypted, true);
    assert.equal(status.snapshot!.verified, true);
    assert.equal(status.snapshot!.verification, 'Full');
    assert.ok((status.snapshot!.keys ?? 0) >= c.keys.size);
    assert.ok(Date.parse(status.snapshot!.retainUntil!) > Date.now() + 23 * 3600_000);
    assert.match(
      condition(status, 'Ready')!.message,
      /age-encrypted, locked until .*; verified: read back, etcd trailer and database structure sound \(revision \d+, \d+ keys\)$/,
    );
    assert.ok(!JSON.stringify(status).includes(identity), 'the identity never appears in the status');
    const stored = await c.writeStatus(name, status as Record<string, unknown>);
    assert.deepEqual(
      stored.status,
      status,
      'the whole status, snapshot and verification included, is kept as the hook wrote it',
    );

    // Deleting it with deletionPolicy Delete: the lock holds, so the backup goes at once and the object stays.
    await c.custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NAMESPACE,
      plural: BACKUP_PLURAL,
      name,
    });
    const deleting = await c.backupNow(name);
    const job = await c.jobNow(jobName);
    const finalized = finalizeBackup(
      { object: deleting, attachments: job ? { [JOB_KEY]: { [jobName]: job } } : {}, related: {}, finalizing: true },
      IMAGE,
      new Date(),
    );
    assert.equal(finalized.outcome, 'kept-locked');
    assert.equal(finalized.response.finalized, true);
    assert.deepEqual(finalized.response.attachments, []);
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
    // The backup goes; the garbage collector removes its Job, ServiceAccount, Role and RoleBinding, asynchronously.
    await c.kubelet.waitFor(
      'the garbage collector to delete the attachments',
      async () => {
        const left = await Promise.all([
          c.jobNow(jobName),
          c.core.readNamespacedServiceAccount({ namespace: NAMESPACE, name: jobName }).catch(() => undefined),
          c.objects
            .read({
              apiVersion: 'rbac.authorization.k8s.io/v1',
              kind: 'Role',
              metadata: { name: jobName, namespace: NAMESPACE },
            })
            .catch(() => undefined),
          c.objects
            .read({
              apiVersion: 'rbac.authorization.k8s.io/v1',
              kind: 'RoleBinding',
              metadata: { name: jobName, namespace: NAMESPACE },
            })
            .catch(() => undefined),
        ]);
        return left.every((o) => o === undefined);
      },
      30_000,
    );
    const head = await c.rgw.client().send(new HeadObjectCommand({ Bucket: locked, Key: status.snapshot!.key }));
    assert.equal(head.ContentLength, status.snapshot!.size);
  });

  it('every field the Job writes into status.report is stored as sent (Running, progress, Succeeded with verification, Failed); an undeclared one would be pruned', async () => {
    // Pruning is real: a field the CRD does not declare is dropped without an error.
    const spare = await c.createBackup();
    const pruned = (await c.custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        namespace: NAMESPACE,
        plural: BACKUP_PLURAL,
        name: spare.metadata.name,
        body: { status: { report: { state: 'Running', undeclared: 'x', snapshot: { key: 'k', undeclared: 1 } } } },
      },
      mergePatch(),
    )) as Obj;
    assert.deepEqual(reportOf(pruned), { state: 'Running', snapshot: { key: 'k' } });

    // Every report the Jobs' pods sent in this file, from the audit log: the request body against the object stored.
    const events = (await c.audit()).filter(
      (e) =>
        e.verb === 'patch' &&
        e.objectRef?.subresource === 'status' &&
        e.responseStatus?.code === 200 &&
        !e.requestURI.includes('dryRun'),
    );
    assert.ok(events.length > 10);
    const written = new Set<string>();
    for (const e of events) {
      const sent = (e.requestObject as { status: { report: unknown } }).status.report;
      const stored = (e.responseObject as { status: { report: unknown } }).status.report;
      for (const [path, value] of leaves(sent)) {
        if (value === null) {
          assert.equal(at(stored, path), undefined, `${path}: cleared as sent`);
          continue;
        }
        written.add(path);
        assert.deepEqual(at(stored, path), value, `${path}: stored as the Job sent it (${e.user.username})`);
      }
    }
    const everyField = [
      'state',
      'pod',
      'startedAt',
      'updatedAt',
      'bytesUploaded',
      'message',
      'retryable',
      ...[
        'bucket',
        'key',
        'size',
        'sha256',
        'etcdSha256',
        'node',
        'compression',
        'encrypted',
        'retainUntil',
        'verified',
        'verifiedAt',
        'verification',
        'revision',
        'keys',
      ].map((k) => `snapshot.${k}`),
    ];
    assert.deepEqual(
      [...written].sort(),
      everyField.sort(),
      'the Jobs of this file wrote every report field (src/job/kubernetes/status-report.ts), and each one survived',
    );
  });
});
