// What a real cluster does that Metacontroller never tells the hook, on the real control plane (rehearsal.ts):
// a ResourceQuota that refuses every Job, a namespace deleted under its backups, foreground deletion. Each must end
// in bounded time with the documented outcome, never with an object stuck forever.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { API_VERSION, BACKUP_KIND } from '../../src/api/constants.js';
import type { BackupStatus, ScheduleStatus } from '../../src/api/types.js';
import { DEFAULT_ATTACHMENT_DEADLINE_SECONDS } from '../../src/server/backup/settings.js';
import type { Condition } from '../../src/api/conditions.js';
import { BUCKET, NAMESPACE, SCHEDULE, startRehearsal, type KubeObject, type Rehearsal } from './rehearsal.js';

const status = (b: KubeObject | undefined) => (b?.status ?? {}) as BackupStatus;
const condition = (conditions: Condition[] | undefined, type: string) => conditions?.find((c) => c.type === type);
const objectKeys = async (r: Rehearsal) => (await r.objects()).map((o) => o.key).sort();
const pendingUploads = async (r: Rehearsal) =>
  (await r.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))).Uploads ?? [];

describe('objects Metacontroller cannot create or delete, on a real cluster', () => {
  let r: Rehearsal;
  let admin: KubeConfig;
  let template: Record<string, unknown>;
  before(async () => {
    r = await startRehearsal();
    admin = await r.cp.kubeConfig();
    // The examples' Secrets and a paused schedule whose template the backups below use.
    await r.applyExamples({
      spec: { schedule: '*/5 * * * *', timeZone: 'UTC', retention: 3, paused: true },
      template: { deletionPolicy: 'Delete' },
    });
    await r.settle();
    template = ((await r.schedule())!.spec as { backupTemplate: { spec: Record<string, unknown> } }).backupTemplate
      .spec;
  });
  after(() => r?.close());

  // Each backup names its own cluster segment: two backups created in the same second would otherwise share an
  // object key (second precision), and the second would be refused.
  const backupIn = (namespace: string, name: string, spec: Record<string, unknown> = {}): KubeObject => ({
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: { name, namespace },
    spec: { ...template, clusterName: `etcd-backup-${name}`, ...spec },
  });
  const get = (namespace: string, name: string) =>
    r.metacontroller.get(API_VERSION, BACKUP_KIND, namespace, name) as Promise<KubeObject | undefined>;
  const readyBackup = async (
    namespace: string,
    name: string,
    spec: Record<string, unknown> = {},
  ): Promise<KubeObject> => {
    await r.metacontroller.apply(backupIn(namespace, name, spec));
    await r.settle();
    const b = await get(namespace, name);
    assert.equal(status(b).phase, 'Succeeded', JSON.stringify(status(b)));
    return b!;
  };

  it('a ResourceQuota that refuses Jobs: the backup fails after the deadline naming the events, its delete Job likewise lets it go, and the schedule carries on', async () => {
    const core = admin.makeApiClient(CoreV1Api);
    const stored = await readyBackup(NAMESPACE, 'before-quota');
    await core.createNamespacedResourceQuota({
      namespace: NAMESPACE,
      body: { metadata: { name: 'no-jobs' }, spec: { hard: { 'count/jobs.batch': '0' } } },
    });
    await r.waitFor(
      'the quota to be enforced',
      async () =>
        (await core.readNamespacedResourceQuota({ namespace: NAMESPACE, name: 'no-jobs' })).status?.hard !== undefined,
    );

    await r.metacontroller.apply(backupIn(NAMESPACE, 'quota-blocked'));
    await r.settle();
    assert.equal(status(await get(NAMESPACE, 'quota-blocked')).phase, 'Pending', 'the hook never hears of the refusal');
    await r.advanceTo(new Date(r.now().getTime() + (DEFAULT_ATTACHMENT_DEADLINE_SECONDS + 1) * 1000));
    const blocked = status(await get(NAMESPACE, 'quota-blocked'));
    assert.equal(blocked.phase, 'Failed');
    const hint = `kubectl get events -n ${NAMESPACE} --field-selector involvedObject.name=quota-blocked`;
    assert.ok(
      blocked.message?.startsWith(
        'Failed to create the snapshot Job: quota-blocked-snapshot did not appear within 600s',
      ),
      blocked.message,
    );
    assert.ok(blocked.message?.endsWith(hint), blocked.message);
    // The command the message gives shows the cause.
    const events = await r.cp.kubectl(hint.replace(/^kubectl /, '').split(' '));
    assert.match(events.stdout, /Warning\s+SyncError.*exceeded quota: no-jobs/s, events.stdout);

    // Deleting a backup whose delete Job is refused just as well: it goes after the deadline, its object stays.
    const key = status(stored).snapshot!.key;
    await r.metacontroller.delete(API_VERSION, BACKUP_KIND, NAMESPACE, 'before-quota');
    await r.settle();
    assert.match(
      status(await get(NAMESPACE, 'before-quota')).deletion?.message ?? '',
      /^Deleting s3:/,
      'held for its delete Job',
    );
    await r.advanceTo(new Date(r.now().getTime() + (DEFAULT_ATTACHMENT_DEADLINE_SECONDS + 1) * 1000));
    await r.waitFor('the backup to be let go', async () => (await get(NAMESPACE, 'before-quota')) === undefined);
    assert.ok((await objectKeys(r)).includes(key), 'the object it could not delete is kept');

    // The schedule is not blocked by the failed backup (Forbid counts only running ones): once the quota goes,
    // its next slot is backed up.
    await core.deleteNamespacedResourceQuota({ namespace: NAMESPACE, name: 'no-jobs' });
    const schedule = (await r.schedule())!;
    await r.metacontroller.apply({
      apiVersion: schedule.apiVersion,
      kind: schedule.kind,
      metadata: { name: SCHEDULE, namespace: NAMESPACE },
      spec: { ...(schedule.spec as object), paused: false },
    });
    const slot = Math.ceil((r.now().getTime() + 1) / 300_000) * 300_000;
    await r.advanceTo(new Date(slot + 1000));
    const newest = (await r.backups()).find((b) => b.metadata.name === `${SCHEDULE}-${slot / 1000}`);
    assert.equal(status(newest).phase, 'Succeeded', JSON.stringify(status(newest)));
    assert.equal(condition(((await r.schedule())!.status as ScheduleStatus).conditions, 'Ready')?.status, 'True');
    await r.metacontroller.apply({
      apiVersion: schedule.apiVersion,
      kind: schedule.kind,
      metadata: { name: SCHEDULE, namespace: NAMESPACE },
      spec: { ...(schedule.spec as object), paused: true },
    });
    await r.settle();
  });

  it('deleting a namespace with Retain and Delete backups, one of them running, finishes; the objects stay', async () => {
    const core = admin.makeApiClient(CoreV1Api);
    const ns = 'doomed';
    await core.createNamespace({ body: { metadata: { name: ns } } });
    for (const name of ['s3-credentials', 'etcd-backup']) {
      const secret = await core.readNamespacedSecret({ namespace: NAMESPACE, name });
      await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name }, data: secret.data! } });
    }
    // A schedule too (its backups would be Delete), besides the backups made by hand.
    const schedule = (await r.schedule())!;
    await r.metacontroller.apply({
      apiVersion: schedule.apiVersion,
      kind: schedule.kind,
      metadata: { name: SCHEDULE, namespace: ns },
      spec: schedule.spec,
    });
    const retained = await readyBackup(ns, 'retained', { deletionPolicy: 'Retain' });
    const deletable = await readyBackup(ns, 'deletable', { deletionPolicy: 'Delete' });
    // A third one streams when the namespace goes (the Talos API stalls it).
    r.talos.setFault({ kind: 'stall', afterBytes: 4096, ms: 20_000, times: 1 });
    await r.metacontroller.apply(backupIn(ns, 'streaming', { deletionPolicy: 'Delete' }));
    await r.kubelet.waitForPod({ namespace: ns, job: 'streaming-snapshot' }, 'Running');
    const before = await objectKeys(r);

    const deleted = await r.cp.kubectl(['delete', 'namespace', ns, '--wait=false']);
    assert.equal(deleted.code, 0, deleted.stderr);
    await r.waitFor(
      `namespace ${ns} to be gone`,
      async () => {
        await r.metacontroller.settle();
        return (await r.cp.kubectl(['get', 'namespace', ns])).code !== 0;
      },
      120_000,
    );
    r.talos.setFault(undefined);

    assert.equal(await r.metacontroller.get(API_VERSION, 'TalosEtcdBackupSchedule', ns, SCHEDULE), undefined);
    // What the README says: the backups go; their objects stay, also with deletionPolicy Delete; the stream that
    // was cut leaves nothing behind.
    const after = await objectKeys(r);
    assert.ok(after.includes(status(retained).snapshot!.key));
    assert.ok(after.includes(status(deletable).snapshot!.key), 'deletionPolicy Delete: kept, no Job could delete it');
    assert.deepEqual(after, before, 'no object appeared or vanished');
    assert.deepEqual(await pendingUploads(r), []);
    const finalized = r.metacontroller.calls.filter(
      (c) =>
        c.hook === 'finalize' && c.namespace === ns && (c.response as { finalized?: boolean } | undefined)?.finalized,
    );
    assert.ok(
      finalized.some((c) => c.name === 'deletable' && /is being deleted/.test(JSON.stringify(c.response))),
      'the Delete backup was let go because its namespace went',
    );
  });

  it('kubectl delete --cascade=foreground of a Delete backup still deletes its object, then the backup goes', async () => {
    const b = await readyBackup(NAMESPACE, 'foreground', { deletionPolicy: 'Delete' });
    const key = status(b).snapshot!.key;
    assert.ok((await objectKeys(r)).includes(key));
    const deleted = await r.cp.kubectl([
      'delete',
      'teb',
      'foreground',
      '-n',
      NAMESPACE,
      '--cascade=foreground',
      '--wait=false',
    ]);
    assert.equal(deleted.code, 0, deleted.stderr);
    await r.waitFor(
      'the foreground-deleted backup to go',
      async () => {
        await r.settle();
        return (await get(NAMESPACE, 'foreground')) === undefined;
      },
      120_000,
    );
    assert.ok(!(await objectKeys(r)).includes(key), 'its delete Job ran');
    assert.deepEqual(
      r.metacontroller.errors.filter((e) => e.includes('foreground')),
      [],
    );
  });
});
