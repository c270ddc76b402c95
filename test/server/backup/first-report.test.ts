// The snapshot Job's first report and Metacontroller's create order, on the real control plane (test/server/backup/
// job-cluster.ts: kube-apiserver with an audit log of what the pods do, the real Job controller, the test kubelet
// running the pods as processes of this checkout, a real etcd behind the Talos double, Ceph RGW). The attachments
// are created by the Metacontroller stand-in (test/doubles/metacontroller.ts) from the real hook server's answer:
// ServiceAccount, Job, Role, RoleBinding, in that order, through its rate-limited client. The Job's pod starts as
// soon as the Job exists, so its first status report may come before its RoleBinding and get 403. Measured here
// (see the diagnostics): when the RoleBinding appeared, when the pod first asked, when its report was first
// accepted. The report must wait for the permission, spend no retry of the Job, and still fail clearly (exit 2)
// when the permission never comes.

import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { API_VERSION, BACKUP_KIND } from '../../../src/api/constants.js';
import type { BackupStatus } from '../../../src/api/types.js';
import { FIRST_REPORT_PERMISSION_WAIT_MS } from '../../../src/job/kubernetes/status-report.js';
import { startMetacontroller, type MetacontrollerStandIn } from '../../doubles/metacontroller.js';
import { startServer, type RunningServer } from '../../helpers/server.js';
import {
  DECORATOR,
  IMAGE,
  NAMESPACE,
  POD_ENV,
  useJobCluster,
  type AuditEvent,
  type JobCluster,
  type Obj,
} from './job-cluster.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const phaseOf = (o: Obj | undefined) => (o?.status as BackupStatus | undefined)?.phase;
const jobCondition = (job: Obj) =>
  ((job.status as { conditions?: { type: string; status: string; reason?: string }[] }).conditions ?? []).find(
    (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True',
  );
const ms = (time: string | undefined) => (time === undefined ? Number.NaN : Date.parse(time));

interface Timeline {
  backup: string;
  /** When the stand-in sent the create of the Job and of the RoleBinding (its client's clock, ms). */
  jobCreatedAt: number;
  roleCreatedAt: number;
  roleBindingCreatedAt: number;
  /** The pod's status patches, from the audit log: when each arrived and its answer. */
  patches: { at: number; code: number }[];
}

describe('the first report waits for the RoleBinding Metacontroller creates after the Job', () => {
  const cluster = useJobCluster();
  let c: JobCluster;
  let server: RunningServer;
  let mc: MetacontrollerStandIn | undefined;

  before(async () => {
    c = cluster();
    server = await startServer({ clock: () => new Date(), jobImage: IMAGE });
  });
  after(async () => {
    await mc?.stop();
    await server?.close();
  });

  /** The stand-in running only the backup decorator on this namespace, on real time. */
  async function standIn(rate: { qps?: number; burst?: number } = {}): Promise<MetacontrollerStandIn> {
    mc = await startMetacontroller({
      kubeConfig: await c.cp.kubeConfig(),
      hookUrls: [server.url],
      clock: () => new Date(),
      controllers: [DECORATOR],
      namespaces: [NAMESPACE],
      ...rate,
    });
    return mc;
  }

  /** Deletes the backups through the stand-in (its finalize hook lets them go), then stops it. */
  async function cleanUp(names: string[]): Promise<void> {
    for (const name of names) await mc!.delete(API_VERSION, BACKUP_KIND, NAMESPACE, name);
    await c.kubelet.waitFor(
      'the backups to be gone',
      async () =>
        (await Promise.all(names.map((n) => mc!.get(API_VERSION, BACKUP_KIND, NAMESPACE, n)))).every(
          (o) => o === undefined,
        ),
      60_000,
    );
    await mc!.stop();
    mc = undefined;
  }

  /** When each backup's Job and RoleBinding were created (in etcd's order) and what its pod's patches got. */
  async function timelines(names: string[], creator: MetacontrollerStandIn = mc!): Promise<Timeline[]> {
    const creates = (resource: string) =>
      creator.apiRequests
        .filter((r) => r.method === 'POST' && r.code === 201 && r.path.endsWith(`/namespaces/${NAMESPACE}/${resource}`))
        .map((r) => r.sentAt);
    // Each kind's creates reach etcd in the order the stand-in sent them: its created objects sorted by
    // resourceVersion (etcd's revision) line up with its POSTs sorted by time. (The objects may be gone by now:
    // a finished backup's attachments are deleted.)
    const byRevision = (kind: string) =>
      creator.calls
        .flatMap((call) => call.applied?.created ?? [])
        .filter((o) => o.kind === kind)
        .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion))
        .map((o) => o.metadata.name);
    const jobs = byRevision('Job');
    const roles = byRevision('Role');
    const bindings = byRevision('RoleBinding');
    const jobTimes = creates('jobs');
    const roleTimes = creates('roles');
    const bindingTimes = creates('rolebindings');
    return Promise.all(
      names.map(async (backup) => {
        const attachment = `${backup}-snapshot`;
        const events = (await c.audit(attachment)).filter(
          (e: AuditEvent) => e.verb === 'patch' && e.objectRef?.subresource === 'status',
        );
        return {
          backup,
          jobCreatedAt: jobTimes[jobs.indexOf(attachment)] ?? Number.NaN,
          roleCreatedAt: roleTimes[roles.indexOf(attachment)] ?? Number.NaN,
          roleBindingCreatedAt: bindingTimes[bindings.indexOf(attachment)] ?? Number.NaN,
          patches: events.map((e) => ({
            at: ms((e as unknown as { requestReceivedTimestamp?: string }).requestReceivedTimestamp),
            code: e.responseStatus?.code ?? 0,
          })),
        };
      }),
    );
  }

  /** What the timeline says, for the diagnostics: the window of 403s and where the RoleBinding fell. */
  function describeTimeline(t: TestContext, timeline: Timeline[]): number {
    let widest = 0;
    for (const x of timeline) {
      const first = x.patches[0]?.at ?? Number.NaN;
      const accepted = x.patches.find((p) => p.code < 300)?.at ?? Number.NaN;
      const refused = x.patches.filter((p) => p.code === 403).length;
      const window = refused > 0 ? accepted - first : 0;
      widest = Math.max(widest, window);
      t.diagnostic(
        `${x.backup}: Role created ${x.roleCreatedAt - x.jobCreatedAt} ms, RoleBinding ${x.roleBindingCreatedAt - x.jobCreatedAt} ms after the Job; first report ${first - x.jobCreatedAt} ms after the Job, ` +
          `${refused} refused (403), first accepted ${accepted - x.jobCreatedAt} ms after the Job (403 window ${window} ms)`,
      );
    }
    return widest;
  }

  /** Every pod's patches: some 403s first (only before its RoleBinding existed), then only accepted ones. */
  function assertRefusedOnlyBeforeTheRoleBinding(timeline: Timeline[]): void {
    for (const x of timeline) {
      const firstAccepted = x.patches.findIndex((p) => p.code < 300);
      assert.ok(firstAccepted >= 0, `${x.backup}: no report was accepted: ${JSON.stringify(x.patches)}`);
      assert.ok(
        x.patches.slice(0, firstAccepted).every((p) => p.code === 403),
        `${x.backup}: ${JSON.stringify(x.patches)}`,
      );
      assert.ok(
        x.patches.slice(firstAccepted).every((p) => p.code < 300),
        `${x.backup}: a report was refused after one was accepted`,
      );
      // The audit log's clock and the stand-in's are this machine's: a refusal after the RoleBinding's create was
      // sent would mean the permission had come and was still refused.
      for (const p of x.patches.slice(0, firstAccepted))
        assert.ok(
          p.at <= x.roleBindingCreatedAt + 1_000,
          `${x.backup}: refused ${p.at - x.roleBindingCreatedAt} ms after its RoleBinding was created`,
        );
    }
  }

  it("at Metacontroller's default rate (5 QPS, burst 10), several backups at once: every report lands, no Job is retried", async (t) => {
    const standin = await standIn();
    const backups = await Promise.all(Array.from({ length: 6 }, () => c.createBackup()));
    const names = backups.map((b) => b.metadata.name);
    const done = await c.kubelet.waitFor(
      'every backup to succeed',
      async () => {
        const phases = await Promise.all(names.map(async (n) => phaseOf(await c.backupNow(n))));
        assert.ok(!phases.includes('Failed'), `a backup failed: ${JSON.stringify(phases)}`);
        return phases.every((p) => p === 'Succeeded') && phases;
      },
      240_000,
    );
    assert.equal(done.length, names.length);
    for (const name of names) {
      const pods = c.kubelet.pods().filter((p) => p.job === `${name}-snapshot`);
      assert.equal(pods.length, 1, `${name}: one pod, no retry spent`);
      assert.equal(pods[0]!.exitCode, 0, pods[0]!.stderr);
      assert.equal(pods[0]!.stderr, '');
    }
    // Created as Metacontroller creates them: per backup, ServiceAccount, Job, Role, RoleBinding.
    for (const name of names) {
      const call = standin.calls.find((x) => x.name === name && (x.applied?.created.length ?? 0) > 0)!;
      assert.deepEqual(
        call.applied!.created.map((o) => o.kind),
        ['ServiceAccount', 'Job', 'Role', 'RoleBinding'],
      );
    }
    const timeline = await timelines(names);
    assertRefusedOnlyBeforeTheRoleBinding(timeline);
    const widest = describeTimeline(t, timeline);
    t.diagnostic(
      `widest 403 window at 5 QPS / burst 10 with ${names.length} backups at once: ${widest} ms (the first report waits up to ${FIRST_REPORT_PERMISSION_WAIT_MS} ms by default)`,
    );
    assert.deepEqual(standin.errors, []);
    await cleanUp(names);
  });

  it("when Metacontroller's requests are slow to come (its 5 QPS shared by busy controllers: 0.4 QPS here), the report waits for the RoleBinding and the backup succeeds on its first pod", async (t) => {
    // One request every 2.5 s: the Role comes 2.5 s after the Job, the RoleBinding 5 s after it; with the pod's
    // start that is more than the ~6 s the report used to retry. (Its informers' lists are as slow: the stand-in
    // takes a while to start.)
    const t0 = Date.now();
    const slow = await standIn({ qps: 0.4, burst: 1 });
    const backup = await c.createBackup();
    const name = backup.metadata.name;
    const attachment = `${name}-snapshot`;
    await c.kubelet.waitFor(
      'the RoleBinding',
      () => slow.get('rbac.authorization.k8s.io/v1', 'RoleBinding', NAMESPACE, attachment),
      180_000,
    );
    const [timeline] = await timelines([name], slow);
    const started = slow.apiRequests[0]!.sentAt;
    t.diagnostic(
      `the slow stand-in's requests (ms after its first): ${slow.apiRequests.map((r) => `${r.method} ${r.path.split('/').slice(-2).join('/')} +${r.sentAt - started}`).join(', ')}`,
    );
    // From here on Metacontroller is quick again: the status and the clean-up need not take minutes.
    await slow.stop();
    const t1 = Date.now();
    const standin = await standIn();
    await c.kubelet.waitFor(
      'the backup to finish',
      async () => ['Succeeded', 'Failed'].includes(phaseOf(await c.backupNow(name)) ?? '') && true,
      120_000,
    );
    t.diagnostic(`slow phase ${t1 - t0} ms, then ${Date.now() - t1} ms to the backup's outcome`);
    const pods = c.kubelet.pods().filter((p) => p.job === attachment);
    assert.equal(pods.length, 1, 'one pod, no retry spent');
    assert.equal(pods[0]!.exitCode, 0, pods[0]!.stderr);
    assert.equal(pods[0]!.stderr, '');
    assert.equal(phaseOf(await c.backupNow(name)), 'Succeeded');
    // The patches as the audit log has them now (the timeline above was taken when the RoleBinding appeared).
    timeline!.patches = (await timelines([name], slow))[0]!.patches;
    assertRefusedOnlyBeforeTheRoleBinding([timeline!]);
    const refused = timeline!.patches.filter((p) => p.code === 403);
    assert.ok(refused.length > 0, 'the pod asked before its RoleBinding existed');
    // It even asked before the Role was created: its wait spanned two of Metacontroller's rate-limited creates.
    assert.ok(
      timeline!.patches[0]!.at < timeline!.roleCreatedAt,
      `first report ${timeline!.patches[0]!.at - timeline!.roleCreatedAt} ms after the Role's create`,
    );
    describeTimeline(t, [timeline!]);
    assert.deepEqual([...slow.errors, ...standin.errors], []);
    const t2 = Date.now();
    await cleanUp([name]);
    t.diagnostic(`clean-up ${Date.now() - t2} ms`);
  });

  it('a RoleBinding that never comes: the Job fails after the wait, exit 2 with the API server\'s "forbidden" wording, in one line, without retries', async () => {
    const backup = await c.createBackup();
    const { jobName, run, created } = await c.runJob(backup, { skip: (o) => o.kind === 'RoleBinding' });
    assert.deepEqual(created, [`ServiceAccount/${jobName}`, `Job/${jobName}`, `Role/${jobName}`]);
    assert.equal(run.exitCode, 2);
    assert.match(
      run.stderr,
      new RegExp(
        `^the Kubernetes API answered 403: .*cannot patch resource "talosetcdbackups/status".* \\(still refused after ${POD_ENV.REPORT_PERMISSION_WAIT_SECONDS}s: the backup's Role or RoleBinding is missing or was changed\\)\\n$`,
      ),
    );
    const patches = (await c.audit(jobName)).filter((e) => e.verb === 'patch');
    assert.ok(
      patches.length > 1 && patches.every((e) => e.responseStatus?.code === 403),
      'it kept asking, and was refused every time',
    );
    assert.equal(
      jobCondition(await c.jobFinished(jobName))?.reason,
      'PodFailurePolicy',
      'exit 2: the Job fails at once, no retry',
    );
    assert.equal(c.kubelet.pods().filter((p) => p.job === jobName).length, 1);
  });
});
