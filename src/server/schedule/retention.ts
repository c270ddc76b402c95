// Retention: which of a schedule's backups stay. Count-based, per outcome, like CronJob's history limits,
// except that in-progress backups are never deleted and only successful ones count toward `retention`; the tiered
// rules of `retentionPolicy` (restic's keep-last/hourly/daily/weekly/monthly/yearly/within: retention-policy.ts) keep
// more successful ones.
//
// Failed backups are bounded too (failedBackupsHistoryLimit, default 3, at most 100): Metacontroller sends every
// child in every sync request, so a schedule whose backups keep failing (every 5 minutes for days) would otherwise
// grow its request past the hook's body limits (~6 KiB per failed backup; the 16 MiB server answers 413 from about
// 1,900 of them: bench/schedule-failed-children.ts), and from then on never create a backup again. The default
// keeps what a user needs to see whether failures repeat (their messages) and no more: CronJob keeps 1 failed Job;
// the original API kept them all, which is what broke. The maximum keeps the largest history the CRD admits
// (retention 1,000 + 100 failed, ~6 MiB) well inside what the server accepts.

import { newestFirst, type ObservedBackup } from './backups.js';
import { applyTieredPolicy, type RuleName, type TieredPolicy } from './retention-policy.js';

export interface RetentionPolicy {
  /** Successful backups kept, newest by scheduled time (>= 1, so the newest good backup is never deleted). */
  retention: number;
  /** Failed backups kept, newest first; `undefined` (a schedule read without the CRD's default) keeps the default. */
  failedBackupsHistoryLimit?: number | undefined;
  /** Tiered rules (restic's): a successful backup is kept if `retention` or any of them keeps it. */
  retentionPolicy?: TieredPolicy | undefined;
  /** The schedule's time zone: the periods of the tiered rules are its hours, days, weeks, months and years. */
  timeZone?: string | undefined;
}

/**
 * At most this many successful backups are kept whatever the rules say: Metacontroller sends every child in every
 * sync request, and the CRD admits counts that add up to 1,000 at most (keepWithin has no count: it is capped here).
 */
export const MAX_KEPT_SUCCESSFUL = 1000;

/** The CRD's default for failedBackupsHistoryLimit (crds/talosetcdbackupschedules...yaml; a test checks they agree). */
export const DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT = 3;

export interface RetentionDecision {
  kept: ObservedBackup[];
  pruned: ObservedBackup[];
  /** Successful backups kept, and how many each rule keeps (`retention` among them); for the status. */
  retained: { backups: number; byRule: Partial<Record<'retention' | RuleName, number>>; capped: boolean };
}

/**
 * Splits backups that are not already being deleted into those to keep and those to delete.
 * Returns:
 * - `kept`: the successful ones the newest `retention` or a rule of `retentionPolicy` keeps (the newest successful one
 *   always: retention >= 1), the newest `failedBackupsHistoryLimit` failed ones (3 when unset), and every active or
 *   unreadable one;
 * - `pruned`: the rest.
 */
export function selectForRetention(backups: readonly ObservedBackup[], policy: RetentionPolicy): RetentionDecision {
  const sorted = [...backups].sort(newestFirst);
  const successful = sorted.filter((b) => b.outcome === 'succeeded');
  const keep = new Set<ObservedBackup>(successful.slice(0, policy.retention));
  const byRule: RetentionDecision['retained']['byRule'] = { retention: Math.min(policy.retention, successful.length) };
  if (policy.retentionPolicy) {
    const tiered = applyTieredPolicy(
      successful.map((backup) => ({ backup, time: new Date(backup.sortTime) })),
      policy.retentionPolicy,
      policy.timeZone ?? 'UTC',
    );
    for (const backup of tiered.kept) keep.add(backup);
    Object.assign(byRule, tiered.byRule);
  }
  // The newest first when the cap applies (only keepWithin can reach it: the CRD bounds the counts).
  const keptSuccessful = successful.filter((b) => keep.has(b));
  const capped = keptSuccessful.length > MAX_KEPT_SUCCESSFUL;
  const allowed = new Set(keptSuccessful.slice(0, MAX_KEPT_SUCCESSFUL));
  const kept: ObservedBackup[] = [];
  const pruned: ObservedBackup[] = [];
  const failedLimit = policy.failedBackupsHistoryLimit ?? DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT;
  let failedSeen = 0;
  for (const backup of sorted) {
    if (backup.outcome === 'succeeded') (allowed.has(backup) ? kept : pruned).push(backup);
    else if (backup.outcome === 'failed') (++failedSeen <= failedLimit ? kept : pruned).push(backup);
    else kept.push(backup);
  }
  return { kept, pruned, retained: { backups: allowed.size, byRule, capped } };
}
