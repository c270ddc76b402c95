// A schedule's restore tests, as a pure function of the sync request and the clock: at each slot of
// spec.restoreTest.schedule (in the schedule's time zone) the newest Ready backup is asked to be tested (the request
// goes into status.restoreTestRequest; the backup decorator reads it and runs the test), and what the backups'
// tests found becomes lastRestoreTestTime, lastSuccessfulRestoreTestTime and the RestoreTested condition.

import { formatTime, nextCondition, parseTime, type Condition } from '../../api/conditions.js';
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

const newer = (a: Date | undefined, b: Date | undefined) => (a && (!b || a > b) ? a : b);

interface Finished {
  backup: string;
  test: RestoreTestStatus;
  at: Date;
}

/** The newest finished test among the backups (a test of a backup since deleted lives on in the observed status). */
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
  const lastTime = newer(lastTest?.at, parseTime(observed.lastRestoreTestTime));
  const lastSuccessTime = newer(lastSuccess?.at, parseTime(observed.lastSuccessfulRestoreTestTime));
  const facts: RestoreTestFacts = {
    ...(lastTime && { lastRestoreTestTime: formatTime(lastTime) }),
    ...(lastSuccessTime && { lastSuccessfulRestoreTestTime: formatTime(lastSuccessTime) }),
  };
  const gen = generation === undefined ? {} : { observedGeneration: generation };
  const condition = (status: Condition['status'], reason: string, message: string) =>
    nextCondition(observed.conditions, { type: CONDITION.restoreTested, status, reason, message, ...gen }, now);
  const latestResult = (): Condition | undefined => {
    if (!lastTest) return undefined;
    const { backup, test } = lastTest;
    return test.result === 'Succeeded'
      ? condition(
          'True',
          RESTORE_TEST_REASON.succeeded,
          `${backup}, tested at ${formatTime(lastTest.at)}: ${test.message ?? ''}`,
        )
      : condition(
          'False',
          RESTORE_TEST_REASON.failed,
          `${backup}, tested at ${formatTime(lastTest.at)}: ${test.message ?? ''}`,
        );
  };
  const previous = observed.conditions?.find((c) => c.type === CONDITION.restoreTested);

  const settings = spec.restoreTest;
  if (!settings) {
    const latest = latestResult() ?? (previous && condition(previous.status, previous.reason, previous.message));
    return { ...facts, ...(latest && { condition: latest }) };
  }
  const parsed = parseSchedule(settings.schedule, spec.timeZone);
  if (!parsed.ok) {
    const problem = `spec.restoreTest.schedule: ${parsed.message}`;
    return { ...facts, problem, condition: condition('False', RESTORE_TEST_REASON.failed, problem) };
  }
  const next = parsed.schedule.nextSlot(now) ?? undefined;
  if (next) Object.assign(facts, { next, nextRestoreTestTime: formatTime(next) });

  // The request of the current slot: the one recorded if it is this slot's and its backup is still there, else the
  // newest Ready backup (none yet: asked again at the next sync, until the next slot).
  const slot = parsed.schedule.mostRecentSlot(now);
  const asked = observed.restoreTestRequest;
  const live = backups.filter((b) => !b.deleting);
  if (slot && (!created || slot > created)) {
    const requestedAt = formatTime(slot);
    const kept = asked?.requestedAt === requestedAt && live.some((b) => b.name === asked.backup);
    const newestReady = [...live].sort(newestFirst).find((b) => b.outcome === 'succeeded');
    const backup = kept ? asked.backup : newestReady?.name;
    if (backup) facts.request = { backup, requestedAt };
    const answered = finished.find((f) => f.backup === backup && f.test.requestedAt === requestedAt);
    if (!backup) {
      facts.condition =
        latestResult() ??
        condition('Unknown', RESTORE_TEST_REASON.pending, `the ${requestedAt} restore test waits for a Ready backup`);
      return facts;
    }
    if (!answered) {
      const latest = latestResult();
      const pending = `restore test of ${backup} asked for at ${requestedAt}`;
      facts.condition = latest
        ? { ...latest, message: `${latest.message}; ${pending}` }
        : condition('Unknown', RESTORE_TEST_REASON.running, pending);
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
