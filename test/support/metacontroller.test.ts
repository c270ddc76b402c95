// The Metacontroller stand-in (metacontroller.ts) against the real hook server: schedules create backups on their
// slots, the decorator runs and retires their Jobs, retention, finalizers and garbage collection clean up, and hook
// failures behave as in Metacontroller (error, nothing applied, retried later). Jobs are not run: their status is
// written by hand. Also the CRD-schema helper the stand-in uses (validateAgainstSchema).

import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { API_VERSION, BACKUP_CHILDREN_KEY, BACKUP_KIND, BACKUP_PLURAL, JOB_KEY, RELATED_CONTROL_PLANE_KEY, ROLE_BINDING_KEY, ROLE_KEY, SCHEDULE_KIND, SCHEDULED_TIME_ANNOTATION, SERVICE_ACCOUNT_KEY } from '../../src/api/constants.js';
import { crdSchema, loadCrd, packageRoot } from '../../src/api/crds.js';
import { validateAgainstSchema } from '../../src/api/validation.js';
import { backupTemplateSpec } from '../helpers/builders.js';
import { startServer, type RunningServer } from '../helpers/server.js';
import { startFakeKubeApi, type FakeKubeApi, type KubeObject } from './kube-api.js';
import { parseGoDuration, startMetacontroller, type MetacontrollerStandIn } from './metacontroller.js';

type J = any;

const NS = 'backups';
const START = new Date('2026-03-01T00:10:00Z');
const DECORATOR = 'talos-etcd-backup';
const FINALIZER = `metacontroller.io/decoratorcontroller-${DECORATOR}`;
const ATTACHMENT_KINDS: [string, string][] = [
  ['batch/v1', 'Job'],
  ['v1', 'ServiceAccount'],
  ['rbac.authorization.k8s.io/v1', 'Role'],
  ['rbac.authorization.k8s.io/v1', 'RoleBinding'],
];
const unix = (iso: string): number => Date.parse(iso) / 1000;

// ----- a hook "network": a proxy in front of the real server that can fail, hang, or rewrite answers

interface Proxy {
  url: string;
  /** 'pass' forwards; a number answers with that status; 'hang' never answers. */
  mode: 'pass' | 'hang' | number;
  /** Rewrites the real server's answer for a path. */
  tamper?: (path: string, answer: J) => J;
  /** Called with each request before it is forwarded (to race a write against the hook call). */
  before?: (path: string, request: J) => void;
  close(): Promise<void>;
}

async function startProxy(target: string): Promise<Proxy> {
  const read = (req: IncomingMessage): Promise<string> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.once('error', reject);
    });
  const proxy: Proxy = { url: '', mode: 'pass', close: async () => {} };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const text = await read(req);
      const path = req.url ?? '/';
      proxy.before?.(path, JSON.parse(text));
      if (proxy.mode === 'hang') return;
      if (typeof proxy.mode === 'number') {
        res.writeHead(proxy.mode, { 'content-type': 'text/plain' }).end('injected failure');
        return;
      }
      const answer = await fetch(`${target}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
      let body = await answer.text();
      if (answer.status === 200 && proxy.tamper) body = JSON.stringify(proxy.tamper(path, JSON.parse(body)));
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(body);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return proxy;
}

// ----- one world per test: clock, API server, hook server, proxies, stand-in

interface World {
  api: FakeKubeApi;
  mc: MetacontrollerStandIn;
  proxies: Proxy[];
  now(): Date;
  /** Moves the simulated clock to `iso`, then settles. */
  at(iso: string): Promise<void>;
  close(): Promise<void>;
}

const worlds: World[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.close();
});

/** The manifests with another webhook timeout (to test timeouts quickly). */
function manifestsWithTimeout(timeout: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mc-manifests-'));
  const source = join(packageRoot(), 'metacontroller');
  for (const f of readdirSync(source)) writeFileSync(join(dir, f), readFileSync(join(source, f), 'utf8').replace(/timeout: 10s/g, `timeout: ${timeout}`));
  return dir;
}

async function world(opts: { replicas?: number; manifestsDir?: string } = {}): Promise<World> {
  let now = new Date(START);
  const clock = () => new Date(now);
  const api = await startFakeKubeApi({ clock });
  const server: RunningServer = await startServer({ clock });
  const proxies = await Promise.all(Array.from({ length: opts.replicas ?? 1 }, () => startProxy(server.url)));
  // What a namespace holds before any backup: the Secrets the Jobs read.
  api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'talosconfig', namespace: NS }, data: {} });
  api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's3-credentials', namespace: NS }, data: {} });
  const mc = await startMetacontroller({ api, hookUrls: proxies.map((p) => p.url), clock, ...(opts.manifestsDir && { manifestsDir: opts.manifestsDir }) });
  const w: World = {
    api,
    mc,
    proxies,
    now: clock,
    async at(iso) {
      assert.ok(Date.parse(iso) >= now.getTime(), 'the clock only moves forward');
      now = new Date(iso);
      await mc.settle();
    },
    async close() {
      mc.stop();
      await Promise.all(proxies.map((p) => p.close()));
      await server.close();
      await api.close();
    },
  };
  worlds.push(w);
  return w;
}

// ----- objects

function scheduleObject(spec: Record<string, unknown> = {}): KubeObject {
  return { apiVersion: API_VERSION, kind: SCHEDULE_KIND, metadata: { name: 'nightly', namespace: NS }, spec: { schedule: '0 * * * *', retention: 2, backupTemplate: { spec: backupTemplateSpec() }, ...spec } };
}

function backupObject(name: string, spec: Record<string, unknown> = {}): KubeObject {
  return { apiVersion: API_VERSION, kind: BACKUP_KIND, metadata: { name, namespace: NS }, spec: { ...backupTemplateSpec(), ...spec } };
}

const backups = (w: World): J[] => w.api.list(API_VERSION, BACKUP_KIND, NS);
const backup = (w: World, name: string): J => w.api.get(API_VERSION, BACKUP_KIND, NS, name);
const attachments = (w: World): J[] => ATTACHMENT_KINDS.flatMap(([v, k]) => w.api.list(v, k, NS));
const job = (w: World, name: string): J => w.api.get('batch/v1', 'Job', NS, name);

/** What a Job's pod would write: status.report (a merge patch on the status subresource; here a plain put). */
function report(w: World, name: string, state: 'Running' | 'Succeeded'): void {
  const o = backup(w, name);
  const snapshot = { bucket: 'etcd-backups', key: `talos/${name}.db`, size: 4096, sha256: 'ab'.repeat(32), etcdSha256: 'cd'.repeat(32), node: '10.0.0.2' };
  const updatedAt = w.now().toISOString().replace(/\.\d+Z$/, 'Z');
  o.status = { ...o.status, report: { state, pod: `${name}-snapshot-x`, startedAt: updatedAt, updatedAt, bytesUploaded: 4096, ...(state === 'Succeeded' && { snapshot }) } };
  w.api.put(o);
}

/** What the Job controller would write. */
function setJobStatus(w: World, name: string, status: Record<string, unknown>): void {
  const o = job(w, name);
  assert.ok(o, `Job ${name} exists`);
  w.api.put({ ...o, status });
}

const phase = (w: World, name: string): string | undefined => backup(w, name)?.status?.phase;

// =================================================================================================================

describe('validateAgainstSchema (any CRD schema, as the API server checks a write)', () => {
  const schema = crdSchema(loadCrd(BACKUP_PLURAL));
  const object = backupObject('b1');

  it('applies the defaults to a copy and leaves metadata to ObjectMeta rules', () => {
    const input = { ...object, metadata: { ...object.metadata, whatever: 1 } };
    const checked = validateAgainstSchema(schema, input);
    assert.ok(checked.ok, JSON.stringify(checked));
    const spec = (checked.value as J).spec;
    assert.equal(spec.deletionPolicy, 'Retain');
    assert.equal(spec.talosConfigSecretRef.key, 'config');
    assert.equal((input as J).spec.deletionPolicy, undefined, 'the input is not modified');
  });

  it('reports CEL rules, structure and fields the API server would prune, with their paths', () => {
    const both = validateAgainstSchema(schema, { ...object, spec: { ...(object.spec as J), talosControlPlaneRef: { name: 'tcp' } } });
    assert.ok(!both.ok);
    assert.match(both.problems.join('\n'), /^spec: exactly one of talosControlPlaneRef and talosConfigSecretRef must be set$/m);
    const unknown = validateAgainstSchema(schema, { ...object, extra: true, spec: { ...(object.spec as J), backupStorage: { s3: { bucket: 'b', typo: 1 } } } });
    assert.ok(!unknown.ok);
    assert.deepEqual(unknown.problems.filter((p) => p.includes('prune')).sort(), [
      'extra: unknown field (the API server would prune it)',
      'spec.backupStorage.s3.typo: unknown field (the API server would prune it)',
    ]);
    const status = validateAgainstSchema((schema.properties as J).status, { phase: 'Done', colour: 'red' }, 'status');
    assert.ok(!status.ok);
    assert.deepEqual(status.problems, ['status.phase: must be one of Pending, Running, Succeeded, Failed', 'status.colour: unknown field (the API server would prune it)']);
  });

  it('parses Go durations as the manifests write them', () => {
    assert.deepEqual(['10s', '300ms', '1m30s', '1.5h'].map(parseGoDuration), [10_000, 300, 90_000, 5_400_000]);
    assert.throws(() => parseGoDuration('10'), /invalid Go duration/);
  });
});

describe('Metacontroller stand-in with the real hook server', () => {
  it('a schedule gets exactly one backup per slot: owner reference, selector label, slot annotation, CRD defaults; the decorator attaches its Job', async () => {
    const w = await world();
    const schedule = w.mc.apply(scheduleObject());
    assert.equal(schedule.metadata.generation, 1);
    assert.equal((schedule.spec as J).concurrencyPolicy, 'Forbid', 'the schedule CRD default');
    await w.mc.settle();
    assert.deepEqual(backups(w), [], 'no slot since the schedule was created');
    const first = w.mc.calls[0]!;
    assert.deepEqual([first.controller, first.hook, first.key, first.url], ['talos-etcd-backup-schedule', 'sync', `${NS}/nightly`, `${w.proxies[0]!.url}/hooks/schedule/sync`]);
    assert.deepEqual((first.request as J).children, { [BACKUP_CHILDREN_KEY]: {} }, 'one entry per child rule, even empty');
    assert.deepEqual(Object.keys(first.request as J).sort(), ['children', 'controller', 'finalizing', 'parent', 'related']);
    assert.equal((first.request as J).controller.apiVersion, undefined, 'the controller comes from a typed cache');
    let status = w.api.get(API_VERSION, SCHEDULE_KIND, NS, 'nightly')!.status as J;
    assert.equal(status.observedGeneration, 1, 'Metacontroller injects observedGeneration');
    assert.equal(status.nextScheduleTime, '2026-03-01T01:00:00Z');

    await w.at('2026-03-01T00:59:59Z');
    assert.deepEqual(backups(w), [], 'nothing before the slot (only resyncPeriodSeconds syncs)');
    await w.at('2026-03-01T01:00:01Z');
    const name = `nightly-${unix('2026-03-01T01:00:00Z')}`;
    assert.deepEqual(backups(w).map((b) => b.metadata.name), [name]);
    const b = backup(w, name);
    assert.deepEqual(b.metadata.ownerReferences, [{ apiVersion: API_VERSION, kind: SCHEDULE_KIND, name: 'nightly', uid: schedule.metadata.uid, controller: true, blockOwnerDeletion: true }]);
    assert.equal(b.metadata.labels['controller-uid'], schedule.metadata.uid);
    assert.equal(b.metadata.annotations[SCHEDULED_TIME_ANNOTATION], '2026-03-01T01:00:00Z');
    assert.ok(b.metadata.annotations['metacontroller.k8s.io/last-applied-configuration'], 'last-applied annotation');
    assert.equal(b.spec.deletionPolicy, 'Retain');
    assert.deepEqual(b.metadata.finalizers, [FINALIZER], 'the decorator has a finalize hook');
    assert.equal(b.metadata.generation, 1);

    // The decorator: Job, ServiceAccount, Role, RoleBinding, owned by the backup and marked as its attachments.
    const attached = attachments(w);
    assert.deepEqual(attached.map((a) => a.kind).sort(), ['Job', 'Role', 'RoleBinding', 'ServiceAccount']);
    for (const a of attached) {
      assert.equal(a.metadata.annotations['metacontroller.k8s.io/decorator-controller'], DECORATOR);
      assert.deepEqual(a.metadata.ownerReferences, [{ apiVersion: API_VERSION, kind: BACKUP_KIND, name, uid: b.metadata.uid, controller: true, blockOwnerDeletion: true }]);
    }
    assert.equal(b.status.phase, 'Pending');
    const decoratorCalls = w.mc.calls.filter((c) => c.controller === DECORATOR && c.hook === 'sync');
    const last = decoratorCalls.at(-1)!.request as J;
    assert.deepEqual(Object.keys(last.attachments).sort(), [JOB_KEY, ROLE_KEY, ROLE_BINDING_KEY, SERVICE_ACCOUNT_KEY].sort());
    assert.deepEqual(Object.keys(last.attachments[JOB_KEY]), [`${name}-snapshot`], 'hook v1: attachments keyed by name');
    assert.deepEqual(last.related, {});
    assert.equal(last.finalizing, false);
    assert.equal(w.mc.calls.filter((c) => c.hook === 'customize').length, 1, 'customize is cached per uid and generation');

    status = w.api.get(API_VERSION, SCHEDULE_KIND, NS, 'nightly')!.status as J;
    assert.deepEqual(status.activeBackups, [name], 'the schedule saw its child');
    assert.deepEqual(w.mc.errors, []);
    const settled = w.mc.calls.length;
    await w.mc.settle();
    assert.equal(w.mc.calls.length, settled, 'settled: no hot loop');

    // A spec change bumps generation; the status follows it.
    w.mc.apply(scheduleObject({ retention: 3 }));
    await w.mc.settle();
    const updated = w.api.get(API_VERSION, SCHEDULE_KIND, NS, 'nightly')!;
    assert.equal(updated.metadata.generation, 2);
    assert.equal((updated.status as J).observedGeneration, 2);
    assert.deepEqual(backups(w).map((x) => x.metadata.name), [name], 'OnDelete: the existing backup is untouched');
  });

  it('the Job status and status.report drive the backup status; a finished backup drops its attachments and the schedule counts it', async () => {
    const w = await world();
    w.mc.apply(scheduleObject());
    await w.mc.settle();
    await w.at('2026-03-01T01:00:01Z');
    const name = `nightly-${unix('2026-03-01T01:00:00Z')}`;

    setJobStatus(w, `${name}-snapshot`, { active: 1, startTime: '2026-03-01T01:00:03Z' });
    await w.at('2026-03-01T01:00:05Z');
    assert.equal(phase(w, name), 'Running');
    assert.equal(backup(w, name).status.startTime, '2026-03-01T01:00:03Z');

    report(w, name, 'Running');
    await w.mc.settle();
    assert.deepEqual(backup(w, name).status.progress, { bytesUploaded: 4096 });

    await w.at('2026-03-01T01:02:00Z');
    report(w, name, 'Succeeded');
    await w.mc.settle();
    const done = backup(w, name);
    assert.equal(done.status.phase, 'Succeeded');
    assert.equal(done.status.snapshot.key, `talos/${name}.db`);
    assert.deepEqual(attachments(w), [], 'the next sync left the attachments out: deleted');
    const schedule = w.api.get(API_VERSION, SCHEDULE_KIND, NS, 'nightly')!.status as J;
    assert.deepEqual(schedule.activeBackups, []);
    assert.equal(schedule.lastSuccessfulBackupTime, '2026-03-01T01:02:00Z');
    assert.deepEqual(w.mc.errors, []);
  });

  it('retention deletes the oldest successful backups (through the finalize hook); the resync period syncs every parent', async () => {
    const w = await world();
    w.mc.apply(scheduleObject({ retention: 2 }));
    await w.mc.settle();
    const names: string[] = [];
    for (const hour of ['01', '02', '03']) {
      await w.at(`2026-03-01T${hour}:00:01Z`);
      const name = `nightly-${unix(`2026-03-01T${hour}:00:00Z`)}`;
      names.push(name);
      assert.ok(backup(w, name), `${name} created`);
      report(w, name, 'Succeeded');
      await w.mc.settle();
      assert.equal(phase(w, name), 'Succeeded');
    }
    assert.deepEqual(backups(w).map((b) => b.metadata.name), names.slice(1), 'the oldest of three successful backups went');
    const finalize = w.mc.calls.filter((c) => c.hook === 'finalize');
    assert.deepEqual(finalize.map((c) => c.key), [`${NS}/${names[0]}`], 'deletionPolicy Retain: one finalize call lets it go');
    assert.equal((finalize[0]!.request as J).finalizing, true);
    assert.ok((finalize[0]!.request as J).object.metadata.deletionTimestamp);
    assert.deepEqual(attachments(w), []);

    // resyncPeriodSeconds (300 in both manifests): every parent is synced again.
    const before = w.mc.calls.length;
    await w.at('2026-03-01T03:06:00Z');
    const resynced = w.mc.calls.slice(before).map((c) => `${c.controller} ${c.key}`).sort();
    assert.deepEqual(resynced, [`talos-etcd-backup ${NS}/${names[1]}`, `talos-etcd-backup ${NS}/${names[2]}`, `talos-etcd-backup-schedule ${NS}/nightly`]);
    assert.deepEqual(w.mc.errors, []);
  });

  it('deleting a backup with deletionPolicy Delete attaches the delete Job; once it completes, the backup goes', async () => {
    const w = await world();
    w.mc.apply(backupObject('manual', { deletionPolicy: 'Delete' }));
    await w.mc.settle();
    assert.ok(job(w, 'manual-snapshot'));
    report(w, 'manual', 'Succeeded');
    await w.mc.settle();
    assert.equal(phase(w, 'manual'), 'Succeeded');
    assert.deepEqual(attachments(w), []);

    w.mc.delete(API_VERSION, BACKUP_KIND, NS, 'manual');
    await w.mc.settle();
    const deleting = backup(w, 'manual');
    assert.ok(deleting.metadata.deletionTimestamp, 'held by the finalizer');
    assert.match(deleting.status.deletion.message, /^Deleting s3:\/\/etcd-backups\/talos\/manual\.db$/);
    const deleteJob = job(w, 'manual-delete');
    assert.equal(deleteJob.metadata.annotations['metacontroller.k8s.io/decorator-controller'], DECORATOR);
    assert.equal(deleteJob.metadata.ownerReferences[0].uid, deleting.metadata.uid);
    const finalize = w.mc.calls.filter((c) => c.hook === 'finalize').at(-1)!;
    assert.equal(finalize.url, `${w.proxies[0]!.url}/hooks/backup/finalize`);
    assert.equal((finalize.response as J).finalized, false);

    setJobStatus(w, 'manual-delete', { succeeded: 1, conditions: [{ type: 'Complete', status: 'True', lastTransitionTime: '2026-03-01T00:11:00Z' }] });
    await w.mc.settle();
    assert.equal(backup(w, 'manual'), undefined, 'finalized: the finalizer was removed and the backup deleted');
    assert.deepEqual(attachments(w), [], 'the delete Job went with it (garbage collection)');
    assert.deepEqual(w.mc.errors, []);
  });

  it('deleting the schedule removes its backups and every attachment; only the Secrets stay', async () => {
    const w = await world();
    w.mc.apply(scheduleObject({ concurrencyPolicy: 'Allow' }));
    await w.mc.settle();
    await w.at('2026-03-01T01:00:01Z');
    report(w, `nightly-${unix('2026-03-01T01:00:00Z')}`, 'Succeeded');
    await w.at('2026-03-01T02:00:01Z');
    await w.at('2026-03-01T03:00:01Z');
    assert.equal(backups(w).length, 3);
    assert.equal(attachments(w).length, 8, 'two running backups with four attachments each');

    w.mc.delete(API_VERSION, SCHEDULE_KIND, NS, 'nightly');
    await w.mc.settle();
    assert.deepEqual(w.api.list(API_VERSION, SCHEDULE_KIND), []);
    assert.deepEqual(backups(w), [], 'garbage collection, then each backup finalized (Retain)');
    assert.deepEqual(attachments(w), []);
    assert.deepEqual(w.api.list('v1', 'Secret', NS).map((s) => s.metadata.name), ['s3-credentials', 'talosconfig']);
    assert.deepEqual(w.mc.errors, []);
  });

  it('a hook that answers 500 or times out: error recorded, nothing applied, retried later with backoff', async () => {
    const w = await world({ manifestsDir: manifestsWithTimeout('300ms') });
    const [proxy] = w.proxies as [Proxy];
    proxy.mode = 500;
    w.mc.apply(scheduleObject());
    await w.mc.settle();
    assert.equal(w.mc.errors.length, 1);
    assert.match(w.mc.errors[0]!, /^talos-etcd-backup-schedule TalosEtcdBackupSchedule backups\/nightly: sync hook .* failed: unsupported status code: 500 body: injected failure$/);
    assert.equal(w.api.get(API_VERSION, SCHEDULE_KIND, NS, 'nightly')!.status, undefined, 'nothing applied');
    await w.mc.settle();
    assert.equal(w.mc.calls.length, 1, 'the retry waits for its backoff on the simulated clock');

    proxy.mode = 'hang';
    const started = Date.now();
    await w.at('2026-03-01T00:10:01Z');
    assert.ok(Date.now() - started < 5000);
    assert.equal(w.mc.errors.length, 2);
    assert.match(w.mc.errors[1]!, /Client\.Timeout exceeded \(300ms\)/);
    assert.equal(w.mc.calls[1]!.error, 'Client.Timeout exceeded (300ms)');

    proxy.mode = 'pass';
    await w.at('2026-03-01T00:10:02Z');
    assert.equal((w.api.get(API_VERSION, SCHEDULE_KIND, NS, 'nightly')!.status as J).observedGeneration, 1, 'applied once the hook answers');
    assert.equal(w.mc.errors.length, 2);
  });

  it('two hook URLs (replicas) are called in turn', async () => {
    const w = await world({ replicas: 2 });
    w.mc.apply(scheduleObject());
    await w.mc.settle();
    await w.at('2026-03-01T01:00:01Z');
    assert.ok(w.mc.calls.length >= 4);
    w.mc.calls.forEach((c, i) => assert.ok(c.url.startsWith(`${w.proxies[i % 2]!.url}/hooks/`), `call ${i} went to replica ${i % 2}`));
    assert.deepEqual(w.mc.errors, []);
  });

  it('objects the hooks answer are checked like the API server: an invalid child is refused, defaults are applied, an undeclared kind or a pruned status field fails the sync', async () => {
    const w = await world();
    const [proxy] = w.proxies as [Proxy];
    w.mc.apply(scheduleObject({ concurrencyPolicy: 'Allow' }));
    await w.mc.settle();
    let drop = 'deletionPolicy';
    // Rewrites only the child the answer creates (existing ones are re-emitted as observed).
    proxy.tamper = (path, answer) => {
      if (path === '/hooks/schedule/sync') for (const child of answer.children) if (!backup(w, child.metadata.name)) delete child.spec[drop];
      return answer;
    };
    await w.at('2026-03-01T01:00:01Z');
    assert.equal(backup(w, `nightly-${unix('2026-03-01T01:00:00Z')}`).spec.deletionPolicy, 'Retain', 'the CRD default');
    assert.deepEqual(w.mc.errors, []);

    drop = 'backupStorage';
    await w.at('2026-03-01T02:00:01Z');
    assert.equal(backup(w, `nightly-${unix('2026-03-01T02:00:00Z')}`), undefined, 'refused');
    assert.ok(w.mc.errors.length >= 1);
    for (const error of w.mc.errors) assert.match(error, /can't reconcile children for TalosEtcdBackupSchedule backups\/nightly: the API server would refuse TalosEtcdBackup backups\/nightly-\d+: spec\.backupStorage: is required$/);

    const errors = w.mc.errors.length;
    proxy.tamper = (path, answer) => (path === '/hooks/schedule/sync' ? { ...answer, children: [...answer.children, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }] } : answer);
    await w.at('2026-03-01T02:00:03Z');
    assert.match(w.mc.errors[errors] ?? '', /desired child ConfigMap backups\/x is a ConfigMap\.v1, not one of the controller's child resources/);
    assert.deepEqual(w.api.list('v1', 'ConfigMap', NS), []);

    proxy.tamper = (path, answer) => (path === '/hooks/schedule/sync' ? { ...answer, status: { ...answer.status, colour: 'red' } } : answer);
    await w.at('2026-03-01T02:00:10Z');
    assert.match(w.mc.errors.at(-1)!, /can't update status for TalosEtcdBackupSchedule backups\/nightly: status\.colour: unknown field/);
    assert.equal((w.api.get(API_VERSION, SCHEDULE_KIND, NS, 'nightly')!.status as J).colour, undefined);

    // The refused slot was not lost: once the hook's children are acceptable, its backup is created.
    assert.ok(backup(w, `nightly-${unix('2026-03-01T02:00:00Z')}`), 'the 02:00 slot is retried after the refusal');
    assert.throws(() => w.mc.apply(backupObject('both', { talosControlPlaneRef: { name: 'tcp' } })), /the API server would refuse TalosEtcdBackup backups\/both: spec: exactly one of/);
  });

  it('a hook whose answer changes on every call is reported as a hot loop instead of spinning forever', async () => {
    const w = await world();
    let n = 0;
    w.proxies[0]!.tamper = (path, answer) => {
      if (path === '/hooks/schedule/sync') answer.status.conditions[0].message = `call ${n++}`; // not deterministic
      return answer;
    };
    w.mc.apply(scheduleObject());
    await assert.rejects(w.mc.settle(), /settle\(\): more than 200 syncs .*a hook whose answer changes on every call/);
  });

  it('a write during the decorator hook call makes its status write conflict: that sync ends early, the next one finishes', async () => {
    const w = await world();
    const [proxy] = w.proxies as [Proxy];
    const jobsAtCall: number[] = [];
    proxy.before = (path) => {
      if (path !== '/hooks/backup/sync') return;
      jobsAtCall.push(w.api.list('batch/v1', 'Job', NS).length);
      if (jobsAtCall.length === 1) report(w, 'manual', 'Running'); // the Job's pod writes while the hook thinks
    };
    w.mc.apply(backupObject('manual'));
    await w.mc.settle();
    assert.deepEqual(jobsAtCall.slice(0, 2), [0, 0], 'the first sync created nothing');
    assert.ok(job(w, 'manual-snapshot'), 'the second sync attached the Job');
    assert.equal(phase(w, 'manual'), 'Running', 'and saw the report');
    assert.deepEqual(w.mc.errors, [], 'a conflict is not an error');
  });

  it('related objects from the customize hook: a TalosControlPlane that appears later re-syncs the backup', async () => {
    const w = await world();
    w.mc.apply(backupObject('tcp-backup', { talosConfigSecretRef: undefined, talosControlPlaneRef: { name: 'cp' } }));
    await w.mc.settle();
    assert.equal(phase(w, 'tcp-backup'), 'Pending');
    assert.deepEqual(attachments(w), []);
    const customize = w.mc.calls.find((c) => c.hook === 'customize')!;
    assert.deepEqual((customize.response as J).relatedResources, [{ apiVersion: API_VERSION, resource: 'taloscontrolplanes', namespace: NS, names: ['cp'] }]);

    w.mc.apply({ apiVersion: API_VERSION, kind: 'TalosControlPlane', metadata: { name: 'cp', namespace: NS }, spec: { mode: 'container' } });
    await w.mc.settle();
    const last = w.mc.calls.filter((c) => c.hook === 'sync').at(-1)!.request as J;
    assert.deepEqual(Object.keys(last.related[RELATED_CONTROL_PLANE_KEY]), ['cp']);
    assert.ok(job(w, 'tcp-backup-snapshot'), 'resolved: the Job is attached');
    assert.equal(w.mc.calls.filter((c) => c.hook === 'customize').length, 1);
    assert.deepEqual(w.mc.errors, []);
  });
});
