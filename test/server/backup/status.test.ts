// A backup's status (src/server/backup/status.ts): the verdict on a report and a Job, the Ready message, the
// conditions and their lastTransitionTime; directly, as tables, and through the sync hook.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BACKUP_LABEL, COMPONENT_LABEL } from '../../../src/api/constants.js';
import type { BackupReport, BackupStatus, SnapshotInfo } from '../../../src/api/types.js';
import type { JobState } from '../../../src/server/backup/job-state.js';
import { isFinished, judge, storedMessage, storedSnapshot, type Verdict } from '../../../src/server/backup/status.js';
import {
  backup,
  cond,
  CREATED,
  failedReport,
  type J,
  JOB,
  JOB_STARTED,
  jobActive,
  jobComplete,
  KEY,
  NAME,
  NS,
  observedAttachments,
  protectedSpec,
  report,
  request,
  running,
  SHA,
  st,
  stored,
  succeeded,
  sync,
  UID,
} from './fixtures.js';

describe('syncBackup: lastTransitionTime moves only when a condition status changes', () => {
  it('Pending → Running → Succeeded', () => {
    const t1 = new Date('2026-01-15T12:00:01Z');
    const t2 = new Date('2026-01-15T12:01:00Z');
    const t3 = new Date('2026-01-15T12:03:30Z');
    const pending = sync(request(backup()), t1);
    const runningAnswer = sync(
      request(backup({ status: st(pending) }), { attachments: observedAttachments(backup(), jobActive) }),
      t2,
    );
    for (const type of ['Progressing', 'Ready', 'Failed'])
      assert.equal(cond(runningAnswer, type)!.lastTransitionTime, '2026-01-15T12:00:01Z', type);
    assert.notEqual(cond(runningAnswer, 'Progressing')!.message, cond(pending, 'Progressing')!.message);

    const done = sync(
      request(backup({ status: { ...st(runningAnswer), report: succeeded } }), {
        attachments: observedAttachments(backup(), jobComplete),
      }),
      t3,
    );
    assert.equal(cond(done, 'Progressing')!.lastTransitionTime, '2026-01-15T12:03:30Z');
    assert.equal(cond(done, 'Ready')!.lastTransitionTime, '2026-01-15T12:03:30Z');
    assert.equal(cond(done, 'Failed')!.lastTransitionTime, '2026-01-15T12:00:01Z', 'Failed stayed False');
    assert.equal(st(done).startTime, JOB_STARTED, 'the first start seen stays');
  });
});

describe('syncBackup: the status of a protected backup', () => {
  it('records what the Job reports about format, lock and verification, and says it in Ready', () => {
    const snapshot = {
      ...stored,
      key: `${KEY}.zst.age`,
      compression: 'zstd',
      encrypted: true,
      retainUntil: '2026-02-14T12:03:05Z',
      verified: true,
      verifiedAt: '2026-01-15T12:03:04Z',
      verification: 'Full' as const,
      revision: 4242,
      keys: 5000,
    };
    const r = sync(
      request(
        backup({
          spec: protectedSpec(),
          status: {
            report: report({
              state: 'Succeeded',
              bytesUploaded: stored.size,
              snapshot,
              updatedAt: '2026-01-15T12:03:05Z',
            }),
          },
        }),
      ),
    );
    assert.equal(st(r).phase, 'Succeeded');
    assert.deepEqual(st(r).snapshot, snapshot);
    assert.match(
      cond(r, 'Ready')!.message,
      /^Snapshot stored at s3:\/\/etcd-backups\/\S+\.db\.zst\.age \(73400320 bytes, zstd, age-encrypted, locked until 2026-02-14T12:03:05Z, sha256 a{64}\); verified: read back, etcd trailer and database structure sound \(revision 4242, 5000 keys\)$/,
    );
    const bytesOnly = sync(
      request(
        backup({
          spec: protectedSpec(),
          status: {
            report: report({
              state: 'Succeeded',
              snapshot: { ...snapshot, verification: 'StoredBytes', revision: undefined, keys: undefined } as J,
            }),
          },
        }),
      ),
    );
    assert.match(
      cond(bytesOnly, 'Ready')!.message,
      /; verified: the stored bytes read back match \(no age identity to check the snapshot inside\)$/,
    );
  });

  it('a failed verification fails the backup with its message', () => {
    const message =
      'Snapshot verification failed: database structure: page 57 (reached from bucket "key") has id 58 in its header';
    const r = sync(
      request(backup({ spec: protectedSpec(), status: { report: failedReport(message, false) } }), {
        attachments: observedAttachments(backup(), jobActive),
      }),
    );
    assert.equal(st(r).phase, 'Failed');
    assert.equal(st(r).message, message);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The verdict, the Ready message and isFinished, directly.

const REF = { name: NAME, namespace: NS, uid: UID };
const PODS =
  `kubectl get events -n ${NS} --field-selector involvedObject.name=${JOB} (and the pods' events; while the Job ` +
  `exists: kubectl logs -n ${NS} -l ${BACKUP_LABEL}=${NAME},${COMPONENT_LABEL}=snapshot)`;
const jobFailedState: JobState = {
  active: 0,
  failedPods: 3,
  failed: { reason: 'BackoffLimitExceeded', message: 'limit reached', time: '2026-01-15T12:04:01Z' },
};

describe('judge: the verdict on a report and a Job', () => {
  const cases: { name: string; report?: BackupReport; job?: JobState; expected: Omit<Verdict, 'snapshot'> }[] = [
    {
      name: 'no report, no Job: Pending, waiting for the Job',
      expected: { phase: 'Pending', message: `Waiting for the snapshot Job ${JOB} to start` },
    },
    {
      name: 'a Job with an active pod: Running',
      job: { active: 1, failedPods: 0 },
      expected: { phase: 'Running', message: `The snapshot Job ${JOB} is running` },
    },
    {
      name: 'a started Job without active pods (between attempts): Running',
      job: { active: 0, failedPods: 1, startTime: JOB_STARTED },
      expected: { phase: 'Running', message: `The snapshot Job ${JOB} is running` },
    },
    {
      name: 'a Running report: Running, with the bytes uploaded so far',
      report: running(4096),
      job: { active: 1, failedPods: 0 },
      expected: { phase: 'Running', message: 'Streaming the snapshot to S3 (4096 bytes uploaded)' },
    },
    {
      name: 'a Running report without bytes: 0 bytes uploaded',
      report: report({ state: 'Running' }),
      expected: { phase: 'Running', message: 'Streaming the snapshot to S3 (0 bytes uploaded)' },
    },
    {
      name: 'a retryable Failed report while the Job lives: Running, the Job retries',
      report: failedReport('Failed to upload snapshot to S3: connection reset', true),
      job: { active: 1, failedPods: 1 },
      expected: {
        phase: 'Running',
        message: 'An attempt failed, the Job retries: Failed to upload snapshot to S3: connection reset',
      },
    },
    {
      name: 'a Failed report without a message is still a failed attempt',
      report: report({ state: 'Failed', retryable: true }),
      expected: { phase: 'Running', message: 'An attempt failed, the Job retries: the snapshot attempt failed' },
    },
    {
      name: "a Failed report with retryable:false: Failed at once, at the report's time",
      report: failedReport('Invalid talosconfig', false),
      job: { active: 1, failedPods: 0 },
      expected: { phase: 'Failed', message: 'Invalid talosconfig', completionTime: '2026-01-15T12:02:40Z' },
    },
    {
      name: "a Succeeded report naming the whole snapshot: Succeeded, at the report's time",
      report: succeeded,
      expected: {
        phase: 'Succeeded',
        message: storedMessage(storedSnapshot(succeeded)!),
        completionTime: '2026-01-15T12:03:05Z',
      },
    },
    {
      name: 'the Job Failed without a report: Failed, quoting the Job and where to look',
      job: jobFailedState,
      expected: {
        phase: 'Failed',
        message:
          'The snapshot Job failed without reporting a result (BackoffLimitExceeded: limit reached); the pod was ' +
          `probably killed (out of memory, deadline, eviction) or never started (image pull): see ${PODS}`,
        completionTime: '2026-01-15T12:04:01Z',
      },
    },
    {
      name: 'the Job Failed after a retryable Failed report: the report, then how the Job gave up',
      report: failedReport('Failed to upload snapshot to S3: SlowDown', true),
      job: jobFailedState,
      expected: {
        phase: 'Failed',
        message:
          'Failed to upload snapshot to S3: SlowDown (the snapshot Job gave up after 3 failed attempt(s): ' +
          'BackoffLimitExceeded: limit reached)',
        completionTime: '2026-01-15T12:04:01Z',
      },
    },
    {
      name: 'the Job Complete with a Succeeded report missing a hash: Failed, no stored snapshot',
      report: report({ state: 'Succeeded', snapshot: { ...stored, etcdSha256: '' } }),
      job: { active: 0, failedPods: 0, complete: { time: '2026-01-15T12:03:10Z' } },
      expected: {
        phase: 'Failed',
        message: `The snapshot Job completed without reporting a stored snapshot; see ${PODS}`,
        completionTime: '2026-01-15T12:03:10Z',
      },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { snapshot: _snapshot, ...verdict } = judge(REF, c.report, c.job);
      assert.deepEqual(verdict, c.expected);
    });
  }
});

describe('storedSnapshot and storedMessage: the snapshot a report names and the Ready message', () => {
  const base: SnapshotInfo = { ...stored, compression: 'none', encrypted: false, verified: false };
  const where = `Snapshot stored at s3://etcd-backups/${KEY}`;
  const cases: { name: string; snapshot: SnapshotInfo; expected: string }[] = [
    { name: 'plain: where, size and hash', snapshot: base, expected: `${where} (73400320 bytes, sha256 ${SHA})` },
    {
      name: 'compressed, encrypted and locked: each said',
      snapshot: { ...base, compression: 'zstd', encrypted: true, retainUntil: '2026-02-14T12:03:05Z' },
      expected: `${where} (73400320 bytes, zstd, age-encrypted, locked until 2026-02-14T12:03:05Z, sha256 ${SHA})`,
    },
    {
      name: 'verified by its stored bytes only',
      snapshot: { ...base, verified: true, verification: 'StoredBytes' },
      expected:
        `${where} (73400320 bytes, sha256 ${SHA}); verified: the stored bytes read back match ` +
        '(no age identity to check the snapshot inside)',
    },
    {
      name: 'fully verified, with the revision and key count',
      snapshot: { ...base, verified: true, verification: 'Full', revision: 4242, keys: 5000 },
      expected:
        `${where} (73400320 bytes, sha256 ${SHA}); verified: read back, etcd trailer and database structure sound ` +
        '(revision 4242, 5000 keys)',
    },
    {
      name: 'fully verified without a revision',
      snapshot: { ...base, verified: true, verification: 'Full' },
      expected: `${where} (73400320 bytes, sha256 ${SHA}); verified: read back, etcd trailer and database structure sound`,
    },
  ];
  for (const c of cases) it(c.name, () => assert.equal(storedMessage(c.snapshot), c.expected));

  it('a report naming the whole snapshot gives it with defaults filled in', () => {
    assert.deepEqual(storedSnapshot(succeeded), base);
  });

  it('a report missing the bucket, key, size or a hash names no snapshot', () => {
    for (const missing of ['bucket', 'key', 'size', 'sha256', 'etcdSha256'] as const) {
      const { [missing]: _gone, ...rest } = stored;
      assert.equal(storedSnapshot(report({ state: 'Succeeded', snapshot: rest as J })), undefined, missing);
    }
  });
});

describe('isFinished', () => {
  const status = (ready: string, failed: string) =>
    ({
      conditions: [
        { type: 'Ready', status: ready, reason: 'x', message: 'x', lastTransitionTime: CREATED },
        { type: 'Failed', status: failed, reason: 'x', message: 'x', lastTransitionTime: CREATED },
      ],
    }) as BackupStatus;
  const cases: { name: string; status: BackupStatus; expected: boolean }[] = [
    { name: 'no conditions: not finished', status: {}, expected: false },
    { name: 'Ready=True: finished', status: status('True', 'False'), expected: true },
    { name: 'Failed=True: finished', status: status('False', 'True'), expected: true },
    { name: 'both False: not finished', status: status('False', 'False'), expected: false },
    { name: 'Unknown is not True: not finished', status: status('Unknown', 'Unknown'), expected: false },
  ];
  for (const c of cases) it(c.name, () => assert.equal(isFinished(c.status), c.expected));
});
