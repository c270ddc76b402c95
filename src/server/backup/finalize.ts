// The backup decorator's finalize hook, as a pure function of Metacontroller's request and the clock: with
// deletionPolicy Delete, the Job that removes the S3 object, and when to let the backup go.

import { formatTime, parseTime } from '../../api/conditions.js';
import { RELATED_NAMESPACE_KEY } from '../../api/constants.js';
import type { BackupSpec, BackupStatus } from '../../api/types.js';
import { readBackupStatus } from '../../api/validation.js';
import { objectKey, secretsKeyOf } from '../../contract/object-key.js';
import { secretsPlan } from './cluster-secrets.js';
import { DELETION_MESSAGE } from '../conditions.js';
import type { DecoratorSyncRequest, DecoratorSyncResponse } from '../metacontroller/types.js';
import { backupEventsHint, podsHint } from './hints.js';
import { backupTime, deleteJob, type BackupRef, type JobImage } from './job.js';
import { failureText, readJobState } from './job-state.js';
import { attachmentName } from './names.js';
import { backupRef, checkSpec, observedJob } from './request.js';
import { DEFAULT_BACKUP_HOOK_SETTINGS, type BackupHookSettings } from './settings.js';
import { isFinished, secondsSince } from './status.js';
import { relatedObject, resolveTalosSource } from './talos-source.js';

export type FinalizeOutcome =
  'released' | 'kept-locked' | 'kept-namespace-deleted' | 'kept-delete-job-absent' | 'deleting' | 'delete-failed';

export interface BackupFinalizeResult {
  response: DecoratorSyncResponse & { finalized: boolean };
  outcome: FinalizeOutcome;
}

/** Whether the backup's namespace is being deleted (its Namespace arrives as a related object, see customizeBackup). */
function namespaceTerminating(request: DecoratorSyncRequest): boolean {
  type Namespace = { metadata?: { deletionTimestamp?: string }; status?: { phase?: string } };
  const name = request.object.metadata.namespace ?? '';
  const namespace = relatedObject(request.related, RELATED_NAMESPACE_KEY, name) as Namespace | undefined;
  return Boolean(namespace?.metadata?.deletionTimestamp) || namespace?.status?.phase === 'Terminating';
}

/** The key the snapshot Job writes: computed from the same inputs, so a backup deleted mid-run can be cleaned up. */
function expectedKey(ref: BackupRef, spec: BackupSpec, request: DecoratorSyncRequest): string | undefined {
  const resolved = resolveTalosSource(spec, ref.namespace, request.related);
  const time = parseTime(backupTime(ref));
  const cluster = resolved.ok ? resolved.source.cluster : (request.object.status as BackupStatus | undefined)?.cluster;
  if (!time || !cluster) return undefined;
  const { prefix } = spec.backupStorage.s3;
  return objectKey({ prefix, cluster, time, compression: spec.compression, encrypted: Boolean(spec.encryption) });
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
export function finalizeBackup(
  request: DecoratorSyncRequest,
  image: JobImage,
  now: Date = new Date(),
  settings: BackupHookSettings = DEFAULT_BACKUP_HOOK_SETTINGS,
): BackupFinalizeResult {
  const { object } = request;
  const observed = readBackupStatus(object.status);
  const answer = (status: BackupStatus, finalized: boolean, outcome: FinalizeOutcome): BackupFinalizeResult => ({
    response: { status: status as Record<string, unknown>, attachments: [], finalized },
    outcome,
  });
  const release = (): BackupFinalizeResult => answer(observed, true, 'released');
  const checked = checkSpec(object);
  if (!checked.ok || checked.spec.deletionPolicy !== 'Delete') return release();
  const ref = backupRef(object);
  const deleteJobName = attachmentName(ref.name, 'delete');
  const snapshotJobSeen = observedJob(request, attachmentName(ref.name, 'snapshot')) !== undefined;
  // A finished backup stored exactly its recorded snapshot (a failed one nothing: failed attempts abort their
  // uploads). An unfinished one may have stored an object if its Job ran at all.
  // A failed backup whose Job had uploaded bytes may still have completed its object (e.g. it failed only while
  // recording hashes or reporting): the delete Job checks, and deletes only this backup's object.
  const uploaded = (observed.report?.bytesUploaded ?? 0) > 0;
  const expected = () => expectedKey(ref, checked.spec, request);
  const ranAtAll = snapshotJobSeen || observed.report;
  const key = isFinished(observed)
    ? (observed.snapshot?.key ?? (uploaded ? expected() : undefined))
    : (observed.snapshot?.key ?? observed.report?.snapshot?.key ?? (ranAtAll ? expected() : undefined));
  if (!key) return release();

  // The bucket the object went to: the spec may have been edited since.
  const bucket = observed.snapshot?.bucket ?? observed.report?.snapshot?.bucket ?? checked.spec.backupStorage.s3.bucket;
  const spec: BackupSpec = {
    ...checked.spec,
    backupStorage: { ...checked.spec.backupStorage, s3: { ...checked.spec.backupStorage.s3, bucket } },
  };
  const where = `s3://${bucket}/${key}`;
  const kept = (why: string) => `${DELETION_MESSAGE.kept}${where}: ${why}`;
  const lockedUntil = parseTime(observed.snapshot?.retainUntil);
  // With copies, only when every copy is locked too: an unlocked copy is still deleted (by the delete Job).
  const copiesLocked = (observed.snapshot?.copies ?? []).every((c) => (parseTime(c.retainUntil) ?? now) > now);
  const everyCopyRecorded =
    (observed.snapshot?.copies?.length ?? 0) === (checked.spec.backupStorage.copies?.length ?? 0);
  if (lockedUntil && lockedUntil > now && observed.snapshot?.key === key && copiesLocked && everyCopyRecorded) {
    const until = observed.snapshot.retainUntil;
    const message = kept(`it is locked by S3 Object Lock until ${until}, and S3 refuses to delete it before then`);
    return answer({ ...observed, deletion: { message } }, true, 'kept-locked');
  }
  const job = observedJob(request, deleteJobName);
  const state = job && readJobState(job);
  if (state?.complete) return release();
  const keep = (outcome: FinalizeOutcome, why: string): BackupFinalizeResult =>
    answer({ ...observed, deletion: { ...observed.deletion, message: kept(why) } }, true, outcome);
  if (namespaceTerminating(request) && !(state && !state.failed)) {
    return keep(
      'kept-namespace-deleted',
      `namespace ${ref.namespace} is being deleted, where no delete Job can be created and whose S3 credentials are ` +
        'going; delete the object by hand or with a bucket lifecycle rule',
    );
  }
  // The hook's clock, first set by this answer: when the delete was first asked for.
  const startedAt = observed.deletion?.startedAt ?? formatTime(now);
  if (snapshotJobSeen) {
    // Wait for the snapshot Job to go (leaving it out deletes it) before deleting what it may have written.
    const message = `${DELETION_MESSAGE.stoppingSnapshotJob}${where}`;
    return answer({ ...observed, deletion: { message, startedAt } }, false, 'deleting');
  }
  const deadline = settings.attachmentDeadlineSeconds;
  if (!job && (secondsSince(startedAt, now) ?? 0) >= deadline) {
    return keep(
      'kept-delete-job-absent',
      `the delete Job ${deleteJobName} did not appear within ${deadline}s of being asked for (Metacontroller's ` +
        `Warning events on the backup say why: ${backupEventsHint(ref)}), so the backup is let go without deleting it`,
    );
  }
  const failed = state?.failed;
  const message = failed
    ? `${DELETION_MESSAGE.deleteFailed}the delete Job failed (${failureText(failed)}); ` +
      `see ${podsHint(ref, 'delete')}. ${where} stays; fix the cause and delete Job ${deleteJobName} to try again, ` +
      'or set spec.deletionPolicy to Retain to let the backup go without deleting it'
    : `${DELETION_MESSAGE.deleting}${where}`;
  const status = { ...observed, deletion: { message, startedAt } };
  // Asked for but absent: look again when the deadline passes, even if nothing else changes.
  const resyncAfterSeconds = job ? undefined : Math.max(1, Math.ceil(deadline - (secondsSince(startedAt, now) ?? 0)));
  // An unfinished backup's snapshot pod may still be stopping: the delete Job looks again after its grace period.
  // The cluster secrets' object: the one a finished backup recorded (if any); else, when the backup would store
  // one, the one its Job reported or would have written beside the key.
  const recorded = observed.snapshot?.key === key ? observed.snapshot : undefined;
  const stores = secretsPlan(checked.spec).action === 'store';
  const secretsKey = recorded
    ? recorded.secrets?.key
    : (observed.report?.snapshot?.secrets?.key ?? (stores ? secretsKeyOf(key) : undefined));
  // Each copy's object: the one recorded (stored or not: an optional copy that failed late may have left one; a
  // delete of no object is done), else the key its Job would have written: the primary's with the copy's prefix.
  const copyRecords = recorded?.copies ?? observed.report?.snapshot?.copies;
  const copyKeys = (n: number) => {
    const copy = checked.spec.backupStorage.copies?.[n - 1];
    const r = copyRecords?.[n - 1];
    const copyKey = r?.key ?? (copy && `${copy.prefix}/${key.split('/').slice(-2).join('/')}`);
    if (!copyKey) return undefined;
    return { key: copyKey, secretsKey: r?.secretsKey ?? (secretsKey ? secretsKeyOf(copyKey) : undefined) };
  };
  const attachments = [
    deleteJob(ref, spec, key, image, { afterSnapshot: !isFinished(observed), secretsKey, copyKeys }),
  ];
  return {
    response: {
      status: status as Record<string, unknown>,
      attachments,
      finalized: false,
      ...(resyncAfterSeconds !== undefined && { resyncAfterSeconds }),
    },
    outcome: failed ? 'delete-failed' : 'deleting',
  };
}
