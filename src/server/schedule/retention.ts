// Retention: which of a schedule's backups stay. Count-based, per outcome, like CronJob's history limits,
// except that in-progress backups are never deleted and only successful ones count toward `retention`.
//
// Failed backups are bounded too (failedBackupsHistoryLimit, default 3, at most 100): Metacontroller sends every
// child in every sync request, so a schedule whose backups keep failing (every 5 minutes for days) would otherwise
// grow its request past the hook's body limits (~6 KiB per failed backup; the 16 MiB server answers 413 from about
// 1,900 of them: bench/schedule-failed-children.ts), and from then on never create a backup again. The default
// keeps what a user needs to see whether failures repeat (their messages) and no more: CronJob keeps 1 failed Job;
// the original API kept them all, which is what broke. The maximum keeps the largest history the CRD admits
// (retention 1,000 + 100 failed, ~6 MiB) well inside what the server accepts.

import { newestFirst, type ObservedBackup } from './backups.js';

export interface RetentionPolicy {
  /** Successful backups kept, newest by scheduled time (>= 1, so the newest good backup is never deleted). */
  retention: number;
  /** Failed backups kept, newest first; `undefined` (a schedule read without the CRD's default) keeps the default. */
  failedBackupsHistoryLimit?: number | undefined;
}

/** The CRD's default for failedBackupsHistoryLimit (crds/talosetcdbackupschedules...yaml; a test checks they agree). */
export const DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT = 3;

export interface RetentionDecision {
  kept: ObservedBackup[];
  pruned: ObservedBackup[];
}

/**
 * Splits backups that are not already being deleted into those to keep and those to delete.
 * Returns:
 * - `kept`: the newest `retention` successful ones, the newest `failedBackupsHistoryLimit` failed ones (3 when
 *   unset), and every active or unreadable one;
 * - `pruned`: the rest.
 */
export function selectForRetention(backups: readonly ObservedBackup[], policy: RetentionPolicy): RetentionDecision {
  const kept: ObservedBackup[] = [];
  const pruned: ObservedBackup[] = [];
  const limits = {
    succeeded: policy.retention,
    failed: policy.failedBackupsHistoryLimit ?? DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT,
  };
  const seen = { succeeded: 0, failed: 0 };
  for (const backup of [...backups].sort(newestFirst)) {
    if (backup.outcome === 'succeeded' || backup.outcome === 'failed') {
      seen[backup.outcome] += 1;
      (seen[backup.outcome] <= limits[backup.outcome] ? kept : pruned).push(backup);
    } else {
      kept.push(backup);
    }
  }
  return { kept, pruned };
}
