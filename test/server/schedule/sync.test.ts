import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  API_VERSION,
  BACKUP_KIND,
  CONTROLLER_UID_LABEL,
  LAST_APPLIED_ANNOTATION,
  SCHEDULE_LABEL,
  SCHEDULED_TIME_ANNOTATION,
} from '../../../src/api/constants.js';
import type { KubernetesObject } from '../../../src/server/metacontroller/types.js';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { SCHEDULE_PLURAL } from '../../../src/api/constants.js';
import { crdPath } from '../../../src/api/crds.js';
import { validateSchedule } from '../../../src/api/validation.js';
import { DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT } from '../../../src/server/schedule/retention.js';
import { backupName, syncSchedule } from '../../../src/server/schedule/sync.js';
import {
  at,
  backup,
  backupTemplateSpec,
  childNames,
  condition,
  iso,
  minutesAfter,
  SCHEDULE_NAME,
  SCHEDULE_UID,
  schedule,
  syncRequest,
  unix,
  type ScheduleOptions,
} from '../../helpers/builders.js';

const name = (slot: string): string => `${SCHEDULE_NAME}-${unix(slot)}`;

function sync(opts: ScheduleOptions, children: KubernetesObject[], now: Date) {
  return syncSchedule(syncRequest(schedule(opts), children), now);
}

describe('syncSchedule: when a backup is created', () => {
  it('a new schedule first fires at its first slot after creation, not at creation', () => {
    const before = sync({ created: '2026-01-15T10:20:00Z' }, [], at('2026-01-15T11:59:59Z'));
    assert.deepEqual(before.response.children, []);
    assert.equal(before.created, undefined);
    assert.equal(before.response.status.nextScheduleTime, '2026-01-15T12:00:00Z');
    assert.equal(before.response.resyncAfterSeconds, 1.1);

    const atSlot = sync({ created: '2026-01-15T10:20:00Z' }, [], at('2026-01-15T12:00:00.050Z'));
    assert.equal(before.outcome, 'idle');
    assert.equal(atSlot.outcome, 'created');
    assert.equal(atSlot.created, name('2026-01-15T12:00:00Z'));
    assert.deepEqual(childNames(atSlot.response), [name('2026-01-15T12:00:00Z')]);
    // The slot is recorded once its backup is observed, so a failed creation does not lose it.
    assert.equal(atSlot.response.status.lastScheduleTime, undefined);
    assert.equal(atSlot.response.status.nextScheduleTime, '2026-01-15T18:00:00Z');
    assert.deepEqual(atSlot.response.status.activeBackups, [name('2026-01-15T12:00:00Z')]);
    assert.equal(atSlot.response.resyncAfterSeconds, 21599.95 + 0.1);
  });

  it('a schedule created exactly at a slot does not fire for that slot', () => {
    const result = sync({ created: '2026-01-15T12:00:00Z' }, [], at('2026-01-15T12:00:30Z'));
    assert.deepEqual(result.response.children, []);
  });

  it('the new backup is named, labelled and annotated from its slot and copies the template', () => {
    const template = {
      metadata: { labels: { team: 'platform', [SCHEDULE_LABEL]: 'spoofed' }, annotations: { note: 'nightly' } },
      spec: backupTemplateSpec(),
    };
    const result = sync({ spec: { backupTemplate: template } }, [], at('2026-01-15T12:00:01Z'));
    assert.deepEqual(result.response.children, [
      {
        apiVersion: API_VERSION,
        kind: BACKUP_KIND,
        metadata: {
          name: `${SCHEDULE_NAME}-1768478400`,
          namespace: 'talos-backup',
          labels: { team: 'platform', [SCHEDULE_LABEL]: SCHEDULE_NAME, [CONTROLLER_UID_LABEL]: SCHEDULE_UID },
          annotations: { note: 'nightly', [SCHEDULED_TIME_ANNOTATION]: '2026-01-15T12:00:00Z' },
        },
        spec: backupTemplateSpec(),
      },
    ]);
  });

  it('after a week of downtime exactly one backup catches up, for the most recent slot', () => {
    const last = backup('2026-01-08T12:00:00Z', 'succeeded');
    const result = sync({ status: { lastScheduleTime: '2026-01-08T12:00:00Z' } }, [last], at('2026-01-15T13:17:00Z'));
    assert.deepEqual(childNames(result.response), [name('2026-01-08T12:00:00Z'), name('2026-01-15T12:00:00Z')].sort());
    assert.equal(result.created, name('2026-01-15T12:00:00Z'));
  });

  it('a slot missed by more than startingDeadlineSeconds is skipped and said so', () => {
    const spec = { startingDeadlineSeconds: 300 };
    const late = sync({ spec, status: { lastScheduleTime: '2026-01-15T06:00:00Z' } }, [], at('2026-01-15T12:05:01Z'));
    assert.deepEqual(late.response.children, []);
    assert.equal(late.response.status.lastScheduleTime, '2026-01-15T06:00:00Z');
    assert.match(
      condition(late.response.status, 'Ready')!.message,
      /skipped the 2026-01-15T12:00:00Z slot: 301s late, more than startingDeadlineSeconds \(300\)/,
    );
    assert.equal(late.response.resyncAfterSeconds, 6 * 3600 - 301 + 0.1);

    const inTime = sync({ spec, status: { lastScheduleTime: '2026-01-15T06:00:00Z' } }, [], at('2026-01-15T12:05:00Z'));
    assert.equal(inTime.created, name('2026-01-15T12:00:00Z'));
  });

  it('a slot whose backup Metacontroller failed to create is created again (the status it wrote anyway does not count it)', () => {
    const first = sync({ created: '2026-01-15T10:20:00Z' }, [], at('2026-01-15T12:00:00.050Z'));
    assert.equal(first.created, name('2026-01-15T12:00:00Z'));
    // Metacontroller writes the status even when creating the child failed; the retry sees no child.
    const retry = sync(
      { created: '2026-01-15T10:20:00Z', status: first.response.status },
      [],
      at('2026-01-15T12:00:07Z'),
    );
    assert.equal(retry.created, name('2026-01-15T12:00:00Z'));
    // Once the backup is observed, the slot is recorded.
    const observed = sync(
      { created: '2026-01-15T10:20:00Z', status: retry.response.status },
      [backup('2026-01-15T12:00:00Z', 'active')],
      at('2026-01-15T12:00:08Z'),
    );
    assert.equal(observed.created, undefined);
    assert.equal(observed.response.status.lastScheduleTime, '2026-01-15T12:00:00Z');
  });

  it('a slot that already has a backup is not created again, even if status was lost', () => {
    const existing = backup('2026-01-15T12:00:00Z', 'active');
    const result = sync({}, [existing], at('2026-01-15T12:30:00Z'));
    assert.equal(result.created, undefined);
    assert.deepEqual(childNames(result.response), [existing.metadata.name]);
    assert.equal(result.response.status.lastScheduleTime, '2026-01-15T12:00:00Z');
  });

  it('a backup without the annotation still counts for its slot through its name', () => {
    const existing = backup('2026-01-15T12:00:00Z', 'succeeded', { annotate: false });
    const result = sync({}, [existing], at('2026-01-15T12:30:00Z'));
    assert.equal(result.created, undefined);
  });

  it('a pruned or hand-deleted backup is never re-created: lastScheduleTime covers its slot', () => {
    const result = sync({ status: { lastScheduleTime: '2026-01-15T12:00:00Z' } }, [], at('2026-01-15T12:30:00Z'));
    assert.deepEqual(result.response.children, []);
  });
});

describe('syncSchedule: concurrencyPolicy', () => {
  const running = backup('2026-01-15T06:00:00Z', 'active');
  const now = at('2026-01-15T12:00:02Z');
  const status = { lastScheduleTime: '2026-01-15T06:00:00Z' };

  it('Forbid (the default) waits while a backup runs and says so', () => {
    const result = sync({ status }, [running], now);
    assert.equal(result.created, undefined);
    assert.deepEqual(childNames(result.response), [running.metadata.name]);
    assert.match(
      condition(result.response.status, 'Ready')!.message,
      /the 2026-01-15T12:00:00Z slot waits for .*-1768456800 to finish \(concurrencyPolicy Forbid\)/,
    );
  });

  it('Forbid starts the waiting slot once the running backup has finished', () => {
    const finished = backup('2026-01-15T06:00:00Z', 'succeeded');
    const result = sync({ status }, [finished], minutesAfter(now, 30));
    assert.equal(result.created, name('2026-01-15T12:00:00Z'));
  });

  it('Allow starts the new backup next to the running one', () => {
    const result = sync({ spec: { concurrencyPolicy: 'Allow' }, status }, [running], now);
    assert.deepEqual(childNames(result.response), [running.metadata.name, name('2026-01-15T12:00:00Z')].sort());
    assert.deepEqual(
      result.response.status.activeBackups,
      [running.metadata.name, name('2026-01-15T12:00:00Z')].sort(),
    );
  });

  it('Replace deletes the running backup and starts the new one', () => {
    const result = sync({ spec: { concurrencyPolicy: 'Replace' }, status }, [running], now);
    assert.deepEqual(childNames(result.response), [name('2026-01-15T12:00:00Z')]);
    assert.deepEqual(result.deleted, [running.metadata.name]);
  });

  it('Replace leaves a running backup alone when no slot is due', () => {
    const result = sync({ spec: { concurrencyPolicy: 'Replace' }, status }, [running], at('2026-01-15T07:00:00Z'));
    assert.deepEqual(childNames(result.response), [running.metadata.name]);
    assert.deepEqual(result.deleted, []);
  });
});

describe('syncSchedule: retention', () => {
  const slots = [
    '2026-01-14T00:00:00Z',
    '2026-01-14T06:00:00Z',
    '2026-01-14T12:00:00Z',
    '2026-01-14T18:00:00Z',
    '2026-01-15T00:00:00Z',
    '2026-01-15T06:00:00Z',
  ];
  const now = at('2026-01-15T09:00:00Z');
  const status = { lastScheduleTime: '2026-01-15T06:00:00Z' };

  it('keeps the newest `retention` successful backups by scheduled time', () => {
    const children = slots.map((s) => backup(s, 'succeeded'));
    const result = sync({ spec: { retention: 3 }, status }, children, now);
    assert.deepEqual(childNames(result.response), slots.slice(3).map(name).sort());
    assert.deepEqual(result.deleted.sort(), slots.slice(0, 3).map(name).sort());
  });

  it('never deletes a running backup and never counts it', () => {
    const children = [...slots.slice(0, 5).map((s) => backup(s, 'succeeded')), backup(slots[5]!, 'active')];
    const result = sync({ spec: { retention: 2 }, status }, children, now);
    assert.deepEqual(childNames(result.response), [slots[3]!, slots[4]!, slots[5]!].map(name).sort());
  });

  it('keeps the newest 3 failed backups when failedBackupsHistoryLimit is unset (the default), and does not count them', () => {
    const children = slots.map((s, i) => backup(s, i < 5 ? 'failed' : 'succeeded'));
    const result = sync({ spec: { retention: 1 }, status }, children, now);
    assert.deepEqual(childNames(result.response), slots.slice(2).map(name).sort());
    assert.deepEqual(result.deleted.sort(), slots.slice(0, 2).map(name).sort());
  });

  it("the default is the CRD's: a schedule stored without the field (written before it had a default) gets 3", () => {
    const crd = parse(readFileSync(crdPath(SCHEDULE_PLURAL), 'utf8')) as {
      spec: {
        versions: {
          schema: {
            openAPIV3Schema: {
              properties: { spec: { properties: Record<string, { default?: unknown; maximum?: unknown }> } };
            };
          };
        }[];
      };
    };
    const field = crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec.properties.failedBackupsHistoryLimit!;
    assert.equal(field.default, DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT);
    assert.equal(field.maximum, 100);
    const stored = schedule({});
    assert.equal('failedBackupsHistoryLimit' in (stored.spec as object), false);
    const validated = validateSchedule(stored);
    assert.ok(validated.ok);
    assert.equal(validated.value.failedBackupsHistoryLimit, DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT);
  });

  it('a failedBackupsHistoryLimit above 100 is an invalid spec that says so; nothing is deleted', () => {
    const children = slots.map((s) => backup(s, 'failed'));
    const result = sync({ spec: { failedBackupsHistoryLimit: 101 }, status }, children, now);
    assert.equal(result.outcome, 'invalid');
    assert.match(
      String(condition(result.response.status, 'Failed')?.message),
      /failedBackupsHistoryLimit: must be <= 100/,
    );
    assert.deepEqual(childNames(result.response), slots.map(name).sort());
    assert.deepEqual(result.deleted, []);
  });

  it('after 10,000 failures in a row (a schedule from before the default) it keeps the newest 3, deletes the rest and still creates the due backup', () => {
    const first = Date.parse('2025-12-01T00:00:00Z');
    const failed = Array.from({ length: 10_000 }, (_, i) => backup(new Date(first + i * 5 * 60_000), 'failed'));
    const newest = failed.slice(-3).map((b) => b.metadata.name);
    const due = new Date(first + 10_000 * 5 * 60_000);
    const result = sync(
      {
        created: '2025-11-30T00:00:00Z',
        spec: { schedule: '*/5 * * * *' },
        status: { lastScheduleTime: iso(new Date(due.getTime() - 5 * 60_000)) },
      },
      failed,
      new Date(due.getTime() + 1_000),
    );
    assert.equal(result.outcome, 'created');
    assert.equal(result.created, backupName(SCHEDULE_NAME, due));
    assert.deepEqual(childNames(result.response), [...newest, backupName(SCHEDULE_NAME, due)].sort());
    assert.equal(result.deleted.length, 10_000 - 3);
  });

  it('keeps the newest failedBackupsHistoryLimit failed backups', () => {
    const children = slots.map((s, i) => backup(s, i % 2 === 0 ? 'failed' : 'succeeded'));
    const result = sync({ spec: { retention: 1, failedBackupsHistoryLimit: 1 }, status }, children, now);
    assert.deepEqual(childNames(result.response), [slots[4]!, slots[5]!].map(name).sort());
  });

  it('failedBackupsHistoryLimit 0 deletes a failed backup, and its slot is not re-created', () => {
    const failed = backup(slots[5]!, 'failed');
    const first = sync({ spec: { failedBackupsHistoryLimit: 0 } }, [failed], now);
    assert.deepEqual(first.response.children, []);
    assert.equal(first.response.status.lastScheduleTime, slots[5]);
    const next = sync(
      { spec: { failedBackupsHistoryLimit: 0 }, status: first.response.status },
      [],
      minutesAfter(now, 1),
    );
    assert.deepEqual(next.response.children, []);
  });

  it('backups already being deleted are neither counted nor answered', () => {
    const children = [
      backup(slots[5]!, 'succeeded', { deleting: true }),
      ...slots.slice(2, 5).map((s) => backup(s, 'succeeded')),
    ];
    const result = sync({ spec: { retention: 3 }, status }, children, now);
    assert.deepEqual(childNames(result.response), slots.slice(2, 5).map(name).sort());
    assert.deepEqual(result.deleted, []);
  });

  it('re-emitted backups carry identity, labels, annotations and spec, without status or Metacontroller bookkeeping', () => {
    const child = backup(slots[5]!, 'succeeded');
    const [answered] = sync({ status }, [child], now).response.children;
    assert.deepEqual(answered, {
      apiVersion: child.apiVersion,
      kind: child.kind,
      metadata: {
        name: child.metadata.name,
        namespace: child.metadata.namespace,
        labels: child.metadata.labels,
        annotations: { [SCHEDULED_TIME_ANNOTATION]: slots[5] },
      },
      spec: child.spec,
    });
    assert.equal(JSON.stringify(answered).includes(LAST_APPLIED_ANNOTATION), false);
  });

  it('children keyed namespace/name (hook version v2) are read the same way', () => {
    const children = slots.map((s) => backup(s, 'succeeded'));
    const v1 = syncSchedule(syncRequest(schedule({ spec: { retention: 3 }, status }), children, 'v1'), now);
    const v2 = syncSchedule(syncRequest(schedule({ spec: { retention: 3 }, status }), children, 'v2'), now);
    assert.deepEqual(v2.response, v1.response);
  });
});

describe('syncSchedule: paused, deleting, status', () => {
  const children = ['2026-01-14T00:00:00Z', '2026-01-14T06:00:00Z', '2026-01-14T12:00:00Z', '2026-01-14T18:00:00Z'].map(
    (s) => backup(s, 'succeeded'),
  );

  it('paused: nothing is created and nothing is deleted, Ready=False/Paused, no resync', () => {
    const result = sync({ spec: { paused: true, retention: 1 } }, children, at('2026-01-15T12:00:01Z'));
    assert.deepEqual(childNames(result.response), children.map((c) => c.metadata.name).sort());
    assert.equal(result.created, undefined);
    assert.deepEqual(result.deleted, []);
    assert.equal(condition(result.response.status, 'Ready')?.reason, 'Paused');
    assert.equal(condition(result.response.status, 'Ready')?.status, 'False');
    assert.equal(result.outcome, 'paused');
    assert.equal(result.response.resyncAfterSeconds, undefined);
    assert.equal(result.response.status.nextScheduleTime, undefined);
  });

  it('unpausing runs the most recent missed slot once', () => {
    const result = sync(
      { status: { lastScheduleTime: '2026-01-14T18:00:00Z' }, spec: { retention: 10 } },
      children,
      at('2026-01-16T01:00:00Z'),
    );
    assert.equal(result.created, name('2026-01-16T00:00:00Z'));
  });

  it('a schedule being deleted creates and deletes nothing', () => {
    const result = sync(
      { deletionTimestamp: '2026-01-15T11:00:00Z', spec: { retention: 1 } },
      children,
      at('2026-01-15T12:00:01Z'),
    );
    assert.deepEqual(childNames(result.response), children.map((c) => c.metadata.name).sort());
    assert.equal(condition(result.response.status, 'Ready')?.reason, 'Deleting');
    assert.equal(result.outcome, 'deleting');
  });

  it('status: lastSuccessfulBackupTime from the backups, observedGeneration, Ready=True/Scheduled, Failed=False', () => {
    const result = sync(
      { generation: 7, status: { lastScheduleTime: '2026-01-14T18:00:00Z' }, spec: { retention: 10 } },
      children,
      at('2026-01-14T20:00:00Z'),
    );
    const status = result.response.status;
    assert.equal(status.lastSuccessfulBackupTime, '2026-01-14T18:03:00Z');
    assert.equal(status.observedGeneration, 7);
    assert.deepEqual(status.activeBackups, []);
    assert.deepEqual(
      (status.conditions as { type: string; status: string; reason: string }[]).map((c) => [
        c.type,
        c.status,
        c.reason,
      ]),
      [
        ['Ready', 'True', 'Scheduled'],
        ['Failed', 'False', 'Valid'],
      ],
    );
    assert.equal(condition(status, 'Ready')!.message, 'next backup at 2026-01-15T00:00:00Z');
  });

  it('lastTransitionTime is carried over while a condition keeps its status, and moves when it changes', () => {
    const first = sync({}, [], at('2026-01-15T10:00:00Z')).response.status;
    assert.equal(condition(first, 'Ready')!.lastTransitionTime, '2026-01-15T10:00:00Z');
    const later = sync({ status: first }, [], at('2026-01-15T13:00:00Z')).response.status;
    assert.equal(condition(later, 'Ready')!.lastTransitionTime, '2026-01-15T10:00:00Z');
    const paused = sync({ status: later, spec: { paused: true } }, [], at('2026-01-15T14:00:00Z')).response.status;
    assert.equal(condition(paused, 'Ready')!.lastTransitionTime, '2026-01-15T14:00:00Z');
    assert.equal(condition(paused, 'Failed')!.lastTransitionTime, '2026-01-15T10:00:00Z');
  });

  it('the same request gives the same answer', () => {
    const request = syncRequest(schedule({ status: { lastScheduleTime: '2026-01-14T18:00:00Z' } }), children);
    // Everything it answers and reports (the children as read and the parsed cron are only carried along).
    const answer = ({ backups: _backups, cron: _cron, ...rest }: ReturnType<typeof syncSchedule>) => rest;
    assert.deepEqual(
      answer(syncSchedule(request, at('2026-01-15T00:00:01Z'))),
      answer(syncSchedule(structuredClone(request), at('2026-01-15T00:00:01Z'))),
    );
  });

  it('a backup whose spec or status does not match the CRD is kept, not counted, and named', () => {
    const odd = backup('2026-01-15T00:00:00Z', 'succeeded');
    (odd.spec as Record<string, unknown>).deletionPolicy = 'Shred';
    const broken = backup('2026-01-15T06:00:00Z', 'active');
    (broken.status as Record<string, unknown>).phase = 'Exploded';
    const result = sync(
      { spec: { retention: 1 }, status: { lastScheduleTime: '2026-01-15T06:00:00Z' } },
      [...children, odd, broken],
      at('2026-01-15T09:00:00Z'),
    );
    assert.deepEqual(
      childNames(result.response),
      [children[3]!.metadata.name, odd.metadata.name, broken.metadata.name].sort(),
    );
    assert.deepEqual(result.response.status.activeBackups, []);
    assert.match(
      condition(result.response.status, 'Ready')!.message,
      new RegExp(
        `kept without counting ${odd.metadata.name}, ${broken.metadata.name}: spec or status does not match the CRD`,
      ),
    );
  });

  it('an observed status that does not match the CRD is ignored, not trusted', () => {
    const result = sync(
      { status: { lastScheduleTime: 'yesterday', conditions: 'broken' } },
      [],
      at('2026-01-15T12:00:01Z'),
    );
    assert.equal(result.created, name('2026-01-15T12:00:00Z'));
  });
});

describe('syncSchedule: an invalid spec deletes nothing and says why', () => {
  const children = [
    backup('2026-01-14T00:00:00Z', 'succeeded'),
    backup('2026-01-14T06:00:00Z', 'failed'),
    backup('2026-01-14T12:00:00Z', 'active'),
  ];
  const now = at('2026-01-15T12:00:01Z');
  const cases: { name: string; spec: Record<string, unknown>; reason: string; message: RegExp }[] = [
    { name: 'an unparseable cron', spec: { schedule: 'every day' }, reason: 'InvalidSchedule', message: /field/ },
    {
      name: 'a schedule that never fires',
      spec: { schedule: '0 0 31 2 *' },
      reason: 'InvalidSchedule',
      message: /never fires/,
    },
    { name: 'six fields', spec: { schedule: '0 0 0 * * *' }, reason: 'InvalidSchedule', message: /6 fields/ },
    {
      name: 'an unknown time zone',
      spec: { timeZone: 'Europe/Atlantis' },
      reason: 'InvalidTimeZone',
      message: /unknown timeZone "Europe\/Atlantis"/,
    },
    {
      name: 'retention below 1',
      spec: { retention: 0 },
      reason: 'InvalidSpec',
      message: /spec\.retention: must be >= 1/,
    },
    {
      name: 'an unknown concurrencyPolicy',
      spec: { concurrencyPolicy: 'Sometimes' },
      reason: 'InvalidSpec',
      message: /spec\.concurrencyPolicy: must be one of Forbid, Allow, Replace/,
    },
    {
      name: 'a schedule of the wrong type',
      spec: { schedule: 5 },
      reason: 'InvalidSpec',
      message: /spec\.schedule: must be string/,
    },
    {
      name: 'both talos references',
      spec: { backupTemplate: { spec: { ...backupTemplateSpec(), talosControlPlaneRef: { name: 'cp' } } } },
      reason: 'InvalidSpec',
      message: /spec\.backupTemplate\.spec: exactly one of talosControlPlaneRef and talosConfigSecretRef must be set/,
    },
    {
      name: 'an access key without its secret key',
      spec: {
        backupTemplate: {
          spec: {
            talosConfigSecretRef: { name: 'tc' },
            backupStorage: { s3: { bucket: 'b-1', region: 'r', accessKeyID: { name: 's', key: 'k' } } },
          },
        },
      },
      reason: 'InvalidSpec',
      message: /accessKeyID and secretAccessKey must be set together/,
    },
    {
      name: 'a missing backupTemplate',
      spec: { backupTemplate: undefined },
      reason: 'InvalidSpec',
      message: /spec\.backupTemplate: is required/,
    },
    {
      name: 'an age recipient that is no age public key',
      spec: {
        backupTemplate: {
          spec: { ...backupTemplateSpec(), encryption: { age: { recipients: ['age1' + 'q'.repeat(58)] } } },
        },
      },
      reason: 'InvalidSpec',
      message: /spec\.backupTemplate\.spec\.encryption\.age\.recipients: /,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const result = sync(
        {
          spec: { retention: 1, failedBackupsHistoryLimit: 0, ...c.spec },
          status: { lastScheduleTime: '2026-01-14T12:00:00Z' },
        },
        children,
        now,
      );
      assert.deepEqual(childNames(result.response), children.map((b) => b.metadata.name).sort());
      assert.equal(result.created, undefined);
      assert.deepEqual(result.deleted, []);
      assert.equal(result.outcome, 'invalid');
      assert.equal(result.reason, c.reason);
      const failed = condition(result.response.status, 'Failed')!;
      assert.equal(failed.status, 'True');
      assert.equal(failed.reason, c.reason);
      assert.match(failed.message, c.message);
      assert.equal(condition(result.response.status, 'Ready')!.status, 'False');
      assert.equal(result.response.resyncAfterSeconds, undefined);
      assert.equal(result.response.status.lastScheduleTime, '2026-01-14T12:00:00Z');
      assert.deepEqual(result.response.status.activeBackups, [children[2]!.metadata.name]);
    });
  }

  it('a schedule name too long for the label value is InvalidSpec', () => {
    const longName = 'n'.repeat(64);
    const result = sync({ name: longName }, [], now);
    assert.match(condition(result.response.status, 'Failed')!.message, /at most 63 characters/);
  });
});

describe('backupName', () => {
  it('is <schedule>-<unix seconds of the slot>', () => {
    assert.equal(backupName('daily-backup-schedule', at('2024-01-02T00:00:00Z')), 'daily-backup-schedule-1704153600');
  });
});
