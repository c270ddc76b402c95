// Retention: which of a schedule's backups stay. Count-based, per outcome, like CronJob's history limits,
// except that in-progress backups are never deleted and only successful ones count toward `retention`.

import { newestFirst, type ObservedBackup } from './backups.js';

export interface RetentionPolicy {
  /** Successful backups kept, newest by scheduled time (>= 1, so the newest good backup is never deleted). */
  retention: number;
  /** Failed backups kept, newest first; `undefined` keeps them all. */
  failedBackupsHistoryLimit?: number | undefined;
}

export interface RetentionDecision {
  kept: ObservedBackup[];
  pruned: ObservedBackup[];
}

/**
 * Splits backups that are not already being deleted into those to keep and those to delete.
 * Returns:
 * - `kept`: the newest `retention` successful ones, the newest `failedBackupsHistoryLimit` failed ones (all when
 *   unset), and every active or unreadable one;
 * - `pruned`: the rest.
 */
export function selectForRetention(backups: readonly ObservedBackup[], policy: RetentionPolicy): RetentionDecision {
  const kept: ObservedBackup[] = [];
  const pruned: ObservedBackup[] = [];
  const limits = { succeeded: policy.retention, failed: policy.failedBackupsHistoryLimit ?? Infinity };
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
