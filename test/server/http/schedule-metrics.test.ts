// The per-schedule series of /metrics, as Prometheus would read them: values from what the sync requests carry,
// expiry by the app's clock, the finished-backups counter, and promtool's own check of the exposition.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { API_VERSION, SCHEDULE_KIND } from '../../../src/api/constants.js';
import { buildApp } from '../../../src/server/app.js';
import type { KubernetesObject } from '../../../src/server/metacontroller/types.js';
import {
  backup as manualBackup,
  failedReport,
  IMAGE,
  jobActive,
  observedAttachments,
  request as backupRequest,
  succeeded,
} from '../backup/fixtures.js';
import { at, backup, NAMESPACE, schedule, SCHEDULE_NAME, syncRequest, unix } from '../../helpers/builders.js';

type Labels = Record<string, string>;
interface Sample {
  name: string;
  labels: Labels;
  value: number;
}

/** The samples of a text exposition (no escapes in our label values). */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels: Labels = {};
    for (const pair of (match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) labels[pair[1]!] = pair[2]!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

const sameLabels = (a: Labels, b: Labels): boolean =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);

class Scrape {
  readonly samples: Sample[];
  constructor(readonly text: string) {
    this.samples = parseExposition(text);
  }
  value(name: string, labels: Labels): number | undefined {
    return this.samples.find((s) => s.name === name && sameLabels(s.labels, labels))?.value;
  }
  series(prefix: string): Sample[] {
    return this.samples.filter((s) => s.name.startsWith(prefix));
  }
}

const OWNED_BY = (scheduleName: string) => [
  { apiVersion: API_VERSION, kind: SCHEDULE_KIND, name: scheduleName, uid: 'u', controller: true },
];
const ours = { namespace: NAMESPACE, schedule: SCHEDULE_NAME };

describe('per-schedule metrics', () => {
  let app: FastifyInstance;
  let now = at('2026-01-15T12:00:01Z');
  const scrape = async (): Promise<Scrape> => {
    const response = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(response.statusCode, 200);
    return new Scrape(response.body);
  };
  const post = async (url: string, body: unknown): Promise<void> => {
    const response = await app.inject({ method: 'POST', url, payload: body as object });
    assert.equal(response.statusCode, 200, response.body);
  };
  const children = [
    backup('2026-01-15T00:00:00Z', 'failed'),
    {
      ...backup('2026-01-15T06:00:00Z', 'succeeded'),
      status: {
        ...(backup('2026-01-15T06:00:00Z', 'succeeded').status as object),
        snapshot: { size: 5000, verified: true },
      },
    } as KubernetesObject,
  ];

  before(async () => {
    app = await buildApp({ clock: () => now, jobImage: IMAGE, metricsExpirySeconds: 900 });
  });
  after(() => app.close());

  it('before any sync: every sync result at 0, no per-schedule series', async () => {
    const s = await scrape();
    for (const result of ['created', 'idle', 'paused', 'deleting', 'invalid'])
      assert.equal(s.value('talos_etcd_backup_schedule_syncs_total', { result }), 0, result);
    for (const result of ['pending', 'running', 'succeeded', 'failed', 'finished'])
      assert.equal(s.value('talos_etcd_backup_backup_syncs_total', { result }), 0, result);
    assert.deepEqual(s.series('talos_etcd_backup_schedule_last'), []);
  });

  it('a schedule sync exports what its request carries', async () => {
    await post('/hooks/schedule/sync', syncRequest(schedule(), children));
    const s = await scrape();
    assert.equal(s.value('talos_etcd_backup_schedule_synced_timestamp_seconds', ours), now.getTime() / 1000);
    assert.equal(
      s.value('talos_etcd_backup_schedule_last_success_timestamp_seconds', ours),
      unix('2026-01-15T06:03:00Z'),
    );
    assert.equal(s.value('talos_etcd_backup_schedule_last_status', ours), 1);
    assert.equal(s.value('talos_etcd_backup_schedule_expected_interval_seconds', ours), 6 * 3600);
    assert.equal(s.value('talos_etcd_backup_schedule_created_timestamp_seconds', ours), unix('2026-01-01T00:00:00Z'));
    assert.equal(s.value('talos_etcd_backup_schedule_paused', ours), 0);
    assert.equal(s.value('talos_etcd_backup_schedule_failed', ours), 0);
    assert.equal(s.value('talos_etcd_backup_schedule_last_success_size_bytes', ours), 5000);
    assert.equal(s.value('talos_etcd_backup_schedule_last_success_duration_seconds', ours), 179);
    assert.equal(s.value('talos_etcd_backup_schedule_last_success_verified', ours), 1);
    for (const [phase, count] of Object.entries({ Pending: 0, Running: 0, Succeeded: 1, Failed: 1 }))
      assert.equal(s.value('talos_etcd_backup_schedule_backups', { ...ours, phase }), count, phase);
    assert.equal(s.value('talos_etcd_backup_schedule_unfinished_deadline_timestamp_seconds', ours), undefined);
    // The finished-backups counter exists at 0 for both results from the first sync on.
    assert.equal(s.value('talos_etcd_backup_backups_finished_total', { ...ours, result: 'succeeded' }), 0);
    assert.equal(s.value('talos_etcd_backup_backups_finished_total', { ...ours, result: 'failed' }), 0);
  });

  it('the newest sync replaces the figures; an invalid schedule is failed and has no interval', async () => {
    await post('/hooks/schedule/sync', syncRequest(schedule({ spec: { schedule: 'hourly' } }), children));
    const s = await scrape();
    assert.equal(s.value('talos_etcd_backup_schedule_failed', ours), 1);
    assert.equal(s.value('talos_etcd_backup_schedule_expected_interval_seconds', ours), undefined);
    assert.equal(s.value('talos_etcd_backup_schedule_last_status', ours), 1);
    await post('/hooks/schedule/sync', syncRequest(schedule({ spec: { paused: true } }), children));
    const paused = await scrape();
    assert.equal(paused.value('talos_etcd_backup_schedule_paused', ours), 1);
    assert.equal(paused.value('talos_etcd_backup_schedule_failed', ours), 0);
  });

  it('backup syncs that record an outcome count it, under the owning schedule or none', async () => {
    const owned = manualBackup({ status: { report: succeeded } });
    owned.metadata.ownerReferences = OWNED_BY(SCHEDULE_NAME);
    const attachments = observedAttachments(manualBackup(), jobActive);
    await post('/hooks/backup/sync', backupRequest(owned, { attachments }));
    const failedByHand = manualBackup({ status: { report: failedReport('S3 said AccessDenied', false) } });
    await post('/hooks/backup/sync', backupRequest(failedByHand, { attachments }));
    // The same backup once its outcome is recorded: a repeat, not a new outcome.
    const recorded = await app.inject({
      method: 'POST',
      url: '/hooks/backup/sync',
      payload: backupRequest(owned, { attachments }) as object,
    });
    const again = { ...owned, status: JSON.parse(recorded.body).status };
    await post('/hooks/backup/sync', backupRequest(again, { attachments }));
    const s = await scrape();
    const finished = (labels: Labels) => s.value('talos_etcd_backup_backups_finished_total', labels);
    assert.equal(
      finished({ ...ours, result: 'succeeded' }),
      2,
      'the first answer and the one repeated before the status was written',
    );
    assert.equal(finished({ ...ours, result: 'failed' }), 0);
    assert.equal(finished({ namespace: NAMESPACE, schedule: '', result: 'failed' }), 1);
    assert.equal(finished({ namespace: NAMESPACE, schedule: '', result: 'succeeded' }), 0);
    assert.ok(!s.text.includes('AccessDenied'), 'no message reaches /metrics');
  });

  it("a schedule's series go once nothing of it has been synced for the expiry; a backup sync keeps them", async () => {
    const other = schedule({ name: 'hourly', spec: { schedule: '@hourly' } });
    await post('/hooks/schedule/sync', syncRequest(other, []));
    now = new Date(now.getTime() + 600_000);
    const owned = manualBackup({ status: { report: succeeded } });
    owned.metadata.ownerReferences = OWNED_BY(SCHEDULE_NAME);
    await post(
      '/hooks/backup/sync',
      backupRequest(owned, { attachments: observedAttachments(manualBackup(), jobActive) }),
    );
    now = new Date(now.getTime() + 600_000); // 'hourly' last synced 20 minutes ago, ours 10
    const s = await scrape();
    const hourly = { namespace: NAMESPACE, schedule: 'hourly' };
    assert.equal(s.value('talos_etcd_backup_schedule_expected_interval_seconds', hourly), undefined);
    assert.equal(s.value('talos_etcd_backup_schedule_backups', { ...hourly, phase: 'Pending' }), undefined);
    assert.equal(s.value('talos_etcd_backup_backups_finished_total', { ...hourly, result: 'failed' }), undefined);
    assert.equal(s.value('talos_etcd_backup_schedule_paused', ours), 1, 'kept by its backup sync');
    assert.equal(s.value('talos_etcd_backup_backups_finished_total', { ...ours, result: 'succeeded' }), 3);
    now = new Date(now.getTime() + 600_000);
    const later = await scrape();
    assert.deepEqual(
      later.series('talos_etcd_backup_schedule_').filter((x) => x.labels.schedule === SCHEDULE_NAME),
      [],
    );
    assert.equal(later.value('talos_etcd_backup_backups_finished_total', { ...ours, result: 'succeeded' }), undefined);
    // Seen again: back, the counter from 0.
    await post('/hooks/schedule/sync', syncRequest(schedule(), children));
    const back = await scrape();
    assert.equal(back.value('talos_etcd_backup_schedule_last_status', ours), 1);
    assert.equal(back.value('talos_etcd_backup_backups_finished_total', { ...ours, result: 'succeeded' }), 0);
  });

  it('promtool check metrics accepts the exposition: names, types, help texts, units', async () => {
    const running = backup('2026-01-15T12:00:00Z', 'active');
    running.spec = { ...(running.spec as object), job: { activeDeadlineSeconds: 3600 } };
    await post('/hooks/schedule/sync', syncRequest(schedule(), [...children, running]));
    const { text } = await scrape();
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    if (promtool.error)
      throw new Error(`promtool is not usable (${promtool.error.message}); run ./scripts/install-test-deps.sh`);
    // prom-client's own default metrics carry three names promtool frowns on (gauges named *_total); ours none.
    const complaints = `${promtool.stdout}${promtool.stderr}`
      .split('\n')
      .filter((line) => line.trim() !== '' && !/^nodejs_active_(handles|requests|resources)_total /.test(line));
    assert.deepEqual(complaints, []);
    assert.ok(text.includes('talos_etcd_backup_schedule_unfinished_deadline_timestamp_seconds{'));
  });
});
