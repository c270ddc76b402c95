// The backup decorator's sync hook, as a pure function of Metacontroller's request and the clock: which Job (and
// identity) to attach and what the status says (src/server/backup/status.ts).
//
// A finished backup is final: once the observed status records the outcome, the answer repeats it and attaches
// nothing, so Kubernetes removes the Job and its helpers, and the backup never runs again. Only a restore test of a
// Ready backup attaches a Job then (its own, src/server/backup/restore-test.ts), and changes only status.restoreTest
// and the RestoreTested condition.

import { findCondition, formatTime, parseTime } from '../../api/conditions.js';
import type { BackupSpec, BackupStatus, RestoreTestStatus } from '../../api/types.js';
import { readBackupStatus } from '../../api/validation.js';
import { BACKUP_MESSAGE, CONDITION, RESTORE_TEST_MESSAGE, TALOS_OPERATOR_OFF_MESSAGE } from '../conditions.js';
import type { DecoratorSyncRequest, DecoratorSyncResponse, KubernetesObject } from '../metacontroller/types.js';
import { backupEventsHint } from './hints.js';
import { reportingIdentity, snapshotJob, type JobImage } from './job.js';
import { readJobState } from './job-state.js';
import { attachmentName } from './names.js';
import { backupRef, checkSpec, observedJob } from './request.js';
import { DEFAULT_BACKUP_HOOK_SETTINGS, type BackupHookSettings } from './settings.js';
import { buildStatus, isFinished, judge, secondsSince, type Verdict } from './status.js';
import { resolveTalosSource } from './talos-source.js';
import {
  cannotRun,
  dueRequest,
  endTest,
  judgeRestoreTest,
  observedTestJob,
  restoreTestCondition,
  restoreTestRequests,
  withCondition,
} from './restore-test.js';
import { restoreTestJob, restoreTestJobName } from './restore-test-job.js';
import { secretsPlan } from './cluster-secrets.js';

/** How long a missing or unprovisioned TalosControlPlane is waited for (it may be created alongside the backup). */
export const CONTROL_PLANE_GRACE_SECONDS = 30;

export type BackupOutcome = 'pending' | 'running' | 'succeeded' | 'failed' | 'finished';

export interface BackupSyncResult {
  response: DecoratorSyncResponse;
  /** What this answer means; `finished` = the observed status already recorded the outcome. */
  outcome: BackupOutcome;
  /** The failure message, when this answer records a failure. */
  message?: string;
  /** A restore test's outcome, when this answer records it (for metrics). */
  restoreTest?: 'succeeded' | 'failed';
}

function outcomeOf(verdict: Verdict): BackupOutcome {
  if (verdict.phase === 'Succeeded') return 'succeeded';
  if (verdict.phase === 'Failed') return 'failed';
  return verdict.phase === 'Running' ? 'running' : 'pending';
}

/** The observed attachments, re-emitted as they are (without status and server-set metadata): OnDelete keeps them. */
function observedAttachments(request: DecoratorSyncRequest): KubernetesObject[] {
  return Object.values(request.attachments ?? {}).flatMap((byName) =>
    Object.values(byName).map((o) => {
      const { status: _status, metadata, ...rest } = structuredClone(o);
      const { name, namespace, labels } = metadata;
      const kept = { name, ...(namespace && { namespace }), ...(labels && { labels }) };
      return { ...rest, metadata: kept } as KubernetesObject;
    }),
  );
}

function answer(
  status: BackupStatus,
  attachments: KubernetesObject[],
  verdict: Verdict,
  resyncAfterSeconds?: number,
): BackupSyncResult {
  return {
    response: {
      status: status as Record<string, unknown>,
      attachments,
      ...(resyncAfterSeconds !== undefined && { resyncAfterSeconds }),
    },
    outcome: outcomeOf(verdict),
    ...(verdict.phase === 'Failed' && { message: verdict.message }),
  };
}

/**
 * A backup whose outcome is recorded: the recorded status as it is (same request, same answer), and nothing attached
 * (the snapshot Job goes) unless a restore test is due or running for a Ready backup. A restore test adds
 * status.restoreTest and the RestoreTested condition; Ready and everything else stay as recorded.
 */
function finished(
  request: DecoratorSyncRequest,
  recorded: BackupStatus,
  image: JobImage,
  settings: BackupHookSettings,
  now: Date,
): BackupSyncResult {
  const done: BackupSyncResult = {
    response: { status: recorded as Record<string, unknown>, attachments: [] },
    outcome: 'finished',
  };
  const { object } = request;
  const last = recorded.restoreTest;
  const ready = findCondition(recorded.conditions, CONDITION.ready)?.status === 'True';
  if (!ready || !recorded.snapshot) return done;
  const ref = backupRef(object);
  const answer = (
    test: RestoreTestStatus | undefined,
    attachments: KubernetesObject[],
    extra: Partial<BackupSyncResult> = {},
    resyncAfterSeconds?: number,
  ): BackupSyncResult => {
    const { restoreTest: _test, ...rest } = recorded;
    const conditions = test
      ? withCondition(
          recorded.conditions,
          restoreTestCondition(recorded.conditions, test, object.metadata.generation, now),
        )
      : (recorded.conditions ?? []).filter((c) => c.type !== CONDITION.restoreTested);
    const status: BackupStatus = { ...rest, ...(test && { restoreTest: test }), conditions };
    return {
      response: {
        status: status as Record<string, unknown>,
        attachments,
        ...(resyncAfterSeconds !== undefined && { resyncAfterSeconds }),
      },
      outcome: 'finished',
      ...extra,
    };
  };
  const counted = (test: RestoreTestStatus) => ({
    restoreTest: test.result === 'Succeeded' ? ('succeeded' as const) : ('failed' as const),
  });
  const checked = checkSpec(object);
  if (!checked.ok) {
    // A spec edited into one the CRD rejects: nothing new starts, and a running test ends, saying why.
    if (last?.result !== 'Running') return done;
    const ended = endTest(last, `${RESTORE_TEST_MESSAGE.cannotJudge}${checked.message}`, now);
    return answer(ended, [], counted(ended));
  }
  const spec = checked.spec;
  const requests = restoreTestRequests(request, spec);
  const observedJob = observedTestJob(request, ref.name);

  if (last?.result === 'Running') {
    // A test runs until it ends: a newer request (a later requestedAt, the schedule's next slot) waits for it. Its
    // Job is the one made for its request, never a Job of an earlier request still going.
    const asked = requests.find((r) => r.requestedAt === last.requestedAt) ?? requests[0];
    if (!asked) {
      // Nobody asks any more (spec.restoreTest removed, the schedule asks for another backup): no result.
      return answer(undefined, []);
    }
    const testRequest = { ...asked, requestedAt: last.requestedAt! };
    const job = observedJob?.requestedAt === last.requestedAt ? observedJob?.job : undefined;
    const stale = observedJob !== undefined && job === undefined;
    let test = judgeRestoreTest(ref, last, recorded, job, now);
    let resync: number | undefined;
    if (test.result === 'Running' && !job) {
      // Metacontroller never says that a create was refused (a ResourceQuota, an admission webhook, RBAC): the wait
      // is bounded as for the snapshot Job, from when the test was asked to start (the condition's transition).
      const since = findCondition(recorded.conditions, CONDITION.restoreTested)?.lastTransitionTime;
      const left = settings.attachmentDeadlineSeconds - (secondsSince(since, now) ?? 0);
      if (left <= 0) {
        test = endTest(
          last,
          `${RESTORE_TEST_MESSAGE.jobNotCreated}${restoreTestJobName(ref.name)} did not appear within ` +
            `${settings.attachmentDeadlineSeconds}s of being asked for; Metacontroller records why as a Warning ` +
            `event on this backup: ${backupEventsHint(ref)}`,
          now,
        );
      } else resync = stale ? 5 : Math.ceil(left);
    }
    const keepJob = !stale && (test.result === 'Running' || job !== undefined);
    const attachments = keepJob
      ? [...reportingIdentity(ref, 'restore-test'), restoreTestJob(ref, spec, recorded.snapshot, testRequest, image)]
      : [];
    return answer(test, attachments, test.result === 'Running' ? {} : counted(test), resync);
  }

  const testRequest = dueRequest(requests, last);
  // Nothing due: a finished test's Job goes once its outcome is recorded.
  if (!testRequest) return done;
  const refused = cannotRun(spec, recorded, testRequest);
  if (refused) {
    const test = endTest(
      { requestedAt: testRequest.requestedAt, etcdImage: testRequest.settings.etcdImage },
      refused,
      now,
    );
    return answer(test, [], counted(test));
  }
  const test: RestoreTestStatus = {
    requestedAt: testRequest.requestedAt,
    etcdImage: testRequest.settings.etcdImage,
    result: 'Running',
    message: RESTORE_TEST_MESSAGE.waiting,
  };
  // An earlier request's Job still there goes first (same name): the new one is attached once it is gone.
  if (observedJob) return answer(test, [], {}, 5);
  return answer(test, [
    ...reportingIdentity(ref, 'restore-test'),
    restoreTestJob(ref, spec, recorded.snapshot, testRequest, image),
  ]);
}

function fail(object: KubernetesObject, observed: BackupStatus, message: string, now: Date): BackupSyncResult {
  const status = buildStatus(object, observed, { phase: 'Failed', message }, {}, now);
  return { response: { status: status as Record<string, unknown>, attachments: [] }, outcome: 'failed', message };
}

/** The record of cluster secrets the spec says are not stored (an unencrypted talosControlPlaneRef backup). */
function skippedSecrets(spec: BackupSpec) {
  const plan = secretsPlan(spec);
  return plan.action === 'skip' ? plan.record : undefined;
}

export function syncBackup(
  request: DecoratorSyncRequest,
  now: Date,
  image: JobImage,
  settings: BackupHookSettings = DEFAULT_BACKUP_HOOK_SETTINGS,
): BackupSyncResult {
  const { object } = request;
  // A recorded outcome is final even if the rest of the status does not match the CRD: never run it again.
  const recorded = (object.status ?? {}) as BackupStatus;
  if (Array.isArray(recorded.conditions) && isFinished(recorded))
    return finished(request, recorded, image, settings, now);
  const observed = readBackupStatus(object.status);

  const checked = checkSpec(object);
  if (!checked.ok) return fail(object, observed, checked.message, now);
  const ref = backupRef(object);
  const jobName = attachmentName(ref.name, 'snapshot');
  const job = observedJob(request, jobName);

  if (checked.spec.talosControlPlaneRef && !settings.talosOperator && !job) {
    return fail(object, observed, TALOS_OPERATOR_OFF_MESSAGE, now);
  }
  const resolved = resolveTalosSource(checked.spec, ref.namespace, request.related);
  if (!resolved.ok && job) {
    // The Job already has what it needs (its spec never changes: OnDelete): a TalosControlPlane deleted or
    // briefly unprovisioned meanwhile must not fail a backup that is running or has stored its snapshot.
    const verdict = judge(ref, observed.report, readJobState(job), skippedSecrets(checked.spec));
    return answer(buildStatus(object, observed, verdict, {}, now), observedAttachments(request), verdict);
  }
  if (!resolved.ok) {
    const created = parseTime(ref.creationTimestamp) ?? now;
    const waitLeft = CONTROL_PLANE_GRACE_SECONDS - (now.getTime() - created.getTime()) / 1000;
    if (!resolved.transient || waitLeft <= 0) return fail(object, observed, resolved.message, now);
    const message = `${resolved.message}; waiting up to ${CONTROL_PLANE_GRACE_SECONDS}s`;
    const waiting: Verdict = { phase: 'Pending', message };
    return answer(buildStatus(object, observed, waiting, {}, now), [], waiting, Math.ceil(waitLeft));
  }
  const source = resolved.source;
  const jobState = job && readJobState(job);
  const verdict = judge(ref, observed.report, jobState, skippedSecrets(checked.spec));
  let resyncAfterSeconds: number | undefined;
  if (!job && verdict.phase === 'Pending') {
    // Asked for since the backup became Progressing (the hook's own clock; the first answer sets it).
    const progressing = findCondition(observed.conditions, CONDITION.progressing);
    const waited = progressing?.status === 'True' ? (secondsSince(progressing.lastTransitionTime, now) ?? 0) : 0;
    const deadline = settings.attachmentDeadlineSeconds;
    const left = deadline - waited;
    if (left <= 0) {
      const message =
        `${BACKUP_MESSAGE.jobNotCreated}${jobName} did not appear within ${deadline}s of being asked for. ` +
        'Metacontroller records why as a Warning event on this backup (a ResourceQuota on jobs, an admission ' +
        'webhook, RBAC that does not let Metacontroller create the Job, its ServiceAccount, Role or RoleBinding): ' +
        backupEventsHint(ref);
      return fail(object, observed, message, now);
    }
    resyncAfterSeconds = Math.ceil(left);
  }
  const extra = { cluster: source.cluster, ...(jobState?.startTime && { startTime: jobState.startTime }) };
  const status = buildStatus(object, observed, verdict, extra, now);
  // The Job and its identity stay attached until the observed status records the outcome (next sync): the
  // status write comes first, and a backup whose outcome was recorded is never run again.
  const attachments = [...reportingIdentity(ref), snapshotJob(ref, checked.spec, source, image)];
  return answer(status, attachments, verdict, resyncAfterSeconds);
}
