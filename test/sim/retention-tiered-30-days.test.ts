// Thirty simulated days of an hourly schedule with a tiered retention policy (keepHourly 24, keepDaily 7,
// keepWeekly 4, retention 1), through the schedule hook itself: every slot creates a backup that succeeds, every sync
// prunes what the policy no longer keeps. The run must end with exactly the set worked out by hand, and the status
// must count what each rule keeps. (The real-API-server simulation, test/sim/schedule-30-days.test.ts, covers the
// Metacontroller side of pruning; this one the policy's outcome over a month.)

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ScheduleStatus } from '../../src/api/types.js';
import type { KubernetesObject } from '../../src/server/metacontroller/types.js';
import { syncSchedule } from '../../src/server/schedule/sync.js';
import { backup, schedule, syncRequest, SCHEDULE_NAME, unix } from '../helpers/builders.js';

const HOUR = 3_600_000;
const START = Date.parse('2026-03-01T00:00:00Z'); // a Sunday
const END = Date.parse('2026-03-30T23:00:00Z'); // the last slot, a Monday

function run(timeZone: string): { names: string[]; status: ScheduleStatus } {
  const parent = schedule({
    created: '2026-02-28T23:30:00Z',
    spec: {
      schedule: '0 * * * *',
      timeZone,
      retention: 1,
      retentionPolicy: { keepHourly: 24, keepDaily: 7, keepWeekly: 4 },
    },
  });
  let children: KubernetesObject[] = [];
  let status: ScheduleStatus = {};
  for (let slot = START; slot <= END; slot += HOUR) {
    // The slot's sync creates its backup; it succeeds; the next sync (a child change) prunes.
    const created = syncSchedule(syncRequest({ ...parent, status }, children), new Date(slot + 1_000));
    assert.equal(created.outcome, 'created');
    status = created.response.status as ScheduleStatus;
    const names = new Set(created.response.children.map((c) => c.metadata.name));
    children = [...children.filter((c) => names.has(c.metadata.name)), backup(new Date(slot), 'succeeded')];
    const settled = syncSchedule(syncRequest({ ...parent, status }, children), new Date(slot + 5 * 60_000));
    status = settled.response.status as ScheduleStatus;
    const kept = new Set(settled.response.children.map((c) => c.metadata.name));
    children = children.filter((c) => kept.has(c.metadata.name));
  }
  return { names: children.map((c) => c.metadata.name).sort(), status };
}

const name = (iso: string) => `${SCHEDULE_NAME}-${unix(iso)}`;

describe('30 days of an hourly schedule with keepHourly 24, keepDaily 7, keepWeekly 4', () => {
  it('in UTC ends with the last 24 hours, the last 23:00 of 6 more days and of 2 more ISO weeks', () => {
    const { names, status } = run('UTC');
    const hourly = Array.from({ length: 24 }, (_, h) => `2026-03-30T${String(h).padStart(2, '0')}:00:00Z`);
    const daily = ['24', '25', '26', '27', '28', '29'].map((d) => `2026-03-${d}T23:00:00Z`);
    const weekly = ['2026-03-22T23:00:00Z', '2026-03-15T23:00:00Z'];
    assert.deepEqual(names, [...hourly, ...daily, ...weekly].map(name).sort());
    assert.deepEqual(status.retained, {
      backups: 32,
      byRule: { retention: 1, keepHourly: 24, keepDaily: 7, keepWeekly: 4 },
    });
  });

  it("in Europe/Berlin the days are Berlin's: the newest of each is 21:00 or 22:00 UTC (DST began on 29 March)", () => {
    const { names, status } = run('Europe/Berlin');
    // The last slot, 2026-03-30T23:00Z, is 31 March 01:00 in Berlin; the last 24 hours: 29 March 23:00Z to it.
    const hourly = Array.from({ length: 24 }, (_, i) => new Date(END - i * HOUR).toISOString().replace('.000Z', 'Z'));
    // The newest of each of the 7 Berlin days 31 March back to 25 March: 23:00 Berlin, 21:00Z from 29 March (CEST),
    // 22:00Z before (CET); 31 and 30 March's are among the hourly ones.
    const daily = ['2026-03-29T21:00:00Z', '2026-03-28T22:00:00Z', '2026-03-27T22:00:00Z', '2026-03-26T22:00:00Z'];
    daily.push('2026-03-25T22:00:00Z');
    // ISO weeks in Berlin: this one (END), 23–29 March (29 March 21:00Z, a daily), then two Sundays at 23:00 CET.
    const weekly = ['2026-03-22T22:00:00Z', '2026-03-15T22:00:00Z'];
    const expected = new Set([...hourly, ...daily, ...weekly]);
    assert.equal(expected.size, 31);
    assert.deepEqual(names, [...expected].map(name).sort());
    assert.equal(status.retained?.backups, expected.size);
  });
});
