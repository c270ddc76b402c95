// The backup decorator's decisions, as pure functions of Metacontroller's request and the clock:
//   customize: which TalosControlPlane to send along (never Secrets: Metacontroller would cache all of them);
//   sync:      which Job (and identity) to attach and what the status says;
//   finalize:  with deletionPolicy Delete, the Job that removes the S3 object, and when to let the backup go.
//
// The status is derived from two sources: the Job's own status (it ran, failed, gave up) and status.report,
// which the Job's pod writes (progress, the stored object, its error message). A finished backup is final: once
// the observed status records the outcome, the answer repeats it and attaches nothing, so Kubernetes removes
// the Job and its helpers, and the backup never runs again.

import { API_VERSION, BACKUP_LABEL, COMPONENT_LABEL, JOB_KEY, RELATED_NAMESPACE_KEY, TALOS_CONTROL_PLANE_PLURAL } from '../../api/constants.js';
import { specProblems } from '../../api/spec-checks.js';
import type { BackupReport, BackupSpec, BackupStatus, SnapshotInfo } from '../../api/types.js';
import { readBackupStatus, validateBackupSpec } from '../../api/validation.js';
import type { CustomizeRequest, CustomizeResponse, DecoratorSyncRequest, DecoratorSyncResponse, KubernetesObject } from '../metacontroller/types.js';
import { findCondition, formatTime, nextCondition, parseTime, type Condition } from '../../api/conditions.js';
import { objectKey } from '../../contract/object-key.js';
import { backupTime, deleteJob, snapshotIdentity, snapshotJob, type BackupRef, type JobImage } from './job.js';
import { readJobState, type JobState } from './job-state.js';
import { attachmentName, fitName, type Component } from './names.js';
import { DEFAULT_BACKUP_HOOK_SETTINGS, type BackupHookSettings } from './settings.js';

export { DEFAULT_ATTACHMENT_DEADLINE_SECONDS, DEFAULT_BACKUP_HOOK_SETTINGS, type BackupHookSettings } from './settings.js';
import { relatedObject, resolveTalosSource, type TalosSource } from './talos-source.js';

/** How long a missing or unprovisioned TalosControlPlane is waited for (it may be created alongside the backup). */
export const CONTROL_PLANE_GRACE_SECONDS = 30;

const DEFAULT_SETTINGS = DEFAULT_BACKUP_HOOK_SETTINGS;

export type BackupOutcome = 'pending' | 'running' | 'succeeded' | 'failed' | 'finished';

export interface BackupSyncResult {
  response: DecoratorSyncResponse;
  /** What this answer means; `finished` = the observed status already recorded the outcome. */
  outcome: BackupOutcome;
  /** The failure message, when this answer records a failure. */
  message?: string;
}

const REASON = { inProgress: 'BackupInProgress', completed: 'BackupCompleted', succeeded: 'BackupSucceeded', failed: 'BackupFailed' } as const;

function backupRef(object: KubernetesObject): BackupRef {
  const { name, namespace, uid, creationTimestamp, annotations } = object.metadata;
  return { name, namespace: namespace ?? '', uid: uid ?? '', creationTimestamp, annotations };
}

/** Where to look further. The pods go with the Job once the outcome is recorded; their events stay about an hour. */
function podsHint(ref: BackupRef, component: Component = 'snapshot'): string {
  const selector = `${BACKUP_LABEL}=${fitName(ref.name)},${COMPONENT_LABEL}=${component}`;
  return `kubectl get events -n ${ref.namespace} --field-selector involvedObject.name=${attachmentName(ref.name, component)} (and the pods' events; while the Job exists: kubectl logs -n ${ref.namespace} -l ${selector})`;
}

/** Where Metacontroller says why it could not create or delete a backup's objects. */
function backupEventsHint(ref: BackupRef): string {
  return `kubectl get events -n ${ref.namespace} --field-selector involvedObject.name=${ref.name}`;
}

/** Seconds since an RFC 3339 time (undefined when there is none). */
function secondsSince(time: string | undefined, now: Date): number | undefined {
  const t = parseTime(time);
  return t ? (now.getTime() - t.getTime()) / 1000 : undefined;
}

/** A recorded outcome: Ready or Failed is True. Such a backup is never run again. */
export function isFinished(status: BackupStatus): boolean {
  return findCondition(status.conditions, 'Ready')?.status === 'True' || findCondition(status.conditions, 'Failed')?.status === 'True';
}

interface Verdict {
  phase: NonNullable<BackupStatus['phase']>;
  /** The Progressing condition's message while running; the failure message once failed. */
  message: string;
  snapshot?: SnapshotInfo;
  completionTime?: string;
}

function conditionsFor(observed: Condition[] | undefined, verdict: Verdict, generation: number | undefined, now: Date): Condition[] {
  const gen = generation === undefined ? {} : { observedGeneration: generation };
  const c = (type: string, status: Condition['status'], reason: string, message: string) => nextCondition(observed, { type, status, reason, message, ...gen }, now);
  switch (verdict.phase) {
    case 'Succeeded':
      return [
        c('Progressing', 'False', REASON.completed, 'The backup finished'),
        c('Ready', 'True', REASON.succeeded, verdict.message),
        c('Failed', 'False', REASON.succeeded, 'The backup succeeded'),
      ];
    case 'Failed':
      return [
        c('Progressing', 'False', REASON.completed, 'The backup finished'),
        c('Ready', 'False', REASON.failed, 'The backup failed: see the Failed condition'),
        c('Failed', 'True', REASON.failed, verdict.message),
      ];
    default:
      return [
        c('Progressing', 'True', REASON.inProgress, verdict.message),
        c('Ready', 'False', REASON.inProgress, 'The backup has not finished'),
        c('Failed', 'False', REASON.inProgress, 'The backup has not failed'),
      ];
  }
}

function buildStatus(object: KubernetesObject, observed: BackupStatus, verdict: Verdict, extra: Partial<BackupStatus>, now: Date): BackupStatus {
  const report = observed.report;
  // The first start seen stays: the Job's start, else the first attempt's report.
  const startTime = observed.startTime ?? extra.startTime ?? report?.startedAt;
  const bytes = verdict.snapshot?.size ?? report?.bytesUploaded;
  const finished = verdict.phase === 'Succeeded' || verdict.phase === 'Failed';
  return {
    phase: verdict.phase,
    conditions: conditionsFor(observed.conditions, verdict, object.metadata.generation, now),
    ...((extra.cluster ?? observed.cluster) && { cluster: extra.cluster ?? observed.cluster }),
    ...(startTime && { startTime }),
    ...(finished && { completionTime: verdict.completionTime ?? observed.completionTime ?? formatTime(now) }),
    ...(verdict.snapshot && { snapshot: verdict.snapshot }),
    ...(bytes !== undefined && { progress: { bytesUploaded: bytes } }),
    ...(verdict.phase === 'Failed' && { message: verdict.message }),
    ...(object.metadata.generation !== undefined && { observedGeneration: object.metadata.generation }),
    // The Job's report is carried over as it is: it is the Job's field, and replacing the status must not lose it.
    ...(report && { report }),
    ...(observed.deletion && { deletion: observed.deletion }),
  };
}

function storedSnapshot(report: BackupReport): SnapshotInfo | undefined {
  const s = report.snapshot;
  if (!s?.bucket || !s.key || s.size === undefined || !s.sha256 || !s.etcdSha256) return undefined;
  return {
    bucket: s.bucket,
    key: s.key,
    size: s.size,
    sha256: s.sha256,
    etcdSha256: s.etcdSha256,
    node: s.node ?? '',
    compression: s.compression ?? 'none',
    encrypted: s.encrypted ?? false,
    ...(s.retainUntil && { retainUntil: s.retainUntil }),
    verified: s.verified ?? false,
    ...(s.verifiedAt && { verifiedAt: s.verifiedAt }),
    ...(s.verification && { verification: s.verification }),
    ...(s.revision !== undefined && { revision: s.revision }),
    ...(s.keys !== undefined && { keys: s.keys }),
  };
}

/** The Ready condition's message: where the snapshot is, how it is protected, and what verifying it proved. */
function storedMessage(s: SnapshotInfo): string {
  const format = [s.compression && s.compression !== 'none' ? s.compression : '', s.encrypted ? 'age-encrypted' : '', s.retainUntil ? `locked until ${s.retainUntil}` : ''].filter(Boolean);
  const stored = `Snapshot stored at s3://${s.bucket}/${s.key} (${s.size} bytes${format.length > 0 ? `, ${format.join(', ')}` : ''}, sha256 ${s.sha256})`;
  if (!s.verified) return stored;
  if (s.verification === 'StoredBytes') return `${stored}; verified: the stored bytes read back match (no age identity to check the snapshot inside)`;
  return `${stored}; verified: read back, etcd trailer and database structure sound${s.revision !== undefined ? ` (revision ${s.revision}, ${s.keys ?? 0} keys)` : ''}`;
}

/** The verdict on a running backup, from its report and its Job. */
function judge(ref: BackupRef, report: BackupReport | undefined, job: JobState | undefined): Verdict {
  if (report?.state === 'Succeeded') {
    const snapshot = storedSnapshot(report);
    if (snapshot) {
      return { phase: 'Succeeded', message: storedMessage(snapshot), snapshot, ...(report.updatedAt && { completionTime: report.updatedAt }) };
    }
  }
  const attemptFailed = report?.state === 'Failed' ? report.message || 'the snapshot attempt failed' : undefined;
  if (attemptFailed && report?.retryable === false) return { phase: 'Failed', message: attemptFailed, ...(report.updatedAt && { completionTime: report.updatedAt }) };
  if (job?.failed) {
    const why = `${job.failed.reason}${job.failed.message ? `: ${job.failed.message}` : ''}`;
    const message = attemptFailed
      ? `${attemptFailed} (the snapshot Job gave up after ${job.failedPods} failed attempt(s): ${why})`
      : `The snapshot Job failed without reporting a result (${why}); the pod was probably killed (out of memory, deadline, eviction) or never started (image pull): see ${podsHint(ref)}`;
    return { phase: 'Failed', message, ...(job.failed.time && { completionTime: job.failed.time }) };
  }
  if (job?.complete) {
    return { phase: 'Failed', message: `The snapshot Job completed without reporting a stored snapshot; see ${podsHint(ref)}`, ...(job.complete.time && { completionTime: job.complete.time }) };
  }
  // No attempt number: the report arrives before the Job controller counts its pod as failed, so a count read
  // from the Job would change between syncs for the same attempt (seen on the real Job controller).
  if (attemptFailed) return { phase: 'Running', message: `An attempt failed, the Job retries: ${attemptFailed}` };
  if (report?.state === 'Running') return { phase: 'Running', message: `Streaming the snapshot to S3 (${report.bytesUploaded ?? 0} bytes uploaded)` };
  if (job && (job.active > 0 || job.startTime)) return { phase: 'Running', message: `The snapshot Job ${attachmentName(ref.name, 'snapshot')} is running` };
  return { phase: 'Pending', message: `Waiting for the snapshot Job ${attachmentName(ref.name, 'snapshot')} to start` };
}

function outcomeOf(verdict: Verdict): BackupOutcome {
  return verdict.phase === 'Succeeded' ? 'succeeded' : verdict.phase === 'Failed' ? 'failed' : verdict.phase === 'Running' ? 'running' : 'pending';
}

/** The observed attachments, re-emitted as they are (without status and server-set metadata): OnDelete keeps them. */
function observedAttachments(request: DecoratorSyncRequest): KubernetesObject[] {
  return Object.values(request.attachments ?? {}).flatMap((byName) =>
    Object.values(byName).map((o) => {
      const { status: _status, metadata, ...rest } = structuredClone(o);
      return { ...rest, metadata: { name: metadata.name, ...(metadata.namespace && { namespace: metadata.namespace }), ...(metadata.labels && { labels: metadata.labels }) } } as KubernetesObject;
    }),
  );
}

function observedJob(request: DecoratorSyncRequest, name: string): KubernetesObject | undefined {
  return relatedObject(request.attachments, JOB_KEY, name) ?? relatedObject(request.attachments, JOB_KEY, `${request.object.metadata.namespace ?? ''}/${name}`);
}

function finished(observed: BackupStatus): BackupSyncResult {
  // Repeat the recorded status as it is (same request, same answer) and attach nothing: the Job goes.
  return { response: { status: observed as Record<string, unknown>, attachments: [] }, outcome: 'finished' };
}

function fail(object: KubernetesObject, observed: BackupStatus, message: string, now: Date): BackupSyncResult {
  const status = buildStatus(object, observed, { phase: 'Failed', message }, {}, now);
  return { response: { status: status as Record<string, unknown>, attachments: [] }, outcome: 'failed', message };
}

type SpecCheck = { ok: true; spec: BackupSpec } | { ok: false; message: string };

function checkSpec(object: KubernetesObject): SpecCheck {
  const validated = validateBackupSpec(object.spec);
  if (!validated.ok) return { ok: false, message: `Invalid spec: ${validated.problems.join('; ')}` };
  const problems = specProblems(validated.value);
  if (problems.length > 0) return { ok: false, message: `Invalid spec: ${problems.join('; ')}` };
  return { ok: true, spec: validated.value };
}

export const TALOS_OPERATOR_OFF_MESSAGE =
  'Failed to get TalosControlPlane: TalosControlPlane CRD not found when talos-etcd-backup was installed (TALOS_OPERATOR=false): install talos-operator and run helm upgrade, or use talosConfigSecretRef';

export function syncBackup(request: DecoratorSyncRequest, now: Date, image: JobImage, settings: BackupHookSettings = DEFAULT_SETTINGS): BackupSyncResult {
  const { object } = request;
  // A recorded outcome is final even if the rest of the status does not match the CRD: never run it again.
  const recorded = (object.status ?? {}) as BackupStatus;
  if (Array.isArray(recorded.conditions) && isFinished(recorded)) return finished(recorded);
  const observed = readBackupStatus(object.status);

  const checked = checkSpec(object);
  if (!checked.ok) return fail(object, observed, checked.message, now);
  const ref = backupRef(object);
  const jobName = attachmentName(ref.name, 'snapshot');
  const job = observedJob(request, jobName);

  if (checked.spec.talosControlPlaneRef && !settings.talosOperator && !job) return fail(object, observed, TALOS_OPERATOR_OFF_MESSAGE, now);
  const resolved = resolveTalosSource(checked.spec, ref.namespace, request.related);
  if (!resolved.ok && job) {
    // The Job already has what it needs (its spec never changes: OnDelete): a TalosControlPlane deleted or
    // briefly unprovisioned meanwhile must not fail a backup that is running or has stored its snapshot.
    const verdict = judge(ref, observed.report, readJobState(job));
    const status = buildStatus(object, observed, verdict, {}, now);
    return { response: { status: status as Record<string, unknown>, attachments: observedAttachments(request) }, outcome: outcomeOf(verdict), ...(verdict.phase === 'Failed' && { message: verdict.message }) };
  }
  if (!resolved.ok) {
    const created = parseTime(ref.creationTimestamp) ?? now;
    const waitLeft = CONTROL_PLANE_GRACE_SECONDS - (now.getTime() - created.getTime()) / 1000;
    if (!resolved.transient || waitLeft <= 0) return fail(object, observed, resolved.message, now);
    const status = buildStatus(object, observed, { phase: 'Pending', message: `${resolved.message}; waiting up to ${CONTROL_PLANE_GRACE_SECONDS}s` }, {}, now);
    return { response: { status: status as Record<string, unknown>, attachments: [], resyncAfterSeconds: Math.ceil(waitLeft) }, outcome: 'pending' };
  }
  const source: TalosSource = resolved.source;
  const jobState = job && readJobState(job);
  const verdict = judge(ref, observed.report, jobState);
  let resyncAfterSeconds: number | undefined;
  if (!job && verdict.phase === 'Pending') {
    // Asked for since the backup became Progressing (the hook's own clock; the first answer sets it).
    const progressing = findCondition(observed.conditions, 'Progressing');
    const waited = progressing?.status === 'True' ? (secondsSince(progressing.lastTransitionTime, now) ?? 0) : 0;
    const left = settings.attachmentDeadlineSeconds - waited;
    if (left <= 0) {
      return fail(
        object,
        observed,
        `Failed to create the snapshot Job: ${jobName} did not appear within ${settings.attachmentDeadlineSeconds}s of being asked for. Metacontroller records why as a Warning event on this backup (a ResourceQuota on jobs, an admission webhook, RBAC that does not let Metacontroller create the Job, its ServiceAccount, Role or RoleBinding): ${backupEventsHint(ref)}`,
        now,
      );
    }
    resyncAfterSeconds = Math.ceil(left);
  }
  const status = buildStatus(object, observed, verdict, { cluster: source.cluster, ...(jobState?.startTime && { startTime: jobState.startTime }) }, now);
  // The Job and its identity stay attached until the observed status records the outcome (next sync): the
  // status write comes first, and a backup whose outcome was recorded is never run again.
  const attachments = [...snapshotIdentity(ref), snapshotJob(ref, checked.spec, source, image)];
  return {
    response: { status: status as Record<string, unknown>, attachments, ...(resyncAfterSeconds !== undefined && { resyncAfterSeconds }) },
    outcome: outcomeOf(verdict),
    ...(verdict.phase === 'Failed' && { message: verdict.message }),
  };
}

/** Whether the backup's namespace is being deleted (its Namespace arrives as a related object, see customizeBackup). */
function namespaceTerminating(request: DecoratorSyncRequest): boolean {
  const namespace = relatedObject(request.related, RELATED_NAMESPACE_KEY, request.object.metadata.namespace ?? '') as { metadata?: { deletionTimestamp?: string }; status?: { phase?: string } } | undefined;
  return Boolean(namespace?.metadata?.deletionTimestamp) || namespace?.status?.phase === 'Terminating';
}

export type FinalizeOutcome = 'released' | 'kept-locked' | 'kept-namespace-deleted' | 'kept-delete-job-absent' | 'deleting' | 'delete-failed';

export interface BackupFinalizeResult {
  response: DecoratorSyncResponse & { finalized: boolean };
  outcome: FinalizeOutcome;
}

/**
 * The backup is being deleted. Retain (the default): let it go at once; its object stays in S3. Delete: run the
 * delete Job (which removes the object only if this backup wrote it) and let the backup go once it succeeded.
 * A snapshot Job still running is removed first (its pod aborts its upload on SIGTERM), and then the delete Job
 * looks for the object at the key that Job would have written, in case it completed meanwhile. If the delete Job
 * fails, the backup stays (Terminating) with the reason in status.deletion; changing spec.deletionPolicy to
 * Retain lets it go and keeps the object. An object this backup locked with Object Lock cannot be deleted before
 * its retention ends: the backup goes at once and the object stays (S3 refuses any earlier delete; holding the
 * backup for the whole retention would block its namespace's deletion).
 * Nor can anything be deleted when the backup's namespace is being deleted: the API server refuses new Jobs
 * there and the namespace controller is deleting the S3 credentials, so the backup goes and the object stays
 * (unless a delete Job was already running: it may finish first). The same when the delete Job never appears
 * (settings.attachmentDeadlineSeconds): a namespace is never held Terminating by a backup.
 */
export function finalizeBackup(request: DecoratorSyncRequest, image: JobImage, now: Date = new Date(), settings: BackupHookSettings = DEFAULT_SETTINGS): BackupFinalizeResult {
  const { object } = request;
  const observed = readBackupStatus(object.status);
  const release = (): BackupFinalizeResult => ({ response: { status: observed as Record<string, unknown>, attachments: [], finalized: true }, outcome: 'released' });
  const checked = checkSpec(object);
  if (!checked.ok || checked.spec.deletionPolicy !== 'Delete') return release();
  const ref = backupRef(object);
  const snapshotJobSeen = observedJob(request, attachmentName(ref.name, 'snapshot')) !== undefined;
  // A finished backup stored exactly its recorded snapshot (a failed one nothing: failed attempts abort their
  // uploads). An unfinished one may have stored an object if its Job ran at all.
  // A failed backup whose Job had uploaded bytes may still have completed its object (e.g. it failed only while
  // recording hashes or reporting): the delete Job checks, and deletes only this backup's object.
  const uploaded = (observed.report?.bytesUploaded ?? 0) > 0;
  const key = isFinished(observed)
    ? (observed.snapshot?.key ?? (uploaded ? expectedKey(ref, checked.spec, request) : undefined))
    : (observed.snapshot?.key ?? observed.report?.snapshot?.key ?? (snapshotJobSeen || observed.report ? expectedKey(ref, checked.spec, request) : undefined));
  if (!key) return release();

  // The bucket the object went to: the spec may have been edited since.
  const bucket = observed.snapshot?.bucket ?? observed.report?.snapshot?.bucket ?? checked.spec.backupStorage.s3.bucket;
  const spec: BackupSpec = { ...checked.spec, backupStorage: { s3: { ...checked.spec.backupStorage.s3, bucket } } };
  const where = `s3://${bucket}/${key}`;
  const lockedUntil = parseTime(observed.snapshot?.retainUntil);
  if (lockedUntil && lockedUntil > now && observed.snapshot?.key === key) {
    const status = { ...observed, deletion: { message: `Kept ${where}: it is locked by S3 Object Lock until ${observed.snapshot.retainUntil}, and S3 refuses to delete it before then` } };
    return { response: { status: status as Record<string, unknown>, attachments: [], finalized: true }, outcome: 'kept-locked' };
  }
  const job = observedJob(request, attachmentName(ref.name, 'delete'));
  const state = job && readJobState(job);
  if (state?.complete) return release();
  const keep = (outcome: FinalizeOutcome, why: string): BackupFinalizeResult => ({
    response: { status: { ...observed, deletion: { ...observed.deletion, message: `Kept ${where}: ${why}` } } as Record<string, unknown>, attachments: [], finalized: true },
    outcome,
  });
  if (namespaceTerminating(request) && !(state && !state.failed)) {
    return keep('kept-namespace-deleted', `namespace ${ref.namespace} is being deleted, where no delete Job can be created and whose S3 credentials are going; delete the object by hand or with a bucket lifecycle rule`);
  }
  // The hook's clock, first set by this answer: when the delete was first asked for.
  const startedAt = observed.deletion?.startedAt ?? formatTime(now);
  if (snapshotJobSeen) {
    // Wait for the snapshot Job to go (leaving it out deletes it) before deleting what it may have written.
    const status = { ...observed, deletion: { message: `Stopping the snapshot Job before deleting ${where}`, startedAt } };
    return { response: { status: status as Record<string, unknown>, attachments: [], finalized: false }, outcome: 'deleting' };
  }
  if (!job && (secondsSince(startedAt, now) ?? 0) >= settings.attachmentDeadlineSeconds) {
    return keep(
      'kept-delete-job-absent',
      `the delete Job ${attachmentName(ref.name, 'delete')} did not appear within ${settings.attachmentDeadlineSeconds}s of being asked for (Metacontroller's Warning events on the backup say why: ${backupEventsHint(ref)}), so the backup is let go without deleting it`,
    );
  }
  const message = state?.failed
    ? `Failed to delete snapshot from S3: the delete Job failed (${state.failed.reason}${state.failed.message ? `: ${state.failed.message}` : ''}); see ${podsHint(ref, 'delete')}. ${where} stays; fix the cause and delete Job ${attachmentName(ref.name, 'delete')} to try again, or set spec.deletionPolicy to Retain to let the backup go without deleting it`
    : `Deleting ${where}`;
  const status = { ...observed, deletion: { message, startedAt } };
  // Asked for but absent: look again when the deadline passes, even if nothing else changes.
  const resyncAfterSeconds = job ? undefined : Math.max(1, Math.ceil(settings.attachmentDeadlineSeconds - (secondsSince(startedAt, now) ?? 0)));
  return {
    // An unfinished backup's snapshot pod may still be stopping: the delete Job looks again after its grace period.
    response: { status: status as Record<string, unknown>, attachments: [deleteJob(ref, spec, key, image, { afterSnapshot: !isFinished(observed) })], finalized: false, ...(resyncAfterSeconds !== undefined && { resyncAfterSeconds }) },
    outcome: state?.failed ? 'delete-failed' : 'deleting',
  };
}

/** The key the snapshot Job writes: computed from the same inputs, so a backup deleted mid-run can be cleaned up. */
function expectedKey(ref: BackupRef, spec: BackupSpec, request: DecoratorSyncRequest): string | undefined {
  const resolved = resolveTalosSource(spec, ref.namespace, request.related);
  const time = parseTime(backupTime(ref));
  const cluster = resolved.ok ? resolved.source.cluster : (request.object.status as BackupStatus | undefined)?.cluster;
  if (!time || !cluster) return undefined;
  return objectKey({ prefix: spec.backupStorage.s3.prefix, cluster, time, compression: spec.compression, encrypted: Boolean(spec.encryption) });
}

/**
 * Related objects for a backup: its own Namespace (so finalize sees it terminating; Metacontroller already watches
 * Namespaces) and, for talosControlPlaneRef when talos-operator is there, its TalosControlPlane by name in its
 * namespace.
 */
export function customizeBackup(request: CustomizeRequest, settings: Pick<BackupHookSettings, 'talosOperator'> = DEFAULT_SETTINGS): CustomizeResponse {
  const namespace = request.parent.metadata.namespace;
  const spec = request.parent.spec as Partial<BackupSpec> | undefined;
  const name = spec?.talosControlPlaneRef?.name;
  return {
    relatedResources: [
      ...(namespace ? [{ apiVersion: 'v1', resource: 'namespaces', names: [namespace] }] : []),
      ...(settings.talosOperator && typeof name === 'string' && name !== '' ? [{ apiVersion: API_VERSION, resource: TALOS_CONTROL_PLANE_PLURAL, ...(namespace && { namespace }), names: [name] }] : []),
    ],
  };
}
