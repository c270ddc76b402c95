// A schedule's restore tests, as a pure function of the sync request and the clock: at each slot of
// spec.restoreTest.schedule (in the schedule's time zone) the newest Ready backup is asked to be tested (the request
// goes into status.restoreTestRequest; the backup decorator reads it and runs the test), and what the backups'
// tests found becomes lastRestoreTestTime, lastSuccessfulRestoreTestTime and the RestoreTested condition.

import { formatTime, latestTime, nextCondition, parseTime, type Condition } from '../../api/conditions.js';
import type { BackupStatus, RestoreTestStatus, ScheduleSpec, ScheduleStatus } from '../../api/types.js';
import { CONDITION, RESTORE_TEST_REASON } from '../conditions.js';
import { newestFirst, type ObservedBackup } from './backups.js';
import { parseSchedule } from './cron.js';

export interface RestoreTestFacts {
  request?: { backup: string; requestedAt: string };
  lastRestoreTestTime?: string;
  lastSuccessfulRestoreTestTime?: string;
  nextRestoreTestTime?: string;
  /** The next slot, for resyncAfterSeconds. */
  next?: Date;
  /** Without spec.restoreTest and no test ever seen: no condition. */
  condition?: Condition;
  /** A problem with spec.restoreTest.schedule (the backups go on). */
  problem?: string;
}

interface Finished {
  backup: string;
  test: RestoreTestStatus;
  at: Date;
}

/** The finished tests of the backups still there, newest first. */
function finishedTests(backups: readonly ObservedBackup[]): Finished[] {
  return backups
    .flatMap((b) => {
      const test = (b.object.status as BackupStatus | undefined)?.restoreTest;
      const at = parseTime(test?.completionTime);
      return test && at && (test.result === 'Succeeded' || test.result === 'Failed')
        ? [{ backup: b.name, test, at }]
        : [];
    })
    .sort((a, b) => b.at.getTime() - a.at.getTime());
}

export function scheduleRestoreTests(
  spec: ScheduleSpec,
  observed: ScheduleStatus,
  backups: readonly ObservedBackup[],
  created: Date | undefined,
  generation: number | undefined,
  now: Date,
): RestoreTestFacts {
  const finished = finishedTests(backups);
  const lastTest = finished[0];
  const lastSuccess = finished.find((f) => f.test.result === 'Succeeded');
  const recordedLast = parseTime(observed.lastRestoreTestTime);
  const lastTime = latestTime(lastTest?.at, recordedLast);
  const lastSuccessTime = latestTime(lastSuccess?.at, parseTime(observed.lastSuccessfulRestoreTestTime));
  const facts: RestoreTestFacts = {
    ...(lastTime && { lastRestoreTestTime: formatTime(lastTime) }),
    ...(lastSuccessTime && { lastSuccessfulRestoreTestTime: formatTime(lastSuccessTime) }),
  };
  const gen = generation === undefined ? {} : { observedGeneration: generation };
  const condition = (status: Condition['status'], reason: string, message: string) =>
    nextCondition(observed.conditions, { type: CONDITION.restoreTested, status, reason, message, ...gen }, now);
  const previous = observed.conditions?.find((c) => c.type === CONDITION.restoreTested);
  // The newest result: of a backup still there, unless the recorded one is newer (its backup was pruned since).
  const latestResult = (): Condition | undefined => {
    if (lastTest && (!recordedLast || lastTest.at >= recordedLast)) {
      const { backup, test } = lastTest;
      const message = `${backup}, tested at ${formatTime(lastTest.at)}: ${test.message ?? ''}`;
      return test.result === 'Succeeded'
        ? condition('True', RESTORE_TEST_REASON.succeeded, message)
        : condition('False', RESTORE_TEST_REASON.failed, message);
    }
    const wasResult =
      previous?.reason === RESTORE_TEST_REASON.succeeded || previous?.reason === RESTORE_TEST_REASON.failed;
    return wasResult ? condition(previous.status, previous.reason, previous.message) : undefined;
  };

  const settings = spec.restoreTest;
  if (!settings) {
    const latest = latestResult();
    return { ...facts, ...(latest && { condition: latest }) };
  }
  const parsed = parseSchedule(settings.schedule, spec.timeZone);
  if (!parsed.ok) {
    const problem = `spec.restoreTest.schedule: ${parsed.message}`;
    return { ...facts, problem, condition: condition('False', RESTORE_TEST_REASON.invalidSchedule, problem) };
  }
  const next = parsed.schedule.nextSlot(now) ?? undefined;
  if (next) Object.assign(facts, { next, nextRestoreTestTime: formatTime(next) });

  // The request of the current slot: the one recorded if it is this slot's and its backup is still there (or its test
  // already ended: a pruned backup's slot is answered), else the newest Ready backup (none yet: asked again at the
  // next sync, until the next slot).
  const slot = parsed.schedule.mostRecentSlot(now);
  const asked = observed.restoreTestRequest;
  const live = backups.filter((b) => !b.deleting);
  if (slot && (!created || slot > created)) {
    const requestedAt = formatTime(slot);
    const answeredBefore = recordedLast !== undefined && recordedLast >= slot;
    const kept = asked?.requestedAt === requestedAt && (live.some((b) => b.name === asked.backup) || answeredBefore);
    const newestReady = [...live].sort(newestFirst).find((b) => b.outcome === 'succeeded');
    const backup = kept ? asked.backup : newestReady?.name;
    if (backup) facts.request = { backup, requestedAt };
    // A test of that backup asked for at this slot or later (its own spec.restoreTest.requestedAt) answers it.
    const answered =
      answeredBefore ||
      finished.some((f) => f.backup === backup && (parseTime(f.test.requestedAt)?.getTime() ?? 0) >= slot.getTime());
    const latest = latestResult();
    if (!backup) {
      facts.condition =
        latest ??
        condition('Unknown', RESTORE_TEST_REASON.pending, `the ${requestedAt} restore test waits for a Ready backup`);
      return facts;
    }
    if (!answered && !latest) {
      facts.condition = condition(
        'Unknown',
        RESTORE_TEST_REASON.running,
        `restore test of ${backup} asked for at ${requestedAt}`,
      );
      return facts;
    }
  } else if (asked?.backup && asked.requestedAt) {
    facts.request = { backup: asked.backup, requestedAt: asked.requestedAt };
  }
  facts.condition =
    latestResult() ??
    condition(
      'Unknown',
      RESTORE_TEST_REASON.notRun,
      next ? `no restore test yet; the first is due at ${formatTime(next)}` : 'no restore test yet',
    );
  return facts;
}
