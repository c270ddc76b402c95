// Builders for the backup decorator's tests (customize, sync, finalize, status): requests shaped like
// Metacontroller's (hook v1: attachments and related keyed by name), the Job statuses the Job controller writes,
// the reports the Job's pod writes, and readers of an answer.

import assert from 'node:assert/strict';
import {
  API_VERSION,
  BACKUP_KIND,
  CONTROLLER_UID_LABEL,
  JOB_KEY,
  RELATED_CONTROL_PLANE_KEY,
  ROLE_BINDING_KEY,
  ROLE_KEY,
  SERVICE_ACCOUNT_KEY,
} from '../../../src/api/constants.js';
import type { Condition } from '../../../src/api/conditions.js';
import type { BackupReport } from '../../../src/api/types.js';
import type { JobImage } from '../../../src/server/backup/job.js';
import { attachmentName } from '../../../src/server/backup/names.js';
import { syncBackup, type BackupSyncResult } from '../../../src/server/backup/sync.js';
import type { DecoratorSyncRequest, KubernetesObject } from '../../../src/server/metacontroller/types.js';

export type J = any; // for reading into answers: the assertions say what is expected

export const NS = 'talos-backup';
export const NAME = 'manual-backup';
export const UID = '0b5c7a52-1d8e-4c1a-9f0e-6c2d9a4b7e31';
export const CREATED = '2026-01-15T12:00:00Z';
export const NOW = new Date('2026-01-15T12:05:00Z');
export const LATER = new Date('2026-01-15T18:00:00Z');
/** Matches the CRD's pattern for age recipients, but its bech32 checksum is wrong: no age public key. */
export const BAD_RECIPIENT = 'age1' + 'q'.repeat(58);
export const IMAGE: JobImage = {
  image: 'registry.example.com/talos-etcd-backup:0.1.0',
  pullPolicy: 'IfNotPresent',
  pullSecrets: [],
};
export const JOB = attachmentName(NAME, 'snapshot');
export const DELETE_JOB = attachmentName(NAME, 'delete');
export const KEY = 'talos-operator-etcd-backups/etcd-backup/etcd-snapshot-2026-01-15T12-00-00Z.db';
export const SHA = 'a'.repeat(64);
export const ETCD_SHA = 'b'.repeat(64);
export const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export function baseSpec(): Record<string, unknown> {
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

export function backup(opts: BackupOpts = {}): KubernetesObject {
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
      annotations: {
        ...opts.annotations,
        'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ spec }),
      },
      finalizers: ['metacontroller.io/decoratorcontroller-talos-etcd-backup'],
    },
    spec,
    ...(opts.status !== undefined && { status: opts.status }),
  };
}

export const withSpec = (patch: Record<string, unknown>): Record<string, unknown> => ({ ...baseSpec(), ...patch });
/** The base spec with S3 fields replaced; a field patched to undefined is removed. */
export const withS3 = (patch: Record<string, unknown>): Record<string, unknown> => {
  const spec = baseSpec() as J;
  const s3 = Object.fromEntries(
    Object.entries({ ...spec.backupStorage.s3, ...patch }).filter(([, v]) => v !== undefined),
  );
  return { ...spec, backupStorage: { s3 } };
};

function keyed(objects: KubernetesObject[]): Record<string, KubernetesObject> {
  return Object.fromEntries(objects.map((o) => [o.metadata.name, o]));
}

export function request(
  object: KubernetesObject,
  opts: { attachments?: KubernetesObject[]; related?: KubernetesObject[] } = {},
): DecoratorSyncRequest {
  const of = (kind: string) => keyed((opts.attachments ?? []).filter((a) => a.kind === kind));
  return {
    controller: { metadata: { name: 'talos-etcd-backup' } },
    object,
    attachments: {
      [JOB_KEY]: of('Job'),
      [SERVICE_ACCOUNT_KEY]: of('ServiceAccount'),
      [ROLE_KEY]: of('Role'),
      [ROLE_BINDING_KEY]: of('RoleBinding'),
    },
    related: { [RELATED_CONTROL_PLANE_KEY]: keyed(opts.related ?? []) },
    finalizing: false,
  };
}

export const sync = (req: DecoratorSyncRequest, now = NOW): BackupSyncResult => syncBackup(req, now, IMAGE);

/** The objects a backup attaches, as the API server returns them: with a Job status, and the labels Kubernetes adds. */
export function observedAttachments(
  object: KubernetesObject,
  jobStatus: Record<string, unknown>,
  related: KubernetesObject[] = [],
): KubernetesObject[] {
  const fresh = sync(request({ ...object, status: undefined }, { related }));
  assert.equal(fresh.response.attachments.length, 4, 'the builder expects a backup that attaches its Job');
  return fresh.response.attachments.map((a) => {
    const meta = {
      ...a.metadata,
      uid: `uid-${a.metadata.name}`,
      resourceVersion: '5000',
      annotations: { 'metacontroller.k8s.io/decorator-controller': 'talos-etcd-backup' },
    };
    if (a.kind !== 'Job') return { ...a, metadata: meta };
    const k8sLabels = {
      [CONTROLLER_UID_LABEL]: 'job-uid',
      'batch.kubernetes.io/controller-uid': 'job-uid',
      'job-name': JOB,
      'batch.kubernetes.io/job-name': JOB,
    };
    const spec = a.spec as J;
    return {
      ...a,
      metadata: meta,
      spec: {
        ...spec,
        completions: 1,
        parallelism: 1,
        selector: { matchLabels: { 'batch.kubernetes.io/controller-uid': 'job-uid' } },
        template: { ...spec.template, metadata: { labels: { ...spec.template.metadata.labels, ...k8sLabels } } },
      },
      status: jobStatus,
    };
  });
}

export const JOB_STARTED = '2026-01-15T12:00:03Z';
export const jobActive = { active: 1, startTime: JOB_STARTED, ready: 1, terminating: 0 };
export const jobFailed = (reason: string, message: string, failedPods = 3) => ({
  failed: failedPods,
  startTime: JOB_STARTED,
  terminating: 0,
  conditions: [
    {
      type: 'FailureTarget',
      status: 'True',
      reason,
      message,
      lastProbeTime: '2026-01-15T12:04:00Z',
      lastTransitionTime: '2026-01-15T12:04:00Z',
    },
    {
      type: 'Failed',
      status: 'True',
      reason,
      message,
      lastProbeTime: '2026-01-15T12:04:01Z',
      lastTransitionTime: '2026-01-15T12:04:01Z',
    },
  ],
});
export const jobFailureTargetOnly = (reason: string) => ({
  active: 0,
  failed: 1,
  terminating: 1,
  startTime: JOB_STARTED,
  conditions: [
    {
      type: 'FailureTarget',
      status: 'True',
      reason,
      message: 'Container backup for pod talos-backup/x failed with exit code 2 matching FailJob rule at index 0',
      lastProbeTime: '2026-01-15T12:02:00Z',
      lastTransitionTime: '2026-01-15T12:02:00Z',
    },
  ],
});
export const jobComplete = {
  succeeded: 1,
  startTime: JOB_STARTED,
  completionTime: '2026-01-15T12:03:10Z',
  conditions: [
    {
      type: 'SuccessCriteriaMet',
      status: 'True',
      lastProbeTime: '2026-01-15T12:03:10Z',
      lastTransitionTime: '2026-01-15T12:03:10Z',
    },
    {
      type: 'Complete',
      status: 'True',
      lastProbeTime: '2026-01-15T12:03:10Z',
      lastTransitionTime: '2026-01-15T12:03:10Z',
    },
  ],
};

export const report = (r: Partial<BackupReport> & Pick<BackupReport, 'state'>): BackupReport => ({
  pod: `${JOB}-x7k2p`,
  startedAt: '2026-01-15T12:00:05Z',
  updatedAt: '2026-01-15T12:02:30Z',
  ...r,
});
export const stored = {
  bucket: 'etcd-backups',
  key: KEY,
  size: 73_400_320,
  sha256: SHA,
  etcdSha256: ETCD_SHA,
  node: '10.0.0.2',
};
export const running = (bytesUploaded: number) => report({ state: 'Running', bytesUploaded });
export const succeeded = report({
  state: 'Succeeded',
  bytesUploaded: stored.size,
  snapshot: stored,
  updatedAt: '2026-01-15T12:03:05Z',
});
export const failedReport = (message: string, retryable: boolean) =>
  report({ state: 'Failed', message, retryable, updatedAt: '2026-01-15T12:02:40Z' });

export function controlPlane(
  name: string,
  opts: { mode?: string; bundleConfig?: unknown; owner?: string; namespace?: string } = {},
): KubernetesObject {
  return {
    apiVersion: API_VERSION,
    kind: 'TalosControlPlane',
    metadata: {
      name,
      namespace: opts.namespace ?? NS,
      uid: `tcp-${name}`,
      ...(opts.owner && {
        ownerReferences: [
          {
            apiVersion: API_VERSION,
            kind: 'TalosCluster',
            name: opts.owner,
            uid: 'tc-uid',
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      }),
    },
    spec: { mode: opts.mode ?? 'metal', version: 'v1.11.0' },
    status: {
      state: 'Ready',
      ...(opts.bundleConfig !== undefined && {
        bundleConfig: typeof opts.bundleConfig === 'string' ? opts.bundleConfig : JSON.stringify(opts.bundleConfig),
      }),
    },
  };
}

// Readers of an answer.
export const st = (r: BackupSyncResult): J => r.response.status;
export const cond = (r: BackupSyncResult, type: string): Condition | undefined =>
  (st(r).conditions as Condition[] | undefined)?.find((c) => c.type === type);
export const condStatus = (r: BackupSyncResult, type: string): string | undefined => cond(r, type)?.status;
export const kinds = (r: { response: { attachments: KubernetesObject[] } }): string[] =>
  r.response.attachments.map((a) => `${a.kind}/${a.metadata.name}`).sort();
export const snapshotJobOf = (r: { response: { attachments: KubernetesObject[] } }): J =>
  r.response.attachments.find((a) => a.kind === 'Job');
export const container = (job: J): J => job.spec.template.spec.containers[0];
export const envOf = (job: J): Record<string, J> =>
  Object.fromEntries((container(job).env as J[]).map((e) => [e.name, e]));
export const envValue = (job: J, name: string): string | undefined => envOf(job)[name]?.value;

/** REQUIRED_SECRETS of a Job: what the CLI checks before it starts. */
export const requiredSecrets = (job: J): J[] => JSON.parse(envValue(job, 'REQUIRED_SECRETS')!) as J[];
export const identify = (entry: J): string => `${entry.kind}/${entry.name}/${entry.key ?? '*'}`;

/** Every Secret and ConfigMap key a Job's pod reads, from its env and volumes, as Kind/name/key (`*`: all of them). */
export function referencedInputs(job: J): string[] {
  const out: string[] = [];
  for (const e of container(job).env as J[]) {
    if (e.valueFrom?.secretKeyRef) out.push(`Secret/${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`);
    if (e.valueFrom?.configMapKeyRef)
      out.push(`ConfigMap/${e.valueFrom.configMapKeyRef.name}/${e.valueFrom.configMapKeyRef.key}`);
  }
  for (const v of (job.spec.template.spec.volumes ?? []) as J[]) {
    const [kind, name, items] = v.secret
      ? ['Secret', v.secret.secretName, v.secret.items]
      : ['ConfigMap', v.configMap.name, v.configMap.items];
    if (!items) out.push(`${kind}/${name}/*`);
    for (const item of (items ?? []) as J[]) out.push(`${kind}/${name}/${item.key}`);
  }
  return out;
}

/** Whether a REQUIRED_SECRETS entry says truly where its value lands: an env var from that key, or a file of that key. */
export function landsWhereSaid(job: J, entry: J): boolean {
  if (entry.env) {
    const ref = envOf(job)[entry.env]?.valueFrom?.[entry.kind === 'Secret' ? 'secretKeyRef' : 'configMapKeyRef'];
    return ref?.name === entry.name && ref?.key === entry.key;
  }
  const file: string | undefined = entry.file ?? (entry.pathEnv ? envValue(job, entry.pathEnv) : undefined);
  if (!file) return false;
  return (container(job).volumeMounts as J[]).some((m) => {
    if (!file.startsWith(`${m.mountPath}/`) && file !== m.mountPath) return false;
    const v = (job.spec.template.spec.volumes as J[]).find((x) => x.name === m.name);
    const source = entry.kind === 'Secret' ? v?.secret : v?.configMap;
    const sourceName = entry.kind === 'Secret' ? source?.secretName : source?.name;
    // A whole Secret: the directory is the mount, the volume has every key.
    if (entry.key === undefined) return sourceName === entry.name && !source.items && file === m.mountPath;
    return (
      sourceName === entry.name &&
      (source.items as J[]).some((i) => i.key === entry.key && `${m.mountPath}/${i.path}` === file)
    );
  });
}
export const ATTACHED = [`Job/${JOB}`, `Role/${JOB}`, `RoleBinding/${JOB}`, `ServiceAccount/${JOB}`].sort();

export function tcpSpec(patch: Record<string, unknown> = {}): Record<string, unknown> {
  const { talosConfigSecretRef: _dropped, ...rest } = baseSpec();
  return { ...rest, talosControlPlaneRef: { name: 'my-cluster' }, ...patch };
}

/** The status of a backup whose Job stored its snapshot, as sync writes it. */
export const succeededStatus = (): J => {
  const attachments = observedAttachments(backup(), jobComplete);
  return st(sync(request(backup({ status: { report: succeeded } }), { attachments })));
};

export const RECIPIENTS = [
  'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p',
  'age17xt6w4py87338ruq8dmtrvlwkmpdmj95uf8knpsk84r3hpxu85cqp6rrr4',
];
/** A spec with every data protection: zstd, age recipients and an identity, SSE-KMS, Object Lock, verify. */
export const protectedSpec = (patch: Record<string, unknown> = {}) =>
  withSpec({
    compression: 'zstd',
    encryption: { age: { recipients: RECIPIENTS, identitySecretRef: { name: 'age-identity', key: 'identity.txt' } } },
    verify: true,
    backupStorage: {
      s3: {
        ...(baseSpec().backupStorage as J).s3,
        serverSideEncryption: { algorithm: 'aws:kms', kmsKeyID: 'alias/etcd' },
        objectLock: { mode: 'COMPLIANCE', retainDays: 30 },
      },
    },
    ...patch,
  });

// The API server stores only CRD-valid statuses, but a hand-written request or a CRD change can bring anything:
// the hooks must answer (never throw, which the server turns into a 500 and Metacontroller retries for ever).
export const STATUSES_NOT_MATCHING_THE_CRD: unknown[] = [
  { conditions: [null] },
  {
    conditions: [
      null,
      { type: 'Ready', status: 'True', reason: 'BackupSucceeded', message: '', lastTransitionTime: CREATED },
    ],
  },
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

/** Job statuses the Job controller never writes. */
export const JOB_STATUSES_NOT_WRITTEN_BY_THE_JOB_CONTROLLER: unknown[] = [
  { conditions: [null] },
  { conditions: [null, { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded' }] },
  { conditions: [1, 'Complete'] },
  { conditions: 'Failed' },
  { active: 'one', failed: null },
  'Running',
  null,
];
