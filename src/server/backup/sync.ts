// The backup decorator's sync hook, as a pure function of Metacontroller's request and the clock: which Job (and
// identity) to attach and what the status says (src/server/backup/status.ts).
//
// A finished backup is final: once the observed status records the outcome, the answer repeats it and attaches
// nothing, so Kubernetes removes the Job and its helpers, and the backup never runs again.

import { findCondition, formatTime, parseTime } from '../../api/conditions.js';
import type { BackupSpec, BackupStatus, RestoreTestStatus } from '../../api/types.js';
import { readBackupStatus } from '../../api/validation.js';
import { BACKUP_MESSAGE, CONDITION, TALOS_OPERATOR_OFF_MESSAGE } from '../conditions.js';
import type { DecoratorSyncRequest, DecoratorSyncResponse, KubernetesObject } from '../metacontroller/types.js';
import { backupEventsHint } from './hints.js';
import { snapshotIdentity, snapshotJob, type JobImage } from './job.js';
import { readJobState } from './job-state.js';
import { attachmentName } from './names.js';
import { backupRef, checkSpec, observedJob } from './request.js';
import { DEFAULT_BACKUP_HOOK_SETTINGS, type BackupHookSettings } from './settings.js';
import { buildStatus, isFinished, judge, secondsSince, type Verdict } from './status.js';
import { resolveTalosSource } from './talos-source.js';
import {
  cannotRun,
  dueRequest,
  judgeRestoreTest,
  observedTestJob,
  restoreTestCondition,
  restoreTestRequests,
  withCondition,
} from './restore-test.js';
import { restoreTestJob, type RestoreTestRequest } from './restore-test-job.js';
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
function finished(request: DecoratorSyncRequest, recorded: BackupStatus, image: JobImage, now: Date): BackupSyncResult {
  const done: BackupSyncResult = {
    response: { status: recorded as Record<string, unknown>, attachments: [] },
    outcome: 'finished',
  };
  const { object } = request;
  const ready = findCondition(recorded.conditions, CONDITION.ready)?.status === 'True';
  const checked = ready && recorded.snapshot ? checkSpec(object) : undefined;
  if (!checked?.ok || !recorded.snapshot) return done;
  const spec = checked.spec;
  const ref = backupRef(object);
  const last = recorded.restoreTest;
  const observedJob = observedTestJob(request, ref.name);
  let test: RestoreTestStatus;
  let testRequest: RestoreTestRequest | undefined;
  if (last?.result === 'Running') {
    // A test runs: its Job is the one made for its request (a Job of an earlier request still going is not).
    testRequest = restoreTestRequests(request, spec).find((r) => r.requestedAt === last.requestedAt);
    const job = observedJob?.requestedAt === last.requestedAt ? observedJob?.job : undefined;
    test = testRequest
      ? judgeRestoreTest(ref, last, recorded, job, now)
      : {
          ...last,
          result: 'Failed',
          completionTime: formatTime(now),
          message:
            'the request for this restore test was withdrawn (spec.restoreTest removed, or the schedule moved on)',
        };
  } else {
    testRequest = dueRequest(restoreTestRequests(request, spec), last);
    if (!testRequest) {
      // Nothing due: a finished test's Job goes once its outcome is recorded.
      return done;
    }
    const refused = cannotRun(spec, recorded, testRequest);
    test = {
      requestedAt: testRequest.requestedAt,
      etcdImage: testRequest.settings.etcdImage,
      ...(refused
        ? { result: 'Failed', completionTime: formatTime(now), message: refused }
        : { result: 'Running', message: 'waiting for the restore-test Job to start' }),
    };
  }
  const status: BackupStatus = {
    ...recorded,
    restoreTest: test,
    conditions: withCondition(
      recorded.conditions,
      restoreTestCondition(recorded.conditions, test, object.metadata.generation, now),
    ),
  };
  const running = test.result === 'Running' || last?.result === 'Running';
  // An earlier request's Job still there goes first (same name): the new one is attached once it is gone.
  const stale = observedJob !== undefined && observedJob.requestedAt !== test.requestedAt;
  const attachments =
    running && testRequest && !stale
      ? [...snapshotIdentity(ref, 'restore-test'), restoreTestJob(ref, spec, recorded.snapshot, testRequest, image)]
      : [];
  const finishedNow = last?.result === 'Running' && test.result !== 'Running';
  return {
    response: {
      status: status as Record<string, unknown>,
      attachments,
      ...(stale && running && { resyncAfterSeconds: 5 }),
    },
    outcome: 'finished',
    ...((finishedNow || (test.result === 'Failed' && last?.requestedAt !== test.requestedAt)) && {
      restoreTest: test.result === 'Succeeded' ? ('succeeded' as const) : ('failed' as const),
    }),
  };
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
  if (Array.isArray(recorded.conditions) && isFinished(recorded)) return finished(request, recorded, image, now);
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
  const attachments = [...snapshotIdentity(ref), snapshotJob(ref, checked.spec, source, image)];
  return answer(status, attachments, verdict, resyncAfterSeconds);
}
