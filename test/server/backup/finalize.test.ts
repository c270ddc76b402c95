// The backup decorator's finalize hook (src/server/backup/finalize.ts): how a backup goes away. Retain lets it go
// at once; Delete runs the delete Job first, unless the object cannot be deleted (Object Lock, a namespace being
// deleted, a delete Job that never appears). Pure functions: one request, one clock, one answer.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BACKUP_LABEL, JOB_KEY } from '../../../src/api/constants.js';
import { finalizeBackup } from '../../../src/server/backup/finalize.js';
import { DEFAULT_ATTACHMENT_DEADLINE_SECONDS } from '../../../src/server/backup/settings.js';
import type { DecoratorSyncRequest, KubernetesObject } from '../../../src/server/metacontroller/types.js';
import {
  backup,
  BAD_RECIPIENT,
  baseSpec,
  container,
  DELETE_JOB,
  envOf,
  envValue,
  failedReport,
  IMAGE,
  type J,
  JOB,
  JOB_STATUSES_NOT_WRITTEN_BY_THE_JOB_CONTROLLER,
  jobActive,
  jobComplete,
  jobFailed,
  KEY,
  kinds,
  LATER,
  NAME,
  NOW,
  NS,
  observedAttachments,
  protectedSpec,
  request,
  running,
  st,
  STATUSES_NOT_MATCHING_THE_CRD,
  succeeded,
  succeededStatus,
  sync,
  UID,
  withSpec,
} from './fixtures.js';

describe('finalizeBackup', () => {
  const deleting = (spec: Record<string, unknown>, status: unknown, deleteJobStatus?: Record<string, unknown>) => {
    const object = backup({ spec, status });
    object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
    const req = request(object);
    req.finalizing = true;
    if (deleteJobStatus) {
      const desired = finalizeBackup(request(backup({ spec: { ...spec, deletionPolicy: 'Delete' }, status })), IMAGE)
        .response.attachments[0]!;
      req.attachments![JOB_KEY] = { [desired.metadata.name]: { ...desired, status: deleteJobStatus } };
    }
    return finalizeBackup(req, IMAGE);
  };

  it('deletionPolicy Retain (the default) lets the backup go at once and attaches nothing', () => {
    for (const spec of [baseSpec(), withSpec({ deletionPolicy: 'Retain' })]) {
      const r = deleting(spec, succeededStatus());
      assert.equal(r.response.finalized, true);
      assert.deepEqual(r.response.attachments, []);
      assert.equal(r.outcome, 'released');
      assert.equal((r.response.status as J).deletion, undefined);
    }
  });

  it('deletionPolicy Delete without a stored snapshot lets the backup go', () => {
    const spec = withSpec({ deletionPolicy: 'Delete' });
    const failedStatus = st(
      sync(
        request(backup({ spec }), {
          attachments: observedAttachments(backup(), jobFailed('BackoffLimitExceeded', 'x')),
        }),
      ),
    );
    const invalidStatus = st(
      sync(request(backup({ spec: { ...spec, encryption: { age: { recipients: [BAD_RECIPIENT] } } } }))),
    );
    for (const status of [undefined, failedStatus, invalidStatus]) {
      const r = deleting(spec, status);
      assert.equal(r.response.finalized, true, JSON.stringify(status));
      assert.deepEqual(r.response.attachments, []);
    }
  });

  it('a backup deleted while its snapshot Job runs: the snapshot Job is not kept', () => {
    for (const policy of ['Retain', 'Delete']) {
      const spec = withSpec({ deletionPolicy: policy });
      const object = backup({ spec, status: { report: running(1024) } });
      object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
      const r = finalizeBackup(
        { ...request(object, { attachments: observedAttachments(backup({ spec }), jobActive) }), finalizing: true },
        IMAGE,
      );
      assert.ok(
        !r.response.attachments.some((a) => a.metadata.name === JOB),
        `${policy}: the snapshot Job is left out, so it is deleted`,
      );
      if (!r.response.finalized)
        assert.equal(typeof (r.response.status as J).deletion?.message, 'string', `${policy}: a held backup says why`);
      if (policy === 'Retain') assert.equal(r.response.finalized, true);
    }
  });

  it('deletionPolicy Delete, deleted mid-run: first the snapshot Job goes, then the delete Job looks at the key it would have written', () => {
    const spec = withSpec({ deletionPolicy: 'Delete', clusterName: 'prod' });
    const object = backup({
      spec,
      status: { report: running(5 * 1024 * 1024) },
      annotations: { 'talos.alperen.cloud/scheduled-time': '2026-01-15T02:00:00Z' },
    });
    object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
    const first = finalizeBackup(
      { ...request(object, { attachments: observedAttachments(backup({ spec }), jobActive) }), finalizing: true },
      IMAGE,
    );
    assert.equal(first.response.finalized, false, 'held: the running Job may still complete its object');
    assert.deepEqual(
      first.response.attachments,
      [],
      'the snapshot Job and its identity are deleted; no delete Job yet',
    );
    assert.match(
      (first.response.status as J).deletion.message,
      /^Stopping the snapshot Job before deleting s3:\/\/etcd-backups\/talos-operator-etcd-backups\/prod\/etcd-snapshot-2026-01-15T02-00-00Z\.db$/,
    );

    const second = finalizeBackup({ ...request(object), finalizing: true }, IMAGE);
    assert.equal(second.response.finalized, false);
    const job = second.response.attachments[0] as J;
    assert.equal(job.metadata.name, DELETE_JOB);
    assert.equal(
      envOf(job).S3_KEY.value,
      'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-15T02-00-00Z.db',
      'the key the snapshot Job was writing',
    );
    assert.equal(envOf(job).BACKUP_UID.value, UID, "only this backup's object is deleted");
    // The snapshot pod may outlive its Job by its grace period: the delete looks again after it.
    assert.equal(job.spec.template.spec.terminationGracePeriodSeconds, 30);
    assert.equal(envOf(job).DELETE_WAIT_SECONDS.value, '40');
  });

  it('deletionPolicy Delete, a failed backup whose Job had uploaded bytes: the delete Job checks its key; without uploaded bytes it is let go', () => {
    const spec = withSpec({ deletionPolicy: 'Delete', clusterName: 'prod' });
    const failedAfterUpload = st(
      sync(
        request(
          backup({
            spec,
            status: {
              report: {
                ...failedReport(
                  'Failed to upload snapshot to S3: the snapshot was uploaded but recording its sha256 failed',
                  true,
                ),
                bytesUploaded: 5 * 1024 * 1024,
              },
            },
          }),
          { attachments: observedAttachments(backup({ spec }), jobFailed('BackoffLimitExceeded', 'x')) },
        ),
      ),
    );
    assert.equal(failedAfterUpload.phase, 'Failed');
    const held = deleting(spec, failedAfterUpload);
    assert.equal(held.response.finalized, false);
    assert.equal(
      envOf(held.response.attachments[0] as J).S3_KEY.value,
      'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-15T12-00-00Z.db',
    );
    assert.equal(
      envOf(held.response.attachments[0] as J).DELETE_WAIT_SECONDS,
      undefined,
      "a finished backup's pods are gone: no second pass",
    );

    const failedEarly = st(
      sync(
        request(
          backup({
            spec,
            status: { report: failedReport('Failed to get secret: secret talos-backup/s3 key k (…)', false) },
          }),
        ),
      ),
    );
    assert.equal(
      deleting(spec, failedEarly).response.finalized,
      true,
      'nothing can be in S3: no delete Job (it would need the same missing Secret)',
    );
  });

  it('deletionPolicy Delete with status.snapshot.key attaches the delete Job and holds the backup', () => {
    const r = deleting(withSpec({ deletionPolicy: 'Delete' }), succeededStatus());
    assert.equal(r.response.finalized, false);
    assert.equal(r.outcome, 'deleting');
    assert.equal(r.response.attachments.length, 1);
    const job = r.response.attachments[0] as J;
    assert.equal(job.kind, 'Job');
    assert.equal(job.metadata.name, DELETE_JOB);
    assert.equal(container(job).command.at(-1), 'delete');
    assert.equal(envValue(job, 'S3_KEY'), KEY);
    assert.equal(envValue(job, 'BACKUP_UID'), UID);
    assert.equal(envValue(job, 'S3_BUCKET'), 'etcd-backups');
    assert.equal(job.spec.template.spec.automountServiceAccountToken, false);
    assert.equal(job.spec.template.spec.serviceAccountName, undefined);
    assert.equal(job.metadata.labels[BACKUP_LABEL], NAME);
    assert.equal((r.response.status as J).deletion.message, `Deleting s3://etcd-backups/${KEY}`);
    assert.equal((r.response.status as J).phase, 'Succeeded', 'the rest of the status is kept');
    assert.deepEqual((r.response.status as J).snapshot, succeededStatus().snapshot);
  });

  it('the delete Job runs under the restricted Pod Security Standard with optional references', () => {
    const r = deleting(
      withSpec({
        deletionPolicy: 'Delete',
        backupStorage: { s3: { ...(baseSpec() as J).backupStorage.s3, caBundle: { name: 'ca' } } },
      }),
      succeededStatus(),
    );
    const job = r.response.attachments[0] as J;
    const pod = job.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    assert.deepEqual(container(job).securityContext.capabilities, { drop: ['ALL'] });
    assert.equal(container(job).securityContext.readOnlyRootFilesystem, true);
    assert.equal(container(job).securityContext.allowPrivilegeEscalation, false);
    for (const e of container(job).env as J[])
      if (e.valueFrom?.secretKeyRef) assert.equal(e.valueFrom.secretKeyRef.optional, true);
    for (const v of pod.volumes as J[]) assert.equal((v.secret ?? v.configMap).optional, true);
    assert.ok(!(pod.volumes as J[]).some((v) => v.name === 'talosconfig'), 'the delete Job needs no talosconfig');
    assert.equal(job.spec.ttlSecondsAfterFinished, undefined);
  });

  it('a Succeeded report whose status was not written yet still names the object to delete', () => {
    const r = deleting(withSpec({ deletionPolicy: 'Delete' }), { report: succeeded });
    assert.equal(r.response.finalized, false);
    assert.equal(envValue(r.response.attachments[0], 'S3_KEY'), KEY);
  });

  it('the delete Job Complete lets the backup go', () => {
    const r = deleting(withSpec({ deletionPolicy: 'Delete' }), succeededStatus(), jobComplete);
    assert.equal(r.response.finalized, true);
    assert.equal(r.outcome, 'released');
  });

  it('the delete Job Failed holds the backup and says why and how to let it go', () => {
    const r = deleting(
      withSpec({ deletionPolicy: 'Delete' }),
      succeededStatus(),
      jobFailed('BackoffLimitExceeded', 'Job has reached the specified backoff limit'),
    );
    assert.equal(r.response.finalized, false);
    assert.equal(r.outcome, 'delete-failed');
    const message = (r.response.status as J).deletion.message as string;
    assert.match(message, /^Failed to delete snapshot from S3/);
    assert.match(message, /BackoffLimitExceeded/);
    assert.match(message, /deletionPolicy to Retain/);
    assert.match(message, new RegExp(`s3://etcd-backups/${KEY}`));
    assert.equal(r.response.attachments.length, 1, 'the failed Job stays (it is not re-run)');
  });

  it('switching to Retain after the delete Job failed lets the backup go', () => {
    const r = deleting(
      withSpec({ deletionPolicy: 'Retain' }),
      { ...succeededStatus(), deletion: { message: 'Failed to delete snapshot from S3: ...' } },
      jobFailed('BackoffLimitExceeded', 'x'),
    );
    assert.equal(r.response.finalized, true);
    assert.deepEqual(r.response.attachments, []);
  });

  it('deletes from the bucket the snapshot was stored in, even if spec.backupStorage.s3.bucket changed since', () => {
    // The spec is not immutable. The delete Job treats "no object at the key" as done, so deleting from the
    // new bucket would release the backup and leave its object in the old one for ever.
    const r = deleting(
      withSpec({
        deletionPolicy: 'Delete',
        backupStorage: { s3: { ...(baseSpec() as J).backupStorage.s3, bucket: 'new-bucket' } },
      }),
      succeededStatus(),
    );
    assert.equal(r.response.finalized, false);
    assert.equal(envValue(r.response.attachments[0], 'S3_BUCKET'), 'etcd-backups');
    assert.equal((r.response.status as J).deletion.message, `Deleting s3://etcd-backups/${KEY}`);
  });

  it('the same request twice gives the same answer', () => {
    const spec = withSpec({ deletionPolicy: 'Delete' });
    assert.deepEqual(deleting(spec, succeededStatus()), deleting(spec, succeededStatus()));
  });
});

describe('finalizeBackup: an observed status that does not match the CRD', () => {
  for (const status of STATUSES_NOT_MATCHING_THE_CRD) {
    it(`status ${JSON.stringify(status)}: finalize answers without throwing`, () => {
      const object = backup({ status, spec: withSpec({ deletionPolicy: 'Delete' }) });
      assert.doesNotThrow(() => finalizeBackup(request(object), IMAGE));
    });
  }

  it('an observed delete Job whose status is not what the Job controller writes is answered without throwing', () => {
    for (const jobStatus of JOB_STATUSES_NOT_WRITTEN_BY_THE_JOB_CONTROLLER) {
      const spec = withSpec({ deletionPolicy: 'Delete' });
      const object = backup({ spec, status: st(sync(request(backup({ status: { report: succeeded } })))) });
      const req = request(object);
      const job = {
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: { name: DELETE_JOB, namespace: NS },
        status: jobStatus,
      };
      req.attachments![JOB_KEY] = { [DELETE_JOB]: job as KubernetesObject };
      assert.doesNotThrow(() => finalizeBackup(req, IMAGE), JSON.stringify(jobStatus));
    }
  });
});

describe('finalizeBackup: an object under Object Lock, the keys of a protected backup', () => {
  const finalizing = (spec: Record<string, unknown>, status: Record<string, unknown> | undefined, now: Date) => {
    const object = backup({ spec, status });
    object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
    return finalizeBackup({ ...request(object), finalizing: true }, IMAGE, now);
  };

  const lockedStatus = (retainUntil: string) => ({
    ...succeededStatus(),
    snapshot: { ...succeededStatus().snapshot, retainUntil },
  });

  it('deletionPolicy Delete with the object still locked: the backup goes at once, the object stays, and the status says why', () => {
    const r = finalizing(withSpec({ deletionPolicy: 'Delete' }), lockedStatus('2026-02-14T12:03:05Z'), LATER);
    assert.equal(r.response.finalized, true);
    assert.deepEqual(r.response.attachments, []);
    assert.equal(r.outcome, 'kept-locked');
    assert.equal(
      (r.response.status as J).deletion.message,
      `Kept s3://etcd-backups/${KEY}: it is locked by S3 Object Lock until 2026-02-14T12:03:05Z, and S3 refuses to delete it before then`,
    );
  });

  it('deletionPolicy Delete once the lock has expired: the delete Job runs as usual', () => {
    const r = finalizing(withSpec({ deletionPolicy: 'Delete' }), lockedStatus('2026-01-15T13:00:00Z'), LATER);
    assert.equal(r.response.finalized, false);
    assert.equal(r.outcome, 'deleting');
    assert.deepEqual(kinds(r), [`Job/${DELETE_JOB}`]);
  });

  it('a backup deleted mid-run is cleaned up at the key its Job writes, suffixes included', () => {
    const spec = protectedSpec({ deletionPolicy: 'Delete' });
    const object = backup({ spec, status: { report: running(1024) } });
    object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
    const r = finalizeBackup({ ...request(object, { attachments: [] }), finalizing: true }, IMAGE, LATER);
    const job = r.response.attachments.find((a) => a.kind === 'Job') as J;
    assert.equal(envValue(job, 'S3_KEY'), `${KEY}.zst.age`);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// What a real cluster does that Metacontroller never tells the hook (issue 13): refused creates, a terminating
// namespace.

describe('finalizeBackup: a delete Job Metacontroller could not create, a namespace being deleted', () => {
  const DEADLINE = DEFAULT_ATTACHMENT_DEADLINE_SECONDS;

  const at = (seconds: number) => new Date(NOW.getTime() + seconds * 1000);

  const namespaceObject = (terminating: boolean): KubernetesObject => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: NS, uid: 'ns-uid', ...(terminating && { deletionTimestamp: '2026-01-16T00:00:00Z' }) },
    status: { phase: terminating ? 'Terminating' : 'Active' },
  });

  const withNamespace = (req: DecoratorSyncRequest, terminating: boolean): DecoratorSyncRequest => ({
    ...req,
    related: { ...req.related, 'Namespace.v1': { [NS]: namespaceObject(terminating) } },
  });

  const deletingAt = (
    status: unknown,
    now: Date,
    opts: { deleteJob?: Record<string, unknown>; namespaceTerminating?: boolean } = {},
  ) => {
    const spec = withSpec({ deletionPolicy: 'Delete' });
    const object = backup({ spec, status });
    object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
    let req: DecoratorSyncRequest = { ...request(object), finalizing: true };
    if (opts.deleteJob) {
      const desired = finalizeBackup(request(backup({ spec, status })), IMAGE, NOW).response.attachments[0]!;
      req.attachments![JOB_KEY] = { [desired.metadata.name]: { ...desired, status: opts.deleteJob } };
    }
    if (opts.namespaceTerminating !== undefined) req = withNamespace(req, opts.namespaceTerminating);
    return finalizeBackup(req, IMAGE, now);
  };

  const fst = (r: { response: { status?: unknown } }): J => r.response.status;

  const readyStatus = () =>
    st(
      sync(
        request(backup({ spec: withSpec({ deletionPolicy: 'Delete' }), status: { report: succeeded } }), {
          attachments: observedAttachments(backup(), jobComplete),
        }),
      ),
    );

  it('a delete Job that never appears: the backup is let go after the deadline, keeping the object and saying so', () => {
    const first = deletingAt(readyStatus(), NOW);
    assert.equal(first.response.finalized, false);
    assert.equal(fst(first).deletion.startedAt, '2026-01-15T12:05:00Z');
    assert.equal(first.response.resyncAfterSeconds, DEADLINE);
    const waiting = deletingAt(fst(first), at(DEADLINE - 1));
    assert.equal(waiting.response.finalized, false);
    assert.equal(waiting.response.resyncAfterSeconds, 1);
    const gone = deletingAt(fst(first), at(DEADLINE));
    assert.equal(gone.response.finalized, true);
    assert.equal(gone.outcome, 'kept-delete-job-absent');
    assert.deepEqual(gone.response.attachments, []);
    assert.match(
      fst(gone).deletion.message,
      new RegExp(`^Kept s3://etcd-backups/${KEY}: the delete Job ${DELETE_JOB} did not appear within ${DEADLINE}s`),
    );
    assert.match(
      fst(gone).deletion.message,
      /kubectl get events -n talos-backup --field-selector involvedObject.name=manual-backup/,
    );
  });

  it('a delete Job that exists keeps the backup until it ends, deadline or not', () => {
    const first = deletingAt(readyStatus(), NOW);
    const r = deletingAt(fst(first), at(DEADLINE * 3), { deleteJob: jobActive });
    assert.equal(r.response.finalized, false);
    assert.equal(r.outcome, 'deleting');
    assert.equal(r.response.resyncAfterSeconds, undefined);
  });

  it('a namespace being deleted: the backup goes at once and its object is kept (no Job can be created there)', () => {
    const r = deletingAt(readyStatus(), NOW, { namespaceTerminating: true });
    assert.equal(r.response.finalized, true);
    assert.equal(r.outcome, 'kept-namespace-deleted');
    assert.deepEqual(r.response.attachments, []);
    assert.match(
      fst(r).deletion.message,
      new RegExp(`^Kept s3://etcd-backups/${KEY}: namespace ${NS} is being deleted`),
    );
    // A live namespace changes nothing.
    assert.equal(deletingAt(readyStatus(), NOW, { namespaceTerminating: false }).outcome, 'deleting');
  });

  it('a namespace being deleted while a delete Job runs: that Job may finish first; failed or gone, the backup goes', () => {
    const first = deletingAt(readyStatus(), NOW);
    assert.equal(
      deletingAt(fst(first), NOW, { deleteJob: jobActive, namespaceTerminating: true }).response.finalized,
      false,
    );
    assert.equal(
      deletingAt(fst(first), NOW, { deleteJob: jobComplete, namespaceTerminating: true }).outcome,
      'released',
    );
    const failed = deletingAt(fst(first), NOW, {
      deleteJob: jobFailed('BackoffLimitExceeded', 'Job has reached the specified backoff limit'),
      namespaceTerminating: true,
    });
    assert.equal(failed.outcome, 'kept-namespace-deleted');
  });
});
