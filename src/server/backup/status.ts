// A backup's status, derived from two sources: the Job's own status (it ran, failed, gave up) and status.report,
// which the Job's pod writes (progress, the stored object, its error message). The verdict says what they mean;
// the status builder turns it into the phase, the conditions and the rest of the status.

import { findCondition, formatTime, nextCondition, parseTime, type Condition } from '../../api/conditions.js';
import type { BackupReport, BackupStatus, SnapshotInfo, StoredSecrets } from '../../api/types.js';
import { BACKUP_CONDITION_MESSAGE, BACKUP_MESSAGE, BACKUP_REASON, CONDITION } from '../conditions.js';
import type { KubernetesObject } from '../metacontroller/types.js';
import { podsHint } from './hints.js';
import type { BackupRef } from './job.js';
import { failureText, type JobState } from './job-state.js';
import { attachmentName } from './names.js';

/** A recorded outcome: Ready or Failed is True. Such a backup is never run again. */
export function isFinished(status: BackupStatus): boolean {
  return (
    findCondition(status.conditions, CONDITION.ready)?.status === 'True' ||
    findCondition(status.conditions, CONDITION.failed)?.status === 'True'
  );
}

/** Seconds since an RFC 3339 time (undefined when there is none). */
export function secondsSince(time: string | undefined, now: Date): number | undefined {
  const t = parseTime(time);
  return t ? (now.getTime() - t.getTime()) / 1000 : undefined;
}

export interface Verdict {
  phase: NonNullable<BackupStatus['phase']>;
  /** The Progressing condition's message while running; the failure message once failed. */
  message: string;
  snapshot?: SnapshotInfo;
  completionTime?: string;
}

function conditionsFor(
  observed: Condition[] | undefined,
  verdict: Verdict,
  generation: number | undefined,
  now: Date,
): Condition[] {
  const gen = generation === undefined ? {} : { observedGeneration: generation };
  const c = (type: string, status: Condition['status'], reason: string, message: string) =>
    nextCondition(observed, { type, status, reason, message, ...gen }, now);
  const { progressing, ready, failed } = CONDITION;
  const messages = BACKUP_CONDITION_MESSAGE;
  switch (verdict.phase) {
    case 'Succeeded':
      return [
        c(progressing, 'False', BACKUP_REASON.completed, messages.finished),
        c(ready, 'True', BACKUP_REASON.succeeded, verdict.message),
        c(failed, 'False', BACKUP_REASON.succeeded, messages.succeeded),
      ];
    case 'Failed':
      return [
        c(progressing, 'False', BACKUP_REASON.completed, messages.finished),
        c(ready, 'False', BACKUP_REASON.failed, messages.failed),
        c(failed, 'True', BACKUP_REASON.failed, verdict.message),
      ];
    default:
      return [
        c(progressing, 'True', BACKUP_REASON.inProgress, verdict.message),
        c(ready, 'False', BACKUP_REASON.inProgress, messages.notFinished),
        c(failed, 'False', BACKUP_REASON.inProgress, messages.notFailed),
      ];
  }
}

/** The whole status (Metacontroller replaces it): the verdict, and what the observed status already knew. */
export function buildStatus(
  object: KubernetesObject,
  observed: BackupStatus,
  verdict: Verdict,
  extra: Partial<BackupStatus>,
  now: Date,
): BackupStatus {
  const report = observed.report;
  // The first start seen stays: the Job's start, else the first attempt's report.
  const startTime = observed.startTime ?? extra.startTime ?? report?.startedAt;
  const bytes = verdict.snapshot?.size ?? report?.bytesUploaded;
  const finished = verdict.phase === 'Succeeded' || verdict.phase === 'Failed';
  const cluster = extra.cluster ?? observed.cluster;
  return {
    phase: verdict.phase,
    conditions: conditionsFor(observed.conditions, verdict, object.metadata.generation, now),
    ...(cluster && { cluster }),
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

/**
 * The snapshot a Succeeded report names, if it names all of it (bucket, key, size and both hashes), with the cluster
 * secrets the report names, else `skipped` (what the spec said about secrets the Job was never given).
 */
export function storedSnapshot(report: BackupReport, skipped?: StoredSecrets): SnapshotInfo | undefined {
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
    ...((s.secrets ?? skipped) && { secrets: s.secrets ?? skipped }),
    ...(s.copies && s.copies.length > 0 && { copies: s.copies }),
  };
}

/** What the Ready message says of the copies: where each is, and as a warning, each optional one that is missing. */
function copiesNote(s: SnapshotInfo): string {
  const copies = s.copies ?? [];
  if (copies.length === 0) return '';
  const stored = copies.filter((c) => !c.error);
  const missing = copies.filter((c) => c.error);
  const where = stored.map((c) => {
    const extra = [c.retainUntil ? `locked until ${c.retainUntil}` : '', c.verified ? 'verified' : '']
      .filter(Boolean)
      .join(', ');
    return `${c.name} at s3://${c.bucket}/${c.key}${extra ? ` (${extra})` : ''}`;
  });
  const copiesText = where.length > 0 ? `; copies: ${where.join(', ')}` : '';
  const warning =
    missing.length > 0
      ? `; warning: ${missing.length} optional cop${missing.length === 1 ? 'y was' : 'ies were'} not stored: ${missing
          .map((c) => c.error)
          .join('; ')}`
      : '';
  return `${copiesText}${warning}`;
}

/** What the Ready message says of the cluster secrets: where they are, or why none were stored. */
function secretsNote(s: SnapshotInfo): string {
  const secrets = s.secrets;
  if (secrets?.key) return `; cluster secrets (Secret ${secrets.secretName}) stored at s3://${s.bucket}/${secrets.key}`;
  if (secrets?.notStored) return `; cluster secrets not stored: ${secrets.notStored}`;
  return '';
}

/** The Ready condition's message: where the snapshot is, how it is protected, and what verifying it proved. */
export function storedMessage(s: SnapshotInfo): string {
  return `${snapshotMessage(s)}${secretsNote(s)}${copiesNote(s)}`;
}

function snapshotMessage(s: SnapshotInfo): string {
  const format = [
    s.compression && s.compression !== 'none' ? s.compression : '',
    s.encrypted ? 'age-encrypted' : '',
    s.retainUntil ? `locked until ${s.retainUntil}` : '',
  ].filter(Boolean);
  const details = `${s.size} bytes${format.length > 0 ? `, ${format.join(', ')}` : ''}, sha256 ${s.sha256}`;
  const stored = `${BACKUP_MESSAGE.stored}s3://${s.bucket}/${s.key} (${details})`;
  if (!s.verified) return stored;
  if (s.verification === 'StoredBytes') {
    return `${stored}; verified: the stored bytes read back match (no age identity to check the snapshot inside)`;
  }
  const counted = s.revision !== undefined ? ` (revision ${s.revision}, ${s.keys ?? 0} keys)` : '';
  return `${stored}; verified: read back, etcd trailer and database structure sound${counted}`;
}

/**
 * The verdict on a running backup, from its report and its Job; `secretsSkipped`: the record of cluster secrets the
 * spec says are not stored (see cluster-secrets.ts), for the status of a backup that succeeded.
 */
export function judge(
  ref: BackupRef,
  report: BackupReport | undefined,
  job: JobState | undefined,
  secretsSkipped?: StoredSecrets,
): Verdict {
  const reportedAt = report?.updatedAt ? { completionTime: report.updatedAt } : {};
  if (report?.state === 'Succeeded') {
    const snapshot = storedSnapshot(report, secretsSkipped);
    if (snapshot) return { phase: 'Succeeded', message: storedMessage(snapshot), snapshot, ...reportedAt };
  }
  const attemptFailed = report?.state === 'Failed' ? report.message || 'the snapshot attempt failed' : undefined;
  if (attemptFailed && report?.retryable === false) return { phase: 'Failed', message: attemptFailed, ...reportedAt };
  if (job?.failed) {
    const why = failureText(job.failed);
    const message = attemptFailed
      ? `${attemptFailed} (the snapshot Job gave up after ${job.failedPods} failed attempt(s): ${why})`
      : `${BACKUP_MESSAGE.jobFailedUnreported} (${why}); the pod was probably killed (out of memory, deadline, ` +
        `eviction) or never started (image pull): see ${podsHint(ref)}`;
    return { phase: 'Failed', message, ...(job.failed.time && { completionTime: job.failed.time }) };
  }
  if (job?.complete) {
    const message = `${BACKUP_MESSAGE.jobCompletedUnreported}; see ${podsHint(ref)}`;
    return { phase: 'Failed', message, ...(job.complete.time && { completionTime: job.complete.time }) };
  }
  const jobName = attachmentName(ref.name, 'snapshot');
  // No attempt number: the report arrives before the Job controller counts its pod as failed, so a count read
  // from the Job would change between syncs for the same attempt (seen on the real Job controller).
  if (attemptFailed) return { phase: 'Running', message: `An attempt failed, the Job retries: ${attemptFailed}` };
  if (report?.state === 'Running') {
    return { phase: 'Running', message: `Streaming the snapshot to S3 (${report.bytesUploaded ?? 0} bytes uploaded)` };
  }
  if (job && (job.active > 0 || job.startTime)) {
    return { phase: 'Running', message: `The snapshot Job ${jobName} is running` };
  }
  return { phase: 'Pending', message: `Waiting for the snapshot Job ${jobName} to start` };
}
