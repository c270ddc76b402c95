// Properties of the schedule answer over random sets of backups, specs and clocks (fast-check).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { KubernetesObject } from '../../../src/server/metacontroller/types.js';
import { DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT } from '../../../src/server/schedule/retention.js';
import { syncSchedule } from '../../../src/server/schedule/sync.js';
import { backup, schedule, syncRequest, type Outcome } from '../../helpers/builders.js';

const SIX_HOURS = 6 * 3600 * 1000;
const EPOCH = Date.parse('2026-01-01T00:00:00Z');

// Backups at distinct 6-hourly slots within the first 30 days, each with an outcome and maybe being deleted.
const backupsArb = fc
  .uniqueArray(fc.integer({ min: 1, max: 120 }), { maxLength: 25 })
  .chain((slots) =>
    fc.tuple(
      fc.constant(slots),
      fc.array(fc.constantFrom<Outcome>('succeeded', 'failed', 'active'), {
        minLength: slots.length,
        maxLength: slots.length,
      }),
      fc.array(fc.boolean(), { minLength: slots.length, maxLength: slots.length }),
    ),
  )
  .map(([slots, outcomes, deleting]) =>
    slots.map((s, i) =>
      backup(new Date(EPOCH + s * SIX_HOURS), outcomes[i]!, { deleting: deleting[i]! && i % 3 === 0 }),
    ),
  );

const specArb = fc.record({
  retention: fc.integer({ min: 1, max: 8 }),
  failedBackupsHistoryLimit: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
  concurrencyPolicy: fc.constantFrom('Forbid', 'Allow', 'Replace'),
  paused: fc.boolean(),
});

// Somewhere from the first slot to a day after the last one, to the millisecond.
const nowArb = fc.integer({ min: EPOCH, max: EPOCH + 121 * SIX_HOURS }).map((ms) => new Date(ms));

const names = (objects: KubernetesObject[]): Set<string> => new Set(objects.map((o) => o.metadata.name));
const outcomeOf = (b: KubernetesObject): string => (b.status as { phase: string }).phase;

describe('syncSchedule properties', () => {
  it('never drops an in-progress backup (except Replace when it starts a new one)', () => {
    fc.assert(
      fc.property(backupsArb, specArb, nowArb, (children, spec, now) => {
        const { response, created } = syncSchedule(syncRequest(schedule({ spec }), children), now);
        const answered = names(response.children);
        for (const b of children) {
          if (outcomeOf(b) !== 'Running' || b.metadata.deletionTimestamp) continue;
          if (spec.concurrencyPolicy === 'Replace' && created) continue;
          assert.ok(answered.has(b.metadata.name), `dropped running ${b.metadata.name}`);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('keeps exactly min(retention, successful) successful backups, the newest ones', () => {
    fc.assert(
      fc.property(backupsArb, specArb, nowArb, (children, spec, now) => {
        if (spec.paused) return;
        const { response } = syncSchedule(syncRequest(schedule({ spec }), children), now);
        const successful = children.filter((b) => outcomeOf(b) === 'Succeeded' && !b.metadata.deletionTimestamp);
        const newest = successful
          .map((b) => b.metadata.name)
          .sort((a, b) => Number(b.split('-').pop()) - Number(a.split('-').pop()))
          .slice(0, spec.retention);
        const kept = response.children
          .filter((c) => successful.some((s) => s.metadata.name === c.metadata.name))
          .map((c) => c.metadata.name);
        assert.equal(kept.length, Math.min(spec.retention, successful.length));
        assert.deepEqual(new Set(kept), new Set(newest));
      }),
      { numRuns: 300 },
    );
  });

  it('keeps the newest failedBackupsHistoryLimit failed backups (3 when unset), all of them while paused', () => {
    fc.assert(
      fc.property(backupsArb, specArb, nowArb, (children, spec, now) => {
        const { response } = syncSchedule(syncRequest(schedule({ spec }), children), now);
        const failed = children.filter((b) => outcomeOf(b) === 'Failed' && !b.metadata.deletionTimestamp);
        const keptFailed = failed.filter((b) => names(response.children).has(b.metadata.name));
        const limit = spec.failedBackupsHistoryLimit ?? DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT;
        const expected = spec.paused ? failed.length : Math.min(limit, failed.length);
        assert.equal(keptFailed.length, expected);
      }),
      { numRuns: 300 },
    );
  });

  it('answers the same request identically, with unique names and a positive resync', () => {
    fc.assert(
      fc.property(backupsArb, specArb, nowArb, (children, spec, now) => {
        const request = syncRequest(schedule({ spec }), children);
        const first = syncSchedule(request, now);
        const second = syncSchedule(structuredClone(request), new Date(now));
        // Everything it answers and reports (the children as read and the parsed cron are only carried along).
        const answer = ({ backups: _backups, cron: _cron, ...rest }: ReturnType<typeof syncSchedule>) => rest;
        assert.deepEqual(answer(second), answer(first));
        assert.equal(names(first.response.children).size, first.response.children.length);
        if (first.response.resyncAfterSeconds !== undefined) assert.ok(first.response.resyncAfterSeconds > 0);
        for (const b of children)
          if (b.metadata.deletionTimestamp) assert.ok(!names(first.response.children).has(b.metadata.name));
      }),
      { numRuns: 300 },
    );
  });

  it('creates at most one backup, for the most recent slot, never one already handled', () => {
    fc.assert(
      fc.property(backupsArb, specArb, nowArb, (children, spec, now) => {
        const { response, created } = syncSchedule(syncRequest(schedule({ spec }), children), now);
        const observed = names(children);
        const fresh = response.children.filter((c) => !observed.has(c.metadata.name));
        assert.ok(fresh.length <= 1);
        if (!created) return assert.equal(fresh.length, 0);
        const slot = Number(created.split('-').pop()) * 1000;
        assert.equal(slot % SIX_HOURS, 0);
        assert.ok(slot <= now.getTime() && now.getTime() - slot < SIX_HOURS);
        for (const b of children) assert.ok(Number(b.metadata.name.split('-').pop()) * 1000 < slot);
      }),
      { numRuns: 300 },
    );
  });
});
