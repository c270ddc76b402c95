// A schedule's restore tests in its sync hook: which backup each restore-test slot asks for (the newest Ready one,
// kept once asked), what the backups' tests say in the schedule's status (lastRestoreTestTime,
// lastSuccessfulRestoreTestTime, nextRestoreTestTime, RestoreTested), and that a bad restore-test cron never stops
// the backups.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubernetesObject } from '../../../src/server/metacontroller/types.js';
import type { RestoreTestStatus, ScheduleStatus } from '../../../src/api/types.js';
import { syncSchedule } from '../../../src/server/schedule/sync.js';
import { at, backup, condition, schedule, syncRequest, SCHEDULE_NAME, unix } from '../../helpers/builders.js';

/** Backups every 6 hours, restore tests on Sundays at 04:00 UTC (2026-01-04, 2026-01-11, ...). */
const SPEC = { timeZone: 'UTC', restoreTest: { schedule: '0 4 * * 0' } };
const name = (slot: string) => `${SCHEDULE_NAME}-${unix(slot)}`;

function withTest(child: KubernetesObject, test: RestoreTestStatus): KubernetesObject {
  return { ...child, status: { ...(child.status as object), restoreTest: test } };
}

function sync(
  children: KubernetesObject[],
  now: string,
  status?: ScheduleStatus,
  spec: Record<string, unknown> = SPEC,
) {
  return syncSchedule(
    syncRequest(schedule({ spec, ...(status && { status: status as Record<string, unknown> }) }), children),
    at(now),
  );
}
const statusOf = (result: ReturnType<typeof sync>) => result.response.status as ScheduleStatus;

describe('syncSchedule: restore tests', () => {
  it('at a restore-test slot, the newest Ready backup is asked for, and the hook wakes for the next slot', () => {
    const children = [
      backup('2026-01-11T00:00:00Z', 'succeeded'),
      backup('2026-01-10T18:00:00Z', 'succeeded'),
      backup('2026-01-11T00:00:00Z', 'failed', { scheduleName: 'other' }),
    ];
    const result = sync(children, '2026-01-11T04:00:05Z');
    const s = statusOf(result);
    assert.deepEqual(s.restoreTestRequest, {
      backup: name('2026-01-11T00:00:00Z'),
      requestedAt: '2026-01-11T04:00:00Z',
    });
    assert.equal(s.nextRestoreTestTime, '2026-01-18T04:00:00Z');
    assert.equal(condition(s as Record<string, unknown>, 'RestoreTested')?.status, 'Unknown');
    assert.match(
      condition(s as Record<string, unknown>, 'RestoreTested')!.message,
      /asked for at 2026-01-11T04:00:00Z/,
    );
    // The next backup slot (06:00) comes before the next restore test: it sets the wake-up.
    assert.equal(result.response.resyncAfterSeconds, 2 * 3600 - 5 + 0.1);
    // Backups go on as before.
    assert.equal(condition(s as Record<string, unknown>, 'Ready')?.status, 'True');
  });

  it('the asked-for backup stays the one tested even when a newer backup becomes Ready meanwhile', () => {
    const asked = { backup: name('2026-01-11T00:00:00Z'), requestedAt: '2026-01-11T04:00:00Z' };
    const children = [backup('2026-01-11T06:00:00Z', 'succeeded'), backup('2026-01-11T00:00:00Z', 'succeeded')];
    const s = statusOf(sync(children, '2026-01-11T06:10:00Z', { restoreTestRequest: asked }));
    assert.deepEqual(s.restoreTestRequest, asked);
  });

  it('an asked-for backup deleted before its test: the newest Ready one is asked for the same slot', () => {
    const asked = { backup: name('2026-01-10T00:00:00Z'), requestedAt: '2026-01-11T04:00:00Z' };
    const children = [backup('2026-01-11T00:00:00Z', 'succeeded')];
    const s = statusOf(sync(children, '2026-01-11T05:00:00Z', { restoreTestRequest: asked }));
    assert.deepEqual(s.restoreTestRequest, { backup: name('2026-01-11T00:00:00Z'), requestedAt: asked.requestedAt });
  });

  it('a test of the asked-for backup at the slot or later (its own spec.restoreTest) answers the slot', () => {
    const asked = { backup: name('2026-01-11T00:00:00Z'), requestedAt: '2026-01-11T04:00:00Z' };
    const tested = withTest(backup('2026-01-11T00:00:00Z', 'succeeded'), {
      requestedAt: '2026-01-11T04:30:00Z',
      result: 'Succeeded',
      completionTime: '2026-01-11T04:33:00Z',
      message: 'restored',
    });
    const s = statusOf(sync([tested], '2026-01-11T05:00:00Z', { restoreTestRequest: asked }));
    const condition_ = condition(s as Record<string, unknown>, 'RestoreTested')!;
    assert.equal(condition_.status, 'True');
    assert.doesNotMatch(condition_.message, /asked for/);
  });

  it('a slot whose tested backup was pruned afterwards is not asked again; its result stays', () => {
    const tested = withTest(backup('2026-01-11T00:00:00Z', 'succeeded'), {
      requestedAt: '2026-01-11T04:00:00Z',
      result: 'Failed',
      completionTime: '2026-01-11T04:02:00Z',
      message: 'Snapshot verification failed: damaged',
    });
    const asked = { backup: tested.metadata.name, requestedAt: '2026-01-11T04:00:00Z' };
    const first = statusOf(sync([tested], '2026-01-11T05:00:00Z', { restoreTestRequest: asked }));
    assert.equal(condition(first as Record<string, unknown>, 'RestoreTested')?.status, 'False');
    // Retention prunes it; a newer backup is Ready.
    const later = statusOf(sync([backup('2026-01-11T06:00:00Z', 'succeeded')], '2026-01-11T06:05:00Z', first));
    assert.deepEqual(later.restoreTestRequest, asked, 'the slot was answered: no second test for it');
    const kept = condition(later as Record<string, unknown>, 'RestoreTested')!;
    assert.equal(kept.status, 'False', 'deleting the failed backup does not clear the failure');
    assert.equal(kept.reason, 'RestoreTestFailed');
    assert.equal(
      kept.lastTransitionTime,
      condition(first as Record<string, unknown>, 'RestoreTested')!.lastTransitionTime,
    );
  });

  it('no Ready backup at the slot: the test waits for one, and says so', () => {
    const s = statusOf(sync([backup('2026-01-11T00:00:00Z', 'failed')], '2026-01-11T04:30:00Z'));
    assert.equal(s.restoreTestRequest, undefined);
    const tested = condition(s as Record<string, unknown>, 'RestoreTested')!;
    assert.equal(tested.status, 'Unknown');
    assert.equal(tested.reason, 'RestoreTestPending');
    assert.match(tested.message, /2026-01-11T04:00:00Z restore test waits for a Ready backup/);
  });

  it("a slot before the schedule's creation asks for nothing; the condition names the first slot", () => {
    const result = syncSchedule(
      syncRequest(schedule({ spec: SPEC, created: '2026-01-11T05:00:00Z' }), [
        backup('2026-01-11T06:00:00Z', 'succeeded'),
      ]),
      at('2026-01-11T06:30:00Z'),
    );
    const s = result.response.status as ScheduleStatus;
    assert.equal(s.restoreTestRequest, undefined);
    assert.match(
      condition(s as Record<string, unknown>, 'RestoreTested')!.message,
      /no restore test yet; the first is due at 2026-01-18T04:00:00Z/,
    );
  });

  it("the backups' finished tests: the times, and the condition from the newest; a success outlives its backup", () => {
    const good = withTest(backup('2026-01-04T00:00:00Z', 'succeeded'), {
      requestedAt: '2026-01-04T04:00:00Z',
      result: 'Succeeded',
      completionTime: '2026-01-04T04:03:00Z',
      message: 'restored',
    });
    const bad = withTest(backup('2026-01-11T00:00:00Z', 'succeeded'), {
      requestedAt: '2026-01-11T04:00:00Z',
      result: 'Failed',
      completionTime: '2026-01-11T04:02:00Z',
      message: 'Snapshot verification failed: damaged',
    });
    const first = statusOf(sync([bad, good], '2026-01-11T05:00:00Z'));
    assert.equal(first.lastRestoreTestTime, '2026-01-11T04:02:00Z');
    assert.equal(first.lastSuccessfulRestoreTestTime, '2026-01-04T04:03:00Z');
    const tested = condition(first as Record<string, unknown>, 'RestoreTested')!;
    assert.equal(tested.status, 'False');
    assert.equal(tested.reason, 'RestoreTestFailed');
    assert.match(
      tested.message,
      new RegExp(
        `^${name('2026-01-11T00:00:00Z')}, tested at 2026-01-11T04:02:00Z: Snapshot verification failed: damaged`,
      ),
    );
    // The tested backup pruned: the times stay, from the recorded status.
    const later = statusOf(sync([bad], '2026-01-11T07:00:00Z', first));
    assert.equal(later.lastSuccessfulRestoreTestTime, '2026-01-04T04:03:00Z');
  });

  it('without spec.restoreTest: no request and no condition, unless a backup was tested on its own', () => {
    const plain = statusOf(sync([backup('2026-01-11T00:00:00Z', 'succeeded')], '2026-01-11T05:00:00Z', undefined, {}));
    assert.equal(plain.restoreTestRequest, undefined);
    assert.equal(plain.nextRestoreTestTime, undefined);
    assert.equal(condition(plain as Record<string, unknown>, 'RestoreTested'), undefined);
    const once = withTest(backup('2026-01-11T00:00:00Z', 'succeeded'), {
      requestedAt: '2026-01-11T00:00:01Z',
      result: 'Succeeded',
      completionTime: '2026-01-11T00:06:00Z',
    });
    const s = statusOf(sync([once], '2026-01-11T05:00:00Z', undefined, {}));
    assert.equal(s.lastSuccessfulRestoreTestTime, '2026-01-11T00:06:00Z');
    assert.equal(condition(s as Record<string, unknown>, 'RestoreTested')?.status, 'True');
  });

  it('a restore-test cron that cannot be used: RestoreTested False saying why, and the backups go on', () => {
    const result = sync([], '2026-01-11T05:59:59Z', undefined, {
      timeZone: 'UTC',
      restoreTest: { schedule: 'every sunday' },
    });
    const s = statusOf(result);
    assert.equal(condition(s as Record<string, unknown>, 'Ready')?.status, 'True');
    assert.match(condition(s as Record<string, unknown>, 'Ready')!.message, /spec\.restoreTest\.schedule/);
    const tested = condition(s as Record<string, unknown>, 'RestoreTested')!;
    assert.equal(tested.status, 'False');
    assert.equal(tested.reason, 'InvalidRestoreTestSchedule', 'not RestoreTestFailed: no backup failed a test');
    assert.match(tested.message, /^spec\.restoreTest\.schedule: /);
    const created = sync([], '2026-01-11T06:00:01Z', undefined, {
      timeZone: 'UTC',
      restoreTest: { schedule: 'every sunday' },
    });
    assert.equal(created.outcome, 'created');
  });

  it('a paused schedule asks for no new test and keeps what was recorded', () => {
    const recorded: ScheduleStatus = {
      lastSuccessfulRestoreTestTime: '2026-01-04T04:03:00Z',
      restoreTestRequest: { backup: 'x', requestedAt: '2026-01-04T04:00:00Z' },
    };
    const s = statusOf(
      sync([backup('2026-01-11T00:00:00Z', 'succeeded')], '2026-01-11T05:00:00Z', recorded, { ...SPEC, paused: true }),
    );
    assert.deepEqual(s.restoreTestRequest, recorded.restoreTestRequest);
    assert.equal(s.lastSuccessfulRestoreTestTime, recorded.lastSuccessfulRestoreTestTime);
  });
});
