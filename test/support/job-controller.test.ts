// Proves the Job controller stand-in (job-controller.ts) with tiny `node -e` containers: the status it writes for
// success, retries up to backoffLimit, the podFailurePolicy rules, activeDeadlineSeconds on the simulated clock,
// a deleted Job (SIGTERM the pod can clean up on), a pod that cannot start, and the pod's API access through its
// service-account token being exactly what its Role grants.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { startJobController, type JobController } from './job-controller.js';
import { startFakeKubeApi, type FakeKubeApi, type KubeObject } from './kube-api.js';

const NS = 'jobs';
const START = new Date('2026-11-21T10:00:00Z');
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const at = (seconds: number): string => new Date(START.getTime() + seconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');

interface JobStatus {
  startTime?: string;
  completionTime?: string;
  active?: number;
  succeeded?: number;
  failed?: number;
  terminating?: number;
  conditions?: Array<{ type: string; status: string; reason: string; message: string; lastTransitionTime: string }>;
}

/** A Job running `node -e script` in container `main` (restartPolicy Never, no token unless the pod asks). */
function job(name: string, script: string, spec: Record<string, unknown> = {}, pod: Record<string, unknown> = {}, container: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: NS },
    spec: {
      backoffLimit: 6,
      ...spec,
      template: { spec: { restartPolicy: 'Never', automountServiceAccountToken: false, ...pod, containers: [{ name: 'main', command: ['node', '-e', script], ...container }] } },
    },
  };
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const conditions = (status: JobStatus) => (status.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message, c.lastTransitionTime]);

describe('Job controller stand-in', () => {
  let api: FakeKubeApi;
  let jobs: JobController;
  let now: Date;
  let dir: string;
  const statusOf = (name: string): JobStatus => (api.get('batch/v1', 'Job', NS, name)?.status ?? {}) as JobStatus;
  const podsOf = (name: string) => jobs.pods.filter((p) => p.job === name);

  before(async () => {
    api = await startFakeKubeApi({ clock: () => now });
    dir = await mkdtemp(join(tmpdir(), 'job-controller-test-'));
  });
  beforeEach(async () => {
    await jobs?.stop();
    now = new Date(START);
    jobs = startJobController({ api, clock: () => now, imagePaths: {}, extraEnv: { EXTRA: 'from-test' }, retryDelayMs: 20 });
  });
  after(async () => {
    await jobs?.stop();
    await api?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('runs the pod with its env and Secret volume; exit 0 completes the Job with its timestamps', async () => {
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds', namespace: NS }, data: { password: b64('s3cret'), user: b64('admin') } });
    const script = `setTimeout(() => console.log(JSON.stringify({
      file: require('node:fs').readFileSync(process.env.PASSWORD_FILE, 'utf8'), user: process.env.USER_NAME,
      host: process.env.HOSTNAME, jobName: process.env.JOB_NAME, extra: process.env.EXTRA })), 300)`;
    api.put(
      job('ok', script, {}, { volumes: [{ name: 'creds', secret: { secretName: 'creds' } }] }, {
        env: [
          { name: 'PASSWORD_FILE', value: '/etc/creds/password' },
          { name: 'USER_NAME', valueFrom: { secretKeyRef: { name: 'creds', key: 'user' } } },
          { name: 'JOB_NAME', valueFrom: { fieldRef: { fieldPath: "metadata.labels['batch.kubernetes.io/job-name']" } } },
        ],
        volumeMounts: [{ name: 'creds', mountPath: '/etc/creds' }],
      }),
    );
    await waitFor('the pod', () => jobs.running().length === 1);
    assert.deepEqual(statusOf('ok'), { startTime: at(0), active: 1, terminating: 0, uncountedTerminatedPods: {} });
    now = new Date(START.getTime() + 30_000);
    await jobs.idle();

    const [pod, ...others] = podsOf('ok');
    assert.deepEqual(others, []);
    assert.equal(pod!.exitCode, 0, pod!.stderr);
    assert.deepEqual(JSON.parse(pod!.stdout), { file: 's3cret', user: 'admin', host: 'ok-1-local', jobName: 'ok', extra: 'from-test' });
    assert.deepEqual({ ...pod, stdout: undefined, pid: typeof pod!.pid }, { job: 'ok', namespace: NS, attempt: 1, pid: 'number', startedAt: START, exitCode: 0, signal: null, stdout: undefined, stderr: '', configErrors: [] });
    const status = statusOf('ok');
    assert.deepEqual({ ...status, conditions: undefined }, { conditions: undefined, startTime: at(0), completionTime: at(30), succeeded: 1, terminating: 0, uncountedTerminatedPods: {} });
    assert.deepEqual(conditions(status), [
      ['SuccessCriteriaMet', 'True', 'CompletionsReached', 'Reached expected number of succeeded pods', at(30)],
      ['Complete', 'True', 'CompletionsReached', 'Reached expected number of succeeded pods', at(30)],
    ]);
    assert.deepEqual(jobs.running(), []);
  });

  it('retries a failing pod until failed > backoffLimit, then fails with BackoffLimitExceeded', async () => {
    api.put(job('flaky', 'console.error("boom " + process.env.HOSTNAME); process.exit(1)', { backoffLimit: 1 }));
    await jobs.idle();
    assert.deepEqual(podsOf('flaky').map((p) => [p.attempt, p.exitCode, p.stderr]), [
      [1, 1, 'boom flaky-1-local\n'],
      [2, 1, 'boom flaky-2-local\n'],
    ]);
    const status = statusOf('flaky');
    assert.equal(status.failed, 2);
    assert.equal(status.active, undefined);
    assert.equal(status.completionTime, undefined);
    assert.deepEqual(conditions(status), [
      ['FailureTarget', 'True', 'BackoffLimitExceeded', 'Job has reached the specified backoff limit', at(0)],
      ['Failed', 'True', 'BackoffLimitExceeded', 'Job has reached the specified backoff limit', at(0)],
    ]);
  });

  // The policy src/backup/job.ts gives its Jobs.
  const podFailurePolicy = {
    rules: [
      { action: 'FailJob', onExitCodes: { containerName: 'backup', operator: 'In', values: [2] } },
      { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
      { action: 'Ignore', onExitCodes: { operator: 'In', values: [3] } },
    ],
  };

  it('exit code 2 matches the FailJob rule: one pod, Failed with reason PodFailurePolicy and the exact message', async () => {
    api.put(job('permanent', 'process.exit(2)', { podFailurePolicy }, {}, { name: 'backup' }));
    await jobs.idle();
    assert.equal(podsOf('permanent').length, 1);
    const status = statusOf('permanent');
    assert.equal(status.failed, 1);
    const message = `Container backup for pod ${NS}/permanent-1-local failed with exit code 2 matching FailJob rule at index 0`;
    assert.deepEqual(conditions(status), [
      ['FailureTarget', 'True', 'PodFailurePolicy', message, at(0)],
      ['Failed', 'True', 'PodFailurePolicy', message, at(0)],
    ]);
  });

  it('an Ignore rule replaces the pod without counting the failure; a signal is exit code 128+n', async () => {
    // Attempt 1 exits 3 (ignored), attempt 2 waits to be killed, attempt 3 succeeds.
    const script = `const n = process.env.HOSTNAME.split('-')[1]; if (n === '1') process.exit(3); if (n === '2') setInterval(() => {}, 1000);`;
    api.put(job('ignored', script, { podFailurePolicy, backoffLimit: 1 }, {}, { name: 'backup' }));
    await waitFor('the second pod', () => jobs.running().some((p) => p.job === 'ignored' && p.attempt === 2));
    assert.equal(statusOf('ignored').failed, undefined, 'the ignored failure does not count');
    assert.equal(jobs.kill('nowhere', 'ignored'), false);
    assert.equal(jobs.kill(NS, 'ignored', 'SIGKILL'), true, 'as the OOM killer would');
    await jobs.idle();
    assert.deepEqual(podsOf('ignored').map((p) => [p.attempt, p.exitCode, p.signal]), [
      [1, 3, null],
      [2, null, 'SIGKILL'],
      [3, 0, null],
    ]);
    const status = statusOf('ignored');
    assert.deepEqual([status.failed, status.succeeded], [1, 1]);
    assert.deepEqual(conditions(status).map((c) => c[0]), ['SuccessCriteriaMet', 'Complete']);
  });

  it('activeDeadlineSeconds on the simulated clock: tick() kills the pod, FailureTarget then Failed DeadlineExceeded', async () => {
    api.put(job('slow', 'setInterval(() => {}, 1000)', { activeDeadlineSeconds: 60 }));
    await waitFor('the pod', () => jobs.running().length === 1);
    now = new Date(START.getTime() + 59_000);
    jobs.tick();
    assert.equal(jobs.running().length, 1, 'not yet');
    now = new Date(START.getTime() + 61_000);
    jobs.tick();
    const message = 'Job was active longer than specified deadline';
    // While the pod stops, only FailureTarget (Kubernetes 1.31+), the pod counted as terminating.
    assert.deepEqual(conditions(statusOf('slow')), [['FailureTarget', 'True', 'DeadlineExceeded', message, at(61)]]);
    assert.deepEqual([statusOf('slow').active, statusOf('slow').terminating], [undefined, 1]);
    now = new Date(START.getTime() + 63_000);
    await jobs.idle();
    assert.deepEqual(podsOf('slow').map((p) => [p.exitCode, p.signal]), [[null, 'SIGTERM']]);
    const status = statusOf('slow');
    assert.deepEqual([status.failed, status.active, status.terminating, status.completionTime], [1, undefined, 0, undefined]);
    assert.deepEqual(conditions(status), [
      ['FailureTarget', 'True', 'DeadlineExceeded', message, at(61)],
      ['Failed', 'True', 'DeadlineExceeded', message, at(63)],
    ]);
  });

  it('a deleted Job SIGTERMs its pod, which can clean up; nothing is written for the gone Job', async () => {
    const marker = join(dir, 'cleaned');
    const script = `
      process.on('SIGTERM', () => { require('node:fs').writeFileSync(process.env.MARKER, 'aborted upload'); process.exit(1); });
      setInterval(() => {}, 1000); console.log('ready');`;
    api.put(job('doomed', script, {}, {}, { env: [{ name: 'MARKER', value: marker }] }));
    await waitFor('the pod to trap SIGTERM', () => podsOf('doomed')[0]?.stdout === 'ready\n');
    api.remove('batch/v1', 'Job', NS, 'doomed');
    await jobs.idle();
    assert.equal(await readFile(marker, 'utf8'), 'aborted upload');
    assert.deepEqual(podsOf('doomed').map((p) => [p.exitCode, p.signal]), [[1, null]]);
    assert.equal(api.get('batch/v1', 'Job', NS, 'doomed'), undefined, 'no status write brought it back');
  });

  it('a pod with a missing Secret never starts: the Job stays active until its deadline', async () => {
    api.put(job('stuck', 'process.exit(0)', { activeDeadlineSeconds: 120 }, { volumes: [{ name: 'creds', secret: { secretName: 'no-such-secret' } }] }, { volumeMounts: [{ name: 'creds', mountPath: '/etc/creds' }] }));
    await jobs.idle();
    assert.deepEqual(podsOf('stuck').map((p) => [p.pid, p.configErrors]), [[undefined, ['MountVolume.SetUp failed for volume "creds" : secret "no-such-secret" not found']]]);
    assert.deepEqual(statusOf('stuck'), { startTime: at(0), active: 1, terminating: 0, uncountedTerminatedPods: {} });
    now = new Date(START.getTime() + 120_000);
    jobs.tick();
    await jobs.idle();
    const status = statusOf('stuck');
    assert.deepEqual([status.active, status.failed], [undefined, 1]);
    assert.deepEqual(conditions(status).map((c) => [c[0], c[2], c[4]]), [
      ['FailureTarget', 'DeadlineExceeded', at(120)],
      ['Failed', 'DeadlineExceeded', at(120)],
    ]);
    assert.equal(podsOf('stuck').length, 1, 'never retried');
  });

  it('the pod reaches the API with its service-account token: what its Role grants and nothing else', async () => {
    const rbac = 'rbac.authorization.k8s.io';
    api.put({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'reporter', namespace: NS } });
    api.put({ apiVersion: `${rbac}/v1`, kind: 'Role', metadata: { name: 'reporter', namespace: NS }, rules: [{ apiGroups: [''], resources: ['configmaps'], resourceNames: ['progress'], verbs: ['patch'] }] });
    api.put({ apiVersion: `${rbac}/v1`, kind: 'RoleBinding', metadata: { name: 'reporter', namespace: NS }, roleRef: { apiGroup: rbac, kind: 'Role', name: 'reporter' }, subjects: [{ kind: 'ServiceAccount', name: 'reporter' }] });
    for (const name of ['progress', 'other']) api.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: NS }, data: { state: 'new' } });
    // Plain CommonJS: what an in-cluster client does with the mounted token and CA.
    const script = `
      const https = require('node:https'), fs = require('node:fs'), path = require('node:path');
      const read = (f) => fs.readFileSync(path.join(process.env.KUBERNETES_SERVICE_ACCOUNT_DIR, f), 'utf8');
      const patch = (name) => new Promise((resolve, reject) => {
        const req = https.request({
          method: 'PATCH', host: process.env.KUBERNETES_SERVICE_HOST, port: Number(process.env.KUBERNETES_SERVICE_PORT),
          servername: 'kubernetes.default.svc', ca: read('ca.crt'), path: '/api/v1/namespaces/' + read('namespace') + '/configmaps/' + name,
          headers: { authorization: 'Bearer ' + read('token'), 'content-type': 'application/merge-patch+json' },
        }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
        req.on('error', reject);
        req.end(JSON.stringify({ data: { state: 'done' } }));
      });
      patch('progress').then((a) => patch('other').then((b) => { console.log(a, b); process.exit(a === 200 && b === 403 ? 0 : 1); }), (e) => { console.error(e); process.exit(1); });`;
    api.put(job('reporting', script, { backoffLimit: 0 }, { serviceAccountName: 'reporter', automountServiceAccountToken: true }));
    await jobs.idle();
    const [pod] = podsOf('reporting');
    assert.equal(pod!.exitCode, 0, pod!.stdout + pod!.stderr);
    const state = (name: string) => (api.get('v1', 'ConfigMap', NS, name)!.data as Record<string, string>).state;
    assert.deepEqual([state('progress'), state('other')], ['done', 'new']);
    assert.deepEqual(
      api.requests.filter((r) => r.user === `system:serviceaccount:${NS}:reporter`).map((r) => [r.verb, r.name, r.status]),
      [
        ['patch', 'progress', 200],
        ['patch', 'other', 403],
      ],
    );
    assert.deepEqual(conditions(statusOf('reporting')).map((c) => c[0]), ['SuccessCriteriaMet', 'Complete']);
  });

  it('stop() kills every pod, one ignoring SIGTERM too, and removes its directory', async () => {
    api.put(job('stubborn', `process.on('SIGTERM', () => {}); setInterval(() => {}, 1000); console.log(process.cwd());`));
    await waitFor('the pod', () => podsOf('stubborn')[0]?.stdout.endsWith('\n') === true);
    const cwd = podsOf('stubborn')[0]!.stdout.trim();
    assert.ok(existsSync(cwd));
    const started = Date.now();
    await jobs.stop();
    assert.ok(Date.now() - started < 5000);
    assert.deepEqual(podsOf('stubborn').map((p) => [p.exitCode, p.signal]), [[null, 'SIGKILL']]);
    assert.equal(existsSync(cwd), false);
    assert.deepEqual(jobs.running(), []);
    assert.equal(statusOf('stubborn').failed, undefined, 'a stopped controller writes nothing');
  });
});
