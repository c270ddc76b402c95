// The backup decorator's sync hook (src/server/backup/sync.ts): what a TalosEtcdBackup's status says at each step
// of its life, which objects it attaches and where its snapshot comes from. Pure functions, so every case is one
// request, one clock and one answer; the assertions name the behaviour, never a whole object. The snapshot Job
// itself is snapshot-job.test.ts; the status builder and the verdict, status.test.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Condition } from '../../../src/api/conditions.js';
import { BACKUP_LABEL, RELATED_CONTROL_PLANE_KEY } from '../../../src/api/constants.js';
import { readBackupStatus } from '../../../src/api/validation.js';
import { DEFAULT_ATTACHMENT_DEADLINE_SECONDS } from '../../../src/server/backup/settings.js';
import { CONTROL_PLANE_GRACE_SECONDS, syncBackup, type BackupSyncResult } from '../../../src/server/backup/sync.js';
import type { DecoratorSyncRequest, KubernetesObject } from '../../../src/server/metacontroller/types.js';
import {
  ATTACHED,
  backup,
  BAD_RECIPIENT,
  baseSpec,
  cond,
  condStatus,
  container,
  controlPlane,
  envOf,
  envValue,
  failedReport,
  identify,
  IMAGE,
  type J,
  JOB,
  JOB_STARTED,
  JOB_STATUSES_NOT_WRITTEN_BY_THE_JOB_CONTROLLER,
  jobActive,
  jobComplete,
  jobFailed,
  jobFailureTargetOnly,
  KEY,
  kinds,
  landsWhereSaid,
  LATER,
  NAME,
  NOW,
  NS,
  observedAttachments,
  report,
  request,
  requiredSecrets,
  running,
  snapshotJobOf,
  st,
  STATUSES_NOT_MATCHING_THE_CRD,
  stored,
  succeeded,
  succeededStatus,
  sync,
  tcpSpec,
  withS3,
  withSpec,
} from './fixtures.js';

// ---------------------------------------------------------------------------------------------------------------
// The lifecycle, as a table. Each case is checked on its own, and all of them together for the invariants.

interface Case {
  name: string;
  request: () => DecoratorSyncRequest;
  now?: Date;
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  outcome: BackupSyncResult['outcome'];
  attached: boolean;
  /** Progressing, Ready, Failed */
  conditions: [string, string, string];
  message?: RegExp;
  /** Whether the same request, with the answer's status observed, at a later clock, gives the same answer. */
  stable?: boolean;
  check?: (r: BackupSyncResult) => void;
}

const failedSucceeded = { conditions: ['False', 'True', 'False'] as [string, string, string] };
const failedFailed = { conditions: ['False', 'False', 'True'] as [string, string, string] };
const inProgress = { conditions: ['True', 'False', 'False'] as [string, string, string] };

const cases: Case[] = [
  {
    name: 'a new backup (talosConfigSecretRef, no attachments yet) attaches the Job and its identity and is Pending',
    request: () => ({ object: backup() }),
    phase: 'Pending',
    outcome: 'pending',
    attached: true,
    ...inProgress,
    stable: true,
    check: (r) => {
      assert.equal(cond(r, 'Progressing')!.reason, 'BackupInProgress');
      assert.match(cond(r, 'Progressing')!.message, new RegExp(`Waiting for the snapshot Job ${JOB}`));
      assert.equal(st(r).startTime, undefined);
      assert.equal(st(r).completionTime, undefined);
      assert.equal(st(r).cluster, 'etcd-backup');
      assert.equal(st(r).message, undefined);
      // Called back when the Job's deadline to appear passes (Metacontroller never says a create was refused).
      assert.equal(r.response.resyncAfterSeconds, DEFAULT_ATTACHMENT_DEADLINE_SECONDS);
    },
  },
  {
    name: 'the same new backup with empty attachment maps (as Metacontroller sends them) is Pending too',
    request: () => request(backup()),
    phase: 'Pending',
    outcome: 'pending',
    attached: true,
    ...inProgress,
    stable: true,
  },
  {
    name: 'its Job observed with status.active=1 makes it Running',
    request: () => request(backup(), { attachments: observedAttachments(backup(), jobActive) }),
    phase: 'Running',
    outcome: 'running',
    attached: true,
    ...inProgress,
    stable: true,
    check: (r) => {
      assert.equal(cond(r, 'Progressing')!.reason, 'BackupInProgress');
      assert.match(cond(r, 'Progressing')!.message, new RegExp(`${JOB} is running`));
      assert.equal(st(r).startTime, JOB_STARTED);
      assert.equal(st(r).completionTime, undefined);
    },
  },
  {
    name: 'a Running report with bytesUploaded shows as progress',
    request: () =>
      request(backup({ status: { report: running(12_582_912) } }), {
        attachments: observedAttachments(backup(), jobActive),
      }),
    phase: 'Running',
    outcome: 'running',
    attached: true,
    ...inProgress,
    stable: true,
    check: (r) => {
      assert.deepEqual(st(r).progress, { bytesUploaded: 12_582_912 });
      assert.match(cond(r, 'Progressing')!.message, /12582912 bytes uploaded/);
      assert.equal(
        st(r).startTime,
        JOB_STARTED,
        'the Job started first: its start stays, later attempts do not move it',
      );
      assert.deepEqual(st(r).report, running(12_582_912), 'the report is carried over verbatim');
    },
  },
  {
    name: 'a Running report without a Job in the request (Job not cached yet) is Running',
    request: () => request(backup({ status: { report: running(0) } })),
    phase: 'Running',
    outcome: 'running',
    attached: true,
    ...inProgress,
    stable: true,
    check: (r) => assert.deepEqual(st(r).progress, { bytesUploaded: 0 }),
  },
  {
    name: 'a Succeeded report makes it Succeeded, records the snapshot, and still attaches the Job',
    request: () =>
      request(backup({ status: { report: succeeded } }), { attachments: observedAttachments(backup(), jobActive) }),
    phase: 'Succeeded',
    outcome: 'succeeded',
    attached: true,
    ...failedSucceeded,
    stable: true,
    check: (r) => {
      assert.deepEqual(st(r).snapshot, { ...stored, compression: 'none', encrypted: false, verified: false });
      assert.deepEqual(st(r).progress, { bytesUploaded: stored.size });
      assert.equal(st(r).completionTime, '2026-01-15T12:03:05Z', "the report's updatedAt");
      assert.equal(st(r).startTime, JOB_STARTED);
      assert.equal(st(r).message, undefined, 'message is for failures only');
      assert.equal(cond(r, 'Ready')!.reason, 'BackupSucceeded');
      assert.equal(cond(r, 'Progressing')!.reason, 'BackupCompleted');
      assert.equal(cond(r, 'Failed')!.reason, 'BackupSucceeded');
      assert.match(cond(r, 'Ready')!.message, new RegExp(`s3://etcd-backups/${KEY}`));
      assert.deepEqual(st(r).report, succeeded);
      assert.equal(r.message, undefined);
    },
  },
  {
    name: 'a Succeeded report with the Job Complete is Succeeded',
    request: () =>
      request(backup({ status: { report: succeeded } }), { attachments: observedAttachments(backup(), jobComplete) }),
    phase: 'Succeeded',
    outcome: 'succeeded',
    attached: true,
    ...failedSucceeded,
    stable: true,
  },
  {
    name: 'a Failed report with retryable:false fails the backup with its message',
    request: () =>
      request(
        backup({
          status: {
            report: failedReport(
              'Failed to get secret talos-backup/s3-credentials: key access-key-id not found',
              false,
            ),
          },
        }),
        { attachments: observedAttachments(backup(), jobActive) },
      ),
    phase: 'Failed',
    outcome: 'failed',
    attached: true,
    ...failedFailed,
    message: /^Failed to get secret talos-backup\/s3-credentials: key access-key-id not found$/,
    stable: true,
    check: (r) => {
      assert.equal(cond(r, 'Failed')!.reason, 'BackupFailed');
      assert.equal(cond(r, 'Ready')!.reason, 'BackupFailed');
      assert.equal(cond(r, 'Failed')!.message, st(r).message);
      assert.equal(st(r).completionTime, '2026-01-15T12:02:40Z');
      assert.equal(st(r).snapshot, undefined);
      assert.equal(r.message, st(r).message);
    },
  },
  {
    name: 'a Failed report with retryable:true while the Job is still active stays Running and says the Job retries',
    request: () =>
      request(backup({ status: { report: failedReport('Failed to upload snapshot to S3: connection reset', true) } }), {
        attachments: observedAttachments(backup(), { ...jobActive, failed: 1 }),
      }),
    phase: 'Running',
    outcome: 'running',
    attached: true,
    ...inProgress,
    stable: true,
    check: (r) => {
      const message = cond(r, 'Progressing')!.message;
      assert.match(message, /retr/i);
      assert.match(message, /Failed to upload snapshot to S3: connection reset/);
      assert.match(message, /^An attempt failed, the Job retries: /);
      assert.equal(st(r).message, undefined);
      assert.equal(st(r).completionTime, undefined);
    },
  },
  {
    name: 'the Job Failed (BackoffLimitExceeded) without a report fails with its reason and a kubectl hint',
    request: () =>
      request(backup(), {
        attachments: observedAttachments(
          backup(),
          jobFailed('BackoffLimitExceeded', 'Job has reached the specified backoff limit'),
        ),
      }),
    phase: 'Failed',
    outcome: 'failed',
    attached: true,
    ...failedFailed,
    message: /BackoffLimitExceeded/,
    stable: true,
    check: (r) => {
      assert.match(st(r).message, /Job has reached the specified backoff limit/);
      assert.match(st(r).message, new RegExp(`kubectl logs -n ${NS} -l ${BACKUP_LABEL.replace(/\./g, '\\.')}=${NAME}`));
      // When the Job controller decided (FailureTarget) or recorded (Failed) the failure: a second apart.
      assert.ok(['2026-01-15T12:04:00Z', '2026-01-15T12:04:01Z'].includes(st(r).completionTime), st(r).completionTime);
    },
  },
  {
    name: 'the Job Failed (DeadlineExceeded) without a report fails with its reason',
    request: () =>
      request(backup(), {
        attachments: observedAttachments(
          backup(),
          jobFailed('DeadlineExceeded', 'Job was active longer than specified deadline', 1),
        ),
      }),
    phase: 'Failed',
    outcome: 'failed',
    attached: true,
    ...failedFailed,
    message: /DeadlineExceeded.*kubectl/,
    stable: true,
  },
  {
    name: 'the Job Failed with a retryable Failed report fails with the report message and the Job reason',
    request: () =>
      request(backup({ status: { report: failedReport('Failed to upload snapshot to S3: SlowDown', true) } }), {
        attachments: observedAttachments(
          backup(),
          jobFailed('BackoffLimitExceeded', 'Job has reached the specified backoff limit'),
        ),
      }),
    phase: 'Failed',
    outcome: 'failed',
    attached: true,
    ...failedFailed,
    message: /^Failed to upload snapshot to S3: SlowDown.*BackoffLimitExceeded/,
    stable: true,
    check: (r) => assert.match(st(r).message, /3 failed attempt/),
  },
  {
    name: 'the Job Complete without a Succeeded report is a failure',
    request: () =>
      request(backup({ status: { report: running(4096) } }), {
        attachments: observedAttachments(backup(), jobComplete),
      }),
    phase: 'Failed',
    outcome: 'failed',
    attached: true,
    ...failedFailed,
    message: /completed without reporting a stored snapshot.*kubectl logs/,
    stable: true,
    check: (r) => assert.equal(st(r).completionTime, '2026-01-15T12:03:10Z'),
  },
  {
    name: 'a Succeeded report without the stored object (no key) and the Job Complete is a failure, not a success',
    request: () =>
      request(backup({ status: { report: report({ state: 'Succeeded', snapshot: { ...stored, key: '' } }) } }), {
        attachments: observedAttachments(backup(), jobComplete),
      }),
    phase: 'Failed',
    outcome: 'failed',
    attached: true,
    ...failedFailed,
    message: /without reporting a stored snapshot/,
    stable: true,
  },
  {
    name: 'a Job with only FailureTarget=True (its pods still stopping) counts as failed',
    request: () =>
      request(backup(), { attachments: observedAttachments(backup(), jobFailureTargetOnly('PodFailurePolicy')) }),
    phase: 'Failed',
    outcome: 'failed',
    attached: true,
    ...failedFailed,
    message: /PodFailurePolicy/,
    stable: true,
  },
  {
    name: 'an invalid spec (no backupStorage) fails with "Invalid spec" and attaches nothing',
    request: () => request(backup({ spec: { talosConfigSecretRef: { name: 'etcd-backup' } } })),
    phase: 'Failed',
    outcome: 'failed',
    attached: false,
    ...failedFailed,
    message: /^Invalid spec: .*backupStorage/,
    stable: true,
    check: (r) => assert.equal(st(r).completionTime, '2026-01-15T12:05:00Z'),
  },
  {
    name: 'an invalid spec (both talos refs) fails with "Invalid spec" and attaches nothing',
    request: () =>
      request(backup({ spec: withSpec({ talosControlPlaneRef: { name: 'my-cluster' } }) }), {
        related: [controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } })],
      }),
    phase: 'Failed',
    outcome: 'failed',
    attached: false,
    ...failedFailed,
    message: /^Invalid spec: .*exactly one of talosControlPlaneRef and talosConfigSecretRef/,
    stable: true,
  },
  {
    name: 'an invalid spec while its Job runs fails and lets the Job go',
    request: () =>
      request(backup({ spec: withS3({ accessKeyID: undefined }) }), {
        attachments: observedAttachments(backup(), jobActive),
      }),
    phase: 'Failed',
    outcome: 'failed',
    attached: false,
    ...failedFailed,
    message: /^Invalid spec: .*accessKeyID and secretAccessKey must be set together/,
    stable: true,
  },
  {
    name: 'an age recipient that the CRD pattern lets through but is no age public key fails naming the field',
    request: () => request(backup({ spec: withSpec({ encryption: { age: { recipients: [BAD_RECIPIENT] } } }) })),
    phase: 'Failed',
    outcome: 'failed',
    attached: false,
    ...failedFailed,
    message: /^Invalid spec: spec\.encryption\.age\.recipients: /,
    stable: true,
  },
  {
    name: 'a TalosControlPlane missing from related, 5 s after creation, waits (Pending, resync, nothing attached)',
    request: () => request(backup({ spec: tcpSpec(), created: '2026-01-15T12:04:55Z' })),
    phase: 'Pending',
    outcome: 'pending',
    attached: false,
    ...inProgress,
    check: (r) => {
      assert.equal(r.response.resyncAfterSeconds, CONTROL_PLANE_GRACE_SECONDS - 5);
      assert.match(cond(r, 'Progressing')!.message, /Failed to get TalosControlPlane/);
      assert.equal(st(r).message, undefined);
    },
  },
  {
    name: 'a TalosControlPlane missing from related, 40 s after creation, fails',
    request: () => request(backup({ spec: tcpSpec(), created: '2026-01-15T12:04:20Z' })),
    phase: 'Failed',
    outcome: 'failed',
    attached: false,
    ...failedFailed,
    message: new RegExp(`^Failed to get TalosControlPlane.*${NS}/my-cluster`),
    stable: true,
    check: (r) => assert.equal(r.response.resyncAfterSeconds, undefined),
  },
  {
    name: 'a metal TalosControlPlane that lists no endpoints yet waits within the grace period',
    request: () =>
      request(backup({ spec: tcpSpec(), created: '2026-01-15T12:04:50Z' }), {
        related: [controlPlane('my-cluster', { mode: 'metal' })],
      }),
    phase: 'Pending',
    outcome: 'pending',
    attached: false,
    ...inProgress,
    check: (r) => assert.equal(r.response.resyncAfterSeconds, 20),
  },
  {
    name: 'a metal TalosControlPlane that still lists no endpoints after the grace period fails, suggesting spec.endpoints',
    request: () =>
      request(backup({ spec: tcpSpec() }), {
        related: [controlPlane('my-cluster', { mode: 'metal', bundleConfig: { clientEndpoint: [] } })],
      }),
    phase: 'Failed',
    outcome: 'failed',
    attached: false,
    ...failedFailed,
    message: /^Failed to get TalosControlPlane.*spec\.endpoints/,
    stable: true,
  },
  {
    name: 'a related metal TalosControlPlane with endpoints gives a Pending backup with its Job',
    request: () =>
      request(backup({ spec: tcpSpec() }), {
        related: [controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1', '10.0.0.2'] } })],
      }),
    phase: 'Pending',
    outcome: 'pending',
    attached: true,
    ...inProgress,
    stable: true,
    check: (r) => assert.equal(st(r).cluster, 'my-cluster'),
  },
];

describe('syncBackup: the lifecycle', () => {
  for (const c of cases) {
    it(c.name, () => {
      const r = sync(c.request(), c.now);
      assert.equal(st(r).phase, c.phase);
      assert.equal(r.outcome, c.outcome);
      assert.deepEqual([condStatus(r, 'Progressing'), condStatus(r, 'Ready'), condStatus(r, 'Failed')], c.conditions);
      assert.deepEqual(kinds(r), c.attached ? ATTACHED : []);
      if (c.message) assert.match(String(st(r).message), c.message);
      c.check?.(r);
    });
  }
});

describe('syncBackup: invariants over every lifecycle case', () => {
  const answers = cases.map((c) => ({ c, r: sync(c.request(), c.now) }));

  it('never Ready=True and Failed=True together, and the phase agrees with the conditions', () => {
    for (const { c, r } of answers) {
      const ready = condStatus(r, 'Ready') === 'True';
      const failed = condStatus(r, 'Failed') === 'True';
      assert.ok(!(ready && failed), c.name);
      assert.equal(ready, st(r).phase === 'Succeeded', c.name);
      assert.equal(failed, st(r).phase === 'Failed', c.name);
      assert.equal(
        condStatus(r, 'Progressing') === 'True',
        st(r).phase === 'Pending' || st(r).phase === 'Running',
        c.name,
      );
    }
  });

  it('status.message is set exactly for failures, equals the Failed condition message, and so does the result message', () => {
    for (const { c, r } of answers) {
      if (st(r).phase === 'Failed') {
        assert.equal(typeof st(r).message, 'string', c.name);
        assert.equal(cond(r, 'Failed')!.message, st(r).message, c.name);
        assert.equal(r.message, st(r).message, c.name);
      } else {
        assert.equal(st(r).message, undefined, c.name);
        assert.equal(r.message, undefined, c.name);
      }
    }
  });

  it('completionTime is set exactly when the backup finished', () => {
    for (const { c, r } of answers)
      assert.equal(st(r).completionTime !== undefined, c.phase === 'Succeeded' || c.phase === 'Failed', c.name);
  });

  it('observedGeneration (status and conditions) is metadata.generation', () => {
    for (const c of cases) {
      const req = c.request();
      req.object.metadata.generation = 7;
      const r = sync(req, c.now);
      assert.equal(st(r).observedGeneration, 7, c.name);
      for (const k of st(r).conditions as Condition[]) assert.equal(k.observedGeneration, 7, `${c.name}: ${k.type}`);
    }
  });

  it('every condition has a reason, a message and a second-precision lastTransitionTime', () => {
    for (const { c, r } of answers) {
      assert.deepEqual(
        (st(r).conditions as Condition[]).map((k) => k.type),
        ['Progressing', 'Ready', 'Failed'],
        c.name,
      );
      for (const k of st(r).conditions as Condition[]) {
        assert.ok(
          ['BackupInProgress', 'BackupCompleted', 'BackupSucceeded', 'BackupFailed'].includes(k.reason),
          `${c.name}: ${k.reason}`,
        );
        assert.ok(k.message.length > 0, `${c.name}: ${k.type} message`);
        assert.match(k.lastTransitionTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, c.name);
      }
    }
  });

  it('every status is valid against the CRD status schema (the API server would store it)', () => {
    for (const { c, r } of answers) assert.deepEqual(readBackupStatus(st(r)), st(r), c.name);
  });

  it('the same request twice at the same clock gives deep-equal answers', () => {
    for (const c of cases) assert.deepEqual(sync(c.request(), c.now), sync(c.request(), c.now), c.name);
  });

  it('fed its own status back at a later clock, a backup gets the same status (lastTransitionTime carried over)', () => {
    for (const { c, r } of answers.filter((a) => a.c.stable)) {
      const req = c.request();
      req.object = { ...req.object, status: structuredClone(st(r)) };
      // A Pending backup waits for its Job only so long (DEFAULT_ATTACHMENT_DEADLINE_SECONDS): stable within it.
      const again = sync(req, c.phase === 'Pending' ? new Date(NOW.getTime() + 60_000) : LATER);
      assert.deepEqual(again.response.status, r.response.status, c.name);
      if (c.phase === 'Succeeded' || c.phase === 'Failed') {
        // The outcome is recorded: the answer repeats it and lets the Job and its helpers go.
        assert.deepEqual(again.response.attachments, [], c.name);
        assert.equal(again.outcome, 'finished', c.name);
      } else {
        assert.deepEqual(again.response.attachments, r.response.attachments, c.name);
        assert.equal(again.outcome, r.outcome, c.name);
      }
    }
  });
});

describe('syncBackup: a finished backup', () => {
  it('observed Succeeded (Ready=True): the status comes back unchanged and nothing is attached', () => {
    const status = succeededStatus();
    const r = sync(request(backup({ status }), { attachments: observedAttachments(backup(), jobComplete) }), LATER);
    assert.deepEqual(r.response.status, status);
    assert.deepEqual(r.response.attachments, []);
    assert.equal(r.outcome, 'finished');
    assert.equal(r.response.resyncAfterSeconds, undefined);
  });

  it('observed Failed: the status comes back unchanged and nothing is attached, whatever the Job says now', () => {
    const failed = st(
      sync(request(backup(), { attachments: observedAttachments(backup(), jobFailed('BackoffLimitExceeded', 'x')) })),
    );
    const r = sync(
      request(backup({ status: failed, spec: withSpec({ compression: 'zstd' }) }), {
        attachments: observedAttachments(backup(), jobActive),
      }),
      LATER,
    );
    assert.deepEqual(r.response.status, failed);
    assert.deepEqual(r.response.attachments, []);
  });

  it('a finished backup is never run again, even after its spec changed (generation 2)', () => {
    const status = succeededStatus();
    const r = sync(request(backup({ status, generation: 2, spec: withS3({ bucket: 'other-bucket' }) })), LATER);
    assert.deepEqual(r.response.attachments, []);
    assert.equal(r.response.status.phase, 'Succeeded');
  });
});

describe('syncBackup: an observed status that does not match the CRD', () => {
  for (const status of STATUSES_NOT_MATCHING_THE_CRD) {
    it(`status ${JSON.stringify(status)}: sync answers without throwing`, () => {
      const object = backup({ status, spec: withSpec({ deletionPolicy: 'Delete' }) });
      assert.doesNotThrow(() => sync(request(object, { attachments: observedAttachments(backup(), jobActive) })));
    });
  }

  it('an observed Job whose status is not what the Job controller writes is answered without throwing', () => {
    for (const jobStatus of JOB_STATUSES_NOT_WRITTEN_BY_THE_JOB_CONTROLLER) {
      const jobs = observedAttachments(backup(), {}).map((a) => (a.kind === 'Job' ? { ...a, status: jobStatus } : a));
      assert.doesNotThrow(() => sync(request(backup(), { attachments: jobs })), JSON.stringify(jobStatus));
    }
  });

  it('an unreadable status is not trusted: the backup runs as a new one', () => {
    const r = sync(request(backup({ status: { conditions: [1, 'x'] } })));
    assert.equal(st(r).phase, 'Pending');
    assert.deepEqual(kinds(r), ATTACHED);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Where the snapshot comes from.

describe('syncBackup: the Talos source', () => {
  const jobFor = (spec: Record<string, unknown>, related: KubernetesObject[] = []) => {
    const r = sync(request(backup({ spec }), { related }));
    assert.equal(r.response.attachments.length, 4, JSON.stringify(r.response.status));
    return { r, job: snapshotJobOf(r) };
  };
  const talosVolume = (job: J) => (job.spec.template.spec.volumes as J[]).find((v) => v.name === 'talosconfig');

  it('a metal TalosControlPlane: its clientEndpoints, its talosconfig Secret and its name as the cluster', () => {
    const { r, job } = jobFor(tcpSpec(), [
      controlPlane('my-cluster', {
        bundleConfig: { clusterName: 'my-cluster', clientEndpoint: ['10.0.0.1', '10.0.0.2'] },
      }),
    ]);
    assert.equal(envValue(job, 'TALOS_ENDPOINTS'), '10.0.0.1,10.0.0.2');
    assert.equal(envValue(job, 'CLUSTER_NAME'), 'my-cluster');
    assert.equal(st(r).cluster, 'my-cluster');
    assert.deepEqual(talosVolume(job).secret, {
      secretName: 'my-cluster-talosconfig',
      items: [{ key: 'my-cluster.talosconfig', path: 'config' }],
      optional: true,
    });
    assert.equal(envValue(job, 'TALOSCONFIG'), '/var/run/secrets/talos.dev/config');
    const mount = (container(job).volumeMounts as J[]).find((m) => m.name === 'talosconfig');
    assert.deepEqual(mount, { name: 'talosconfig', mountPath: '/var/run/secrets/talos.dev', readOnly: true });
  });

  it('a TalosControlPlane owned by a TalosCluster: the Secret is named after the TalosCluster', () => {
    const { job } = jobFor(tcpSpec(), [
      controlPlane('my-cluster', { owner: 'prod', bundleConfig: { clientEndpoint: ['10.0.0.1'] } }),
    ]);
    assert.equal(talosVolume(job).secret.secretName, 'prod-talosconfig');
    assert.deepEqual(talosVolume(job).secret.items, [{ key: 'my-cluster.talosconfig', path: 'config' }]);
    assert.deepEqual(requiredSecrets(job).map(identify), [
      'Secret/prod-talosconfig/my-cluster.talosconfig',
      'Secret/s3-credentials/access-key-id',
      'Secret/s3-credentials/secret-access-key',
    ]);
    assert.ok(landsWhereSaid(job, requiredSecrets(job)[0]));
  });

  it('an owner of another kind does not rename the Secret', () => {
    const tcp = controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } });
    tcp.metadata.ownerReferences = [{ apiVersion: 'example.com/v1', kind: 'Something', name: 'other', uid: 'u' }];
    assert.equal(talosVolume(jobFor(tcpSpec(), [tcp]).job).secret.secretName, 'my-cluster-talosconfig');
  });

  it('a container-mode TalosControlPlane without clientEndpoints is dialled at its Service, named after it', () => {
    const { job } = jobFor(tcpSpec(), [
      controlPlane('my-cluster', { mode: 'container', bundleConfig: { clusterName: 'my-cluster' } }),
    ]);
    assert.equal(envValue(job, 'TALOS_ENDPOINTS'), 'my-cluster');
  });

  it('a bundleConfig that is not JSON counts as listing no endpoints', () => {
    const { job } = jobFor(tcpSpec(), [controlPlane('my-cluster', { mode: 'container', bundleConfig: 'not json{' })]);
    assert.equal(envValue(job, 'TALOS_ENDPOINTS'), 'my-cluster');
  });

  it('spec.endpoints overrides the TalosControlPlane endpoints', () => {
    const { job } = jobFor(tcpSpec({ endpoints: ['cp.example.internal:50000'] }), [
      controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } }),
    ]);
    assert.equal(envValue(job, 'TALOS_ENDPOINTS'), 'cp.example.internal:50000');
  });

  it('spec.endpoints also lets a metal TalosControlPlane without endpoints go ahead', () => {
    const { job } = jobFor(tcpSpec({ endpoints: ['10.9.9.9'] }), [controlPlane('my-cluster', { mode: 'metal' })]);
    assert.equal(envValue(job, 'TALOS_ENDPOINTS'), '10.9.9.9');
  });

  it('spec.clusterName overrides the cluster (status and key segment)', () => {
    const { r, job } = jobFor(tcpSpec({ clusterName: 'prod-eu' }), [
      controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } }),
    ]);
    assert.equal(envValue(job, 'CLUSTER_NAME'), 'prod-eu');
    assert.equal(st(r).cluster, 'prod-eu');
    const secret = jobFor(withSpec({ clusterName: 'prod-eu' }));
    assert.equal(envValue(secret.job, 'CLUSTER_NAME'), 'prod-eu');
    assert.equal(st(secret.r).cluster, 'prod-eu');
  });

  it('a related TalosControlPlane keyed namespace/name (hook v2) is found too', () => {
    const tcp = controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.7'] } });
    const req = request(backup({ spec: tcpSpec() }));
    req.related = { [RELATED_CONTROL_PLANE_KEY]: { [`${NS}/my-cluster`]: tcp } };
    assert.equal(envValue(snapshotJobOf(sync(req)), 'TALOS_ENDPOINTS'), '10.0.0.7');
  });

  it('a TalosControlPlane of another name in related does not count', () => {
    const r = sync(
      request(backup({ spec: tcpSpec() }), {
        related: [controlPlane('other-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } })],
      }),
    );
    assert.equal(st(r).phase, 'Failed');
    assert.match(st(r).message, /^Failed to get TalosControlPlane/);
  });

  it('talosConfigSecretRef: that Secret (key defaulted to config), the cluster named after it, the talosconfig endpoints', () => {
    const { r, job } = jobFor(baseSpec());
    assert.deepEqual(talosVolume(job).secret, {
      secretName: 'etcd-backup',
      items: [{ key: 'config', path: 'config' }],
      optional: true,
    });
    assert.equal(envValue(job, 'CLUSTER_NAME'), 'etcd-backup');
    assert.equal(st(r).cluster, 'etcd-backup');
    assert.equal(envOf(job).TALOS_ENDPOINTS, undefined, "no override: the talosconfig's own endpoints");
    const custom = jobFor(
      withSpec({
        talosConfigSecretRef: { name: 'etcd-backup', key: 'talosconfig.yaml' },
        endpoints: ['10.0.0.1', '10.0.0.2:50001'],
      }),
    ).job;
    assert.deepEqual(talosVolume(custom).secret.items, [{ key: 'talosconfig.yaml', path: 'config' }]);
    assert.equal(envValue(custom, 'TALOS_ENDPOINTS'), '10.0.0.1,10.0.0.2:50001');
  });

  it('a TalosControlPlane that disappears while its Job runs does not fail the backup: the Job has what it needs', () => {
    const related = [controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } })];
    const object = backup({ spec: tcpSpec(), created: '2026-01-15T12:04:59Z' });
    const attachments = observedAttachments(object, jobActive, related);
    const running = sync(request(object, { attachments }));
    assert.equal(st(running).phase, 'Running');
    assert.deepEqual(
      kinds(running),
      attachments.map((a) => `${a.kind}/${a.metadata.name}`).sort(),
      'the observed Job and helpers stay',
    );
    assert.equal(snapshotJobOf(running).status, undefined, 're-emitted without status');

    // Its stored snapshot still counts when the TalosControlPlane is gone.
    const done = sync(
      request(backup({ spec: tcpSpec(), status: { report: succeeded } }), {
        attachments: observedAttachments(object, jobComplete, related),
      }),
    );
    assert.equal(st(done).phase, 'Succeeded');
    assert.equal(st(done).snapshot.key, KEY);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// What a real cluster does that Metacontroller never tells the hook (issue 13): refused creates, no
// TalosControlPlane CRD, related objects named like Object.prototype's keys.

describe('syncBackup: a Job Metacontroller could not create, no talos-operator, names like Object.prototype keys', () => {
  const DEADLINE = DEFAULT_ATTACHMENT_DEADLINE_SECONDS;

  const at = (seconds: number) => new Date(NOW.getTime() + seconds * 1000);

  /** The status a sync at `now` writes, fed back as Metacontroller would on the next call. */
  const afterSync = (object: KubernetesObject, now: Date): KubernetesObject => ({
    ...object,
    status: st(sync(request(object), now)),
  });

  it('a snapshot Job that never appears: Pending with a callback at the deadline, then Failed naming where Metacontroller says why', () => {
    const pending = afterSync(backup(), NOW); // Progressing=True since NOW (the hook's clock)
    const before = sync(request(pending), at(DEADLINE - 1));
    assert.equal(st(before).phase, 'Pending');
    assert.equal(before.response.resyncAfterSeconds, 1);
    assert.equal(kinds(before).length, 4, 'still asking for the Job and its identity');
    const after = sync(request(pending), at(DEADLINE));
    assert.equal(after.outcome, 'failed');
    assert.equal(st(after).phase, 'Failed');
    assert.deepEqual(after.response.attachments, []);
    assert.equal(
      st(after).message,
      `Failed to create the snapshot Job: ${JOB} did not appear within ${DEADLINE}s of being asked for. Metacontroller records why as a Warning event on this backup (a ResourceQuota on jobs, an admission webhook, RBAC that does not let Metacontroller create the Job, its ServiceAccount, Role or RoleBinding): kubectl get events -n ${NS} --field-selector involvedObject.name=${NAME}`,
    );
    assert.equal(cond(after, 'Failed')?.status, 'True');
  });

  it('the deadline counts from when the hook first asked (its own clock), not from creationTimestamp; a configured one applies', () => {
    // Created long ago by the API server's clock: the first answer only starts the wait.
    const old = backup({ created: '2026-01-01T00:00:00Z' });
    assert.equal(st(sync(request(old), NOW)).phase, 'Pending');
    const pending = afterSync(old, NOW);
    assert.equal(
      syncBackup(request(pending), at(59), IMAGE, { attachmentDeadlineSeconds: 60, talosOperator: true }).response
        .resyncAfterSeconds,
      1,
    );
    assert.equal(
      syncBackup(request(pending), at(60), IMAGE, { attachmentDeadlineSeconds: 60, talosOperator: true }).outcome,
      'failed',
    );
  });

  it('an observed Job is never subject to the deadline', () => {
    const pending = afterSync(backup(), NOW);
    const r = sync(request(pending, { attachments: observedAttachments(backup(), jobActive) }), at(DEADLINE * 10));
    assert.equal(st(r).phase, 'Running');
    assert.equal(r.response.resyncAfterSeconds, undefined);
  });

  it('without talos-operator (TALOS_OPERATOR=false) a talosControlPlaneRef backup fails at once, saying what to do; a talosconfig Secret works', () => {
    const off = { attachmentDeadlineSeconds: DEADLINE, talosOperator: false };
    const r = syncBackup(request(backup({ spec: tcpSpec() })), NOW, IMAGE, off);
    assert.equal(r.outcome, 'failed');
    assert.equal(
      st(r).message,
      'Failed to get TalosControlPlane: TalosControlPlane CRD not found when talos-etcd-backup was installed (TALOS_OPERATOR=false): install talos-operator and run helm upgrade, or use talosConfigSecretRef',
    );
    assert.equal(syncBackup(request(backup()), NOW, IMAGE, off).outcome, 'pending');
  });

  it('a TalosControlPlane or Job named like an Object.prototype key (constructor) is looked up as an own key only', () => {
    const spec = tcpSpec({ talosControlPlaneRef: { name: 'constructor' } });
    const missing = sync(request(backup({ spec })), LATER);
    assert.match(
      st(missing).message,
      /^Failed to get TalosControlPlane talos-backup\/constructor: not found in the backup's namespace/,
    );
    const found = sync(request(backup({ spec }), { related: [controlPlane('constructor', { mode: 'container' })] }));
    assert.equal(st(found).phase, 'Pending');
    assert.equal(st(found).cluster, 'constructor');
  });
});
