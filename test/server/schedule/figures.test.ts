import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubernetesObject } from '../../../src/server/metacontroller/types.js';
import { parseSchedule, type CronSchedule } from '../../../src/server/schedule/cron.js';
import { expectedInterval, scheduleFigures } from '../../../src/server/schedule/figures.js';
import { syncSchedule } from '../../../src/server/schedule/sync.js';
import { at, backup, NAMESPACE, schedule, SCHEDULE_NAME, syncRequest, unix } from '../../helpers/builders.js';

const NOW = at('2026-01-15T12:00:01Z');
const HOUR = 3600;
const DAY = 24 * HOUR;

function cron(expression: string, timeZone?: string): CronSchedule {
  const parsed = parseSchedule(expression, timeZone);
  assert.ok(parsed.ok);
  return parsed.schedule;
}

function figuresOf(parent: KubernetesObject, children: KubernetesObject[], now = NOW) {
  return scheduleFigures(parent, syncSchedule(syncRequest(parent, children), now), now);
}

function withStatus(object: KubernetesObject, status: Record<string, unknown>): KubernetesObject {
  return { ...object, status: { ...(object.status as object), ...status } };
}

describe('expectedInterval', () => {
  it('is the cron period for regular schedules, in seconds', () => {
    assert.equal(expectedInterval(cron('@hourly'), NOW), HOUR);
    assert.equal(expectedInterval(cron('0 */6 * * *'), NOW), 6 * HOUR);
    assert.equal(expectedInterval(cron('30 2 * * *'), NOW), DAY);
    assert.equal(expectedInterval(cron('@weekly'), NOW), 7 * DAY);
  });

  it('weekday schedules: the weekend gap while it is in progress or just ended, a day otherwise', () => {
    const weekdays = cron('0 2 * * 1-5');
    // 2026-01-16 is a Friday: Friday 02:00 → Monday 02:00 is the slot in progress all weekend.
    assert.equal(expectedInterval(weekdays, at('2026-01-17T12:00:00Z')), 3 * DAY, 'Saturday');
    assert.equal(expectedInterval(weekdays, at('2026-01-19T03:00:00Z')), 3 * DAY, 'Monday, after its slot');
    assert.equal(expectedInterval(weekdays, at('2026-01-20T03:00:00Z')), DAY, 'Tuesday');
  });

  it("follows the schedule's time zone across a DST change (23 h and 25 h days)", () => {
    // 29 March 2026: Berlin's clocks go from 02:00 to 03:00, so 12:00 on the 28th to 12:00 on the 29th is 23 h.
    const uneven = cron('0 12 * * *', 'Europe/Berlin');
    assert.equal(expectedInterval(uneven, at('2026-03-29T06:00:00Z')), DAY, 'the longer neighbour wins');
    assert.equal(expectedInterval(uneven, at('2026-10-25T12:00:00Z')), 25 * HOUR);
  });

  it('a schedule that has not fired yet uses its next two slots', () => {
    const yearly = cron('0 0 1 1 *');
    assert.equal(expectedInterval(yearly, at('2026-06-01T00:00:00Z')), 365 * DAY);
  });
});

describe('scheduleFigures', () => {
  const children = [
    backup('2026-01-14T18:00:00Z', 'succeeded'),
    backup('2026-01-15T00:00:00Z', 'failed'),
    backup('2026-01-15T06:00:00Z', 'succeeded', { tookMinutes: 4 }),
  ];

  it('reads the last success, its size, duration and verification, and phase counts from the children', () => {
    const newest = withStatus(children[2]!, { snapshot: { size: 123_456, verified: true } });
    const figures = figuresOf(schedule(), [children[0]!, children[1]!, newest]);
    assert.equal(figures.namespace, NAMESPACE);
    assert.equal(figures.schedule, SCHEDULE_NAME);
    assert.equal(figures.syncedAt, NOW.getTime() / 1000);
    assert.equal(figures.createdAt, unix('2026-01-01T00:00:00Z'));
    assert.equal(figures.lastSuccessAt, unix('2026-01-15T06:04:00Z'));
    assert.equal(figures.lastStatus, 1);
    assert.deepEqual(figures.lastSuccess, {
      at: unix('2026-01-15T06:04:00Z'),
      sizeBytes: 123_456,
      durationSeconds: 4 * 60 - 1, // started a second after its slot
      verified: true,
    });
    assert.equal(figures.expectedIntervalSeconds, 6 * HOUR);
    // The 12:00 slot's backup is created by this answer, not yet observed: it is not counted.
    assert.deepEqual(figures.backupsByPhase, { Pending: 0, Running: 0, Succeeded: 2, Failed: 1 });
    assert.equal(figures.unfinishedDeadlineAt, undefined);
    assert.equal(figures.paused, false);
    assert.equal(figures.failed, false);
  });

  it('the last status is that of the newest finished backup by slot; unverified and sizeless successes say so', () => {
    const failedLast = [children[0]!, backup('2026-01-15T06:00:00Z', 'failed')];
    const figures = figuresOf(schedule(), failedLast);
    assert.equal(figures.lastStatus, 0);
    assert.deepEqual(figures.lastSuccess, {
      at: unix('2026-01-14T18:03:00Z'),
      sizeBytes: undefined,
      durationSeconds: 179,
      verified: false,
    });
  });

  it('no finished backup: no last status, no last success; a status written before still gives the time', () => {
    const running = backup('2026-01-15T06:00:00Z', 'active');
    const fresh = figuresOf(schedule(), [running]);
    assert.equal(fresh.lastStatus, undefined);
    assert.equal(fresh.lastSuccess, undefined);
    assert.equal(fresh.lastSuccessAt, undefined);
    assert.deepEqual(fresh.backupsByPhase, { Pending: 0, Running: 1, Succeeded: 0, Failed: 0 });
    const pruned = figuresOf(schedule({ status: { lastSuccessfulBackupTime: '2026-01-10T00:03:00Z' } }), [running]);
    assert.equal(pruned.lastSuccessAt, unix('2026-01-10T00:03:00Z'));
    assert.equal(pruned.lastSuccess, undefined, 'the pruned backup took its size and duration with it');
  });

  it('unfinished backups: the earliest creation + activeDeadlineSeconds; a child without a phase is Pending', () => {
    const withDeadline = (object: KubernetesObject, seconds: number): KubernetesObject => ({
      ...object,
      spec: { ...(object.spec as object), job: { activeDeadlineSeconds: seconds } },
    });
    const running = withDeadline(backup('2026-01-15T06:00:00Z', 'active'), 3600);
    const older = withDeadline(backup('2026-01-15T00:00:00Z', 'active'), 600);
    const { status: _status, ...noStatus } = withDeadline(backup('2026-01-14T18:00:00Z', 'active'), 36_000);
    const parent = schedule({ spec: { concurrencyPolicy: 'Allow' } });
    const figures = figuresOf(parent, [running, older, noStatus]);
    assert.deepEqual(figures.backupsByPhase, { Pending: 1, Running: 2, Succeeded: 0, Failed: 0 });
    // Created a second after their slots (the builder): 00:00:01 + 600 s is the earliest.
    assert.equal(figures.unfinishedDeadlineAt, unix('2026-01-15T00:10:01Z'));
  });

  it('backups being deleted are not counted', () => {
    const figures = figuresOf(schedule(), [children[0]!, backup('2026-01-15T06:00:00Z', 'failed', { deleting: true })]);
    assert.deepEqual(figures.backupsByPhase, { Pending: 0, Running: 0, Succeeded: 1, Failed: 0 });
    assert.equal(figures.lastStatus, 1);
  });

  it('a paused schedule says so and keeps its interval; an invalid one is failed, without an interval', () => {
    const paused = figuresOf(schedule({ spec: { paused: true } }), children);
    assert.equal(paused.paused, true);
    assert.equal(paused.failed, false);
    assert.equal(paused.expectedIntervalSeconds, 6 * HOUR);
    const invalid = figuresOf(schedule({ spec: { schedule: 'every day' } }), children);
    assert.equal(invalid.failed, true);
    assert.equal(invalid.expectedIntervalSeconds, undefined);
    assert.equal(invalid.lastStatus, 1, 'its backups are still read');
    const invalidPaused = figuresOf(schedule({ spec: { retention: 0, paused: true } }), children);
    assert.equal(invalidPaused.failed, true);
    assert.equal(invalidPaused.paused, true);
  });
});
