// Tiered retention (src/server/schedule/retention-policy.ts, spec.retentionPolicy) as a table with prose case names,
// and its properties: restic's forget semantics over a schedule's successful backups, periods in the schedule's time
// zone, united with `retention` in selectForRetention.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { BackupOutcome, ObservedBackup } from '../../../src/server/schedule/backups.js';
import {
  applyTieredPolicy,
  isoWeek,
  periodKey,
  withinStart,
  type TieredPolicy,
} from '../../../src/server/schedule/retention-policy.js';
import { MAX_KEPT_SUCCESSFUL, selectForRetention } from '../../../src/server/schedule/retention.js';

const iso = (d: Date) => d.toISOString().replace(/\.000Z$/, 'Z');
const HOUR = 3_600_000;

/** Backups at the given times (ISO strings), newest or oldest first, kept by `policy` in `zone`. */
function keptBy(times: string[], policy: TieredPolicy, zone = 'UTC'): string[] {
  return applyTieredPolicy(
    times.map((t) => ({ backup: t, time: new Date(t) })),
    policy,
    zone,
  ).kept;
}

/** Every `stepHours` from `from` for `count` backups, as ISO strings. */
function series(from: string, stepHours: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => iso(new Date(Date.parse(from) + i * stepHours * HOUR)));
}

interface Case {
  name: string;
  times: string[];
  policy: TieredPolicy;
  zone?: string;
  kept: string[];
}

const cases: Case[] = [
  {
    name: 'keepLast keeps the newest N, whatever their times',
    times: series('2026-01-01T00:00:00Z', 1, 5),
    policy: { keepLast: 2 },
    kept: ['2026-01-01T04:00:00Z', '2026-01-01T03:00:00Z'],
  },
  {
    name: 'keepDaily keeps the newest backup of each of the last N days that have one',
    times: series('2026-01-01T00:00:00Z', 6, 12),
    policy: { keepDaily: 2 },
    kept: ['2026-01-03T18:00:00Z', '2026-01-02T18:00:00Z'],
  },
  {
    name: 'days without a backup are skipped, not counted: keepDaily 3 reaches back over a gap',
    times: ['2026-01-01T02:00:00Z', '2026-01-02T02:00:00Z', '2026-01-05T02:00:00Z', '2026-01-06T02:00:00Z'],
    policy: { keepDaily: 3 },
    kept: ['2026-01-06T02:00:00Z', '2026-01-05T02:00:00Z', '2026-01-02T02:00:00Z'],
  },
  {
    name: 'keepHourly over backups every 30 minutes keeps the :30 one of each hour',
    times: series('2026-01-01T00:00:00Z', 0.5, 6),
    policy: { keepHourly: 2 },
    kept: ['2026-01-01T02:30:00Z', '2026-01-01T01:30:00Z'],
  },
  {
    name: 'keepWeekly buckets by ISO week, Monday to Sunday: Sunday is the week of the Monday before',
    times: ['2026-01-04T02:00:00Z', '2026-01-05T02:00:00Z', '2026-01-11T02:00:00Z', '2026-01-12T02:00:00Z'],
    policy: { keepWeekly: 2 },
    kept: ['2026-01-12T02:00:00Z', '2026-01-11T02:00:00Z'],
  },
  {
    name: 'keepMonthly and keepYearly keep the newest of each month and year',
    times: ['2025-11-30T02:00:00Z', '2025-12-15T02:00:00Z', '2025-12-31T02:00:00Z', '2026-01-10T02:00:00Z'],
    policy: { keepMonthly: 2, keepYearly: 2 },
    kept: ['2026-01-10T02:00:00Z', '2025-12-31T02:00:00Z'],
  },
  {
    name: "days are the schedule's time zone's: 23:30 UTC is the next day in Berlin",
    times: ['2026-01-01T22:30:00Z', '2026-01-01T23:30:00Z', '2026-01-02T10:00:00Z'],
    policy: { keepDaily: 3 },
    zone: 'Europe/Berlin',
    kept: ['2026-01-02T10:00:00Z', '2026-01-01T22:30:00Z'],
  },
  {
    name: 'the same backups in UTC fall on two days the other way round',
    times: ['2026-01-01T22:30:00Z', '2026-01-01T23:30:00Z', '2026-01-02T10:00:00Z'],
    policy: { keepDaily: 3 },
    kept: ['2026-01-02T10:00:00Z', '2026-01-01T23:30:00Z'],
  },
  {
    name: "the hour repeated when DST ends in Berlin is one hourly period, as restic's wall-clock hours: its second 02:30 is kept",
    times: ['2026-10-25T00:30:00Z', '2026-10-25T01:30:00Z', '2026-10-25T02:30:00Z'],
    policy: { keepHourly: 5 },
    zone: 'Europe/Berlin',
    kept: ['2026-10-25T02:30:00Z', '2026-10-25T01:30:00Z'],
  },
  {
    name: 'keepWithin keeps every backup strictly within the duration of the newest one (7d of dailies: 7)',
    times: series('2026-01-01T02:00:00Z', 24, 10),
    policy: { keepWithin: '7d' },
    kept: series('2026-01-04T02:00:00Z', 24, 7).reverse(),
  },
  {
    name: 'keepWithin counts from the newest backup, not from now, and hours are absolute',
    times: series('2026-01-01T00:00:00Z', 6, 8),
    policy: { keepWithin: '13h' },
    kept: ['2026-01-02T18:00:00Z', '2026-01-02T12:00:00Z', '2026-01-02T06:00:00Z'],
  },
  {
    name: 'rules add up: a backup kept by any rule stays (keepLast 1 + keepDaily 2)',
    times: series('2026-01-01T00:00:00Z', 12, 6),
    policy: { keepLast: 1, keepDaily: 2 },
    kept: ['2026-01-03T12:00:00Z', '2026-01-02T12:00:00Z'],
  },
];

describe('tiered retention (restic forget semantics)', () => {
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(keptBy(c.times, c.policy, c.zone), c.kept);
      assert.deepEqual(keptBy([...c.times].reverse(), c.policy, c.zone), c.kept, 'the order given does not matter');
    });
  }

  it('counts what each rule keeps, a backup kept by two rules counting for both', () => {
    const { byRule } = applyTieredPolicy(
      series('2026-01-01T00:00:00Z', 6, 40).map((t) => ({ backup: t, time: new Date(t) })),
      { keepLast: 3, keepDaily: 5, keepWeekly: 2, keepWithin: '1d' },
      'UTC',
    );
    assert.deepEqual(byRule, { keepLast: 3, keepDaily: 5, keepWeekly: 2, keepWithin: 4 });
  });

  it('ISO weeks across a year boundary: 2026-12-31 and 2027-01-03 are week 53 of 2026, 2027-01-04 week 1', () => {
    assert.deepEqual(isoWeek(2026, 12, 31), { year: 2026, week: 53 });
    assert.deepEqual(isoWeek(2027, 1, 3), { year: 2026, week: 53 });
    assert.deepEqual(isoWeek(2027, 1, 4), { year: 2027, week: 1 });
    assert.equal(periodKey('keepWeekly', new Date('2027-01-01T12:00:00Z'), 'UTC'), '2026-W53');
  });

  it('keepWithin durations: months on the calendar, weeks, hours; a bad one keeps nothing by it', () => {
    const newest = new Date('2026-03-31T02:00:00Z');
    assert.equal(
      iso(withinStart(newest, '1m', 'UTC')!),
      '2026-03-03T02:00:00Z',
      "31 February is 3 March, as restic's AddDate",
    );
    assert.equal(iso(withinStart(newest, '1y2w', 'UTC')!), '2025-03-17T02:00:00Z');
    assert.equal(iso(withinStart(newest, '1d12h', 'UTC')!), '2026-03-29T14:00:00Z');
    // Across the spring-forward day in Berlin a calendar day back is 23 hours.
    assert.equal(iso(withinStart(new Date('2026-03-29T12:00:00Z'), '1d', 'Europe/Berlin')!), '2026-03-28T13:00:00Z');
    for (const bad of ['', 'd', '1x', '1d1y', '7 days']) assert.equal(withinStart(newest, bad, 'UTC'), undefined, bad);
  });
});

describe('selectForRetention with a retentionPolicy', () => {
  const observed = (time: string, outcome: BackupOutcome): ObservedBackup => ({
    object: { apiVersion: 'talos.alperen.cloud/v1alpha1', kind: 'TalosEtcdBackup', metadata: { name: `b-${time}` } },
    name: `b-${time}`,
    scheduledTime: new Date(time),
    sortTime: Date.parse(time),
    outcome,
    succeededAt: undefined,
    deleting: false,
  });
  const names = (list: ObservedBackup[]) => list.map((b) => b.name.slice(2)).sort();

  it('keeps what retention or a rule keeps; failed backups never count, running ones always stay', () => {
    const backups = [
      ...series('2026-01-01T00:00:00Z', 12, 8).map((t) => observed(t, 'succeeded')),
      observed('2026-01-05T00:00:00Z', 'failed'),
      observed('2026-01-05T12:00:00Z', 'active'),
    ];
    const { kept, pruned, retained } = selectForRetention(backups, {
      retention: 1,
      retentionPolicy: { keepDaily: 3 },
      failedBackupsHistoryLimit: 0,
    });
    assert.deepEqual(names(kept), [
      '2026-01-02T12:00:00Z',
      '2026-01-03T12:00:00Z',
      '2026-01-04T12:00:00Z',
      '2026-01-05T12:00:00Z',
    ]);
    assert.equal(pruned.length, 6);
    assert.deepEqual(retained, { backups: 3, byRule: { retention: 1, keepDaily: 3 }, capped: false });
  });

  it('keepWithin is capped at the newest 1000 successful backups, and says so', () => {
    const backups = series('2026-01-01T00:00:00Z', 0.25, MAX_KEPT_SUCCESSFUL + 20).map((t) => observed(t, 'succeeded'));
    const { kept, pruned, retained } = selectForRetention(backups, {
      retention: 1,
      retentionPolicy: { keepWithin: '1y' },
    });
    assert.equal(kept.length, MAX_KEPT_SUCCESSFUL);
    assert.equal(pruned.length, 20);
    assert.equal(retained.capped, true);
    assert.equal(
      pruned.every((p) => kept.every((k) => k.sortTime > p.sortTime)),
      true,
      'the oldest go',
    );
  });

  const policies = fc.record(
    {
      keepLast: fc.integer({ min: 1, max: 5 }),
      keepHourly: fc.integer({ min: 1, max: 30 }),
      keepDaily: fc.integer({ min: 1, max: 10 }),
      keepWeekly: fc.integer({ min: 1, max: 6 }),
      keepMonthly: fc.integer({ min: 1, max: 4 }),
      keepWithin: fc.constantFrom('6h', '2d', '1w', '1m'),
    },
    { requiredKeys: [] },
  );
  const histories = fc
    .uniqueArray(fc.integer({ min: 0, max: 24 * 90 }), { minLength: 1, maxLength: 60 })
    .map((hours) => hours.map((h) => observed(iso(new Date(Date.UTC(2026, 0, 1) + h * HOUR)), 'succeeded')));

  it('properties: the newest is always kept; applying it again deletes nothing more; a newer backup never brings a deleted one back', () => {
    fc.assert(
      fc.property(
        histories,
        policies,
        fc.constantFrom('UTC', 'Europe/Berlin', 'America/New_York'),
        (backups, policy, zone) => {
          const spec = { retention: 1, retentionPolicy: policy as TieredPolicy, timeZone: zone };
          const first = selectForRetention(backups, spec);
          const newest = [...backups].sort((a, b) => b.sortTime - a.sortTime)[0]!;
          assert.ok(first.kept.includes(newest), 'the newest successful backup is kept');
          const again = selectForRetention(first.kept, spec);
          assert.deepEqual(again.pruned, [], 'idempotent');
          const next = observed(iso(new Date(newest.sortTime + HOUR)), 'succeeded');
          const later = selectForRetention([...first.kept, next], spec);
          for (const b of later.kept) assert.ok(b === next || first.kept.includes(b), 'nothing pruned comes back');
        },
      ),
      { numRuns: 300 },
    );
  });
});
