// The Metacontroller stand-in (metacontroller.ts) on the real control plane (etcd, kube-apiserver,
// kube-controller-manager) against the real hook server: schedules create backups on their slots, the decorator
// attaches and retires the snapshot Job with its identity, retention and finalizers clean up, the real garbage
// collector and Job controller do their part, and what Metacontroller does that an in-memory stand-in could not
// show: creates in GVK order through a rate-limited client, workers reading lagging caches, stale status writes
// dropped on 409, refused creates as Warning Events with retries, and a related kind whose CRD is missing.
// No kubelet runs: Jobs' pods stay Pending unless a test writes a pod's status itself (finishPod).

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, before, describe, it } from 'node:test';
import {
  API_VERSION,
  BACKUP_CHILDREN_KEY,
  BACKUP_KIND,
  JOB_KEY,
  RELATED_CONTROL_PLANE_KEY,
  RELATED_SCHEDULE_KEY,
  ROLE_BINDING_KEY,
  ROLE_KEY,
  SCHEDULE_KIND,
  SCHEDULED_TIME_ANNOTATION,
  SERVICE_ACCOUNT_KEY,
} from '../../src/api/constants.js';
import { backupTemplateSpec } from '../helpers/builders.js';
import type { BackupHookSettings } from '../../src/server/backup/settings.js';
import { startServer, type RunningServer } from '../helpers/server.js';
import { useControlPlane, type ControlPlane } from '../harness/control-plane.js';
import {
  installTalosOperatorCrds,
  loadManifests,
  parseGoDuration,
  sortGvkKeys,
  startMetacontroller,
  type HookCall,
  type KubeObject,
  type MetacontrollerOptions,
  type MetacontrollerStandIn,
} from './metacontroller.js';

type J = any;

const DECORATOR = 'talos-etcd-backup';
const COMPOSITE = 'talos-etcd-backup-schedule';
const FINALIZER = `metacontroller.io/decoratorcontroller-${DECORATOR}`;
const ATTACHMENT_KINDS: [string, string][] = [
  ['batch/v1', 'Job'],
  ['v1', 'ServiceAccount'],
  ['rbac.authorization.k8s.io/v1', 'Role'],
  ['rbac.authorization.k8s.io/v1', 'RoleBinding'],
];
const unix = (d: Date): number => Math.floor(d.getTime() / 1000);
const iso = (d: Date): string => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
const plus = (d: Date, ms: number): Date => new Date(d.getTime() + ms);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A bounded wait for something real time brings (the Job controller, the garbage collector); fails with `what`. */
async function until<T>(check: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    assert.ok(Date.now() < deadline, `timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(100);
  }
}

// ----- a hook "network": a proxy in front of the real server that can fail, hang, or rewrite answers

interface Proxy {
  url: string;
  /** 'pass' forwards; a number answers with that status; 'hang' never answers. */
  mode: 'pass' | 'hang' | number;
  /** Retry-After of a 429. */
  retryAfter?: string;
  /** Rewrites the real server's answer for a path. */
  tamper?: (path: string, answer: J) => J;
  /** Awaited with each request before it is forwarded (to race a write against the hook call). */
  before?: (path: string, request: J) => Promise<void> | void;
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
      await proxy.before?.(path, JSON.parse(text));
      if (proxy.mode === 'hang') return;
      if (typeof proxy.mode === 'number') {
        res
          .writeHead(proxy.mode, {
            'content-type': 'text/plain',
            ...(proxy.retryAfter !== undefined && { 'retry-after': proxy.retryAfter }),
          })
          .end('injected failure');
        return;
      }
      const answer = await fetch(`${target}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: text,
      });
      let body = await answer.text();
      if (answer.status === 200 && proxy.tamper) body = JSON.stringify(proxy.tamper(path, JSON.parse(body)));
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(body);
    })().catch((err: unknown) => {
      res.writeHead(502).end(String(err));
    });
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

// ----- one world per test: its own namespace, clock, hook server, proxies and stand-in on the shared control plane

interface World {
  cp: ControlPlane;
  mc: MetacontrollerStandIn;
  ns: string;
  proxies: Proxy[];
  now(): Date;
  /** The schedule's k-th slot (k ≥ 1): `<minute> * * * *`, the first about 30 minutes after the clock's start. */
  slot(k: number): Date;
  schedule: string;
  /** Moves the simulated clock to `date`, then settles. */
  at(date: Date): Promise<void>;
  close(): Promise<void>;
}

type WorldOptions = Partial<
  Pick<
    MetacontrollerOptions,
    'manifests' | 'controllers' | 'qps' | 'burst' | 'workers' | 'cacheLagMs' | 'maxSyncsPerSettle'
  >
> & { replicas?: number; backupHooks?: BackupHookSettings };

const worlds: World[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.close();
});

let namespaces = 0;

async function world(cp: ControlPlane, opts: WorldOptions = {}): Promise<World> {
  const ns = `mc-${++namespaces}-${Math.random().toString(36).slice(2, 7)}`;
  // The simulated clock starts just after real now: every object the test creates next has a creationTimestamp
  // (real, whole seconds) at or before it.
  let now = new Date(Math.ceil(Date.now() / 1000) * 1000 + 1000);
  const start = new Date(now);
  const clock = () => new Date(now);
  const minute = (start.getUTCMinutes() + 30) % 60;
  const first = new Date(start);
  first.setUTCMinutes(minute, 0, 0);
  if (first <= start) first.setTime(first.getTime() + 3_600_000);
  const server: RunningServer = await startServer({
    clock,
    ...(opts.backupHooks && { backupHooks: opts.backupHooks }),
  });
  const proxies = await Promise.all(Array.from({ length: opts.replicas ?? 1 }, () => startProxy(server.url)));
  const kubeConfig = await cp.kubeConfig();
  let mc: MetacontrollerStandIn | undefined;
  try {
    mc = await startMetacontroller({
      kubeConfig,
      hookUrls: proxies.map((p) => p.url),
      clock,
      namespaces: [ns],
      // Fast unless a test wants Metacontroller's own 5 QPS / burst 10.
      qps: opts.qps ?? 200,
      burst: opts.burst ?? 200,
      ...(opts.manifests && { manifests: opts.manifests }),
      ...(opts.controllers && { controllers: opts.controllers }),
      ...(opts.workers !== undefined && { workers: opts.workers }),
      ...(opts.cacheLagMs !== undefined && { cacheLagMs: opts.cacheLagMs }),
      ...(opts.maxSyncsPerSettle !== undefined && { maxSyncsPerSettle: opts.maxSyncsPerSettle }),
    });
    await mc.rest.request('POST', '/api/v1/namespaces', { body: { metadata: { name: ns } } });
    // What a namespace holds before any backup: the Secrets the Jobs read.
    for (const name of ['talosconfig', 's3-credentials'])
      await mc.rest.request('POST', `/api/v1/namespaces/${ns}/secrets`, { body: { metadata: { name }, data: {} } });
  } catch (err) {
    await mc?.stop();
    await Promise.all(proxies.map((p) => p.close()));
    await server.close();
    throw err;
  }
  const standIn = mc;
  const w: World = {
    cp,
    mc: standIn,
    ns,
    proxies,
    now: clock,
    slot: (k) => plus(first, (k - 1) * 3_600_000),
    schedule: `${minute} * * * *`,
    async at(date) {
      assert.ok(date.getTime() >= now.getTime(), 'the clock only moves forward');
      now = new Date(date);
      await standIn.settle();
    },
    async close() {
      await standIn.stop();
      await Promise.all(proxies.map((p) => p.close()));
      await server.close();
    },
  };
  worlds.push(w);
  return w;
}

// ----- objects

function scheduleObject(w: World, spec: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: API_VERSION,
    kind: SCHEDULE_KIND,
    metadata: { name: 'nightly', namespace: w.ns },
    spec: { schedule: w.schedule, retention: 2, backupTemplate: { spec: backupTemplateSpec() }, ...spec },
  };
}

function backupObject(w: World, name: string, spec: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: { name, namespace: w.ns },
    spec: { ...backupTemplateSpec(), ...spec },
  };
}

const backups = async (w: World): Promise<J[]> => w.mc.list(API_VERSION, BACKUP_KIND, w.ns);
const backup = async (w: World, name: string): Promise<J> => w.mc.get(API_VERSION, BACKUP_KIND, w.ns, name);
const schedule = async (w: World): Promise<J> => w.mc.get(API_VERSION, SCHEDULE_KIND, w.ns, 'nightly');
/** The decorator's attachments in the namespace (not the namespace's own `default` ServiceAccount). */
const attachments = async (w: World): Promise<J[]> =>
  (await Promise.all(ATTACHMENT_KINDS.map(([v, k]) => w.mc.list(v, k, w.ns))))
    .flat()
    .filter((o) => o.metadata.annotations?.['metacontroller.k8s.io/decorator-controller'] === DECORATOR);
const job = async (w: World, name: string): Promise<J> => w.mc.get('batch/v1', 'Job', w.ns, name);
const phase = async (w: World, name: string): Promise<string | undefined> => (await backup(w, name))?.status?.phase;
const syncCalls = (w: World, controller = DECORATOR): HookCall[] =>
  w.mc.calls.filter((c) => c.controller === controller && c.hook === 'sync');

/** What a Job's pod writes: status.report, a JSON merge patch on the status subresource. */
async function report(w: World, name: string, state: 'Running' | 'Succeeded'): Promise<void> {
  const snapshot = {
    bucket: 'etcd-backups',
    key: `talos/${name}.db`,
    size: 4096,
    sha256: 'ab'.repeat(32),
    etcdSha256: 'cd'.repeat(32),
    node: '10.0.0.2',
  };
  const updatedAt = iso(w.now());
  await w.mc.rest.request('PATCH', `/apis/${API_VERSION}/namespaces/${w.ns}/talosetcdbackups/${name}/status`, {
    contentType: 'application/merge-patch+json',
    body: {
      status: {
        report: {
          state,
          pod: `${name}-snapshot-x`,
          startedAt: updatedAt,
          updatedAt,
          bytesUploaded: 4096,
          ...(state === 'Succeeded' && { snapshot }),
        },
      },
    },
  });
}

/** What the kubelet would write for a Job's pod that ran to completion (exit 0); the real Job controller does the rest. */
async function finishPod(w: World, jobName: string): Promise<void> {
  const pod = await until(async () => {
    const list = await w.mc.rest.request<{ items: J[] }>('GET', `/api/v1/namespaces/${w.ns}/pods`, {
      query: { labelSelector: `job-name=${jobName}` },
    });
    return list.items[0];
  }, `a pod of Job ${jobName}`);
  const at = iso(new Date());
  pod.status = {
    ...pod.status,
    phase: 'Succeeded',
    containerStatuses: pod.spec.containers.map((c: J) => ({
      name: c.name,
      image: c.image,
      imageID: '',
      ready: false,
      restartCount: 0,
      state: { terminated: { exitCode: 0, reason: 'Completed', startedAt: at, finishedAt: at } },
    })),
  };
  await w.mc.rest.request('PUT', `/api/v1/namespaces/${w.ns}/pods/${pod.metadata.name}/status`, { body: pod });
}

/** The manifests with another webhook timeout (to test timeouts quickly). */
function manifestsWithTimeout(timeout: string): Record<string, unknown>[] {
  return loadManifests().map(
    (m) =>
      JSON.parse(JSON.stringify(m).replace(/"timeout":"10s"/g, `"timeout":"${timeout}"`)) as Record<string, unknown>,
  );
}

// =================================================================================================================

describe('Metacontroller stand-in: pure parts', () => {
  it('parses Go durations as the manifests write them', () => {
    assert.deepEqual(['10s', '300ms', '1m30s', '1.5h'].map(parseGoDuration), [10_000, 300, 90_000, 5_400_000]);
    assert.throws(() => parseGoDuration('10'), /invalid Go duration/);
  });

  it('orders object-map groups as GetAllGVKs does: by group, then version, then kind (not by the key text)', () => {
    const keys = [JOB_KEY, ROLE_KEY, ROLE_BINDING_KEY, SERVICE_ACCOUNT_KEY];
    assert.deepEqual(sortGvkKeys(keys), [SERVICE_ACCOUNT_KEY, JOB_KEY, ROLE_KEY, ROLE_BINDING_KEY]);
    assert.deepEqual(
      [...keys].sort(),
      [JOB_KEY, ROLE_KEY, ROLE_BINDING_KEY, SERVICE_ACCOUNT_KEY],
      'plain string order would differ',
    );
    assert.deepEqual(sortGvkKeys(['Pod.v1', 'Deployment.apps/v1beta1', 'Deployment.apps/v1', 'ConfigMap.v1']), [
      'ConfigMap.v1',
      'Pod.v1',
      'Deployment.apps/v1',
      'Deployment.apps/v1beta1',
    ]);
  });
});

describe('Metacontroller stand-in with the real hook server on a real API server', () => {
  const controlPlane = useControlPlane();
  let cp: ControlPlane;
  before(async () => {
    cp = controlPlane();
    await cp.installCrds();
    await installTalosOperatorCrds(cp);
  });

  it('a schedule gets exactly one backup per slot: owner reference, selector label, slot annotation, CRD defaults; the decorator attaches its Job', async () => {
    const w = await world(cp);
    const applied = await w.mc.apply(scheduleObject(w));
    assert.equal(applied.metadata.generation, 1);
    assert.equal((applied.spec as J).concurrencyPolicy, 'Forbid', 'the API server applied the schedule CRD default');
    await w.mc.settle();
    assert.deepEqual(await backups(w), [], 'no slot since the schedule was created');
    const first = w.mc.calls[0]!;
    assert.deepEqual(
      [first.controller, first.hook, first.key, first.url],
      [COMPOSITE, 'sync', `${w.ns}/nightly`, `${w.proxies[0]!.url}/hooks/schedule/sync`],
    );
    assert.deepEqual(
      (first.request as J).children,
      { [BACKUP_CHILDREN_KEY]: {} },
      'one entry per child rule, even empty',
    );
    assert.deepEqual(Object.keys(first.request as J).sort(), [
      'children',
      'controller',
      'finalizing',
      'parent',
      'related',
    ]);
    assert.equal((first.request as J).controller.apiVersion, undefined, 'the controller comes from a typed cache');
    assert.equal(
      (first.request as J).parent.metadata.uid,
      applied.metadata.uid,
      'the parent as the API server stores it',
    );
    let status = (await schedule(w)).status;
    assert.equal(status.observedGeneration, 1, 'Metacontroller injects observedGeneration');
    assert.equal(status.nextScheduleTime, iso(w.slot(1)));

    await w.at(plus(w.slot(1), -1000));
    assert.deepEqual(await backups(w), [], 'nothing before the slot (only resyncPeriodSeconds syncs)');
    await w.at(plus(w.slot(1), 1000));
    const name = `nightly-${unix(w.slot(1))}`;
    assert.deepEqual(
      (await backups(w)).map((b) => b.metadata.name),
      [name],
    );
    let b = await backup(w, name);
    assert.deepEqual(b.metadata.ownerReferences, [
      {
        apiVersion: API_VERSION,
        kind: SCHEDULE_KIND,
        name: 'nightly',
        uid: applied.metadata.uid,
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    assert.equal(b.metadata.labels['controller-uid'], applied.metadata.uid);
    assert.equal(b.metadata.annotations[SCHEDULED_TIME_ANNOTATION], iso(w.slot(1)));
    const lastApplied = JSON.parse(b.metadata.annotations['metacontroller.k8s.io/last-applied-configuration']);
    assert.equal(lastApplied.metadata.name, name, 'last-applied annotation: the child as the hook answered it');
    assert.equal(
      lastApplied.metadata.labels['controller-uid'],
      applied.metadata.uid,
      'with the label Metacontroller added',
    );
    assert.equal(b.spec.deletionPolicy, 'Retain', 'the API server applied the backup CRD default');
    assert.deepEqual(b.metadata.finalizers, [FINALIZER], 'the decorator has a finalize hook');
    assert.equal(b.metadata.generation, 1);

    // The decorator: Job, ServiceAccount, Role, RoleBinding, owned by the backup and marked as its attachments.
    const attached = await attachments(w);
    assert.deepEqual(attached.map((a) => a.kind).sort(), ['Job', 'Role', 'RoleBinding', 'ServiceAccount']);
    for (const a of attached)
      assert.deepEqual(a.metadata.ownerReferences, [
        {
          apiVersion: API_VERSION,
          kind: BACKUP_KIND,
          name,
          uid: b.metadata.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
    const last = syncCalls(w).at(-1)!.request as J;
    assert.deepEqual(
      Object.keys(last.attachments).sort(),
      [JOB_KEY, ROLE_KEY, ROLE_BINDING_KEY, SERVICE_ACCOUNT_KEY].sort(),
    );
    assert.deepEqual(
      Object.keys(last.attachments[JOB_KEY]),
      [`${name}-snapshot`],
      'hook v1: attachments keyed by name',
    );
    // The backup's own Namespace comes along (its deletion must not wait on a delete Job), keyed by name, and the
    // schedule that owns it (its restore-test request), by name.
    assert.deepEqual(Object.keys(last.related), ['Namespace.v1', RELATED_SCHEDULE_KEY]);
    assert.deepEqual(Object.keys(last.related['Namespace.v1']), [w.ns]);
    assert.deepEqual(Object.keys(last.related[RELATED_SCHEDULE_KEY]), ['nightly']);
    assert.equal(last.finalizing, false);
    assert.equal(
      w.mc.calls.filter((c) => c.hook === 'customize').length,
      1,
      'customize is cached per uid and generation',
    );

    // The real Job controller starts the Job (its pod stays Pending: no kubelet): the backup is Running.
    const started = await until(
      async () => (await job(w, `${name}-snapshot`))?.status?.startTime as string | undefined,
      'the Job controller starts the snapshot Job',
    );
    await w.mc.settle();
    b = await backup(w, name);
    assert.equal(b.status.phase, 'Running');
    assert.equal(b.status.startTime, started, "the Job's startTime, as the Job controller wrote it");

    status = (await schedule(w)).status;
    assert.deepEqual(status.activeBackups, [name], 'the schedule saw its child');
    assert.deepEqual(w.mc.errors, []);
    const settled = w.mc.calls.length;
    await w.mc.settle();
    assert.equal(w.mc.calls.length, settled, 'settled: no hot loop');

    // A spec change bumps generation; the status follows it.
    await w.mc.apply(scheduleObject(w, { retention: 3 }));
    await w.mc.settle();
    const updated = await schedule(w);
    assert.equal(updated.metadata.generation, 2);
    assert.equal(updated.status.observedGeneration, 2);
    assert.deepEqual(
      (await backups(w)).map((x) => x.metadata.name),
      [name],
      'OnDelete: the existing backup is untouched',
    );
  });

  it('status.report drives the backup status; a finished backup drops its attachments and the schedule counts it', async () => {
    const w = await world(cp);
    await w.mc.apply(scheduleObject(w));
    await w.mc.settle();
    await w.at(plus(w.slot(1), 1000));
    const name = `nightly-${unix(w.slot(1))}`;

    await report(w, name, 'Running');
    await w.mc.settle();
    assert.equal(await phase(w, name), 'Running');
    assert.deepEqual((await backup(w, name)).status.progress, { bytesUploaded: 4096 });

    await w.at(plus(w.slot(1), 120_000));
    await report(w, name, 'Succeeded');
    await w.mc.settle();
    const done = await backup(w, name);
    assert.equal(done.status.phase, 'Succeeded');
    assert.equal(done.status.snapshot.key, `talos/${name}.db`);
    assert.equal(done.status.report.state, 'Succeeded', "the Job's field survives the decorator's status replacements");
    assert.deepEqual(await attachments(w), [], 'the next sync left the attachments out: deleted');
    const status = (await schedule(w)).status;
    assert.deepEqual(status.activeBackups, []);
    assert.equal(status.lastSuccessfulBackupTime, iso(plus(w.slot(1), 120_000)));
    assert.deepEqual(w.mc.errors, []);
  });

  it('retention deletes the oldest successful backups (through the finalize hook); the resync period syncs every parent', async () => {
    const w = await world(cp);
    await w.mc.apply(scheduleObject(w, { retention: 2 }));
    await w.mc.settle();
    const names: string[] = [];
    for (const k of [1, 2, 3]) {
      await w.at(plus(w.slot(k), 1000));
      const name = `nightly-${unix(w.slot(k))}`;
      names.push(name);
      assert.ok(await backup(w, name), `${name} created`);
      await report(w, name, 'Succeeded');
      await w.mc.settle();
      assert.equal(await phase(w, name), 'Succeeded');
    }
    assert.deepEqual(
      (await backups(w)).map((b) => b.metadata.name),
      names.slice(1),
      'the oldest of three successful backups went',
    );
    const finalize = w.mc.calls.filter((c) => c.hook === 'finalize');
    // A sync queued before the finalizer's removal landed may call finalize again (Metacontroller does too: the hook
    // is idempotent), so the calls are counted by key; the first one already let the backup go.
    assert.deepEqual(
      [...new Set(finalize.map((c) => c.key))],
      [`${w.ns}/${names[0]}`],
      'deletionPolicy Retain: only the oldest is finalized',
    );
    assert.equal((finalize[0]!.request as J).finalizing, true);
    assert.ok((finalize[0]!.request as J).object.metadata.deletionTimestamp);
    assert.equal(finalize[0]!.applied?.finalizerRemoved, true);
    assert.deepEqual(await attachments(w), []);

    // resyncPeriodSeconds (300 in both manifests): every parent is synced again.
    const before = w.mc.calls.length;
    await w.at(plus(w.slot(3), 6 * 60_000));
    const resynced = w.mc.calls
      .slice(before)
      .map((c) => `${c.controller} ${c.hook} ${c.key}`)
      .sort();
    assert.deepEqual(resynced, [
      `${DECORATOR} sync ${w.ns}/${names[1]}`,
      `${DECORATOR} sync ${w.ns}/${names[2]}`,
      `${COMPOSITE} sync ${w.ns}/nightly`,
    ]);
    assert.deepEqual(w.mc.errors, []);
  });

  it('deleting a backup with deletionPolicy Delete attaches the delete Job; once the real Job controller completes it, the backup goes', async () => {
    const w = await world(cp);
    await w.mc.apply(backupObject(w, 'manual', { deletionPolicy: 'Delete' }));
    await w.mc.settle();
    assert.ok(await job(w, 'manual-snapshot'));
    await report(w, 'manual', 'Succeeded');
    await w.mc.settle();
    assert.equal(await phase(w, 'manual'), 'Succeeded');
    assert.deepEqual(await attachments(w), []);

    await w.mc.delete(API_VERSION, BACKUP_KIND, w.ns, 'manual');
    await w.mc.settle();
    const deleting = await backup(w, 'manual');
    assert.ok(deleting.metadata.deletionTimestamp, 'held by the finalizer');
    assert.match(deleting.status.deletion.message, /^Deleting s3:\/\/etcd-backups\/talos\/manual\.db$/);
    const deleteJob = await job(w, 'manual-delete');
    assert.equal(deleteJob.metadata.annotations['metacontroller.k8s.io/decorator-controller'], DECORATOR);
    assert.equal(deleteJob.metadata.ownerReferences[0].uid, deleting.metadata.uid);
    const finalize = w.mc.calls.filter((c) => c.hook === 'finalize').at(-1)!;
    assert.equal(finalize.url, `${w.proxies[0]!.url}/hooks/backup/finalize`);
    assert.equal((finalize.response as J).finalized, false);

    // The delete Job's pod succeeds; the real Job controller marks the Job Complete, the finalize hook lets the
    // backup go, and the garbage collector deletes the delete Job with its owner.
    await finishPod(w, 'manual-delete');
    await until(async () => {
      await w.mc.settle();
      return (await backup(w, 'manual')) === undefined;
    }, 'the backup finalized once the delete Job completed');
    const released = w.mc.calls.filter((c) => c.hook === 'finalize').at(-1)!;
    assert.equal((released.response as J).finalized, true);
    assert.ok(
      ((released.request as J).attachments[JOB_KEY]['manual-delete'].status.conditions as J[]).some(
        (c) => (c.type === 'Complete' || c.type === 'SuccessCriteriaMet') && c.status === 'True',
      ),
      "it saw the Job succeed (the Job controller's verdict)",
    );
    assert.equal(released.applied?.finalizerRemoved, true);
    await until(
      async () => (await attachments(w)).length === 0,
      'the garbage collector deletes the delete Job with its owner',
    );
    assert.deepEqual(w.mc.errors, []);
  });

  it('a hook that answers 500 or times out: error and Warning event recorded, nothing applied, retried later with backoff', async () => {
    const w = await world(cp, { manifests: manifestsWithTimeout('300ms') });
    const [proxy] = w.proxies as [Proxy];
    proxy.mode = 500;
    await w.mc.apply(scheduleObject(w));
    await w.mc.settle();
    assert.equal(w.mc.errors.length, 1);
    assert.equal(
      w.mc.errors[0],
      `${COMPOSITE} TalosEtcdBackupSchedule ${w.ns}/nightly: sync hook failed (version=v1): unsupported status code: 500 body: injected failure`,
    );
    assert.equal((await schedule(w)).status, undefined, 'nothing applied');
    const event = w.mc.events.find((e) => e.reason === 'SyncError')!;
    assert.deepEqual(
      [event.type, event.message, event.involvedObject.name],
      [
        'Warning',
        `Sync error: sync hook failed (version=v1): unsupported status code: 500 body: injected failure`,
        'nightly',
      ],
    );
    await w.mc.settle();
    assert.equal(w.mc.calls.length, 1, 'the retry waits for its backoff on the simulated clock');
    assert.deepEqual(
      w.mc.pending().map((p) => [p.name, p.reason, p.dueAt.getTime() - w.now().getTime()]),
      [['nightly', 'backoff', 5]],
    );

    proxy.mode = 'hang';
    await w.at(plus(w.now(), 1000));
    assert.equal(w.mc.errors.length, 2);
    assert.match(
      w.mc.errors[1]!,
      /sync hook failed \(version=v1\): http error: Post ".*\/hooks\/schedule\/sync": context deadline exceeded \(Client\.Timeout exceeded while awaiting headers; timeout 300ms\)$/,
    );
    assert.match(w.mc.calls[1]!.error!, /Client\.Timeout exceeded/);
    assert.equal(
      w.mc.pending()[0]!.dueAt.getTime() - w.now().getTime(),
      10,
      'the second failure backs off twice as long',
    );

    proxy.mode = 'pass';
    await w.at(plus(w.now(), 1000));
    assert.equal((await schedule(w)).status.observedGeneration, 1, 'applied once the hook answers');
    assert.equal(w.mc.errors.length, 2);
    // Both Warning Events (two different messages) are in the API server.
    const stored = await w.mc.rest.request<{ items: J[] }>('GET', `/api/v1/namespaces/${w.ns}/events`, {
      query: { fieldSelector: 'involvedObject.name=nightly,reason=SyncError' },
    });
    assert.deepEqual(stored.items.map((e) => [e.type, e.source.component, e.involvedObject.kind]).sort(), [
      ['Warning', 'metacontroller', SCHEDULE_KIND],
      ['Warning', 'metacontroller', SCHEDULE_KIND],
    ]);
  });

  it('a hook answering 429 with Retry-After: no error, the sync is requeued after that many (simulated) seconds', async () => {
    const w = await world(cp);
    const [proxy] = w.proxies as [Proxy];
    proxy.mode = 429;
    proxy.retryAfter = '30';
    await w.mc.apply(scheduleObject(w));
    await w.mc.settle();
    assert.deepEqual(w.mc.errors, [], 'back-pressure is not an error');
    assert.deepEqual(w.mc.events, []);
    assert.deepEqual(
      w.mc.pending().map((p) => [p.name, p.reason, p.dueAt.getTime() - w.now().getTime()]),
      [['nightly', 'retryAfter', 30_000]],
    );
    proxy.mode = 'pass';
    await w.at(plus(w.now(), 29_000));
    assert.equal(w.mc.calls.length, 1, 'not before Retry-After');
    await w.at(plus(w.now(), 1_000));
    assert.equal(w.mc.calls.length >= 2, true);
    assert.equal((await schedule(w)).status.observedGeneration, 1);
  });

  it('two hook URLs (replicas) are called in turn', async () => {
    const w = await world(cp, { replicas: 2 });
    await w.mc.apply(scheduleObject(w));
    await w.mc.settle();
    await w.at(plus(w.slot(1), 1000));
    assert.ok(w.mc.calls.length >= 4);
    w.mc.calls.forEach((c, i) =>
      assert.ok(c.url.startsWith(`${w.proxies[i % 2]!.url}/hooks/`), `call ${i} went to replica ${i % 2}`),
    );
    assert.deepEqual(w.mc.errors, []);
  });

  it('the API server checks what the hooks answer: an invalid child is refused, defaults applied, an unknown status field pruned; an undeclared kind fails the sync', async () => {
    const w = await world(cp);
    const [proxy] = w.proxies as [Proxy];
    await w.mc.apply(scheduleObject(w, { concurrencyPolicy: 'Allow' }));
    await w.mc.settle();
    let drop = 'deletionPolicy';
    const exists = new Set<string>();
    // Rewrites only the child the answer creates (existing ones are re-emitted as observed).
    proxy.tamper = (path, answer) => {
      if (path === '/hooks/schedule/sync')
        for (const child of answer.children) if (!exists.has(child.metadata.name)) delete child.spec[drop];
      return answer;
    };
    await w.at(plus(w.slot(1), 1000));
    const first = `nightly-${unix(w.slot(1))}`;
    exists.add(first);
    assert.equal((await backup(w, first)).spec.deletionPolicy, 'Retain', 'the CRD default (the API server applied it)');
    assert.deepEqual(w.mc.errors, []);

    drop = 'backupStorage';
    await w.at(plus(w.slot(2), 1000));
    const second = `nightly-${unix(w.slot(2))}`;
    assert.equal(await backup(w, second), undefined, 'refused by the API server');
    assert.ok(w.mc.errors.length >= 1);
    for (const error of w.mc.errors) {
      assert.match(
        error,
        new RegExp(
          `can't reconcile children for TalosEtcdBackupSchedule ${w.ns}/nightly: TalosEtcdBackup\\.talos\\.alperen\\.cloud "${second}" is invalid: \\[?spec\\.backupStorage: Required value`,
        ),
      );
    }
    assert.ok(
      w.mc.events.some(
        (e) =>
          e.type === 'Warning' && e.reason === 'SyncError' && e.message.includes('spec.backupStorage: Required value'),
      ),
      'a Warning event on the schedule',
    );
    const refusal = syncCalls(w, COMPOSITE).at(-1)!;
    assert.equal(refusal.applied?.refused.length, 1);
    assert.equal(
      refusal.applied?.statusWritten !== undefined,
      true,
      'the status is still written after a refused create',
    );

    const errors = w.mc.errors.length;
    proxy.tamper = (path, answer) =>
      path === '/hooks/schedule/sync'
        ? {
            ...answer,
            children: [...answer.children, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }],
          }
        : answer;
    await w.at(plus(w.slot(2), 3000));
    assert.match(
      w.mc.errors[errors] ?? '',
      /desired child ConfigMap .*\/x is a ConfigMap\.v1, not one of the controller's child resources/,
    );
    assert.deepEqual(
      (await w.mc.list('v1', 'ConfigMap', w.ns)).map((c) => c.metadata.name),
      ['kube-root-ca.crt'],
      'no ConfigMap of ours',
    );

    // An undeclared status field: the API server prunes it, so the status differs on every sync and is written on
    // every sync (a write the server turns into a no-op: the stored object does not change, so no hot loop).
    proxy.tamper = (path, answer) =>
      path === '/hooks/schedule/sync' ? { ...answer, status: { ...answer.status, colour: 'red' } } : answer;
    await w.at(plus(w.slot(2), 10_000));
    // The refused slot was not lost: once the hook's children are acceptable, its backup is created.
    assert.ok(await backup(w, second), 'the refused slot is retried after the refusal');
    const stored = await schedule(w);
    assert.equal(stored.status.colour, undefined, 'pruned by the API server');
    const before = syncCalls(w, COMPOSITE).length;
    w.mc.enqueue({ controller: COMPOSITE, namespace: w.ns, name: 'nightly' });
    await w.mc.settle();
    const again = syncCalls(w, COMPOSITE).slice(before);
    assert.deepEqual(
      again.map((c) => c.applied?.statusWritten),
      [true],
      'a status write on every sync',
    );
    assert.equal(
      (await schedule(w)).metadata.resourceVersion,
      stored.metadata.resourceVersion,
      'that the API server makes a no-op',
    );

    await assert.rejects(
      w.mc.apply(backupObject(w, 'both', { talosControlPlaneRef: { name: 'tcp' } })),
      /exactly one of talosControlPlaneRef and talosConfigSecretRef must be set/,
    );
  });

  it('a hook whose answer changes on every call is reported as a hot loop instead of spinning forever', async () => {
    const w = await world(cp, { maxSyncsPerSettle: 25 });
    let n = 0;
    w.proxies[0]!.tamper = (path, answer) => {
      if (path === '/hooks/schedule/sync') answer.status.conditions[0].message = `call ${n++}`; // not deterministic
      return answer;
    };
    await w.mc.apply(scheduleObject(w));
    await assert.rejects(w.mc.settle(), /settle\(\): more than 25 syncs .*a hook whose answer changes on every call/);
    w.proxies[0]!.tamper = undefined;
    await w.mc.settle();
  });

  it('a write during the decorator hook call makes its status write conflict: that sync ends early, the next one finishes', async () => {
    const w = await world(cp);
    const [proxy] = w.proxies as [Proxy];
    const jobsAtCall: number[] = [];
    proxy.before = async (path) => {
      if (path !== '/hooks/backup/sync') return;
      jobsAtCall.push((await w.mc.list('batch/v1', 'Job', w.ns)).length);
      if (jobsAtCall.length === 1) await report(w, 'manual', 'Running'); // the Job's pod writes while the hook thinks
    };
    await w.mc.apply(backupObject(w, 'manual'));
    await w.mc.settle();
    const [first] = syncCalls(w);
    assert.deepEqual(
      first?.applied && {
        conflict: first.applied.conflict,
        statusWritten: first.applied.statusWritten,
        created: first.applied.created.length,
      },
      { conflict: true, statusWritten: false, created: 0 },
      'the first sync got 409 and created nothing',
    );
    assert.ok(
      ((first!.response as J).attachments as unknown[]).length === 4,
      'although its answer asked for the attachments',
    );
    assert.deepEqual(jobsAtCall.slice(0, 2), [0, 0], 'the second sync saw no Job either');
    assert.ok(await job(w, 'manual-snapshot'), 'the second sync attached the Job');
    assert.equal(await phase(w, 'manual'), 'Running', 'and saw the report');
    assert.deepEqual(w.mc.errors, [], 'a conflict is not an error');
  });

  it('decorator answers are decoded loosely: labels and annotations are written (null deletes one), unknown and mis-cased fields are ignored', async () => {
    const w = await world(cp);
    w.proxies[0]!.tamper = (path, answer) =>
      path === '/hooks/backup/sync'
        ? {
            ...answer,
            labels: { 'example.com/phase': answer.status.phase, 'example.com/stale': null },
            annotations: { 'example.com/note': 'seen' },
            Status: { phase: 'Failed' },
            unknownField: true,
          }
        : answer;
    await w.mc.apply({
      ...backupObject(w, 'labelled'),
      metadata: { name: 'labelled', namespace: w.ns, labels: { 'example.com/stale': 'yes', keep: 'me' } },
    });
    await w.mc.settle();
    const b = await backup(w, 'labelled');
    assert.equal(b.metadata.labels['example.com/phase'], b.status.phase, 'the label follows the answer');
    assert.equal(b.metadata.labels['example.com/stale'], undefined, 'null deletes a label');
    assert.equal(b.metadata.labels.keep, 'me', 'other labels stay');
    assert.equal(b.metadata.annotations['example.com/note'], 'seen');
    assert.match(b.status.phase, /^(Pending|Running)$/, 'the mis-cased "Status" is not the status');
    assert.ok(
      syncCalls(w).some((c) => c.applied?.parentUpdated),
      'an Update of the backup wrote them',
    );
    assert.deepEqual(w.mc.errors, []);
  });

  it('related objects from the customize hook: a TalosControlPlane that appears later re-syncs the backup', async () => {
    const w = await world(cp);
    await w.mc.apply(
      backupObject(w, 'tcp-backup', { talosConfigSecretRef: undefined, talosControlPlaneRef: { name: 'cp' } }),
    );
    await w.mc.settle();
    assert.equal(await phase(w, 'tcp-backup'), 'Pending');
    assert.deepEqual(await attachments(w), []);
    const customize = w.mc.calls.find((c) => c.hook === 'customize')!;
    assert.deepEqual((customize.response as J).relatedResources, [
      { apiVersion: 'v1', resource: 'namespaces', names: [w.ns] },
      { apiVersion: API_VERSION, resource: 'taloscontrolplanes', namespace: w.ns, names: ['cp'] },
    ]);
    assert.deepEqual(
      (syncCalls(w).at(-1)!.request as J).related[RELATED_CONTROL_PLANE_KEY],
      {},
      'the related group, empty',
    );

    await w.mc.apply({
      apiVersion: API_VERSION,
      kind: 'TalosControlPlane',
      metadata: { name: 'cp', namespace: w.ns },
      spec: { mode: 'container' },
    });
    await w.mc.settle();
    const last = syncCalls(w).at(-1)!.request as J;
    assert.deepEqual(Object.keys(last.related[RELATED_CONTROL_PLANE_KEY]), ['cp']);
    assert.ok(await job(w, 'tcp-backup-snapshot'), 'resolved: the Job is attached');
    assert.equal(w.mc.calls.filter((c) => c.hook === 'customize').length, 1);
    assert.deepEqual(w.mc.errors, []);
  });

  it("attachments are created group by group in GVK order through a client limited like Metacontroller's (5 QPS, burst 10)", async () => {
    const w = await world(cp, { qps: 5, burst: 10 });
    for (const name of ['order-a', 'order-b', 'order-c']) await w.mc.apply(backupObject(w, name));
    await w.mc.settle();
    for (const name of ['order-a', 'order-b', 'order-c']) {
      // The API server's resourceVersions (etcd revisions) order the creates.
      const created = (await attachments(w))
        .filter((a) => a.metadata.ownerReferences[0].name === name)
        .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
      assert.deepEqual(
        created.map((a) => a.kind),
        ['ServiceAccount', 'Job', 'Role', 'RoleBinding'],
        `${name}: creation order seen by the API server`,
      );
      const call = syncCalls(w).find((c) => c.name === name && (c.applied?.created.length ?? 0) > 0)!;
      assert.deepEqual(
        call.applied!.created.map((o) => o.kind),
        ['ServiceAccount', 'Job', 'Role', 'RoleBinding'],
      );
    }
    // The token bucket: the n-th request (0-based) cannot leave before (n + 1 - burst) / qps seconds after the first.
    const sent = w.mc.apiRequests.map((r) => r.sentAt);
    assert.ok(sent.length > 20, `${sent.length} requests`);
    sent.forEach((t, n) =>
      assert.ok(t - sent[0]! >= ((n + 1 - 10) / 5) * 1000 - 5, `request ${n} left ${t - sent[0]!} ms after the first`),
    );
    assert.deepEqual(w.mc.errors, []);
  });

  it('several workers on lagging caches: different backups in parallel, one key never twice at once, stale writes dropped, everything converges', async () => {
    const w = await world(cp, { workers: 5, cacheLagMs: 300 });
    const names = Array.from({ length: 6 }, (_, i) => `lag-${i}`);
    await Promise.all(names.map((name) => w.mc.apply(backupObject(w, name))));
    await w.mc.settle();
    const runs = w.mc.syncs.filter((s) => s.controller === DECORATOR);
    const overlaps = (a: (typeof runs)[number], b: (typeof runs)[number]) =>
      a.startedAt < b.finishedAt! && b.startedAt < a.finishedAt!;
    let parallel = 0;
    runs.forEach((a, i) =>
      runs.slice(i + 1).forEach((b) => {
        if (!overlaps(a, b)) return;
        assert.notEqual(
          `${a.namespace}/${a.name}`,
          `${b.namespace}/${b.name}`,
          'the same key was synced by two workers at once',
        );
        parallel += 1;
      }),
    );
    assert.ok(parallel > 0, 'different keys were synced in parallel');
    // A sync that read an object older than what it had itself written (the cache lags 300 ms) got 409 on its status write.
    const stale = syncCalls(w).filter((c) => c.applied?.conflict);
    assert.ok(stale.length > 0, 'a stale read was dropped on 409');
    for (const c of stale)
      assert.deepEqual(
        [c.applied!.created.length, c.applied!.deleted.length],
        [0, 0],
        'a dropped sync changes no attachment',
      );
    for (const name of names) {
      assert.deepEqual(
        (await attachments(w))
          .filter((a) => a.metadata.ownerReferences[0].name === name)
          .map((a) => a.kind)
          .sort(),
        ['Job', 'Role', 'RoleBinding', 'ServiceAccount'],
        `${name}: its four attachments, once`,
      );
      assert.match((await phase(w, name)) ?? '', /^(Pending|Running)$/);
    }
    assert.deepEqual(w.mc.errors, []);
  });

  it('a status write based on a stale cache (the backup informer lags 1 s) is dropped on 409 and the sync ends before attachments', async () => {
    const w = await world(cp, {
      controllers: [DECORATOR],
      cacheLagMs: (resource) => (resource === 'talosetcdbackups' ? 1000 : 0),
    });
    await w.mc.apply(backupObject(w, 'stale'));
    await w.mc.settle();
    const calls = syncCalls(w);
    const conflicted = calls.find((c) => c.applied?.conflict);
    assert.ok(conflicted, `a conflict among ${calls.length} syncs`);
    const earlier = calls.slice(0, calls.indexOf(conflicted));
    assert.ok(
      earlier.some((c) => c.applied?.statusWritten),
      'an earlier sync had written the status',
    );
    assert.equal(
      (conflicted.request as J).object.status,
      undefined,
      'the conflicting sync read the backup from before that write',
    );
    assert.deepEqual([conflicted.applied!.statusWritten, conflicted.applied!.created.length], [false, 0]);
    assert.match(
      (await backup(w, 'stale')).status.phase,
      /^(Pending|Running)$/,
      'Running once the Job controller started the Job',
    );
    assert.equal((await attachments(w)).length, 4);
    assert.deepEqual(w.mc.errors, []);
  });

  it('a create the API server refuses (ResourceQuota count/jobs.batch: 0) is a Warning Event on the backup and retried with backoff until the quota goes', async () => {
    const w = await world(cp);
    await w.mc.rest.request('POST', `/api/v1/namespaces/${w.ns}/resourcequotas`, {
      body: { metadata: { name: 'no-jobs' }, spec: { hard: { 'count/jobs.batch': '0' } } },
    });
    await until(
      async () => (await w.mc.rest.request<J>('GET', `/api/v1/namespaces/${w.ns}/resourcequotas/no-jobs`)).status?.hard,
      'the resourcequota controller computes the quota',
    );
    await w.mc.apply(backupObject(w, 'quota'));
    await w.mc.settle();
    assert.equal(await job(w, 'quota-snapshot'), undefined, 'the Job create was refused');
    assert.deepEqual(
      (await attachments(w)).map((a) => a.kind).sort(),
      ['Role', 'RoleBinding', 'ServiceAccount'],
      'the other creates went on',
    );
    assert.equal(await phase(w, 'quota'), 'Pending', 'the status was written before the attachments');
    const expected = new RegExp(
      `^Sync error: can't reconcile children for TalosEtcdBackup ${w.ns}/quota: jobs\\.batch "quota-snapshot" is forbidden: exceeded quota: no-jobs`,
    );
    const event = w.mc.events.find((e) => e.reason === 'SyncError');
    assert.ok(event && event.type === 'Warning' && expected.test(event.message), JSON.stringify(w.mc.events));
    assert.deepEqual(event.involvedObject.name, 'quota');
    const pendingRetry = w.mc.pending().find((p) => p.name === 'quota');
    assert.equal(pendingRetry?.reason, 'backoff');

    // Retried with backoff: the hook sees the Job still absent; the Event counts the repetition.
    await w.at(plus(w.now(), 1000));
    const retry = syncCalls(w).at(-1)!;
    assert.deepEqual((retry.request as J).attachments[JOB_KEY], {}, 'the hook just sees no Job');
    assert.equal(retry.applied?.refused.length, 1);
    assert.ok(event.count >= 2, `the repetition is counted (${event.count})`);
    await w.mc.settle();
    const stored = await w.mc.rest.request<{ items: J[] }>('GET', `/api/v1/namespaces/${w.ns}/events`, {
      query: { fieldSelector: 'involvedObject.name=quota,reason=SyncError' },
    });
    assert.deepEqual(
      stored.items.map((e) => [e.type, e.count, expected.test(e.message)]),
      [['Warning', event.count, true]],
      'one Warning Event in the API server, with the count',
    );

    await w.mc.rest.request('DELETE', `/api/v1/namespaces/${w.ns}/resourcequotas/no-jobs`);
    await until(async () => {
      await w.at(plus(w.now(), 2000)); // past the backoff on the simulated clock
      return job(w, 'quota-snapshot');
    }, 'the Job created once the quota is gone');
    assert.match((await phase(w, 'quota')) ?? '', /^(Pending|Running)$/);
    assert.equal((await attachments(w)).length, 4);
  });

  // Last in this suite: kube-controller-manager's garbage collector picks up resources of newly installed CRDs
  // (the backups) only at its next discovery resync (every 30 s), and by now that has happened.
  it('deleting the schedule removes its backups and every attachment (the real garbage collector); only the Secrets stay', async () => {
    const w = await world(cp);
    await w.mc.apply(scheduleObject(w, { concurrencyPolicy: 'Allow' }));
    await w.mc.settle();
    await w.at(plus(w.slot(1), 1000));
    await report(w, `nightly-${unix(w.slot(1))}`, 'Succeeded');
    await w.at(plus(w.slot(2), 1000));
    await w.at(plus(w.slot(3), 1000));
    assert.equal((await backups(w)).length, 3);
    assert.equal((await attachments(w)).length, 8, 'two running backups with four attachments each');

    await w.mc.delete(API_VERSION, SCHEDULE_KIND, w.ns, 'nightly');
    await w.mc.settle();
    assert.equal(await schedule(w), undefined);
    // The garbage collector deletes the backups (held by the decorator's finalizer until finalized), then their attachments.
    await until(async () => {
      await w.mc.settle();
      return (await backups(w)).length === 0 && (await attachments(w)).length === 0;
    }, 'backups and attachments deleted');
    assert.deepEqual(
      (await w.mc.list('v1', 'Secret', w.ns)).map((s) => s.metadata.name),
      ['s3-credentials', 'talosconfig'],
    );
    assert.equal(w.mc.calls.filter((c) => c.hook === 'finalize').length >= 3, true, 'each backup was finalized');
    assert.deepEqual(w.mc.errors, []);
  });
});

describe('Metacontroller stand-in without talos-operator installed (no TalosControlPlane CRD)', () => {
  const controlPlane = useControlPlane();
  let cp: ControlPlane;
  before(async () => {
    cp = controlPlane();
    await cp.installCrds();
  });

  it('with TALOS_OPERATOR=false (the chart found no such CRD) a talosControlPlaneRef backup fails at once, saying why, and can be deleted', async () => {
    const w = await world(cp, {
      controllers: [DECORATOR],
      backupHooks: { attachmentDeadlineSeconds: 600, talosOperator: false },
    });
    await w.mc.apply(
      backupObject(w, 'no-operator', { talosConfigSecretRef: undefined, talosControlPlaneRef: { name: 'cp' } }),
    );
    await w.mc.settle();
    const b = await backup(w, 'no-operator');
    assert.equal(b.status?.phase, 'Failed');
    assert.equal(
      b.status?.message,
      'Failed to get TalosControlPlane: TalosControlPlane CRD not found when talos-etcd-backup was installed (TALOS_OPERATOR=false): install talos-operator and run helm upgrade, or use talosConfigSecretRef',
    );
    assert.deepEqual(w.mc.errors, [], 'Metacontroller was never asked for the missing kind');
    await w.mc.delete(API_VERSION, BACKUP_KIND, w.ns, 'no-operator');
    await until(async () => {
      await w.at(plus(w.now(), 1000));
      return (await backup(w, 'no-operator')) === undefined;
    }, 'the backup to be deleted');
  });

  it('a related kind that is not served fails the sync and the finalize before the hook is called (no status, the finalizer stays); installing the CRD unblocks both', async () => {
    const w = await world(cp, { controllers: [DECORATOR] });
    const spec = { talosConfigSecretRef: undefined, talosControlPlaneRef: { name: 'cp' } };
    await w.mc.apply(backupObject(w, 'going', spec));
    await w.mc.apply(backupObject(w, 'staying', spec));
    await w.mc.settle();
    const missing = /discovery: can't find resource taloscontrolplanes in apiVersion talos\.alperen\.cloud\/v1alpha1$/;
    // (Customize may be asked more than once: Namespace events re-ask it for every parent.)
    assert.deepEqual(
      w.mc.calls.filter((c) => c.hook !== 'customize'),
      [],
      'only customize was asked; no sync hook call',
    );
    for (const name of ['going', 'staying']) {
      const b = await backup(w, name);
      assert.equal(b.status, undefined, `${name}: no status written`);
      assert.deepEqual(b.metadata.finalizers, [FINALIZER], `${name}: the finalizer was added before the failure`);
    }
    assert.ok(w.mc.errors.length >= 2 && w.mc.errors.every((e) => missing.test(e)), JSON.stringify(w.mc.errors));
    assert.ok(
      w.mc.events.some(
        (e) =>
          e.reason === 'SyncError' &&
          e.type === 'Warning' &&
          e.involvedObject.name === 'going' &&
          missing.test(e.message),
      ),
    );

    // Deleting it: the finalize hook is never called either, so it stays (Terminating) with its finalizer.
    await w.mc.delete(API_VERSION, BACKUP_KIND, w.ns, 'going');
    for (let i = 0; i < 3; i++) await w.at(plus(w.now(), 1000));
    const stuck = await backup(w, 'going');
    assert.ok(stuck.metadata.deletionTimestamp);
    assert.deepEqual(stuck.metadata.finalizers, [FINALIZER]);
    assert.deepEqual(
      w.mc.calls.filter((c) => c.hook !== 'customize'),
      [],
      'neither sync nor finalize was called',
    );
    assert.deepEqual(await w.mc.list('batch/v1', 'Job', w.ns), []);

    // talos-operator's CRDs appear: discovery finds the kind, the next retries call the hooks.
    await installTalosOperatorCrds(cp);
    await until(async () => {
      await w.at(plus(w.now(), 1000)); // past the backoff on the simulated clock
      return (await backup(w, 'going')) === undefined && (await backup(w, 'staying'))?.status;
    }, 'the finalize lets the deleted backup go and the sync writes the other one’s status');
    // (A second finalize call may come from the cache still holding the object after its status write: the hook
    // answers the same, and the stale write is dropped.)
    const finalize = w.mc.calls.filter((c) => c.hook === 'finalize');
    assert.ok(
      finalize.length >= 1 && finalize.every((c) => c.name === 'going' && (c.response as J).finalized === true),
      JSON.stringify(finalize.map((c) => [c.name, c.response])),
    );
    assert.equal(finalize.filter((c) => c.applied?.finalizerRemoved).length, 1, 'one of them removed the finalizer');
    const staying = await backup(w, 'staying');
    assert.equal(staying.status.phase, 'Pending');
    assert.match(
      staying.status.conditions.find((c: J) => c.type === 'Progressing').message,
      /TalosControlPlane .*\/cp: not found/,
    );
  });
});
