// The backup decorator's decisions (src/server/backup/sync.ts): what a TalosEtcdBackup's status says at each step of
// its life, which objects it attaches, how its Job is built, and how it goes away. Pure functions, so every
// case is one request, one clock and one answer; the assertions name the behaviour, never a whole object.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  API_VERSION,
  BACKUP_KIND,
  BACKUP_LABEL,
  CONTROLLER_UID_LABEL,
  JOB_KEY,
  RELATED_CONTROL_PLANE_KEY,
  ROLE_BINDING_KEY,
  ROLE_KEY,
  SCHEDULE_LABEL,
  SCHEDULED_TIME_ANNOTATION,
  SERVICE_ACCOUNT_KEY,
} from '../../../src/api/constants.js';
import type { BackupReport } from '../../../src/api/types.js';
import { readBackupStatus } from '../../../src/api/validation.js';
import type { JobImage } from '../../../src/server/backup/job.js';
import { attachmentName } from '../../../src/server/backup/names.js';
import { customizeBackup } from '../../../src/server/backup/customize.js';
import { finalizeBackup } from '../../../src/server/backup/finalize.js';
import { DEFAULT_ATTACHMENT_DEADLINE_SECONDS } from '../../../src/server/backup/settings.js';
import { CONTROL_PLANE_GRACE_SECONDS, syncBackup, type BackupSyncResult } from '../../../src/server/backup/sync.js';
import type { DecoratorSyncRequest, KubernetesObject } from '../../../src/server/metacontroller/types.js';
import type { Condition } from '../../../src/api/conditions.js';

// ---------------------------------------------------------------------------------------------------------------
// Builders: requests shaped like Metacontroller's (hook v1: attachments and related keyed by name).

type J = any; // for reading into answers: the assertions say what is expected

const NS = 'talos-backup';
const NAME = 'manual-backup';
const UID = '0b5c7a52-1d8e-4c1a-9f0e-6c2d9a4b7e31';
const CREATED = '2026-01-15T12:00:00Z';
const NOW = new Date('2026-01-15T12:05:00Z');
const LATER = new Date('2026-01-15T18:00:00Z');
/** Matches the CRD's pattern for age recipients, but its bech32 checksum is wrong: no age public key. */
const BAD_RECIPIENT = 'age1' + 'q'.repeat(58);
const IMAGE: JobImage = { image: 'registry.example.com/talos-etcd-backup:0.1.0', pullPolicy: 'IfNotPresent', pullSecrets: [] };
const JOB = attachmentName(NAME, 'snapshot');
const DELETE_JOB = attachmentName(NAME, 'delete');
const KEY = 'talos-operator-etcd-backups/etcd-backup/etcd-snapshot-2026-01-15T12-00-00Z.db';
const SHA = 'a'.repeat(64);
const ETCD_SHA = 'b'.repeat(64);
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function baseSpec(): Record<string, unknown> {
  return {
    talosConfigSecretRef: { name: 'etcd-backup' },
    backupStorage: {
      s3: {
        bucket: 'etcd-backups',
        region: 'us-east-1',
        endpoint: 'https://minio.example.internal:9000',
        accessKeyID: { name: 's3-credentials', key: 'access-key-id' },
        secretAccessKey: { name: 's3-credentials', key: 'secret-access-key' },
      },
    },
  };
}

interface BackupOpts {
  name?: string;
  spec?: Record<string, unknown>;
  status?: unknown;
  generation?: number;
  created?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  uid?: string;
}

function backup(opts: BackupOpts = {}): KubernetesObject {
  const spec = opts.spec ?? baseSpec();
  return {
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: {
      name: opts.name ?? NAME,
      namespace: NS,
      uid: opts.uid ?? UID,
      generation: opts.generation ?? 1,
      resourceVersion: '4711',
      creationTimestamp: opts.created ?? CREATED,
      ...(opts.labels && { labels: opts.labels }),
      annotations: { ...opts.annotations, 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ spec }) },
      finalizers: ['metacontroller.io/decoratorcontroller-talos-etcd-backup'],
    },
    spec,
    ...(opts.status !== undefined && { status: opts.status }),
  };
}

const withSpec = (patch: Record<string, unknown>): Record<string, unknown> => ({ ...baseSpec(), ...patch });
/** The base spec with S3 fields replaced; a field patched to undefined is removed. */
const withS3 = (patch: Record<string, unknown>): Record<string, unknown> => {
  const spec = baseSpec() as J;
  const s3 = Object.fromEntries(Object.entries({ ...spec.backupStorage.s3, ...patch }).filter(([, v]) => v !== undefined));
  return { ...spec, backupStorage: { s3 } };
};

function keyed(objects: KubernetesObject[]): Record<string, KubernetesObject> {
  return Object.fromEntries(objects.map((o) => [o.metadata.name, o]));
}

function request(object: KubernetesObject, opts: { attachments?: KubernetesObject[]; related?: KubernetesObject[] } = {}): DecoratorSyncRequest {
  const of = (kind: string) => keyed((opts.attachments ?? []).filter((a) => a.kind === kind));
  return {
    controller: { metadata: { name: 'talos-etcd-backup' } },
    object,
    attachments: { [JOB_KEY]: of('Job'), [SERVICE_ACCOUNT_KEY]: of('ServiceAccount'), [ROLE_KEY]: of('Role'), [ROLE_BINDING_KEY]: of('RoleBinding') },
    related: { [RELATED_CONTROL_PLANE_KEY]: keyed(opts.related ?? []) },
    finalizing: false,
  };
}

const sync = (req: DecoratorSyncRequest, now = NOW): BackupSyncResult => syncBackup(req, now, IMAGE);

/** The objects a backup attaches, as the API server returns them: with a Job status, and the labels Kubernetes adds. */
function observedAttachments(object: KubernetesObject, jobStatus: Record<string, unknown>, related: KubernetesObject[] = []): KubernetesObject[] {
  const fresh = sync(request({ ...object, status: undefined }, { related }));
  assert.equal(fresh.response.attachments.length, 4, 'the builder expects a backup that attaches its Job');
  return fresh.response.attachments.map((a) => {
    const meta = { ...a.metadata, uid: `uid-${a.metadata.name}`, resourceVersion: '5000', annotations: { 'metacontroller.k8s.io/decorator-controller': 'talos-etcd-backup' } };
    if (a.kind !== 'Job') return { ...a, metadata: meta };
    const k8sLabels = { [CONTROLLER_UID_LABEL]: 'job-uid', 'batch.kubernetes.io/controller-uid': 'job-uid', 'job-name': JOB, 'batch.kubernetes.io/job-name': JOB };
    const spec = a.spec as J;
    return {
      ...a,
      metadata: meta,
      spec: { ...spec, completions: 1, parallelism: 1, selector: { matchLabels: { 'batch.kubernetes.io/controller-uid': 'job-uid' } }, template: { ...spec.template, metadata: { labels: { ...spec.template.metadata.labels, ...k8sLabels } } } },
      status: jobStatus,
    };
  });
}

function syncWithJob(object: KubernetesObject, jobStatus: Record<string, unknown>, now = NOW): BackupSyncResult {
  return sync(request(object, { attachments: observedAttachments(object, jobStatus) }), now);
}

const JOB_STARTED = '2026-01-15T12:00:03Z';
const jobActive = { active: 1, startTime: JOB_STARTED, ready: 1, terminating: 0 };
const jobFailed = (reason: string, message: string, failedPods = 3) => ({
  failed: failedPods,
  startTime: JOB_STARTED,
  terminating: 0,
  conditions: [
    { type: 'FailureTarget', status: 'True', reason, message, lastProbeTime: '2026-01-15T12:04:00Z', lastTransitionTime: '2026-01-15T12:04:00Z' },
    { type: 'Failed', status: 'True', reason, message, lastProbeTime: '2026-01-15T12:04:01Z', lastTransitionTime: '2026-01-15T12:04:01Z' },
  ],
});
const jobFailureTargetOnly = (reason: string) => ({
  active: 0,
  failed: 1,
  terminating: 1,
  startTime: JOB_STARTED,
  conditions: [{ type: 'FailureTarget', status: 'True', reason, message: 'Container backup for pod talos-backup/x failed with exit code 2 matching FailJob rule at index 0', lastProbeTime: '2026-01-15T12:02:00Z', lastTransitionTime: '2026-01-15T12:02:00Z' }],
});
const jobComplete = {
  succeeded: 1,
  startTime: JOB_STARTED,
  completionTime: '2026-01-15T12:03:10Z',
  conditions: [
    { type: 'SuccessCriteriaMet', status: 'True', lastProbeTime: '2026-01-15T12:03:10Z', lastTransitionTime: '2026-01-15T12:03:10Z' },
    { type: 'Complete', status: 'True', lastProbeTime: '2026-01-15T12:03:10Z', lastTransitionTime: '2026-01-15T12:03:10Z' },
  ],
};

const report = (r: Partial<BackupReport> & Pick<BackupReport, 'state'>): BackupReport => ({ pod: `${JOB}-x7k2p`, startedAt: '2026-01-15T12:00:05Z', updatedAt: '2026-01-15T12:02:30Z', ...r });
const stored = { bucket: 'etcd-backups', key: KEY, size: 73_400_320, sha256: SHA, etcdSha256: ETCD_SHA, node: '10.0.0.2' };
const running = (bytesUploaded: number) => report({ state: 'Running', bytesUploaded });
const succeeded = report({ state: 'Succeeded', bytesUploaded: stored.size, snapshot: stored, updatedAt: '2026-01-15T12:03:05Z' });
const failedReport = (message: string, retryable: boolean) => report({ state: 'Failed', message, retryable, updatedAt: '2026-01-15T12:02:40Z' });

function controlPlane(name: string, opts: { mode?: string; bundleConfig?: unknown; owner?: string; namespace?: string } = {}): KubernetesObject {
  return {
    apiVersion: API_VERSION,
    kind: 'TalosControlPlane',
    metadata: {
      name,
      namespace: opts.namespace ?? NS,
      uid: `tcp-${name}`,
      ...(opts.owner && { ownerReferences: [{ apiVersion: API_VERSION, kind: 'TalosCluster', name: opts.owner, uid: 'tc-uid', controller: true, blockOwnerDeletion: true }] }),
    },
    spec: { mode: opts.mode ?? 'metal', version: 'v1.11.0' },
    status: {
      state: 'Ready',
      ...(opts.bundleConfig !== undefined && { bundleConfig: typeof opts.bundleConfig === 'string' ? opts.bundleConfig : JSON.stringify(opts.bundleConfig) }),
    },
  };
}

// Readers of an answer.
const st = (r: BackupSyncResult): J => r.response.status;
const cond = (r: BackupSyncResult, type: string): Condition | undefined => (st(r).conditions as Condition[] | undefined)?.find((c) => c.type === type);
const condStatus = (r: BackupSyncResult, type: string): string | undefined => cond(r, type)?.status;
const kinds = (r: { response: { attachments: KubernetesObject[] } }): string[] => r.response.attachments.map((a) => `${a.kind}/${a.metadata.name}`).sort();
const snapshotJobOf = (r: { response: { attachments: KubernetesObject[] } }): J => r.response.attachments.find((a) => a.kind === 'Job');
const container = (job: J): J => job.spec.template.spec.containers[0];
const envOf = (job: J): Record<string, J> => Object.fromEntries((container(job).env as J[]).map((e) => [e.name, e]));
const envValue = (job: J, name: string): string | undefined => envOf(job)[name]?.value;

/** REQUIRED_SECRETS of a Job: what the CLI checks before it starts. */
const requiredSecrets = (job: J): J[] => JSON.parse(envValue(job, 'REQUIRED_SECRETS')!) as J[];
const identify = (entry: J): string => `${entry.kind}/${entry.name}/${entry.key}`;

/** Every Secret and ConfigMap key a Job's pod reads, from its env and volumes, as Kind/name/key. */
function referencedInputs(job: J): string[] {
  const out: string[] = [];
  for (const e of container(job).env as J[]) {
    if (e.valueFrom?.secretKeyRef) out.push(`Secret/${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`);
    if (e.valueFrom?.configMapKeyRef) out.push(`ConfigMap/${e.valueFrom.configMapKeyRef.name}/${e.valueFrom.configMapKeyRef.key}`);
  }
  for (const v of (job.spec.template.spec.volumes ?? []) as J[]) {
    const [kind, name, items] = v.secret ? ['Secret', v.secret.secretName, v.secret.items] : ['ConfigMap', v.configMap.name, v.configMap.items];
    for (const item of items as J[]) out.push(`${kind}/${name}/${item.key}`);
  }
  return out;
}

/** Whether a REQUIRED_SECRETS entry says truly where its value lands: an env var from that key, or a file of that key. */
function landsWhereSaid(job: J, entry: J): boolean {
  if (entry.env) {
    const ref = envOf(job)[entry.env]?.valueFrom?.[entry.kind === 'Secret' ? 'secretKeyRef' : 'configMapKeyRef'];
    return ref?.name === entry.name && ref?.key === entry.key;
  }
  const file: string | undefined = entry.file ?? (entry.pathEnv ? envValue(job, entry.pathEnv) : undefined);
  if (!file) return false;
  return (container(job).volumeMounts as J[]).some((m) => {
    if (!file.startsWith(`${m.mountPath}/`)) return false;
    const v = (job.spec.template.spec.volumes as J[]).find((x) => x.name === m.name);
    const source = entry.kind === 'Secret' ? v?.secret : v?.configMap;
    const sourceName = entry.kind === 'Secret' ? source?.secretName : source?.name;
    return sourceName === entry.name && (source.items as J[]).some((i) => i.key === entry.key && `${m.mountPath}/${i.path}` === file);
  });
}
const ATTACHED = [`Job/${JOB}`, `Role/${JOB}`, `RoleBinding/${JOB}`, `ServiceAccount/${JOB}`].sort();

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
    request: () => request(backup({ status: { report: running(12_582_912) } }), { attachments: observedAttachments(backup(), jobActive) }),
    phase: 'Running',
    outcome: 'running',
    attached: true,
    ...inProgress,
    stable: true,
    check: (r) => {
      assert.deepEqual(st(r).progress, { bytesUploaded: 12_582_912 });
      assert.match(cond(r, 'Progressing')!.message, /12582912 bytes uploaded/);
      assert.equal(st(r).startTime, JOB_STARTED, 'the Job started first: its start stays, later attempts do not move it');
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
    request: () => request(backup({ status: { report: succeeded } }), { attachments: observedAttachments(backup(), jobActive) }),
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
    request: () => request(backup({ status: { report: succeeded } }), { attachments: observedAttachments(backup(), jobComplete) }),
    phase: 'Succeeded',
    outcome: 'succeeded',
    attached: true,
    ...failedSucceeded,
    stable: true,
  },
  {
    name: 'a Failed report with retryable:false fails the backup with its message',
    request: () => request(backup({ status: { report: failedReport('Failed to get secret talos-backup/s3-credentials: key access-key-id not found', false) } }), { attachments: observedAttachments(backup(), jobActive) }),
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
    request: () => request(backup({ status: { report: failedReport('Failed to upload snapshot to S3: connection reset', true) } }), { attachments: observedAttachments(backup(), { ...jobActive, failed: 1 }) }),
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
    request: () => request(backup(), { attachments: observedAttachments(backup(), jobFailed('BackoffLimitExceeded', 'Job has reached the specified backoff limit')) }),
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
    request: () => request(backup(), { attachments: observedAttachments(backup(), jobFailed('DeadlineExceeded', 'Job was active longer than specified deadline', 1)) }),
    phase: 'Failed',
    outcome: 'failed',
    attached: true,
    ...failedFailed,
    message: /DeadlineExceeded.*kubectl/,
    stable: true,
  },
  {
    name: 'the Job Failed with a retryable Failed report fails with the report message and the Job reason',
    request: () => request(backup({ status: { report: failedReport('Failed to upload snapshot to S3: SlowDown', true) } }), { attachments: observedAttachments(backup(), jobFailed('BackoffLimitExceeded', 'Job has reached the specified backoff limit')) }),
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
    request: () => request(backup({ status: { report: running(4096) } }), { attachments: observedAttachments(backup(), jobComplete) }),
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
    request: () => request(backup({ status: { report: report({ state: 'Succeeded', snapshot: { ...stored, key: '' } }) } }), { attachments: observedAttachments(backup(), jobComplete) }),
    phase: 'Failed',
    outcome: 'failed',
    attached: true,
    ...failedFailed,
    message: /without reporting a stored snapshot/,
    stable: true,
  },
  {
    name: 'a Job with only FailureTarget=True (its pods still stopping) counts as failed',
    request: () => request(backup(), { attachments: observedAttachments(backup(), jobFailureTargetOnly('PodFailurePolicy')) }),
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
    request: () => request(backup({ spec: withSpec({ talosControlPlaneRef: { name: 'my-cluster' } }) }), { related: [controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } })] }),
    phase: 'Failed',
    outcome: 'failed',
    attached: false,
    ...failedFailed,
    message: /^Invalid spec: .*exactly one of talosControlPlaneRef and talosConfigSecretRef/,
    stable: true,
  },
  {
    name: 'an invalid spec while its Job runs fails and lets the Job go',
    request: () => request(backup({ spec: withS3({ accessKeyID: undefined }) }), { attachments: observedAttachments(backup(), jobActive) }),
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
    request: () => request(backup({ spec: tcpSpec(), created: '2026-01-15T12:04:50Z' }), { related: [controlPlane('my-cluster', { mode: 'metal' })] }),
    phase: 'Pending',
    outcome: 'pending',
    attached: false,
    ...inProgress,
    check: (r) => assert.equal(r.response.resyncAfterSeconds, 20),
  },
  {
    name: 'a metal TalosControlPlane that still lists no endpoints after the grace period fails, suggesting spec.endpoints',
    request: () => request(backup({ spec: tcpSpec() }), { related: [controlPlane('my-cluster', { mode: 'metal', bundleConfig: { clientEndpoint: [] } })] }),
    phase: 'Failed',
    outcome: 'failed',
    attached: false,
    ...failedFailed,
    message: /^Failed to get TalosControlPlane.*spec\.endpoints/,
    stable: true,
  },
  {
    name: 'a related metal TalosControlPlane with endpoints gives a Pending backup with its Job',
    request: () => request(backup({ spec: tcpSpec() }), { related: [controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1', '10.0.0.2'] } })] }),
    phase: 'Pending',
    outcome: 'pending',
    attached: true,
    ...inProgress,
    stable: true,
    check: (r) => assert.equal(st(r).cluster, 'my-cluster'),
  },
];

function tcpSpec(patch: Record<string, unknown> = {}): Record<string, unknown> {
  const { talosConfigSecretRef: _dropped, ...rest } = baseSpec();
  return { ...rest, talosControlPlaneRef: { name: 'my-cluster' }, ...patch };
}

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
      assert.equal(condStatus(r, 'Progressing') === 'True', st(r).phase === 'Pending' || st(r).phase === 'Running', c.name);
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
    for (const { c, r } of answers) assert.equal(st(r).completionTime !== undefined, c.phase === 'Succeeded' || c.phase === 'Failed', c.name);
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
      assert.deepEqual((st(r).conditions as Condition[]).map((k) => k.type), ['Progressing', 'Ready', 'Failed'], c.name);
      for (const k of st(r).conditions as Condition[]) {
        assert.ok(['BackupInProgress', 'BackupCompleted', 'BackupSucceeded', 'BackupFailed'].includes(k.reason), `${c.name}: ${k.reason}`);
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
  const succeededStatus = () => st(sync(request(backup({ status: { report: succeeded } }), { attachments: observedAttachments(backup(), jobComplete) })));

  it('observed Succeeded (Ready=True): the status comes back unchanged and nothing is attached', () => {
    const status = succeededStatus();
    const r = sync(request(backup({ status }), { attachments: observedAttachments(backup(), jobComplete) }), LATER);
    assert.deepEqual(r.response.status, status);
    assert.deepEqual(r.response.attachments, []);
    assert.equal(r.outcome, 'finished');
    assert.equal(r.response.resyncAfterSeconds, undefined);
  });

  it('observed Failed: the status comes back unchanged and nothing is attached, whatever the Job says now', () => {
    const failed = st(sync(request(backup(), { attachments: observedAttachments(backup(), jobFailed('BackoffLimitExceeded', 'x')) })));
    const r = sync(request(backup({ status: failed, spec: withSpec({ compression: 'zstd' }) }), { attachments: observedAttachments(backup(), jobActive) }), LATER);
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

describe('syncBackup and finalizeBackup: an observed status that does not match the CRD', () => {
  // The API server stores only CRD-valid statuses, but a hand-written request or a CRD change can bring anything:
  // the hooks must answer (never throw, which the server turns into a 500 and Metacontroller retries for ever).
  const statuses: unknown[] = [
    { conditions: [null] },
    { conditions: [null, { type: 'Ready', status: 'True', reason: 'BackupSucceeded', message: '', lastTransitionTime: CREATED }] },
    { conditions: [1, 'x', []] },
    { conditions: 'Ready' },
    { conditions: {} },
    { conditions: [{}] },
    { phase: 42, report: 'done' },
    { report: { state: 'Succeeded', snapshot: null } },
    { report: null },
    { snapshot: null },
    'Succeeded',
    [],
    42,
  ];
  for (const status of statuses) {
    it(`status ${JSON.stringify(status)}: sync and finalize answer without throwing`, () => {
      const object = backup({ status, spec: withSpec({ deletionPolicy: 'Delete' }) });
      assert.doesNotThrow(() => sync(request(object, { attachments: observedAttachments(backup(), jobActive) })));
      assert.doesNotThrow(() => finalizeBackup(request(object), IMAGE));
    });
  }

  it('an observed Job whose status is not what the Job controller writes is answered without throwing', () => {
    const jobStatuses: unknown[] = [{ conditions: [null] }, { conditions: [null, { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded' }] }, { conditions: [1, 'Complete'] }, { conditions: 'Failed' }, { active: 'one', failed: null }, 'Running', null];
    for (const jobStatus of jobStatuses) {
      const spec = withSpec({ deletionPolicy: 'Delete' });
      const jobs = observedAttachments(backup(), {}).map((a) => (a.kind === 'Job' ? { ...a, status: jobStatus } : a));
      assert.doesNotThrow(() => sync(request(backup(), { attachments: jobs })), JSON.stringify(jobStatus));
      // The same for the delete Job of a backup being deleted.
      const object = backup({ spec, status: st(sync(request(backup({ status: { report: succeeded } })))) });
      const req = request(object);
      req.attachments![JOB_KEY] = { [DELETE_JOB]: { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: DELETE_JOB, namespace: NS }, status: jobStatus } as KubernetesObject };
      assert.doesNotThrow(() => finalizeBackup(req, IMAGE), JSON.stringify(jobStatus));
    }
  });

  it('an unreadable status is not trusted: the backup runs as a new one', () => {
    const r = sync(request(backup({ status: { conditions: [1, 'x'] } })));
    assert.equal(st(r).phase, 'Pending');
    assert.deepEqual(kinds(r), ATTACHED);
  });
});

describe('syncBackup: lastTransitionTime moves only when a condition status changes', () => {
  it('Pending → Running → Succeeded', () => {
    const t1 = new Date('2026-01-15T12:00:01Z');
    const t2 = new Date('2026-01-15T12:01:00Z');
    const t3 = new Date('2026-01-15T12:03:30Z');
    const pending = sync(request(backup()), t1);
    const runningAnswer = sync(request(backup({ status: st(pending) }), { attachments: observedAttachments(backup(), jobActive) }), t2);
    for (const type of ['Progressing', 'Ready', 'Failed']) assert.equal(cond(runningAnswer, type)!.lastTransitionTime, '2026-01-15T12:00:01Z', type);
    assert.notEqual(cond(runningAnswer, 'Progressing')!.message, cond(pending, 'Progressing')!.message);

    const done = sync(request(backup({ status: { ...st(runningAnswer), report: succeeded } }), { attachments: observedAttachments(backup(), jobComplete) }), t3);
    assert.equal(cond(done, 'Progressing')!.lastTransitionTime, '2026-01-15T12:03:30Z');
    assert.equal(cond(done, 'Ready')!.lastTransitionTime, '2026-01-15T12:03:30Z');
    assert.equal(cond(done, 'Failed')!.lastTransitionTime, '2026-01-15T12:00:01Z', 'Failed stayed False');
    assert.equal(st(done).startTime, JOB_STARTED, 'the first start seen stays');
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
    const { r, job } = jobFor(tcpSpec(), [controlPlane('my-cluster', { bundleConfig: { clusterName: 'my-cluster', clientEndpoint: ['10.0.0.1', '10.0.0.2'] } })]);
    assert.equal(envValue(job, 'TALOS_ENDPOINTS'), '10.0.0.1,10.0.0.2');
    assert.equal(envValue(job, 'CLUSTER_NAME'), 'my-cluster');
    assert.equal(st(r).cluster, 'my-cluster');
    assert.deepEqual(talosVolume(job).secret, { secretName: 'my-cluster-talosconfig', items: [{ key: 'my-cluster.talosconfig', path: 'config' }], optional: true });
    assert.equal(envValue(job, 'TALOSCONFIG'), '/var/run/secrets/talos.dev/config');
    const mount = (container(job).volumeMounts as J[]).find((m) => m.name === 'talosconfig');
    assert.deepEqual(mount, { name: 'talosconfig', mountPath: '/var/run/secrets/talos.dev', readOnly: true });
  });

  it('a TalosControlPlane owned by a TalosCluster: the Secret is named after the TalosCluster', () => {
    const { job } = jobFor(tcpSpec(), [controlPlane('my-cluster', { owner: 'prod', bundleConfig: { clientEndpoint: ['10.0.0.1'] } })]);
    assert.equal(talosVolume(job).secret.secretName, 'prod-talosconfig');
    assert.deepEqual(talosVolume(job).secret.items, [{ key: 'my-cluster.talosconfig', path: 'config' }]);
    assert.deepEqual(requiredSecrets(job).map(identify), ['Secret/prod-talosconfig/my-cluster.talosconfig', 'Secret/s3-credentials/access-key-id', 'Secret/s3-credentials/secret-access-key']);
    assert.ok(landsWhereSaid(job, requiredSecrets(job)[0]));
  });

  it('an owner of another kind does not rename the Secret', () => {
    const tcp = controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } });
    tcp.metadata.ownerReferences = [{ apiVersion: 'example.com/v1', kind: 'Something', name: 'other', uid: 'u' }];
    assert.equal(talosVolume(jobFor(tcpSpec(), [tcp]).job).secret.secretName, 'my-cluster-talosconfig');
  });

  it('a container-mode TalosControlPlane without clientEndpoints is dialled at its Service, named after it', () => {
    const { job } = jobFor(tcpSpec(), [controlPlane('my-cluster', { mode: 'container', bundleConfig: { clusterName: 'my-cluster' } })]);
    assert.equal(envValue(job, 'TALOS_ENDPOINTS'), 'my-cluster');
  });

  it('a bundleConfig that is not JSON counts as listing no endpoints', () => {
    const { job } = jobFor(tcpSpec(), [controlPlane('my-cluster', { mode: 'container', bundleConfig: 'not json{' })]);
    assert.equal(envValue(job, 'TALOS_ENDPOINTS'), 'my-cluster');
  });

  it('spec.endpoints overrides the TalosControlPlane endpoints', () => {
    const { job } = jobFor(tcpSpec({ endpoints: ['cp.example.internal:50000'] }), [controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } })]);
    assert.equal(envValue(job, 'TALOS_ENDPOINTS'), 'cp.example.internal:50000');
  });

  it('spec.endpoints also lets a metal TalosControlPlane without endpoints go ahead', () => {
    const { job } = jobFor(tcpSpec({ endpoints: ['10.9.9.9'] }), [controlPlane('my-cluster', { mode: 'metal' })]);
    assert.equal(envValue(job, 'TALOS_ENDPOINTS'), '10.9.9.9');
  });

  it('spec.clusterName overrides the cluster (status and key segment)', () => {
    const { r, job } = jobFor(tcpSpec({ clusterName: 'prod-eu' }), [controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } })]);
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
    const r = sync(request(backup({ spec: tcpSpec() }), { related: [controlPlane('other-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } })] }));
    assert.equal(st(r).phase, 'Failed');
    assert.match(st(r).message, /^Failed to get TalosControlPlane/);
  });

  it('talosConfigSecretRef: that Secret (key defaulted to config), the cluster named after it, the talosconfig endpoints', () => {
    const { r, job } = jobFor(baseSpec());
    assert.deepEqual(talosVolume(job).secret, { secretName: 'etcd-backup', items: [{ key: 'config', path: 'config' }], optional: true });
    assert.equal(envValue(job, 'CLUSTER_NAME'), 'etcd-backup');
    assert.equal(st(r).cluster, 'etcd-backup');
    assert.equal(envOf(job).TALOS_ENDPOINTS, undefined, "no override: the talosconfig's own endpoints");
    const custom = jobFor(withSpec({ talosConfigSecretRef: { name: 'etcd-backup', key: 'talosconfig.yaml' }, endpoints: ['10.0.0.1', '10.0.0.2:50001'] })).job;
    assert.deepEqual(talosVolume(custom).secret.items, [{ key: 'talosconfig.yaml', path: 'config' }]);
    assert.equal(envValue(custom, 'TALOS_ENDPOINTS'), '10.0.0.1,10.0.0.2:50001');
  });

  it('a TalosControlPlane that disappears while its Job runs does not fail the backup: the Job has what it needs', () => {
    const related = [controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } })];
    const object = backup({ spec: tcpSpec(), created: '2026-01-15T12:04:59Z' });
    const attachments = observedAttachments(object, jobActive, related);
    const running = sync(request(object, { attachments }));
    assert.equal(st(running).phase, 'Running');
    assert.deepEqual(kinds(running), attachments.map((a) => `${a.kind}/${a.metadata.name}`).sort(), 'the observed Job and helpers stay');
    assert.equal(snapshotJobOf(running).status, undefined, 're-emitted without status');

    // Its stored snapshot still counts when the TalosControlPlane is gone.
    const done = sync(request(backup({ spec: tcpSpec(), status: { report: succeeded } }), { attachments: observedAttachments(object, jobComplete, related) }));
    assert.equal(st(done).phase, 'Succeeded');
    assert.equal(st(done).snapshot.key, KEY);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The snapshot Job and its identity.

describe('syncBackup: the snapshot Job', () => {
  const fullSpec = withSpec({
    node: '10.0.0.3',
    backupStorage: {
      s3: {
        bucket: 'etcd-backups',
        region: 'eu-central-1',
        endpoint: 'https://s3.example.internal',
        forcePathStyle: true,
        insecureSkipTLSVerify: false,
        prefix: 'backups/talos',
        accessKeyID: { name: 's3-credentials', key: 'access-key-id' },
        secretAccessKey: { name: 's3-credentials', key: 'secret-access-key' },
        caBundle: { kind: 'ConfigMap', name: 's3-ca', key: 'bundle.pem' },
      },
    },
    job: {
      activeDeadlineSeconds: 900,
      backoffLimit: 5,
      resources: { requests: { cpu: '200m', memory: '300Mi' }, limits: { cpu: 1, memory: '1Gi' } },
      nodeSelector: { 'node-role.kubernetes.io/backup': 'true' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'backup', effect: 'NoSchedule' }, { operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }],
      priorityClassName: 'backup-critical',
    },
  });
  const jobOf = (object: KubernetesObject, image = IMAGE): J => snapshotJobOf(syncBackup(request(object), NOW, image));
  const minimal = jobOf(backup());
  const full = jobOf(backup({ spec: fullSpec }));

  it('runs under the restricted Pod Security Standard', () => {
    for (const job of [minimal, full]) {
      const pod = job.spec.template.spec;
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
      assert.ok(pod.securityContext.runAsUser > 0);
      assert.equal(pod.hostNetwork ?? false, false);
      assert.equal(pod.hostPID ?? false, false);
      for (const c of pod.containers as J[]) {
        assert.equal(c.securityContext.runAsNonRoot, true);
        assert.equal(c.securityContext.readOnlyRootFilesystem, true);
        assert.equal(c.securityContext.allowPrivilegeEscalation, false);
        assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] });
        assert.equal(c.securityContext.privileged ?? false, false);
      }
      for (const v of (pod.volumes ?? []) as J[]) assert.ok(v.secret || v.configMap, `volume ${v.name} is a Secret or ConfigMap, never hostPath`);
    }
  });

  it('activeDeadlineSeconds and backoffLimit come from spec.job (defaults 3600 and 2)', () => {
    assert.equal(minimal.spec.activeDeadlineSeconds, 3600);
    assert.equal(minimal.spec.backoffLimit, 2);
    assert.equal(full.spec.activeDeadlineSeconds, 900);
    assert.equal(full.spec.backoffLimit, 5);
  });

  it('resources, nodeSelector, tolerations and priorityClassName are passed through', () => {
    const pod = full.spec.template.spec;
    const job = (fullSpec as J).job;
    assert.deepEqual(container(full).resources, job.resources);
    assert.deepEqual(pod.nodeSelector, job.nodeSelector);
    assert.deepEqual(pod.tolerations, job.tolerations);
    assert.equal(pod.priorityClassName, 'backup-critical');
    const bare = minimal.spec.template.spec;
    assert.equal(bare.nodeSelector, undefined);
    assert.equal(bare.tolerations, undefined);
    assert.equal(bare.priorityClassName, undefined);
  });

  it('image, pull policy and pull secrets come from the server configuration', () => {
    assert.equal(container(minimal).image, IMAGE.image);
    assert.equal(container(minimal).imagePullPolicy, 'IfNotPresent');
    assert.equal(minimal.spec.template.spec.imagePullSecrets, undefined);
    const custom = jobOf(backup(), { image: 'ghcr.io/acme/teb@sha256:' + 'c'.repeat(64), pullPolicy: 'Always', pullSecrets: ['regcred', 'mirror'] });
    assert.equal(container(custom).image, 'ghcr.io/acme/teb@sha256:' + 'c'.repeat(64));
    assert.equal(container(custom).imagePullPolicy, 'Always');
    assert.deepEqual(custom.spec.template.spec.imagePullSecrets, [{ name: 'regcred' }, { name: 'mirror' }]);
  });

  it('runs the snapshot command of the CLI', () => {
    assert.equal(container(minimal).command.at(-1), 'snapshot');
    assert.equal(container(minimal).command[0], 'node');
    assert.equal(minimal.spec.template.spec.restartPolicy, 'Never');
  });

  it('is labelled with the backup on the Job and on its pods, and copies no controller-uid label', () => {
    const fromSchedule = backup({ labels: { [SCHEDULE_LABEL]: 'nightly', [CONTROLLER_UID_LABEL]: 'schedule-uid' } });
    const observed = observedAttachments(fromSchedule, jobActive);
    const r = sync(request(fromSchedule, { attachments: observed }));
    for (const object of r.response.attachments) {
      assert.equal(object.metadata.labels?.[BACKUP_LABEL], NAME, `${object.kind}`);
      assert.equal(object.metadata.labels?.[CONTROLLER_UID_LABEL], undefined, `${object.kind}`);
      assert.equal(object.metadata.labels?.[SCHEDULE_LABEL], undefined, `${object.kind}`);
      assert.equal(object.metadata.namespace, NS);
    }
    const job = snapshotJobOf(r);
    const podLabels = job.spec.template.metadata.labels as Record<string, string>;
    assert.equal(podLabels[BACKUP_LABEL], NAME);
    for (const k8s of [CONTROLLER_UID_LABEL, 'batch.kubernetes.io/controller-uid', 'job-name', 'batch.kubernetes.io/job-name']) assert.equal(podLabels[k8s], undefined, k8s);
    assert.equal(job.spec.selector, undefined, 'the Job controller picks the selector');
    assert.equal(job.status, undefined, 'no status in a desired object');
  });

  it('has no ttlSecondsAfterFinished (the Job goes when the backup records its outcome)', () => {
    assert.equal(minimal.spec.ttlSecondsAfterFinished, undefined);
    assert.equal(full.spec.ttlSecondsAfterFinished, undefined);
  });

  it('fails at once (podFailurePolicy FailJob) when the CLI exits with code 2', () => {
    const rules = minimal.spec.podFailurePolicy.rules as J[];
    const failJob = rules.find((rule) => rule.action === 'FailJob');
    assert.ok(failJob);
    assert.deepEqual(failJob.onExitCodes, { containerName: container(minimal).name, operator: 'In', values: [2] });
  });

  it('every Secret and ConfigMap reference is optional (a missing one fails in the CLI, never CreateContainerConfigError)', () => {
    let refs = 0;
    for (const job of [minimal, full]) {
      for (const e of container(job).env as J[]) {
        const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
        if (ref) {
          assert.equal(ref.optional, true, e.name);
          refs++;
        }
      }
      for (const v of (job.spec.template.spec.volumes ?? []) as J[]) {
        assert.equal((v.secret ?? v.configMap).optional, true, v.name);
        refs++;
      }
    }
    assert.ok(refs >= 7, `only ${refs} references seen`);
  });

  it('REQUIRED_SECRETS lists every Secret and ConfigMap key the Job reads, with where it lands', () => {
    for (const job of [minimal, full]) {
      const required = requiredSecrets(job);
      assert.deepEqual(required.map(identify).sort(), referencedInputs(job).sort());
      for (const entry of required) assert.ok(landsWhereSaid(job, entry), `${JSON.stringify(entry)} does not land where it says`);
    }
    assert.deepEqual(requiredSecrets(full).map(identify), [
      'Secret/etcd-backup/config',
      'Secret/s3-credentials/access-key-id',
      'Secret/s3-credentials/secret-access-key',
      'ConfigMap/s3-ca/bundle.pem',
    ]);
    assert.deepEqual(envOf(full).AWS_ACCESS_KEY_ID.valueFrom, { secretKeyRef: { name: 's3-credentials', key: 'access-key-id', optional: true } });
    const ca = (full.spec.template.spec.volumes as J[]).find((v) => v.configMap);
    assert.deepEqual(ca.configMap, { name: 's3-ca', items: [{ key: 'bundle.pem', path: 'ca.crt' }], optional: true });
  });

  it('without S3 keys (ambient AWS credentials) it reads no S3 Secret', () => {
    const ambient = jobOf(backup({ spec: withS3({ accessKeyID: undefined, secretAccessKey: undefined }) }));
    assert.equal(envOf(ambient).AWS_ACCESS_KEY_ID, undefined);
    assert.equal(envOf(ambient).AWS_SECRET_ACCESS_KEY, undefined);
    assert.deepEqual(requiredSecrets(ambient).map(identify), ['Secret/etcd-backup/config']);
  });

  it('a caBundle Secret is mounted from the Secret', () => {
    const job = jobOf(backup({ spec: withS3({ caBundle: { name: 'minio-ca' } }) }));
    const ca = (job.spec.template.spec.volumes as J[]).find((v) => v.name !== 'talosconfig');
    assert.deepEqual(ca.secret, { secretName: 'minio-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }], optional: true });
  });

  it('passes the S3 settings, the node, the prefix and the backup identity', () => {
    assert.equal(envValue(full, 'S3_BUCKET'), 'etcd-backups');
    assert.equal(envValue(full, 'S3_REGION'), 'eu-central-1');
    assert.equal(envValue(full, 'S3_ENDPOINT'), 'https://s3.example.internal');
    assert.equal(envValue(full, 'S3_FORCE_PATH_STYLE'), 'true');
    assert.equal(envValue(full, 'S3_INSECURE_SKIP_TLS_VERIFY'), 'false');
    assert.equal(envValue(full, 'S3_PREFIX'), 'backups/talos');
    assert.equal(envValue(full, 'TALOS_NODE'), '10.0.0.3');
    assert.equal(envValue(full, 'BACKUP_NAMESPACE'), NS);
    assert.equal(envValue(full, 'BACKUP_NAME'), NAME);
    assert.equal(envValue(full, 'BACKUP_UID'), UID);
    assert.equal(envValue(full, 'REPORT_STATUS'), 'true');
    assert.deepEqual(envOf(full).POD_NAME.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } });
    assert.equal(envValue(minimal, 'S3_PREFIX'), 'talos-operator-etcd-backups', 'the CRD default');
    assert.equal(envOf(minimal).S3_FORCE_PATH_STYLE, undefined, 'unset: the CLI decides from the endpoint');
    assert.equal(envOf(minimal).TALOS_NODE, undefined);
  });

  it("BACKUP_TIME is the schedule's slot when annotated, else the creation time", () => {
    assert.equal(envValue(minimal, 'BACKUP_TIME'), CREATED);
    const scheduled = jobOf(backup({ annotations: { [SCHEDULED_TIME_ANNOTATION]: '2026-01-15T06:00:00Z' } }));
    assert.equal(envValue(scheduled, 'BACKUP_TIME'), '2026-01-15T06:00:00Z');
  });

  it('is the same Job at every sync, whatever the clock (an OnDelete attachment must not drift)', () => {
    assert.deepEqual(snapshotJobOf(sync(request(backup()), NOW)), snapshotJobOf(sync(request(backup()), LATER)));
    const runningAnswer = sync(request(backup({ status: { report: running(1) } }), { attachments: observedAttachments(backup(), jobActive) }), LATER);
    assert.deepEqual(snapshotJobOf(runningAnswer), minimal);
  });
});

describe('syncBackup: the Job identity (ServiceAccount, Role, RoleBinding)', () => {
  const r = sync(request(backup()));
  const of = (kind: string): J => r.response.attachments.find((a) => a.kind === kind);

  it('the Job runs as its own ServiceAccount, with the token mounted by the pod only', () => {
    const pod = snapshotJobOf(r).spec.template.spec;
    assert.equal(pod.serviceAccountName, JOB);
    assert.equal(pod.automountServiceAccountToken, true);
    assert.equal(of('ServiceAccount').metadata.name, JOB);
    assert.equal(of('ServiceAccount').automountServiceAccountToken, false);
  });

  it('the Role grants exactly patch on this backup\'s status', () => {
    assert.deepEqual(of('Role').rules, [{ apiGroups: ['talos.alperen.cloud'], resources: ['talosetcdbackups/status'], resourceNames: [NAME], verbs: ['patch'] }]);
  });

  it("the RoleBinding binds that Role to the Job's ServiceAccount", () => {
    const binding = of('RoleBinding');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: of('Role').metadata.name });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: of('ServiceAccount').metadata.name, namespace: NS }]);
  });
});

describe('names of long backups', () => {
  const long = (prefix: string, fill: string) => (prefix + fill.repeat(253)).slice(0, 253);
  const a = long('x'.repeat(100), 'a');
  const b = long('x'.repeat(100), 'b');
  const dotted = long('', 'ab.cd-'.repeat(3) + 'e').replace(/[-.]+$/, '');

  it('a 253-character name yields Job, ServiceAccount and Role names of at most 63 characters', () => {
    for (const name of [a, dotted]) {
      assert.equal(name.length >= 250, true);
      const r = sync(request(backup({ name })));
      for (const object of r.response.attachments) {
        assert.ok(object.metadata.name.length <= 63, `${object.kind} ${object.metadata.name} (${object.metadata.name.length})`);
        assert.match(object.metadata.name, /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
      }
      assert.ok(attachmentName(name, 'delete').length <= 63);
    }
  });

  it('two long names sharing a 100-character prefix get distinct names and label values', () => {
    const ra = sync(request(backup({ name: a })));
    const rb = sync(request(backup({ name: b })));
    assert.notEqual(snapshotJobOf(ra).metadata.name, snapshotJobOf(rb).metadata.name);
    assert.notEqual(snapshotJobOf(ra).metadata.labels[BACKUP_LABEL], snapshotJobOf(rb).metadata.labels[BACKUP_LABEL]);
    assert.notEqual(attachmentName(a, 'delete'), attachmentName(b, 'delete'));
  });

  it('every label value is at most 63 characters and valid; the Role still names the whole backup', () => {
    for (const name of [a, b, dotted, NAME, 'a', 'x'.repeat(63), 'x'.repeat(64), 'y'.repeat(54), 'y'.repeat(55)]) {
      const r = sync(request(backup({ name })));
      for (const object of r.response.attachments) {
        const labelSets = [object.metadata.labels ?? {}, ...(object.kind === 'Job' ? [(object as J).spec.template.metadata.labels] : [])];
        for (const labels of labelSets) {
          for (const [key, value] of Object.entries(labels as Record<string, string>)) {
            assert.ok(value.length <= 63, `${name}: ${key}=${value}`);
            assert.match(value, LABEL_VALUE, `${name}: ${key}`);
          }
        }
      }
      assert.deepEqual((r.response.attachments.find((o) => o.kind === 'Role') as J).rules[0].resourceNames, [name]);
      assert.equal(envValue(snapshotJobOf(r), 'BACKUP_NAME'), name);
    }
  });

  it('a short name is used as it is', () => {
    assert.equal(JOB, `${NAME}-snapshot`);
    assert.equal(DELETE_JOB, `${NAME}-delete`);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Deletion.

describe('finalizeBackup', () => {
  const succeededStatus = () => st(sync(request(backup({ status: { report: succeeded } }), { attachments: observedAttachments(backup(), jobComplete) })));
  const deleting = (spec: Record<string, unknown>, status: unknown, deleteJobStatus?: Record<string, unknown>) => {
    const object = backup({ spec, status });
    object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
    const req = request(object);
    req.finalizing = true;
    if (deleteJobStatus) {
      const desired = finalizeBackup(request(backup({ spec: { ...spec, deletionPolicy: 'Delete' }, status })), IMAGE).response.attachments[0]!;
      req.attachments![JOB_KEY] = { [desired.metadata.name]: { ...desired, status: deleteJobStatus } };
    }
    return finalizeBackup(req, IMAGE);
  };

  it('deletionPolicy Retain (the default) lets the backup go at once and attaches nothing', () => {
    for (const spec of [baseSpec(), withSpec({ deletionPolicy: 'Retain' })]) {
      const r = deleting(spec, succeededStatus());
      assert.equal(r.response.finalized, true);
      assert.deepEqual(r.response.attachments, []);
      assert.equal(r.outcome, 'released');
      assert.equal((r.response.status as J).deletion, undefined);
    }
  });

  it('deletionPolicy Delete without a stored snapshot lets the backup go', () => {
    const spec = withSpec({ deletionPolicy: 'Delete' });
    const failedStatus = st(sync(request(backup({ spec }), { attachments: observedAttachments(backup(), jobFailed('BackoffLimitExceeded', 'x')) })));
    const invalidStatus = st(sync(request(backup({ spec: { ...spec, encryption: { age: { recipients: [BAD_RECIPIENT] } } } }))));
    for (const status of [undefined, failedStatus, invalidStatus]) {
      const r = deleting(spec, status);
      assert.equal(r.response.finalized, true, JSON.stringify(status));
      assert.deepEqual(r.response.attachments, []);
    }
  });

  it('a backup deleted while its snapshot Job runs: the snapshot Job is not kept', () => {
    for (const policy of ['Retain', 'Delete']) {
      const spec = withSpec({ deletionPolicy: policy });
      const object = backup({ spec, status: { report: running(1024) } });
      object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
      const r = finalizeBackup({ ...request(object, { attachments: observedAttachments(backup({ spec }), jobActive) }), finalizing: true }, IMAGE);
      assert.ok(!r.response.attachments.some((a) => a.metadata.name === JOB), `${policy}: the snapshot Job is left out, so it is deleted`);
      if (!r.response.finalized) assert.equal(typeof (r.response.status as J).deletion?.message, 'string', `${policy}: a held backup says why`);
      if (policy === 'Retain') assert.equal(r.response.finalized, true);
    }
  });

  it('deletionPolicy Delete, deleted mid-run: first the snapshot Job goes, then the delete Job looks at the key it would have written', () => {
    const spec = withSpec({ deletionPolicy: 'Delete', clusterName: 'prod' });
    const object = backup({ spec, status: { report: running(5 * 1024 * 1024) }, annotations: { 'talos.alperen.cloud/scheduled-time': '2026-01-15T02:00:00Z' } });
    object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
    const first = finalizeBackup({ ...request(object, { attachments: observedAttachments(backup({ spec }), jobActive) }), finalizing: true }, IMAGE);
    assert.equal(first.response.finalized, false, 'held: the running Job may still complete its object');
    assert.deepEqual(first.response.attachments, [], 'the snapshot Job and its identity are deleted; no delete Job yet');
    assert.match((first.response.status as J).deletion.message, /^Stopping the snapshot Job before deleting s3:\/\/etcd-backups\/talos-operator-etcd-backups\/prod\/etcd-snapshot-2026-01-15T02-00-00Z\.db$/);

    const second = finalizeBackup({ ...request(object), finalizing: true }, IMAGE);
    assert.equal(second.response.finalized, false);
    const job = second.response.attachments[0] as J;
    assert.equal(job.metadata.name, DELETE_JOB);
    assert.equal(envOf(job).S3_KEY.value, 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-15T02-00-00Z.db', 'the key the snapshot Job was writing');
    assert.equal(envOf(job).BACKUP_UID.value, UID, 'only this backup\'s object is deleted');
    // The snapshot pod may outlive its Job by its grace period: the delete looks again after it.
    assert.equal(job.spec.template.spec.terminationGracePeriodSeconds, 30);
    assert.equal(envOf(job).DELETE_WAIT_SECONDS.value, '40');
  });

  it('deletionPolicy Delete, a failed backup whose Job had uploaded bytes: the delete Job checks its key; without uploaded bytes it is let go', () => {
    const spec = withSpec({ deletionPolicy: 'Delete', clusterName: 'prod' });
    const failedAfterUpload = st(sync(request(backup({ spec, status: { report: { ...failedReport('Failed to upload snapshot to S3: the snapshot was uploaded but recording its sha256 failed', true), bytesUploaded: 5 * 1024 * 1024 } } }), { attachments: observedAttachments(backup({ spec }), jobFailed('BackoffLimitExceeded', 'x')) })));
    assert.equal(failedAfterUpload.phase, 'Failed');
    const held = deleting(spec, failedAfterUpload);
    assert.equal(held.response.finalized, false);
    assert.equal(envOf(held.response.attachments[0] as J).S3_KEY.value, 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-15T12-00-00Z.db');
    assert.equal(envOf(held.response.attachments[0] as J).DELETE_WAIT_SECONDS, undefined, 'a finished backup\'s pods are gone: no second pass');

    const failedEarly = st(sync(request(backup({ spec, status: { report: failedReport('Failed to get secret: secret talos-backup/s3 key k (…)', false) } }))));
    assert.equal(deleting(spec, failedEarly).response.finalized, true, 'nothing can be in S3: no delete Job (it would need the same missing Secret)');
  });

  it('deletionPolicy Delete with status.snapshot.key attaches the delete Job and holds the backup', () => {
    const r = deleting(withSpec({ deletionPolicy: 'Delete' }), succeededStatus());
    assert.equal(r.response.finalized, false);
    assert.equal(r.outcome, 'deleting');
    assert.equal(r.response.attachments.length, 1);
    const job = r.response.attachments[0] as J;
    assert.equal(job.kind, 'Job');
    assert.equal(job.metadata.name, DELETE_JOB);
    assert.equal(container(job).command.at(-1), 'delete');
    assert.equal(envValue(job, 'S3_KEY'), KEY);
    assert.equal(envValue(job, 'BACKUP_UID'), UID);
    assert.equal(envValue(job, 'S3_BUCKET'), 'etcd-backups');
    assert.equal(job.spec.template.spec.automountServiceAccountToken, false);
    assert.equal(job.spec.template.spec.serviceAccountName, undefined);
    assert.equal(job.metadata.labels[BACKUP_LABEL], NAME);
    assert.equal((r.response.status as J).deletion.message, `Deleting s3://etcd-backups/${KEY}`);
    assert.equal((r.response.status as J).phase, 'Succeeded', 'the rest of the status is kept');
    assert.deepEqual((r.response.status as J).snapshot, succeededStatus().snapshot);
  });

  it('the delete Job runs under the restricted Pod Security Standard with optional references', () => {
    const r = deleting(withSpec({ deletionPolicy: 'Delete', backupStorage: { s3: { ...(baseSpec() as J).backupStorage.s3, caBundle: { name: 'ca' } } } }), succeededStatus());
    const job = r.response.attachments[0] as J;
    const pod = job.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    assert.deepEqual(container(job).securityContext.capabilities, { drop: ['ALL'] });
    assert.equal(container(job).securityContext.readOnlyRootFilesystem, true);
    assert.equal(container(job).securityContext.allowPrivilegeEscalation, false);
    for (const e of container(job).env as J[]) if (e.valueFrom?.secretKeyRef) assert.equal(e.valueFrom.secretKeyRef.optional, true);
    for (const v of pod.volumes as J[]) assert.equal((v.secret ?? v.configMap).optional, true);
    assert.ok(!(pod.volumes as J[]).some((v) => v.name === 'talosconfig'), 'the delete Job needs no talosconfig');
    assert.equal(job.spec.ttlSecondsAfterFinished, undefined);
  });

  it('a Succeeded report whose status was not written yet still names the object to delete', () => {
    const r = deleting(withSpec({ deletionPolicy: 'Delete' }), { report: succeeded });
    assert.equal(r.response.finalized, false);
    assert.equal(envValue(r.response.attachments[0], 'S3_KEY'), KEY);
  });

  it('the delete Job Complete lets the backup go', () => {
    const r = deleting(withSpec({ deletionPolicy: 'Delete' }), succeededStatus(), jobComplete);
    assert.equal(r.response.finalized, true);
    assert.equal(r.outcome, 'released');
  });

  it('the delete Job Failed holds the backup and says why and how to let it go', () => {
    const r = deleting(withSpec({ deletionPolicy: 'Delete' }), succeededStatus(), jobFailed('BackoffLimitExceeded', 'Job has reached the specified backoff limit'));
    assert.equal(r.response.finalized, false);
    assert.equal(r.outcome, 'delete-failed');
    const message = (r.response.status as J).deletion.message as string;
    assert.match(message, /^Failed to delete snapshot from S3/);
    assert.match(message, /BackoffLimitExceeded/);
    assert.match(message, /deletionPolicy to Retain/);
    assert.match(message, new RegExp(`s3://etcd-backups/${KEY}`));
    assert.equal(r.response.attachments.length, 1, 'the failed Job stays (it is not re-run)');
  });

  it('switching to Retain after the delete Job failed lets the backup go', () => {
    const r = deleting(withSpec({ deletionPolicy: 'Retain' }), { ...succeededStatus(), deletion: { message: 'Failed to delete snapshot from S3: ...' } }, jobFailed('BackoffLimitExceeded', 'x'));
    assert.equal(r.response.finalized, true);
    assert.deepEqual(r.response.attachments, []);
  });

  it('deletes from the bucket the snapshot was stored in, even if spec.backupStorage.s3.bucket changed since', () => {
    // The spec is not immutable. The delete Job treats "no object at the key" as done, so deleting from the
    // new bucket would release the backup and leave its object in the old one for ever.
    const r = deleting(withSpec({ deletionPolicy: 'Delete', backupStorage: { s3: { ...(baseSpec() as J).backupStorage.s3, bucket: 'new-bucket' } } }), succeededStatus());
    assert.equal(r.response.finalized, false);
    assert.equal(envValue(r.response.attachments[0], 'S3_BUCKET'), 'etcd-backups');
    assert.equal((r.response.status as J).deletion.message, `Deleting s3://etcd-backups/${KEY}`);
  });

  it('the same request twice gives the same answer', () => {
    const spec = withSpec({ deletionPolicy: 'Delete' });
    assert.deepEqual(deleting(spec, succeededStatus()), deleting(spec, succeededStatus()));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Related objects.

describe('customizeBackup', () => {
  it('talosControlPlaneRef: its Namespace, and one rule for that TalosControlPlane, by name, in the backup namespace', () => {
    assert.deepEqual(customizeBackup({ parent: backup({ spec: tcpSpec() }) }).relatedResources, [
      { apiVersion: 'v1', resource: 'namespaces', names: [NS] },
      { apiVersion: 'talos.alperen.cloud/v1alpha1', resource: 'taloscontrolplanes', namespace: NS, names: ['my-cluster'] },
    ]);
  });

  it('talosConfigSecretRef: only its Namespace (never a rule for Secrets)', () => {
    assert.deepEqual(customizeBackup({ parent: backup() }).relatedResources, [{ apiVersion: 'v1', resource: 'namespaces', names: [NS] }]);
  });

  it('without talos-operator (TALOS_OPERATOR=false): never a rule for TalosControlPlanes, whose kind would fail every sync', () => {
    assert.deepEqual(customizeBackup({ parent: backup({ spec: tcpSpec() }) }, { talosOperator: false }).relatedResources, [{ apiVersion: 'v1', resource: 'namespaces', names: [NS] }]);
  });

  it('never asks for Secrets or ConfigMaps, whatever the spec', () => {
    const specs = [baseSpec(), tcpSpec(), withS3({ caBundle: { kind: 'ConfigMap', name: 'ca' } }), {}, { talosControlPlaneRef: {} }, { talosControlPlaneRef: { name: 42 } }];
    for (const spec of specs) {
      for (const rule of customizeBackup({ parent: backup({ spec }) }).relatedResources) {
        assert.ok(!['secrets', 'configmaps'].includes(rule.resource), JSON.stringify(spec));
        assert.ok(rule.names && rule.names.length === 1, 'by name only: never a whole resource type');
      }
    }
  });
});

describe('data protection in the backup controller: Job settings, status, deletion of a locked object', () => {
  const RECIPIENTS = ['age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p', 'age17xt6w4py87338ruq8dmtrvlwkmpdmj95uf8knpsk84r3hpxu85cqp6rrr4'];
  const protectedSpec = (patch: Record<string, unknown> = {}) =>
    withSpec({
      compression: 'zstd',
      encryption: { age: { recipients: RECIPIENTS, identitySecretRef: { name: 'age-identity', key: 'identity.txt' } } },
      verify: true,
      backupStorage: { s3: { ...(baseSpec().backupStorage as J).s3, serverSideEncryption: { algorithm: 'aws:kms', kmsKeyID: 'alias/etcd' }, objectLock: { mode: 'COMPLIANCE', retainDays: 30 } } },
      ...patch,
    });

  it('passes compression, recipients, SSE, Object Lock and verify to the Job, and mounts the identity for the read-back', () => {
    const job = snapshotJobOf(sync(request(backup({ spec: protectedSpec() }))));
    assert.equal(envValue(job, 'COMPRESSION'), 'zstd');
    assert.equal(envValue(job, 'AGE_RECIPIENTS'), RECIPIENTS.join(','));
    assert.equal(envValue(job, 'S3_SSE'), 'aws:kms');
    assert.equal(envValue(job, 'S3_SSE_KMS_KEY_ID'), 'alias/etcd');
    assert.equal(envValue(job, 'S3_OBJECT_LOCK_MODE'), 'COMPLIANCE');
    assert.equal(envValue(job, 'S3_OBJECT_LOCK_RETAIN_DAYS'), '30');
    assert.equal(envValue(job, 'VERIFY'), 'true');
    assert.equal(envValue(job, 'AGE_IDENTITY_FILE'), '/var/run/secrets/age/identity.txt');
    const entry = requiredSecrets(job).find((e) => e.name === 'age-identity');
    assert.deepEqual(entry, { kind: 'Secret', name: 'age-identity', key: 'identity.txt', pathEnv: 'AGE_IDENTITY_FILE' });
    assert.ok(landsWhereSaid(job, entry), 'the identity lands where AGE_IDENTITY_FILE says');
  });

  it('never mounts the identity when nothing verifies: taking a backup does not need it', () => {
    const job = snapshotJobOf(sync(request(backup({ spec: protectedSpec({ verify: false }) }))));
    assert.equal(envValue(job, 'AGE_IDENTITY_FILE'), undefined);
    assert.equal(requiredSecrets(job).find((e) => e.name === 'age-identity'), undefined);
    assert.ok(!JSON.stringify(job.spec.template.spec.volumes ?? []).includes('age-identity'));
    assert.equal(envValue(job, 'VERIFY'), 'false');
  });

  it('records what the Job reports about format, lock and verification, and says it in Ready', () => {
    const snapshot = { ...stored, key: `${KEY}.zst.age`, compression: 'zstd', encrypted: true, retainUntil: '2026-02-14T12:03:05Z', verified: true, verifiedAt: '2026-01-15T12:03:04Z', verification: 'Full' as const, revision: 4242, keys: 5000 };
    const r = sync(request(backup({ spec: protectedSpec(), status: { report: report({ state: 'Succeeded', bytesUploaded: stored.size, snapshot, updatedAt: '2026-01-15T12:03:05Z' }) } })));
    assert.equal(st(r).phase, 'Succeeded');
    assert.deepEqual(st(r).snapshot, snapshot);
    assert.match(cond(r, 'Ready')!.message, /^Snapshot stored at s3:\/\/etcd-backups\/\S+\.db\.zst\.age \(73400320 bytes, zstd, age-encrypted, locked until 2026-02-14T12:03:05Z, sha256 a{64}\); verified: read back, etcd trailer and database structure sound \(revision 4242, 5000 keys\)$/);
    const bytesOnly = sync(request(backup({ spec: protectedSpec(), status: { report: report({ state: 'Succeeded', snapshot: { ...snapshot, verification: 'StoredBytes', revision: undefined, keys: undefined } as J }) } })));
    assert.match(cond(bytesOnly, 'Ready')!.message, /; verified: the stored bytes read back match \(no age identity to check the snapshot inside\)$/);
  });

  it('a failed verification fails the backup with its message', () => {
    const message = 'Snapshot verification failed: database structure: page 57 (reached from bucket "key") has id 58 in its header';
    const r = sync(request(backup({ spec: protectedSpec(), status: { report: failedReport(message, false) } }), { attachments: observedAttachments(backup(), jobActive) }));
    assert.equal(st(r).phase, 'Failed');
    assert.equal(st(r).message, message);
  });

  const finalizing = (spec: Record<string, unknown>, status: Record<string, unknown> | undefined, now: Date) => {
    const object = backup({ spec, status });
    object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
    return finalizeBackup({ ...request(object), finalizing: true }, IMAGE, now);
  };
  const succeededStatus = () => st(sync(request(backup({ status: { report: succeeded } }), { attachments: observedAttachments(backup(), jobComplete) })));
  const lockedStatus = (retainUntil: string) => ({ ...succeededStatus(), snapshot: { ...succeededStatus().snapshot, retainUntil } });

  it('deletionPolicy Delete with the object still locked: the backup goes at once, the object stays, and the status says why', () => {
    const r = finalizing(withSpec({ deletionPolicy: 'Delete' }), lockedStatus('2026-02-14T12:03:05Z'), LATER);
    assert.equal(r.response.finalized, true);
    assert.deepEqual(r.response.attachments, []);
    assert.equal(r.outcome, 'kept-locked');
    assert.equal((r.response.status as J).deletion.message, `Kept s3://etcd-backups/${KEY}: it is locked by S3 Object Lock until 2026-02-14T12:03:05Z, and S3 refuses to delete it before then`);
  });

  it('deletionPolicy Delete once the lock has expired: the delete Job runs as usual', () => {
    const r = finalizing(withSpec({ deletionPolicy: 'Delete' }), lockedStatus('2026-01-15T13:00:00Z'), LATER);
    assert.equal(r.response.finalized, false);
    assert.equal(r.outcome, 'deleting');
    assert.deepEqual(kinds(r), [`Job/${DELETE_JOB}`]);
  });

  it('a backup deleted mid-run is cleaned up at the key its Job writes, suffixes included', () => {
    const spec = protectedSpec({ deletionPolicy: 'Delete' });
    const object = backup({ spec, status: { report: running(1024) } });
    object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
    const r = finalizeBackup({ ...request(object, { attachments: [] }), finalizing: true }, IMAGE, LATER);
    const job = r.response.attachments.find((a) => a.kind === 'Job') as J;
    assert.equal(envValue(job, 'S3_KEY'), `${KEY}.zst.age`);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// What a real cluster does that Metacontroller never tells the hook (issue 13): refused creates, a terminating
// namespace, no TalosControlPlane CRD, related objects named like Object.prototype's keys.

describe('objects Metacontroller could not create, a namespace being deleted, no talos-operator', () => {
  const DEADLINE = DEFAULT_ATTACHMENT_DEADLINE_SECONDS;
  const at = (seconds: number) => new Date(NOW.getTime() + seconds * 1000);
  const namespaceObject = (terminating: boolean): KubernetesObject => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: NS, uid: 'ns-uid', ...(terminating && { deletionTimestamp: '2026-01-16T00:00:00Z' }) },
    status: { phase: terminating ? 'Terminating' : 'Active' },
  });
  const withNamespace = (req: DecoratorSyncRequest, terminating: boolean): DecoratorSyncRequest => ({ ...req, related: { ...req.related, 'Namespace.v1': { [NS]: namespaceObject(terminating) } } });
  /** The status a sync at `now` writes, fed back as Metacontroller would on the next call. */
  const afterSync = (object: KubernetesObject, now: Date): KubernetesObject => ({ ...object, status: st(sync(request(object), now)) });

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
    assert.equal(syncBackup(request(pending), at(59), IMAGE, { attachmentDeadlineSeconds: 60, talosOperator: true }).response.resyncAfterSeconds, 1);
    assert.equal(syncBackup(request(pending), at(60), IMAGE, { attachmentDeadlineSeconds: 60, talosOperator: true }).outcome, 'failed');
  });

  it('an observed Job is never subject to the deadline', () => {
    const pending = afterSync(backup(), NOW);
    const r = sync(request(pending, { attachments: observedAttachments(backup(), jobActive) }), at(DEADLINE * 10));
    assert.equal(st(r).phase, 'Running');
    assert.equal(r.response.resyncAfterSeconds, undefined);
  });

  const deletingAt = (status: unknown, now: Date, opts: { deleteJob?: Record<string, unknown>; namespaceTerminating?: boolean } = {}) => {
    const spec = withSpec({ deletionPolicy: 'Delete' });
    const object = backup({ spec, status });
    object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
    let req: DecoratorSyncRequest = { ...request(object), finalizing: true };
    if (opts.deleteJob) {
      const desired = finalizeBackup(request(backup({ spec, status })), IMAGE, NOW).response.attachments[0]!;
      req.attachments![JOB_KEY] = { [desired.metadata.name]: { ...desired, status: opts.deleteJob } };
    }
    if (opts.namespaceTerminating !== undefined) req = withNamespace(req, opts.namespaceTerminating);
    return finalizeBackup(req, IMAGE, now);
  };
  const fst = (r: { response: { status?: unknown } }): J => r.response.status;
  const readyStatus = () => st(sync(request(backup({ spec: withSpec({ deletionPolicy: 'Delete' }), status: { report: succeeded } }), { attachments: observedAttachments(backup(), jobComplete) })));

  it('a delete Job that never appears: the backup is let go after the deadline, keeping the object and saying so', () => {
    const first = deletingAt(readyStatus(), NOW);
    assert.equal(first.response.finalized, false);
    assert.equal(fst(first).deletion.startedAt, '2026-01-15T12:05:00Z');
    assert.equal(first.response.resyncAfterSeconds, DEADLINE);
    const waiting = deletingAt(fst(first), at(DEADLINE - 1));
    assert.equal(waiting.response.finalized, false);
    assert.equal(waiting.response.resyncAfterSeconds, 1);
    const gone = deletingAt(fst(first), at(DEADLINE));
    assert.equal(gone.response.finalized, true);
    assert.equal(gone.outcome, 'kept-delete-job-absent');
    assert.deepEqual(gone.response.attachments, []);
    assert.match(fst(gone).deletion.message, new RegExp(`^Kept s3://etcd-backups/${KEY}: the delete Job ${DELETE_JOB} did not appear within ${DEADLINE}s`));
    assert.match(fst(gone).deletion.message, /kubectl get events -n talos-backup --field-selector involvedObject.name=manual-backup/);
  });

  it('a delete Job that exists keeps the backup until it ends, deadline or not', () => {
    const first = deletingAt(readyStatus(), NOW);
    const r = deletingAt(fst(first), at(DEADLINE * 3), { deleteJob: jobActive });
    assert.equal(r.response.finalized, false);
    assert.equal(r.outcome, 'deleting');
    assert.equal(r.response.resyncAfterSeconds, undefined);
  });

  it('a namespace being deleted: the backup goes at once and its object is kept (no Job can be created there)', () => {
    const r = deletingAt(readyStatus(), NOW, { namespaceTerminating: true });
    assert.equal(r.response.finalized, true);
    assert.equal(r.outcome, 'kept-namespace-deleted');
    assert.deepEqual(r.response.attachments, []);
    assert.match(fst(r).deletion.message, new RegExp(`^Kept s3://etcd-backups/${KEY}: namespace ${NS} is being deleted`));
    // A live namespace changes nothing.
    assert.equal(deletingAt(readyStatus(), NOW, { namespaceTerminating: false }).outcome, 'deleting');
  });

  it('a namespace being deleted while a delete Job runs: that Job may finish first; failed or gone, the backup goes', () => {
    const first = deletingAt(readyStatus(), NOW);
    assert.equal(deletingAt(fst(first), NOW, { deleteJob: jobActive, namespaceTerminating: true }).response.finalized, false);
    assert.equal(deletingAt(fst(first), NOW, { deleteJob: jobComplete, namespaceTerminating: true }).outcome, 'released');
    const failed = deletingAt(fst(first), NOW, { deleteJob: jobFailed('BackoffLimitExceeded', 'Job has reached the specified backoff limit'), namespaceTerminating: true });
    assert.equal(failed.outcome, 'kept-namespace-deleted');
  });

  it('without talos-operator (TALOS_OPERATOR=false) a talosControlPlaneRef backup fails at once, saying what to do; a talosconfig Secret works', () => {
    const off = { attachmentDeadlineSeconds: DEADLINE, talosOperator: false };
    const r = syncBackup(request(backup({ spec: tcpSpec() })), NOW, IMAGE, off);
    assert.equal(r.outcome, 'failed');
    assert.equal(st(r).message, 'Failed to get TalosControlPlane: TalosControlPlane CRD not found when talos-etcd-backup was installed (TALOS_OPERATOR=false): install talos-operator and run helm upgrade, or use talosConfigSecretRef');
    assert.equal(syncBackup(request(backup()), NOW, IMAGE, off).outcome, 'pending');
  });

  it('a TalosControlPlane or Job named like an Object.prototype key (constructor) is looked up as an own key only', () => {
    const spec = tcpSpec({ talosControlPlaneRef: { name: 'constructor' } });
    const missing = sync(request(backup({ spec })), LATER);
    assert.match(st(missing).message, /^Failed to get TalosControlPlane talos-backup\/constructor: not found in the backup's namespace/);
    const found = sync(request(backup({ spec }), { related: [controlPlane('constructor', { mode: 'container' })] }));
    assert.equal(st(found).phase, 'Pending');
    assert.equal(st(found).cluster, 'constructor');
  });
});
