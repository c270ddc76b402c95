// The snapshot Job's failure handling by the real Job controller (kube-controller-manager v1.36), with the test
// kubelet running its pods: exit code 1 retries up to spec.job.backoffLimit (the controller's pod backoff is real
// time: 10 s before the second pod) and ends in BackoffLimitExceeded; spec.job.activeDeadlineSeconds ends a stuck
// snapshot with DeadlineExceeded, the controller deleting the pod and the kubelet SIGTERMing it. In each case the
// hook, fed the Job's real status, fails the backup with the Job's reason. (Exit code 2 and the podFailurePolicy:
// job-run.test.ts.)

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import type { BackupStatus } from '../../../src/api/types.js';
import { BUCKET, NAMESPACE, useJobCluster, type JobCluster, type Obj } from './job-cluster.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const jobCondition = (job: Obj) =>
  (
    (job.status as { conditions?: { type: string; status: string; reason?: string; message?: string }[] }).conditions ??
    []
  ).find((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');
const report = (o: Obj) => (o.status as BackupStatus | undefined)?.report;

describe('the snapshot Job under the real Job controller', () => {
  const cluster = useJobCluster();
  let c: JobCluster;

  it('exit code 1 (Talos unavailable) is retried up to spec.job.backoffLimit, then BackoffLimitExceeded fails the backup', async () => {
    c = cluster();
    const backup = await c.createBackup({ spec: (s) => ({ ...s, job: { backoffLimit: 1 } }) });
    c.talos.setFault({ kind: 'unavailable', times: 1000 });
    try {
      const { jobName, run: first } = await c.runJob(backup);
      assert.equal(first.exitCode, 1, 'a failure another attempt may fix');
      assert.match(first.stderr, /^Failed to take etcd snapshot: cannot reach the Talos API at .*Unavailable/m);
      assert.equal(report(await c.backupNow(backup.metadata.name))?.retryable, true);

      // While the Job waits to retry, the backup is still running.
      await c.kubelet.waitFor(
        'the Job controller to count the failed pod',
        async () => ((await c.jobNow(jobName))?.status as { failed?: number } | undefined)?.failed === 1,
        20_000,
      );
      const retrying = await c.sync(backup.metadata.name);
      assert.equal(retrying.outcome, 'running');
      assert.match(
        (retrying.response.status as BackupStatus).conditions!.find((x) => x.type === 'Progressing')!.message,
        /failed, the Job retries: Failed to take etcd snapshot: .*Unavailable/,
      );

      const second = await c.kubelet.waitForPod(
        { namespace: NAMESPACE, job: jobName, attempt: 2 },
        'Terminated',
        90_000,
      );
      assert.notEqual(second.name, first.name, 'a new pod');
      assert.equal(second.exitCode, 1);
      const job = await c.jobFinished(jobName);
      assert.deepEqual([jobCondition(job)?.type, jobCondition(job)?.reason], ['Failed', 'BackoffLimitExceeded']);
      assert.equal((job.status as { failed?: number }).failed, 2, 'backoffLimit 1: two pods');
      assert.equal(c.kubelet.pods().filter((r) => r.job === jobName).length, 2);

      const { response, outcome } = await c.sync(backup.metadata.name);
      assert.equal(outcome, 'failed');
      const status = response.status as BackupStatus;
      assert.equal(status.phase, 'Failed');
      assert.match(
        status.message!,
        /^Failed to take etcd snapshot: .*Unavailable.* \(the snapshot Job gave up after 2 failed attempt\(s\): BackoffLimitExceeded: Job has reached the specified backoff limit\)$/,
      );
      assert.equal(status.conditions!.find((x) => x.type === 'Failed')?.status, 'True');
    } finally {
      c.talos.setFault(undefined);
    }
  });

  it('spec.job.activeDeadlineSeconds ends a stuck snapshot: the Job controller deletes the pod (SIGTERM), DeadlineExceeded fails the backup', async () => {
    const backup = await c.createBackup({ spec: (s) => ({ ...s, job: { activeDeadlineSeconds: 8 } }) });
    // The stream stops after 4 KiB and never resumes (the idle timeout, 60 s, is far away).
    c.talos.setFault({ kind: 'stall', afterBytes: 4096, times: 1 });
    try {
      const { jobName } = await c.startJob(backup);
      const run = await c.kubelet.waitForPod({ namespace: NAMESPACE, job: jobName }, 'Running', 30_000);
      await c.kubelet.waitForPod({ namespace: NAMESPACE, job: jobName }, 'Terminated', 60_000);
      assert.deepEqual(run.signalsSent, ['SIGTERM'], 'deleted by the Job controller, with the grace period');
      assert.equal(run.exitCode, 1, run.stderr);
      assert.match(run.stderr, /stopped \(SIGTERM\)/);
      const job = await c.jobFinished(jobName);
      assert.deepEqual([jobCondition(job)?.type, jobCondition(job)?.reason], ['Failed', 'DeadlineExceeded']);
      assert.equal(c.kubelet.pods().filter((r) => r.job === jobName).length, 1, 'no retry after the deadline');
      assert.deepEqual(
        (await c.rgw.client().send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))).Uploads ?? [],
        [],
      );

      const { response, outcome } = await c.sync(backup.metadata.name);
      assert.equal(outcome, 'failed');
      const status = response.status as BackupStatus;
      assert.match(
        status.message!,
        /\(the snapshot Job gave up after 1 failed attempt\(s\): DeadlineExceeded: Job was active longer than specified deadline\)$/,
      );
    } finally {
      c.talos.setFault(undefined);
    }
  });
});
