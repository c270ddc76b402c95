// The rehearsal as a test: the whole loop on the real control plane (kube-apiserver, Job controller, garbage
// collector) with real etcd, Talos API double, Ceph RGW, hook servers, the Metacontroller stand-in and the test
// kubelet (test/e2e/rehearsal.ts), checked at every step; a real Prometheus scrapes the hook servers throughout.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { API_VERSION, BACKUP_KIND, SCHEDULED_TIME_ANNOTATION, SCHEDULE_KIND } from '../../src/api/constants.js';
import type { BackupStatus, ScheduleStatus } from '../../src/api/types.js';
import type { Condition } from '../../src/api/conditions.js';
import { startPrometheus, type Prometheus } from '../harness/prometheus.js';
import { CHART_DIR } from '../harness/helm.js';
import { BUCKET, NAMESPACE, SCHEDULE, startRehearsal, type KubeObject, type Rehearsal } from './rehearsal.js';

const SLOT_MS = 5 * 60 * 1000;

const status = (b: KubeObject) => (b.status ?? {}) as BackupStatus;
const condition = (conditions: Condition[] | undefined, type: string) => conditions?.find((c) => c.type === type);
const phaseOf = (b: KubeObject) => status(b).phase;
/** What a user applies: the object without what the API server added. */
const applied = (o: KubeObject, spec: Record<string, unknown>): KubeObject => ({
  apiVersion: o.apiVersion,
  kind: o.kind,
  metadata: { name: o.metadata.name, namespace: o.metadata.namespace },
  spec: { ...(o.spec as object), ...spec },
});
const slotOf = (b: KubeObject) =>
  (b.metadata.annotations as Record<string, string> | undefined)?.[SCHEDULED_TIME_ANNOTATION];

async function pendingUploads(r: Rehearsal) {
  return (await r.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))).Uploads ?? [];
}

/** Runs the schedule through `slots` slots from the current time; `beforeSlot` may inject faults. */
async function runSlots(
  r: Rehearsal,
  slots: number,
  beforeSlot?: (index: number) => Promise<void> | void,
): Promise<void> {
  const first = Math.ceil((r.now().getTime() + 1) / SLOT_MS) * SLOT_MS;
  for (let i = 0; i < slots; i += 1) {
    await beforeSlot?.(i);
    await r.etcd.put(
      `registry/slot-${first + i * SLOT_MS}`,
      `written before the ${new Date(first + i * SLOT_MS).toISOString()} slot`,
    );
    await r.advanceTo(new Date(first + i * SLOT_MS + 1000));
  }
}

describe('rehearsal: schedule → backups → Jobs → S3, deletionPolicy Delete', () => {
  let r: Rehearsal;
  let prom: Prometheus;
  before(async () => {
    // Two replicas, as the chart runs: Metacontroller's calls alternate, Prometheus scrapes both.
    r = await startRehearsal({ replicas: 2 });
    prom = await startPrometheus({
      targets: r.servers.map((s) => s.url),
      ruleFiles: [join(CHART_DIR, 'files', 'alerts.yaml')],
    });
    await r.applyExamples({
      spec: {
        schedule: '*/5 * * * *',
        timeZone: 'UTC',
        retention: 3,
        startingDeadlineSeconds: 120,
        failedBackupsHistoryLimit: 3,
        // Every third slot, the newest Ready backup is restored into etcd 3.6 and questioned.
        restoreTest: { schedule: '*/15 * * * *' },
      },
      template: { deletionPolicy: 'Delete', verify: true },
    });
    await r.settle();
  });
  after(async () => {
    await prom?.stop();
    await r?.close();
  });

  it('runs one backup per slot, keeps 3 successful ones and exactly their 3 objects; a failed slot is Failed and not counted', async () => {
    await runSlots(r, 7, (i) => {
      // Slot 4: the Talos API is unavailable for every attempt of the Job (backoffLimit 2 → 3 attempts).
      r.talos.setFault(i === 4 ? { kind: 'unavailable', times: 3 } : undefined);
    });
    r.talos.setFault(undefined);
    assert.deepEqual(r.metacontroller.errors, []);

    const backups = await r.backups();
    const slots = backups.map(slotOf);
    assert.equal(new Set(slots).size, slots.length, 'never two backups for one slot');
    const ready = backups.filter((b) => phaseOf(b) === 'Succeeded');
    const failed = backups.filter((b) => phaseOf(b) === 'Failed');
    assert.equal(ready.length, 3, 'retention 3');
    assert.equal(failed.length, 1);
    assert.match(status(failed[0]!).message ?? '', /^Failed to take etcd snapshot: cannot reach the Talos API/);
    assert.equal(condition(status(failed[0]!).conditions, 'Failed')?.status, 'True');
    // The newest slots are the ones kept: the slot after the failure succeeded.
    const newest = [...backups].sort((a, b) => String(slotOf(a)).localeCompare(String(slotOf(b)))).pop()!;
    assert.equal(phaseOf(newest), 'Succeeded');

    const keys = (await r.objects()).map((o) => o.key).sort();
    assert.deepEqual(
      keys,
      ready.map((b) => status(b).snapshot!.key).sort(),
      "with Delete, exactly the kept backups' objects",
    );
    // Dropped attachments go through the garbage collector: asynchronously.
    await r.waitFor(
      "the finished backups' Jobs and helpers to be collected",
      async () => (await r.helpers()).length === 0,
    );
    assert.deepEqual(await pendingUploads(r), []);

    const scheduleStatus = (await r.schedule())!.status as ScheduleStatus;
    assert.equal(condition(scheduleStatus.conditions, 'Ready')?.status, 'True');
    assert.equal(scheduleStatus.lastSuccessfulBackupTime !== undefined, true);
  });

  it("restore tests at the schedule's own slots: the newest Ready backup is restored into etcd and serves what it recorded", async () => {
    const schedule = (await r.schedule())!;
    const s = schedule.status as ScheduleStatus;
    const backups = await r.backups();
    const tested = backups.filter((b) => status(b).restoreTest);
    assert.ok(tested.length >= 1, 'a backup kept by retention was tested');
    for (const b of tested) {
      const test = status(b).restoreTest!;
      assert.equal(test.result, 'Succeeded', test.message);
      assert.equal(new Date(test.requestedAt!).getUTCMinutes() % 15, 0, `a */15 slot: ${test.requestedAt}`);
      assert.ok(Date.parse(slotOf(b)!) < Date.parse(test.requestedAt!), 'the test came after its backup');
      assert.equal(test.revision, status(b).snapshot!.revision, 'the revision the backup recorded');
      assert.equal(test.keys, status(b).snapshot!.keys);
      assert.equal(condition(status(b).conditions, 'RestoreTested')?.status, 'True');
      assert.equal(condition(status(b).conditions, 'Ready')?.status, 'True');
    }
    assert.ok(s.lastSuccessfulRestoreTestTime, JSON.stringify(s));
    assert.equal(s.lastRestoreTestTime, s.lastSuccessfulRestoreTestTime);
    assert.equal(new Date(s.nextRestoreTestTime!).getUTCMinutes() % 15, 0);
    const restoreTested = condition(s.conditions, 'RestoreTested');
    assert.equal(restoreTested?.status, 'True', JSON.stringify(restoreTested));
    assert.equal(restoreTested?.reason, 'RestoreTestSucceeded');
    // The request names a backup of the schedule and a slot; every Job and helper of the tests is gone.
    assert.ok(s.restoreTestRequest?.backup?.startsWith(`${SCHEDULE}-`));
    assert.deepEqual(await r.helpers(), []);
  });

  it("a real Prometheus scraping both replicas reads the schedule's current figures; the rules and the dashboard evaluate", async () => {
    const since = Date.now();
    await prom.waitForScrape(since);
    const schedule = (await r.schedule())!;
    const backups = await r.backups();
    const labels = `namespace="${NAMESPACE}",schedule="${SCHEDULE}"`;
    // Each schedule's figures from the replica that synced it last: what the recording rules and the dashboard do.
    const freshest = (metric: string, by = 'namespace, schedule') =>
      `max by (${by}) (${metric}{${labels}} and on (namespace, schedule, instance) (talos_etcd_backup_schedule_synced_timestamp_seconds{${labels}} == on (namespace, schedule) group_left () max by (namespace, schedule) (talos_etcd_backup_schedule_synced_timestamp_seconds{${labels}})))`;
    const one = async (expr: string): Promise<number | undefined> => {
      const samples = await prom.query(expr);
      assert.ok(samples.length <= 1, `${expr}: ${JSON.stringify(samples)}`);
      return samples[0]?.value;
    };

    const lastSuccess = Date.parse((schedule.status as ScheduleStatus).lastSuccessfulBackupTime!) / 1000;
    assert.equal(await one(freshest('talos_etcd_backup_schedule_last_success_timestamp_seconds')), lastSuccess);
    assert.equal(
      await one(freshest('talos_etcd_backup_schedule_last_status')),
      1,
      'the slot after the failure succeeded',
    );
    assert.equal(await one(freshest('talos_etcd_backup_schedule_expected_interval_seconds')), 300);
    const phases = await prom.query(freshest('talos_etcd_backup_schedule_backups', 'phase'));
    const counted = Object.fromEntries(phases.map((p) => [p.metric.phase, p.value]));
    const truth: Record<string, number> = { Pending: 0, Running: 0, Succeeded: 0, Failed: 0 };
    for (const b of backups) {
      const phase = phaseOf(b) ?? 'Pending';
      truth[phase] = (truth[phase] ?? 0) + 1;
    }
    assert.deepEqual(counted, truth);
    assert.deepEqual(truth, { Pending: 0, Running: 0, Succeeded: 3, Failed: 1 });
    const newest = backups
      .filter((b) => phaseOf(b) === 'Succeeded')
      .sort((a, b) => String(slotOf(a)).localeCompare(String(slotOf(b))))
      .pop()!;
    assert.equal(
      await one(freshest('talos_etcd_backup_schedule_last_success_size_bytes')),
      status(newest).snapshot!.size,
    );
    // Counters add up across replicas; a repeated request may count an outcome twice, never zero times.
    const finished = await prom.query(`sum by (result) (talos_etcd_backup_backups_finished_total{${labels}})`);
    const byResult = Object.fromEntries(finished.map((f) => [f.metric.result, f.value]));
    assert.ok(byResult.succeeded! >= 6 && byResult.failed! >= 1, JSON.stringify(byResult));
    const scheduleStatus = schedule.status as ScheduleStatus;
    assert.equal(await one(freshest('talos_etcd_backup_schedule_restore_test_enabled')), 1);
    assert.equal(
      await one(freshest('talos_etcd_backup_schedule_last_successful_restore_test_timestamp_seconds')),
      Date.parse(scheduleStatus.lastSuccessfulRestoreTestTime!) / 1000,
    );
    assert.equal(await one(freshest('talos_etcd_backup_schedule_last_restore_test_status')), 1);
    const restoreTests = await prom.query(
      `sum by (result) (talos_etcd_backup_restore_tests_finished_total{${labels}})`,
    );
    const tests = Object.fromEntries(restoreTests.map((f) => [f.metric.result, f.value]));
    assert.ok(tests.succeeded! >= 1 && tests.failed === 0, JSON.stringify(tests));

    // The recording rules agree once evaluated on this scrape; every rule evaluates without error; nothing fires.
    await r.waitFor(
      'the recording rules to see the newest scrape',
      async () =>
        (await one(`talos_etcd_backup:schedule_last_success_timestamp_seconds:freshest{${labels}}`)) === lastSuccess,
      30_000,
    );
    assert.equal(await one(`talos_etcd_backup:schedule_last_status:freshest{${labels}}`), 1);
    const rules = await prom.rules();
    assert.ok(rules.length > 8);
    assert.deepEqual(
      rules.filter((rule) => rule.health !== 'ok'),
      [],
    );
    assert.deepEqual(await prom.query('ALERTS'), []);

    // Every expression of the dashboard, with its variables set to this schedule, returns data.
    const dashboard = JSON.parse(readFileSync(join(CHART_DIR, 'files', 'dashboard.json'), 'utf8')) as {
      panels: { title: string; targets?: { expr: string }[] }[];
    };
    for (const panel of dashboard.panels)
      for (const target of panel.targets ?? []) {
        const expr = target.expr
          .replaceAll('$namespace', NAMESPACE)
          .replaceAll('$schedule', SCHEDULE)
          .replaceAll('$__rate_interval', '5m');
        assert.ok((await prom.query(expr)).length > 0, `${panel.title}: ${expr}`);
      }
  });

  it('the newest object restores with etcdutl, with the keys written before its slot', async () => {
    const newest = (await r.backups())
      .filter((b) => phaseOf(b) === 'Succeeded')
      .sort((a, b) => String(slotOf(a)).localeCompare(String(slotOf(b))))
      .pop()!;
    const slot = new Date(slotOf(newest)!).getTime();
    const restored = await r.restore(status(newest).snapshot!.key);
    try {
      assert.equal(
        await restored.get(`registry/slot-${slot}`),
        `written before the ${new Date(slot).toISOString()} slot`,
      );
      assert.equal(await restored.get(`registry/slot-${slot + SLOT_MS}`), undefined, 'nothing written after its slot');
    } finally {
      await restored.stop();
    }
  });

  it('pausing stops new backups', async () => {
    const count = (await r.backups()).length;
    const schedule = (await r.schedule())!;
    await r.metacontroller.apply(applied(schedule, { paused: true }));
    await runSlots(r, 3);
    assert.equal((await r.backups()).length, count);
    assert.equal(condition(((await r.schedule())!.status as ScheduleStatus).conditions, 'Ready')?.reason, 'Paused');
  });

  it('deleting the schedule removes its backups, their objects, and every Job and helper', async () => {
    await r.metacontroller.delete(API_VERSION, SCHEDULE_KIND, NAMESPACE, SCHEDULE);
    // The garbage collector deletes the backups (background propagation); each one's finalize hook runs its delete
    // Job; once let go, the collector takes their Jobs and helpers.
    await r.waitFor('the schedule, its backups and their helpers to be gone', async () => {
      await r.settle();
      return (await r.schedule()) === undefined && (await r.backups()).length === 0 && (await r.helpers()).length === 0;
    });
    assert.deepEqual(await r.objects(), []);
    assert.deepEqual(r.metacontroller.errors, []);
  });
});

describe('rehearsal: restarts, killed snapshots, two replicas, bad input (deletionPolicy Retain)', () => {
  let r: Rehearsal;
  before(async () => {
    r = await startRehearsal({ replicas: 2 });
    // A snapshot of several 5 MiB parts, so a killed stream has a multipart upload in flight.
    await r.etcd.putMany(2500, 'registry/big/', 4096);
    await r.applyExamples({
      spec: { schedule: '*/5 * * * *', timeZone: 'UTC', retention: 3, startingDeadlineSeconds: 120 },
      template: {},
    });
    await r.settle();
  });
  after(() => r?.close());

  it('a hook server restarted mid-run and two replicas answering alternately lose nothing and duplicate nothing', async () => {
    await runSlots(r, 1);
    // Restart a replica while a snapshot Job runs (its reports keep the controllers busy).
    const slot = Math.ceil((r.now().getTime() + 1) / SLOT_MS) * SLOT_MS;
    const advancing = r.advanceTo(new Date(slot + 1000));
    const deadline = Date.now() + 30_000;
    while (r.kubelet.running().length === 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(r.kubelet.running().length, 1, 'a snapshot Job is running');
    await r.restartServer(0);
    await advancing;
    await runSlots(r, 2);
    const backups = await r.backups();
    assert.equal(backups.length, 3, 'retention 3 of 4 slots');
    assert.ok(backups.every((b) => phaseOf(b) === 'Succeeded'));
    assert.equal((await r.objects()).length, 4, 'with Retain, every object stays');
    const urls = new Set(r.metacontroller.calls.map((c) => c.url.replace(/\/hooks\/.*/, '')));
    assert.ok(urls.size >= 2, 'both replicas answered');
  });

  it('a snapshot process killed mid-stream leaves no object and no pending upload; the Job retry stores a good backup', async () => {
    const first = Math.ceil((r.now().getTime() + 1) / SLOT_MS) * SLOT_MS;
    r.talos.setFault({ kind: 'stall', afterBytes: 7 * 1024 * 1024, ms: 10_000, times: 1 });
    const advancing = r.advanceTo(new Date(first + 1000));
    // Wait for the stalled pod with an upload in flight, then kill it outright (as the OOM killer would).
    const deadline = Date.now() + 30_000;
    while ((await pendingUploads(r)).length === 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal((await pendingUploads(r)).length, 1, 'a multipart upload in flight');
    const running = r.kubelet.running()[0]!;
    r.kubelet.kill(running.namespace, running.name, 'SIGKILL');
    await advancing;
    await r.settle();
    const backup = (await r.backups()).find(
      (b) => slotOf(b) === new Date(first).toISOString().replace(/\.\d+Z$/, 'Z'),
    )!;
    assert.equal(phaseOf(backup), 'Succeeded', JSON.stringify(status(backup)));
    assert.ok(r.kubelet.pods().filter((p) => p.job === running.job).length >= 2, 'the Job retried');
    assert.deepEqual(await pendingUploads(r), [], "the retry aborted the killed attempt's upload");
    const restored = await r.restore(status(backup).snapshot!.key);
    await restored.stop();
  });

  it('bad input ends with the documented condition and disturbs nothing else', async () => {
    const template = (
      (await r.schedule())!.spec as {
        backupTemplate: { spec: Record<string, unknown> & { backupStorage: { s3: Record<string, unknown> } } };
      }
    ).backupTemplate.spec;
    const backup = (name: string, spec: Record<string, unknown>): KubeObject => {
      const merged: Record<string, unknown> = { ...template, ...spec };
      for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
      return { apiVersion: API_VERSION, kind: BACKUP_KIND, metadata: { name, namespace: NAMESPACE }, spec: merged };
    };
    const mainSpec = (await r.schedule())!.spec as object;
    const schedule = (name: string, spec: Record<string, unknown>): KubeObject => ({
      apiVersion: API_VERSION,
      kind: SCHEDULE_KIND,
      metadata: { name, namespace: NAMESPACE },
      spec: { ...mainSpec, ...spec },
    });
    await r.metacontroller.apply(schedule('bad-cron', { schedule: '0 0 2 * * *' }));
    await r.metacontroller.apply(schedule('bad-zone', { timeZone: 'Mars/Olympus_Mons' }));
    await r.metacontroller.apply(
      backup('missing-secret', {
        backupStorage: {
          s3: {
            ...template.backupStorage.s3,
            accessKeyID: { name: 'nope', key: 'access-key-id' },
            secretAccessKey: { name: 'nope', key: 'secret-access-key' },
          },
        },
      }),
    );
    await r.metacontroller.apply(
      backup('missing-tcp', { talosConfigSecretRef: undefined, talosControlPlaneRef: { name: 'no-such-cluster' } }),
    );
    await r.metacontroller.apply(
      backup('missing-bucket', { backupStorage: { s3: { ...template.backupStorage.s3, bucket: 'no-such-bucket' } } }),
    );
    const goodBefore = (await r.backups()).filter((b) => phaseOf(b) === 'Succeeded').length;
    await r.settle();
    await r.advanceTo(new Date(r.now().getTime() + 31_000)); // past the TalosControlPlane grace period

    const objects = new Map<string, KubeObject>();
    for (const [kind, name] of [
      [SCHEDULE_KIND, 'bad-cron'],
      [SCHEDULE_KIND, 'bad-zone'],
      [BACKUP_KIND, 'missing-secret'],
      [BACKUP_KIND, 'missing-tcp'],
      [BACKUP_KIND, 'missing-bucket'],
    ] as const) {
      objects.set(name, (await r.metacontroller.get(API_VERSION, kind, NAMESPACE, name)) as KubeObject);
    }
    const get = (name: string) => objects.get(name)!;
    const failedMessage = (name: string) => condition(status(get(name)).conditions, 'Failed');
    assert.equal(condition((get('bad-cron').status as ScheduleStatus).conditions, 'Failed')?.reason, 'InvalidSchedule');
    assert.equal(condition((get('bad-zone').status as ScheduleStatus).conditions, 'Failed')?.reason, 'InvalidTimeZone');
    assert.match(
      failedMessage('missing-secret')?.message ?? '',
      /^Failed to get secret: secret talos-backup\/nope key access-key-id/,
    );
    assert.match(
      failedMessage('missing-tcp')?.message ?? '',
      /^Failed to get TalosControlPlane talos-backup\/no-such-cluster: not found in the backup's namespace/,
    );
    assert.match(failedMessage('missing-bucket')?.message ?? '', /^Failed to upload snapshot to S3: NoSuchBucket/);
    for (const name of ['missing-secret', 'missing-tcp', 'missing-bucket'])
      assert.equal(phaseOf(get(name)), 'Failed', name);

    // Nothing else disturbed: the main schedule still backs up on its next slot.
    await runSlots(r, 1);
    const mine = (await r.backups()).filter((b) => b.metadata.name.startsWith(`${SCHEDULE}-`));
    assert.ok(mine.filter((b) => phaseOf(b) === 'Succeeded').length >= Math.min(goodBefore, 3));
    assert.equal(
      phaseOf([...mine].sort((a, b) => String(slotOf(a)).localeCompare(String(slotOf(b)))).pop()!),
      'Succeeded',
    );
    await r.waitFor(
      "finished backups' helpers to be collected",
      async () => (await r.helpers()).filter((h) => !h.includes('missing-') && !h.includes('bad-')).length === 0,
    );
    assert.deepEqual(
      (await r.helpers()).filter((h) => !h.includes('missing-') && !h.includes('bad-')),
      [],
    );
  });
});
