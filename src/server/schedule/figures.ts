// What a schedule sync tells Prometheus, as a pure function of the request's schedule, the hook's answer and the
// clock: everything comes from the request (the schedule's status, its children's statuses), so any replica that
// answers a sync exports the same figures, and the server keeps no state of its own (src/server/http/metrics.ts
// only holds the newest figures per schedule until they stop being refreshed).

import { parseTime } from '../../api/conditions.js';
import type { BackupStatus, ScheduleStatus } from '../../api/types.js';
import { CONDITION, RESTORE_TEST_REASON } from '../conditions.js';
import type { KubernetesObject } from '../metacontroller/types.js';
import { newestFirst, type ObservedBackup } from './backups.js';
import type { CronSchedule } from './cron.js';
import type { ScheduleSyncResult } from './sync.js';

export const PHASES = ['Pending', 'Running', 'Succeeded', 'Failed'] as const;
export type Phase = (typeof PHASES)[number];

/** Seconds since the Unix epoch, as Prometheus timestamps are. */
type UnixSeconds = number;

export interface LastSuccess {
  /** When it finished (status.completionTime, else its Ready condition's transition). */
  at: UnixSeconds;
  /** Bytes stored (status.snapshot.size), if the status says. */
  sizeBytes: number | undefined;
  /** From status.startTime to completion, if both are known. */
  durationSeconds: number | undefined;
  /** Whether the stored object was read back and checked (status.snapshot.verified). */
  verified: boolean;
}

export interface ScheduleFigures {
  namespace: string;
  schedule: string;
  /** When this sync was answered (the hook's clock): across replicas, the newest figures are the current ones. */
  syncedAt: UnixSeconds;
  /** The schedule's own creation time. */
  createdAt: UnixSeconds | undefined;
  /** The newest successful backup's completion time: status.lastSuccessfulBackupTime as this answer writes it. */
  lastSuccessAt: UnixSeconds | undefined;
  /** Of the newest finished child still there (by slot): 1 succeeded, 0 failed; undefined when none has finished. */
  lastStatus: 0 | 1 | undefined;
  /** The newest successful child still there (size, duration, verification are not kept once it is pruned). */
  lastSuccess: LastSuccess | undefined;
  /** How long a slot may be apart from the next, from the cron expression and time zone: see expectedInterval. */
  expectedIntervalSeconds: number | undefined;
  /** Children (not being deleted) by status.phase; a child with no phase yet counts as Pending. */
  backupsByPhase: Record<Phase, number>;
  /** Of the unfinished children, the earliest creation time + its Job's activeDeadlineSeconds. */
  unfinishedDeadlineAt: UnixSeconds | undefined;
  paused: boolean;
  /** The spec, cron expression or time zone cannot be used (the schedule's Failed condition is True). */
  failed: boolean;
  /** spec.restoreTest is set: the schedule's backups are restore-tested at its slots. */
  restoreTestEnabled: boolean;
  /** status.lastRestoreTestTime and lastSuccessfulRestoreTestTime as this answer writes them. */
  lastRestoreTestAt: UnixSeconds | undefined;
  lastSuccessfulRestoreTestAt: UnixSeconds | undefined;
  /** The RestoreTested condition: 1 the latest test succeeded, 0 it failed; undefined before the first. */
  lastRestoreTestStatus: 0 | 1 | undefined;
}

const seconds = (date: Date): UnixSeconds => date.getTime() / 1000;

// Finding slots takes croner ~0.1 ms, as long as the rest of a schedule's figures; the answer only changes when a
// slot passes, so it is kept per cron expression and time zone until then (one entry per distinct schedule).
const MAX_CACHED_INTERVALS = 10_000;
const intervals = new Map<string, { from: Date; until: Date | null; seconds: number | undefined }>();

/**
 * The longest gap between consecutive slots around `now`: the one in progress (latest slot → next slot) and the one
 * before it. For `0 2 * * 1-5` that is 3 days from Friday's slot to Monday's, 1 day from Tuesday's: a weekend is not
 * a missed backup, and two missed weekdays still are. Slots are in the schedule's time zone, so a day across a DST
 * change is 23 or 25 hours. Undefined when fewer than two slots are found.
 */
export function expectedInterval(cron: CronSchedule, now: Date): number | undefined {
  const key = `${cron.expression}\0${cron.timeZone}`;
  const cached = intervals.get(key);
  if (cached && now >= cached.from && (cached.until === null || now < cached.until)) return cached.seconds;
  const recent = cron.mostRecentSlot(now);
  const before = recent ? cron.mostRecentSlot(new Date(recent.getTime() - 1)) : null;
  const next = cron.nextSlot(now);
  const slots = [before, recent, next].filter((slot): slot is Date => slot !== null);
  const last = slots.at(-1);
  if (slots.length === 1 && last) {
    const after = cron.nextSlot(last);
    if (after) slots.push(after);
  }
  let longest: number | undefined;
  for (let i = 1; i < slots.length; i += 1) {
    const gap = seconds(slots[i]!) - seconds(slots[i - 1]!);
    longest = Math.max(longest ?? 0, gap);
  }
  if (intervals.size >= MAX_CACHED_INTERVALS) intervals.clear();
  if (recent) intervals.set(key, { from: recent, until: next, seconds: longest });
  return longest;
}

function phaseOf(status: BackupStatus | undefined): Phase {
  const phase = status?.phase;
  return phase !== undefined && (PHASES as readonly string[]).includes(phase) ? phase : 'Pending';
}

function lastSuccessOf(backups: readonly ObservedBackup[]): LastSuccess | undefined {
  let newest: ObservedBackup | undefined;
  for (const backup of backups) {
    if (backup.outcome !== 'succeeded' || !backup.succeededAt) continue;
    if (!newest || backup.succeededAt > newest.succeededAt!) newest = backup;
  }
  if (!newest) return undefined;
  const status = newest.object.status as BackupStatus | undefined;
  const started = parseTime(status?.startTime);
  const size = status?.snapshot?.size;
  return {
    at: seconds(newest.succeededAt!),
    sizeBytes: typeof size === 'number' && Number.isFinite(size) ? size : undefined,
    durationSeconds: started ? Math.max(0, seconds(newest.succeededAt!) - seconds(started)) : undefined,
    verified: status?.snapshot?.verified === true,
  };
}

function activeDeadlineOf(object: KubernetesObject): number | undefined {
  const deadline = (object.spec as { job?: { activeDeadlineSeconds?: unknown } } | undefined)?.job
    ?.activeDeadlineSeconds;
  return typeof deadline === 'number' && Number.isFinite(deadline) ? deadline : undefined;
}

/** The figures of one answered schedule sync. */
export function scheduleFigures(parent: KubernetesObject, result: ScheduleSyncResult, now: Date): ScheduleFigures {
  const present = result.backups.filter((b) => !b.deleting);
  const backupsByPhase: Record<Phase, number> = { Pending: 0, Running: 0, Succeeded: 0, Failed: 0 };
  let unfinishedDeadlineAt: UnixSeconds | undefined;
  for (const backup of present) {
    backupsByPhase[phaseOf(backup.object.status as BackupStatus | undefined)] += 1;
    if (backup.outcome !== 'active') continue;
    const created = parseTime(backup.object.metadata.creationTimestamp);
    const deadline = activeDeadlineOf(backup.object);
    if (!created || deadline === undefined) continue;
    unfinishedDeadlineAt = Math.min(unfinishedDeadlineAt ?? Infinity, seconds(created) + deadline);
  }
  const finished = present.filter((b) => b.outcome === 'succeeded' || b.outcome === 'failed').sort(newestFirst)[0];
  const lastSuccessAt = parseTime(result.response.status.lastSuccessfulBackupTime as string | undefined);
  const createdAt = parseTime(parent.metadata.creationTimestamp);
  const status = result.response.status as ScheduleStatus;
  const time = (value: string | undefined) => {
    const at = parseTime(value);
    return at && seconds(at);
  };
  const tested = status.conditions?.find((c) => c.type === CONDITION.restoreTested);
  return {
    namespace: parent.metadata.namespace ?? '',
    schedule: parent.metadata.name,
    syncedAt: seconds(now),
    createdAt: createdAt && seconds(createdAt),
    lastSuccessAt: lastSuccessAt && seconds(lastSuccessAt),
    lastStatus: finished ? (finished.outcome === 'succeeded' ? 1 : 0) : undefined,
    lastSuccess: lastSuccessOf(present),
    expectedIntervalSeconds: result.cron && expectedInterval(result.cron, now),
    backupsByPhase,
    unfinishedDeadlineAt,
    paused: (parent.spec as { paused?: unknown } | undefined)?.paused === true,
    failed: result.outcome === 'invalid',
    restoreTestEnabled: (parent.spec as { restoreTest?: unknown } | undefined)?.restoreTest !== undefined,
    lastRestoreTestAt: time(status.lastRestoreTestTime),
    lastSuccessfulRestoreTestAt: time(status.lastSuccessfulRestoreTestTime),
    lastRestoreTestStatus:
      tested?.status === 'True'
        ? 1
        : tested?.status === 'False' && tested.reason === RESTORE_TEST_REASON.failed
          ? 0
          : undefined,
  };
}
