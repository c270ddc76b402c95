// The backup hook's restore-test decisions, as pure functions of Metacontroller's request: when a test is due (the
// backup's spec.restoreTest, its schedule's request), the Job it attaches (four containers, restricted, the restored
// data only in the emptyDir, etcd on a unix socket), how the Job and its report become status.restoreTest and the
// RestoreTested condition, and that Ready never changes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  API_VERSION,
  RELATED_SCHEDULE_KEY,
  RESTORE_TEST_REQUEST_ANNOTATION,
  SCHEDULE_KIND,
} from '../../../src/api/constants.js';
import type { BackupStatus, RestoreTestReport } from '../../../src/api/types.js';
import { customizeBackup } from '../../../src/server/backup/customize.js';
import type { KubernetesObject } from '../../../src/server/metacontroller/types.js';
import { schedule as scheduleObject } from '../../helpers/builders.js';
import {
  backup,
  CREATED,
  jobComplete,
  jobFailed,
  LATER,
  NAME,
  NOW,
  protectedSpec,
  RECIPIENTS,
  request,
  succeededStatus,
  sync,
  withSpec,
  type J,
} from './fixtures.js';

const TEST_JOB = `${NAME}-restore-test`;
const owned = (name = 'nightly') => ({
  ownerReferences: [{ apiVersion: API_VERSION, kind: SCHEDULE_KIND, name, uid: 'u', controller: true }],
});

/** A Ready backup with `spec`, as the API server has it (owned by schedule `nightly` when `fromSchedule`). */
function ready(spec: Record<string, unknown>, status: J = succeededStatus(), fromSchedule = false): KubernetesObject {
  const object = backup({ spec, status });
  if (fromSchedule) Object.assign(object.metadata, owned());
  return object;
}

/** The schedule `nightly` as a related object, asking for a test of `backupName` at `requestedAt`. */
function schedule(
  backupName: string,
  requestedAt: string,
  restoreTest: Record<string, unknown> = {},
): KubernetesObject {
  return scheduleObject({
    name: 'nightly',
    spec: { restoreTest: { schedule: '@weekly', ...restoreTest } },
    status: { restoreTestRequest: { backup: backupName, requestedAt } },
  });
}

function withSchedule(object: KubernetesObject, related: KubernetesObject, attachments: KubernetesObject[] = []) {
  const req = request(object, { attachments });
  req.related = { ...req.related, [RELATED_SCHEDULE_KEY]: { [related.metadata.name]: related } };
  return req;
}

/** The restore-test Job as the API server returns it, with a status. */
function observedJob(attached: KubernetesObject[], jobStatus: Record<string, unknown>): KubernetesObject {
  const job = structuredClone(attached.find((a) => a.kind === 'Job')!);
  return { ...job, status: jobStatus };
}

const testOf = (result: ReturnType<typeof sync>) => (result.response.status as BackupStatus).restoreTest;
const conditionOf = (result: ReturnType<typeof sync>, type: string) =>
  ((result.response.status as BackupStatus).conditions ?? []).find((c) => c.type === type);

describe('restore tests in the backup hook', () => {
  it('spec.restoreTest: once the backup is Ready, a Job is attached for the request of its creation', () => {
    const object = ready(withSpec({ verify: true, restoreTest: {} }));
    const result = sync(request(object));
    assert.equal(result.outcome, 'finished');
    const test = testOf(result)!;
    assert.equal(test.result, 'Running');
    assert.equal(test.requestedAt, CREATED, 'unset requestedAt: the backup creation');
    assert.equal(test.etcdImage, 'gcr.io/etcd-development/etcd:v3.6.16');
    assert.deepEqual(
      result.response.attachments.map((a) => `${a.kind}/${a.metadata.name}`),
      [`ServiceAccount/${TEST_JOB}`, `Role/${TEST_JOB}`, `RoleBinding/${TEST_JOB}`, `Job/${TEST_JOB}`],
    );
    assert.equal(conditionOf(result, 'RestoreTested')?.status, 'Unknown');
    assert.deepEqual(
      conditionOf(result, 'Ready'),
      (object.status as BackupStatus).conditions!.find((c) => c.type === 'Ready'),
      'Ready as recorded',
    );
  });

  it('without spec.restoreTest and no schedule request, a Ready backup attaches nothing and repeats its status', () => {
    const object = ready(withSpec({}));
    const result = sync(request(object));
    assert.deepEqual(result.response.attachments, []);
    assert.deepEqual(result.response.status, object.status);
  });

  it('a pending or failed backup is never tested', () => {
    const pending = sync(request(backup({ spec: withSpec({ restoreTest: {} }) })));
    assert.equal(testOf(pending), undefined);
    assert.ok(!pending.response.attachments.some((a) => a.metadata.name === TEST_JOB));
  });

  it('the Job: fetch, etcdutl, the etcd sidecar on a unix socket, check; restricted; the data only in an emptyDir', () => {
    const object = ready(
      withSpec({ verify: true, restoreTest: { resources: { limits: { memory: '4Gi' } }, volumeSizeLimit: '20Gi' } }),
    );
    const job: J = sync(request(object)).response.attachments.find((a) => a.kind === 'Job');
    const pod = job.spec.template.spec;
    assert.deepEqual(
      pod.initContainers.map((c: J) => [c.name, c.restartPolicy ?? null]),
      [
        ['fetch', null],
        ['etcdutl', null],
        ['etcd', 'Always'],
      ],
    );
    assert.deepEqual(
      pod.containers.map((c: J) => c.name),
      ['check'],
    );
    const all = [...pod.initContainers, ...pod.containers];
    for (const c of all) {
      assert.deepEqual(c.securityContext, {
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        runAsNonRoot: true,
        capabilities: { drop: ['ALL'] },
      });
      assert.equal(c.ports, undefined, `${c.name} exposes no port`);
    }
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.deepEqual(pod.volumes[0], { name: 'restore', emptyDir: { sizeLimit: '20Gi' } });
    const etcd = pod.initContainers[2];
    assert.equal(etcd.image, 'gcr.io/etcd-development/etcd:v3.6.16');
    assert.deepEqual(etcd.resources, { limits: { memory: '4Gi' } });
    assert.ok(etcd.command.includes('--listen-client-urls=unix://etcd.sock:2379'));
    assert.ok(etcd.command.includes('--listen-peer-urls=unix://etcd-peer.sock:2380'));
    const env = (c: J) => Object.fromEntries(c.env.filter((e: J) => 'value' in e).map((e: J) => [e.name, e.value]));
    const fetchEnv = env(pod.initContainers[0]);
    const stored = (object.status as BackupStatus).snapshot!;
    assert.equal(fetchEnv.S3_KEY, stored.key);
    assert.equal(fetchEnv.EXPECTED_SHA256, stored.sha256);
    assert.equal(fetchEnv.EXPECTED_ETCD_SHA256, stored.etcdSha256);
    assert.equal(fetchEnv.RESTORE_TEST_REQUESTED_AT, CREATED);
    assert.equal(fetchEnv.AGE_IDENTITY_FILE, undefined, 'an unencrypted backup needs no identity');
    assert.equal(job.metadata.annotations[RESTORE_TEST_REQUEST_ANNOTATION], CREATED);
    assert.equal(job.spec.backoffLimit, 1);
    assert.equal(job.spec.activeDeadlineSeconds, 1800);
    assert.deepEqual(
      job.spec.podFailurePolicy.rules.slice(0, 2).map((r: J) => r.onExitCodes.containerName),
      ['fetch', 'check'],
    );
  });

  it('an encrypted backup is decrypted with spec.restoreTest.identitySecretRef, else the verify identity', () => {
    const own = ready(protectedSpec({ restoreTest: { identitySecretRef: { name: 'restore-id', key: 'id' } } }), {
      ...succeededStatus(),
      snapshot: { ...succeededStatus().snapshot, encrypted: true },
    });
    const job: J = sync(request(own)).response.attachments.find((a) => a.kind === 'Job');
    const volume = job.spec.template.spec.volumes.find((v: J) => v.name === 'age-identity');
    assert.equal(volume.secret.secretName, 'restore-id');
    const verifying = ready(protectedSpec({ restoreTest: {} }), {
      ...succeededStatus(),
      snapshot: { ...succeededStatus().snapshot, encrypted: true },
    });
    const job2: J = sync(request(verifying)).response.attachments.find((a) => a.kind === 'Job');
    assert.equal(
      job2.spec.template.spec.volumes.find((v: J) => v.name === 'age-identity').secret.secretName,
      'age-identity',
    );
  });

  it('an encrypted backup with no identity at all: Failed at once, no Job, a message saying what to set', () => {
    const object = ready(withSpec({ encryption: { age: { recipients: RECIPIENTS } }, restoreTest: {} }), {
      ...succeededStatus(),
      snapshot: { ...succeededStatus().snapshot, encrypted: true },
    });
    const result = sync(request(object));
    assert.deepEqual(result.response.attachments, []);
    assert.equal(testOf(result)?.result, 'Failed');
    assert.match(testOf(result)!.message!, /identitySecretRef/);
    assert.equal(result.restoreTest, 'failed');
    assert.equal(conditionOf(result, 'RestoreTested')?.status, 'False');
    assert.equal(conditionOf(result, 'Ready')?.status, 'True');
  });

  describe('a running test', () => {
    const object = ready(withSpec({ verify: true, restoreTest: {} }));
    const first = sync(request(object));
    const running = { ...(first.response.status as BackupStatus) };
    const report = (r: Partial<RestoreTestReport>): RestoreTestReport => ({
      state: 'Running',
      requestedAt: CREATED,
      startedAt: '2026-01-15T12:06:00Z',
      updatedAt: '2026-01-15T12:06:30Z',
      ...r,
    });
    const again = (status: BackupStatus, jobStatus?: Record<string, unknown>, now = LATER) =>
      sync(
        request(backup({ spec: object.spec as J, status }), {
          attachments: jobStatus ? [observedJob(first.response.attachments, jobStatus)] : [],
        }),
        now,
      );

    it('keeps its Job attached while it runs, with the step it is at', () => {
      const result = again({ ...running, restoreTestReport: report({ step: 'check' }) }, { active: 1 });
      assert.equal(testOf(result)?.result, 'Running');
      assert.match(testOf(result)!.message!, /questioning the restored etcd/);
      assert.ok(result.response.attachments.some((a) => a.metadata.name === TEST_JOB));
      assert.equal(result.restoreTest, undefined);
    });

    it("succeeds with the report's figures, counted once; the Job stays until that is recorded", () => {
      const result = again(
        {
          ...running,
          restoreTestReport: report({
            state: 'Succeeded',
            step: 'check',
            etcdVersion: '3.6.16',
            revision: 2001,
            keys: 2000,
            servedKeys: 2000,
            updatedAt: '2026-01-15T12:07:30Z',
          }),
        },
        jobComplete,
      );
      const test = testOf(result)!;
      assert.equal(test.result, 'Succeeded');
      assert.equal(test.completionTime, '2026-01-15T12:07:30Z');
      assert.equal(test.durationSeconds, 90);
      assert.deepEqual([test.revision, test.keys, test.servedKeys], [2001, 2000, 2000]);
      assert.equal(result.restoreTest, 'succeeded');
      assert.ok(result.response.attachments.some((a) => a.metadata.name === TEST_JOB));
      assert.equal(conditionOf(result, 'RestoreTested')?.status, 'True');

      const settled = again(result.response.status as BackupStatus, jobComplete);
      assert.deepEqual(settled.response.attachments, [], 'recorded: the Job goes');
      assert.equal(settled.restoreTest, undefined);
    });

    it("fails with the report's message; a Job that failed without one says the pod was probably killed", () => {
      const said = again(
        {
          ...running,
          restoreTestReport: report({ state: 'Failed', step: 'fetch', message: 'Restore test failed: x' }),
        },
        jobFailed('PodFailurePolicy', 'Container fetch for pod x failed with exit code 2', 1),
      );
      assert.equal(testOf(said)?.result, 'Failed');
      assert.equal(testOf(said)?.message, 'Restore test failed: x');
      const silent = again(running, jobFailed('DeadlineExceeded', 'Job was active longer than specified deadline', 1));
      assert.equal(testOf(silent)?.result, 'Failed');
      assert.match(testOf(silent)!.message!, /failed without reporting why \(DeadlineExceeded/);
      assert.match(testOf(silent)!.message!, /spec\.restoreTest\.resources/);
      assert.equal(conditionOf(silent, 'Ready')?.status, 'True', 'Ready never changes');
    });

    it('a newer request waits for the running test: it goes on, and the newer one is due once it ended', () => {
      const newer = ready(withSpec({ verify: true, restoreTest: { requestedAt: '2026-01-15T13:00:00Z' } }), running);
      const attachments = [observedJob(first.response.attachments, { active: 1 })];
      const going = sync(request(newer, { attachments }), LATER);
      assert.equal(testOf(going)?.result, 'Running');
      assert.equal(testOf(going)?.requestedAt, CREATED, 'still the running request');
      assert.ok(going.response.attachments.some((a) => a.metadata.name === TEST_JOB));
      assert.equal(going.restoreTest, undefined, 'nothing counted');
      const ended = { ...running, restoreTest: { ...running.restoreTest!, result: 'Succeeded' as const } };
      const next = sync(request(ready(newer.spec as J, ended), { attachments: [] }), LATER);
      assert.equal(testOf(next)?.requestedAt, '2026-01-15T13:00:00Z');
      assert.equal(testOf(next)?.result, 'Running');
    });

    it('withdrawn (spec.restoreTest removed, nobody asks): no result, no condition, the Job goes', () => {
      const withdrawn = sync(
        request(ready(withSpec({ verify: true }), running), {
          attachments: [observedJob(first.response.attachments, { active: 1 })],
        }),
        LATER,
      );
      assert.equal(testOf(withdrawn), undefined);
      assert.equal(conditionOf(withdrawn, 'RestoreTested'), undefined);
      assert.deepEqual(withdrawn.response.attachments, []);
      assert.equal(withdrawn.restoreTest, undefined);
    });

    it('a Job that never appears ends the test after the attachment deadline; until then the hook resyncs', () => {
      const asked = conditionOf(first, 'RestoreTested')!.lastTransitionTime;
      const soon = sync(
        request(backup({ spec: object.spec as J, status: running })),
        new Date(Date.parse(asked) + 60_000),
      );
      assert.equal(testOf(soon)?.result, 'Running');
      assert.equal(soon.response.resyncAfterSeconds, 540);
      const late = sync(
        request(backup({ spec: object.spec as J, status: running })),
        new Date(Date.parse(asked) + 601_000),
      );
      assert.equal(testOf(late)?.result, 'Failed');
      assert.match(
        testOf(late)!.message!,
        /^Failed to create the restore-test Job: manual-backup-restore-test did not appear within 600s/,
      );
      assert.equal(late.restoreTest, 'failed');
      assert.deepEqual(late.response.attachments, []);
    });

    it('a spec edited into one the CRD rejects ends a running test, saying why; nothing new starts', () => {
      const broken = { ...(object.spec as J), compression: 'lz4' };
      const ended = sync(request(backup({ spec: broken, status: running })), LATER);
      assert.equal(testOf(ended)?.result, 'Failed');
      assert.match(testOf(ended)!.message!, /^the restore test ended unjudged: Invalid spec: /);
      assert.equal(conditionOf(ended, 'Ready')?.status, 'True');
      const idle = sync(request(backup({ spec: broken, status: ended.response.status })), LATER);
      assert.deepEqual(idle.response.attachments, []);
      assert.deepEqual(idle.response.status, ended.response.status);
    });

    it('a report of an earlier request does not count for this one', () => {
      const result = again(
        { ...running, restoreTestReport: report({ state: 'Succeeded', requestedAt: '2026-01-01T00:00:00Z' }) },
        { active: 1 },
      );
      assert.equal(testOf(result)?.result, 'Running');
    });
  });

  it('a later spec.restoreTest.requestedAt runs the test again; an earlier one does not', () => {
    const done = {
      ...succeededStatus(),
      restoreTest: { requestedAt: CREATED, result: 'Succeeded', completionTime: '2026-01-15T12:10:00Z' },
    };
    const rerun = sync(request(ready(withSpec({ restoreTest: { requestedAt: '2026-01-16T08:00:00Z' } }), done)), LATER);
    assert.equal(testOf(rerun)?.requestedAt, '2026-01-16T08:00:00Z');
    assert.equal(testOf(rerun)?.result, 'Running');
    const old = sync(request(ready(withSpec({ restoreTest: { requestedAt: '2026-01-14T08:00:00Z' } }), done)), LATER);
    assert.deepEqual(old.response.attachments, []);
  });

  it("the schedule's request: tested when it names this backup, with the schedule's settings", () => {
    const object = ready(withSpec({ verify: true }), succeededStatus(), true);
    const at = '2026-01-18T04:00:00Z';
    const result = sync(
      withSchedule(object, schedule(NAME, at, { etcdImage: 'gcr.io/etcd-development/etcd:v3.5.26' })),
    );
    assert.equal(testOf(result)?.requestedAt, at);
    const job: J = result.response.attachments.find((a) => a.kind === 'Job');
    assert.equal(job.spec.template.spec.initContainers[1].image, 'gcr.io/etcd-development/etcd:v3.5.26');
    const other = sync(withSchedule(object, schedule('another-backup', at)));
    assert.deepEqual(other.response.attachments, [], 'a request for another backup');
    const invalid = schedule(NAME, at);
    (invalid.spec as J).retention = -1;
    assert.deepEqual(
      sync(withSchedule(object, invalid)).response.attachments,
      [],
      'a schedule its CRD rejects asks nothing',
    );
    const defaulted: J = sync(withSchedule(object, schedule(NAME, at))).response.attachments.find(
      (a) => a.kind === 'Job',
    );
    assert.equal(defaulted.spec.activeDeadlineSeconds, 1800, "the CRD's defaults");
    assert.equal(defaulted.spec.template.spec.initContainers[2].image, 'gcr.io/etcd-development/etcd:v3.6.16');
  });

  it("an earlier request's Job still there goes first: the new one waits for it", () => {
    const object = ready(withSpec({ restoreTest: {} }));
    const first = sync(request(object)).response.attachments;
    const oldJob = observedJob(first, jobComplete);
    oldJob.metadata.annotations = { [RESTORE_TEST_REQUEST_ANNOTATION]: '2026-01-01T00:00:00Z' };
    const result = sync(request(object, { attachments: [oldJob] }));
    assert.equal(testOf(result)?.result, 'Running');
    assert.deepEqual(result.response.attachments, []);
    assert.equal(result.response.resyncAfterSeconds, 5);
  });

  it('the customize hook asks for the owning schedule by name, and only for a backup a schedule owns', () => {
    const object = ready(withSpec({}), succeededStatus(), true);
    const rules = customizeBackup({ controller: {}, parent: object } as J).relatedResources;
    assert.deepEqual(rules.at(-1), {
      apiVersion: API_VERSION,
      resource: 'talosetcdbackupschedules',
      namespace: 'talos-backup',
      names: ['nightly'],
    });
    const byHand = customizeBackup({ controller: {}, parent: ready(withSpec({})) } as J).relatedResources;
    assert.ok(!byHand.some((r) => r.resource === 'talosetcdbackupschedules'));
  });

  it('a status with a restore test not matching the CRD still gets an answer', () => {
    for (const restoreTest of [null, 'x', { result: 'Running' }, { requestedAt: 'soon', result: 'Running' }]) {
      const object = ready(withSpec({ restoreTest: {} }), { ...succeededStatus(), restoreTest });
      assert.doesNotThrow(() => sync(request(object), NOW), JSON.stringify(restoreTest));
    }
  });
});
