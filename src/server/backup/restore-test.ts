// Restore tests of a backup, as pure functions of the backup decorator's request: whether one is due (asked for by
// the backup's spec.restoreTest, or by its schedule's restore-test slot), and what its Job and report say.
// A request is its time: a test runs when a request is later than the one the last test answered, so requests
// from both sources never make a test run twice, and a newer one waits for a running test to end.

import { formatTime, nextCondition, parseTime, type Condition } from '../../api/conditions.js';
import { RELATED_SCHEDULE_KEY, RESTORE_TEST_REQUEST_ANNOTATION } from '../../api/constants.js';
import { owningSchedule } from '../../api/ownership.js';
import type { BackupSpec, BackupStatus, RestoreTestStatus, ScheduleStatus } from '../../api/types.js';
import { validateSchedule } from '../../api/validation.js';
import { CONDITION, RESTORE_TEST_MESSAGE, RESTORE_TEST_REASON } from '../conditions.js';
import type { DecoratorSyncRequest, KubernetesObject } from '../metacontroller/types.js';
import { podsHint } from './hints.js';
import type { BackupRef } from './job.js';
import { failureText, readJobState } from './job-state.js';
import { restoreTestIdentity, restoreTestJobName, type RestoreTestRequest } from './restore-test-job.js';
import { relatedObject } from './talos-source.js';

const later = (a: string | undefined, b: string | undefined) => {
  const ta = parseTime(a);
  const tb = parseTime(b);
  return ta !== undefined && (tb === undefined || ta > tb);
};

/** The requests for a test of this backup, newest first: its own spec.restoreTest, its schedule's current slot. */
export function restoreTestRequests(request: DecoratorSyncRequest, spec: BackupSpec): RestoreTestRequest[] {
  const { object } = request;
  const requests: RestoreTestRequest[] = [];
  if (spec.restoreTest) {
    const { requestedAt, ...settings } = spec.restoreTest;
    const at = parseTime(requestedAt) ?? parseTime(object.metadata.creationTimestamp);
    // The spec was read through the CRD's schema (checkSpec): its defaults are applied.
    if (at) requests.push({ requestedAt: formatTime(at), settings });
  }
  const scheduleName = owningSchedule(object);
  const schedule = scheduleName ? relatedObject(request.related, RELATED_SCHEDULE_KEY, scheduleName) : undefined;
  const asked = (schedule?.status as ScheduleStatus | undefined)?.restoreTestRequest;
  const at = parseTime(asked?.requestedAt);
  if (schedule && at && asked?.backup === object.metadata.name) {
    // Read through the CRD's schema, as the schedule hook reads it: its defaults applied, a bad spec ignored.
    const validated = validateSchedule(schedule);
    const scheduled = validated.ok ? validated.value.restoreTest : undefined;
    if (scheduled) {
      const { schedule: _cron, ...settings } = scheduled;
      requests.push({ requestedAt: formatTime(at), settings });
    }
  }
  return requests.sort((a, b) => (later(a.requestedAt, b.requestedAt) ? -1 : 1));
}

/** The newest request the last test did not answer, if any. */
export function dueRequest(
  requests: RestoreTestRequest[],
  last: RestoreTestStatus | undefined,
): RestoreTestRequest | undefined {
  const newest = requests[0];
  return newest && (!last?.requestedAt || later(newest.requestedAt, last.requestedAt)) ? newest : undefined;
}

/** Why a request cannot run at all (no Job is made): an encrypted backup without an identity to decrypt it. */
export function cannotRun(spec: BackupSpec, status: BackupStatus, request: RestoreTestRequest): string | undefined {
  if (status.snapshot?.encrypted && !restoreTestIdentity(spec, request.settings)) {
    return (
      'the backup is age-encrypted and no age identity is given: set spec.restoreTest.identitySecretRef (on the ' +
      'schedule for its restore tests) or spec.encryption.age.identitySecretRef, a Secret key holding an identity of one of its recipients'
    );
  }
  return undefined;
}

/** The observed restore-test Job, if any, and the request it was made for. */
export function observedTestJob(
  request: DecoratorSyncRequest,
  backupName: string,
): { job: KubernetesObject; requestedAt: string | undefined } | undefined {
  const name = restoreTestJobName(backupName);
  const byName = request.attachments?.['Job.batch/v1'];
  const job = byName?.[name] ?? byName?.[`${request.object.metadata.namespace ?? ''}/${name}`];
  return job && { job, requestedAt: job.metadata.annotations?.[RESTORE_TEST_REQUEST_ANNOTATION] };
}

const seconds = (from: string | undefined, to: string | undefined) => {
  const a = parseTime(from);
  const b = parseTime(to);
  return a && b ? Math.max(0, Math.round((b.getTime() - a.getTime()) / 100) / 10) : undefined;
};

/** A test ended by the hook itself (no Job, or one that never appeared): Failed with `message`. */
export function endTest(test: RestoreTestStatus, message: string, now: Date): RestoreTestStatus {
  const completionTime = formatTime(now);
  const duration = seconds(test.startTime, completionTime);
  return {
    ...test,
    result: 'Failed',
    completionTime,
    ...(duration !== undefined && { durationSeconds: duration }),
    message,
  };
}

/** The test's status, from what was recorded, the Job's report and the Job. */
export function judgeRestoreTest(
  ref: BackupRef,
  current: RestoreTestStatus,
  status: BackupStatus,
  job: KubernetesObject | undefined,
  now: Date,
): RestoreTestStatus {
  const report = status.restoreTestReport?.requestedAt === current.requestedAt ? status.restoreTestReport : undefined;
  const state = job ? readJobState(job) : undefined;
  const startTime = current.startTime ?? report?.startedAt ?? state?.startTime;
  const base = { ...current, ...(startTime && { startTime }) };
  const end = (result: 'Succeeded' | 'Failed', message: string, time?: string): RestoreTestStatus => {
    const completionTime = time ?? formatTime(now);
    const duration = seconds(startTime, completionTime);
    return {
      ...base,
      result,
      completionTime,
      ...(duration !== undefined && { durationSeconds: duration }),
      ...(report?.etcdVersion && { etcdVersion: report.etcdVersion }),
      ...(report?.revision !== undefined && { revision: report.revision }),
      ...(report?.keys !== undefined && { keys: report.keys }),
      ...(report?.servedKeys !== undefined && { servedKeys: report.servedKeys }),
      message,
    };
  };
  if (report?.state === 'Succeeded') {
    return end(
      'Succeeded',
      `restored into ${current.etcdImage ?? 'etcd'}: etcd ${report.etcdVersion ?? ''} served revision ` +
        `${report.revision ?? '?'} and ${report.servedKeys ?? '?'} keys at the backup's revision, the newest read ` +
        `back; the snapshot holds the recorded ${report.keys ?? '?'} keys (revisions)`,
      report.updatedAt,
    );
  }
  if (report?.state === 'Failed' && (state?.failed || state?.complete || !job)) {
    return end('Failed', report.message || 'the restore test failed', report.updatedAt);
  }
  if (state?.failed) {
    const why = failureText(state.failed);
    const said = report?.state === 'Failed' && report.message ? `${report.message} (${why})` : undefined;
    return end(
      'Failed',
      said ??
        `the restore-test Job ${restoreTestJobName(ref.name)} failed without reporting why (${why}): the pod was probably ` +
          `killed (out of memory: give spec.restoreTest.resources more, deadline, eviction) or an image could not be ` +
          `pulled; see ${podsHint(ref)}`,
      state.failed.time,
    );
  }
  if (state?.complete) {
    return end('Failed', `the restore-test Job completed without reporting a result; see ${podsHint(ref)}`);
  }
  const step = report?.step === 'check' ? 'questioning the restored etcd' : 'downloading and verifying the backup';
  return {
    ...base,
    result: 'Running',
    message: report ? `running: ${step}` : 'waiting for the restore-test Job to start',
  };
}

/** The backup's RestoreTested condition, from its latest test. */
export function restoreTestCondition(
  observed: readonly Condition[] | undefined,
  test: RestoreTestStatus,
  generation: number | undefined,
  now: Date,
): Condition {
  const gen = generation === undefined ? {} : { observedGeneration: generation };
  const [status, reason] =
    test.result === 'Succeeded'
      ? (['True', RESTORE_TEST_REASON.succeeded] as const)
      : test.result === 'Failed'
        ? (['False', RESTORE_TEST_REASON.failed] as const)
        : (['Unknown', RESTORE_TEST_REASON.running] as const);
  const message = `${test.requestedAt ? `restore test asked for at ${test.requestedAt}: ` : ''}${test.message ?? ''}`;
  return nextCondition(observed, { type: CONDITION.restoreTested, status, reason, message, ...gen }, now);
}

/** The conditions with RestoreTested replaced (the others, Ready among them, as recorded). */
export function withCondition(conditions: readonly Condition[] | undefined, condition: Condition): Condition[] {
  return [...(conditions ?? []).filter((c) => c.type !== condition.type), condition];
}
