// Every object the backup hooks ask Metacontroller to create is one the API server accepts: valid against the
// published Kubernetes schemas (kubernetes-models), plus the name, label and reference rules those schemas do
// not express (the API server's own validation). Checked over a range of specs, images and lifecycle steps.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parse } from 'yaml';
import {
  API_VERSION,
  BACKUP_KIND,
  JOB_KEY,
  RELATED_CONTROL_PLANE_KEY,
  SCHEDULED_TIME_ANNOTATION,
} from '../../../src/api/constants.js';
import { packageRoot } from '../../../src/api/crds.js';
import type { JobImage } from '../../../src/server/backup/job.js';
import { finalizeBackup } from '../../../src/server/backup/finalize.js';
import { syncBackup } from '../../../src/server/backup/sync.js';
import type { DecoratorSyncRequest, KubernetesObject } from '../../../src/server/metacontroller/types.js';

type J = any;

const NS = 'talos-backup';
const NOW = new Date('2026-01-15T12:05:00Z');
const KEY = 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-15T12-00-00Z.db';

// ---------------------------------------------------------------------------------------------------------------
// What the API server checks beyond the OpenAPI schemas (k8s.io/apimachinery/pkg/util/validation).

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

function problemsOfLabels(labels: Record<string, unknown> | undefined, where: string): string[] {
  const problems: string[] = [];
  for (const [key, value] of Object.entries(labels ?? {})) {
    const slash = key.lastIndexOf('/');
    const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
    const name = slash >= 0 ? key.slice(slash + 1) : key;
    if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)))
      problems.push(`${where}: label key prefix ${prefix}`);
    if (name.length > 63 || !QUALIFIED_NAME.test(name)) problems.push(`${where}: label key ${key}`);
    if (typeof value !== 'string' || value.length > 63 || !LABEL_VALUE.test(value))
      problems.push(`${where}: label ${key}=${String(value)}`);
  }
  return problems;
}

function unique(values: string[], what: string): string[] {
  const seen = new Set<string>();
  return values.flatMap((v) => (seen.has(v) ? [`duplicate ${what} ${v}`] : (seen.add(v), [])));
}

/** What the API server would refuse in a Job's pod that the OpenAPI schema lets through. */
function problemsOfJob(job: J): string[] {
  const problems: string[] = [];
  const spec = job.spec;
  const pod = spec.template.spec;
  // A Job's name becomes the job-name label of its pods: at most 63 characters.
  if (job.metadata.name.length > 63) problems.push(`Job name ${job.metadata.name} is longer than 63 characters`);
  problems.push(...problemsOfLabels(spec.template.metadata?.labels, 'pod template'));
  if (!['Never', 'OnFailure'].includes(pod.restartPolicy)) problems.push(`restartPolicy ${pod.restartPolicy}`);
  if (spec.podFailurePolicy && pod.restartPolicy !== 'Never')
    problems.push('podFailurePolicy needs restartPolicy Never');
  if (!(spec.activeDeadlineSeconds > 0)) problems.push('activeDeadlineSeconds must be positive');
  if (!(spec.backoffLimit >= 0)) problems.push('backoffLimit must be >= 0');
  const containers = pod.containers as J[];
  const volumes = (pod.volumes ?? []) as J[];
  problems.push(
    ...unique(
      containers.map((c) => c.name),
      'container name',
    ),
    ...unique(
      volumes.map((v) => v.name),
      'volume name',
    ),
  );
  for (const v of volumes) {
    if (!DNS1123_LABEL.test(v.name) || v.name.length > 63) problems.push(`volume name ${v.name}`);
    const source = v.secret ?? v.configMap;
    const sourceName = v.secret ? v.secret.secretName : v.configMap?.name;
    if (!source || [v.secret, v.configMap, v.hostPath, v.emptyDir].filter(Boolean).length !== 1)
      problems.push(`volume ${v.name} needs exactly one source`);
    if (typeof sourceName !== 'string' || !DNS1123_SUBDOMAIN.test(sourceName))
      problems.push(`volume ${v.name} source name ${String(sourceName)}`);
    for (const item of (source?.items ?? []) as J[]) {
      if (typeof item.path !== 'string' || item.path.startsWith('/') || item.path.split('/').includes('..'))
        problems.push(`volume ${v.name} item path ${item.path}`);
    }
  }
  for (const c of containers) {
    if (!DNS1123_LABEL.test(c.name)) problems.push(`container name ${c.name}`);
    if (typeof c.image !== 'string' || c.image.trim() === '' || /\s/.test(c.image))
      problems.push(`container image ${c.image}`);
    const env = (c.env ?? []) as J[];
    problems.push(
      ...unique(
        env.map((e) => e.name),
        'env var',
      ),
    );
    for (const e of env) {
      if (!ENV_NAME.test(e.name)) problems.push(`env name ${e.name}`);
      if (e.value !== undefined && e.valueFrom !== undefined) problems.push(`env ${e.name} has value and valueFrom`);
      const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
      if (ref && (!DNS1123_SUBDOMAIN.test(ref.name) || typeof ref.key !== 'string' || ref.key === ''))
        problems.push(`env ${e.name} reference ${JSON.stringify(ref)}`);
    }
    const mounts = (c.volumeMounts ?? []) as J[];
    problems.push(
      ...unique(
        mounts.map((m) => m.mountPath),
        'mount path',
      ),
    );
    for (const m of mounts) {
      if (!volumes.some((v) => v.name === m.name)) problems.push(`mount ${m.name} names no volume`);
      if (typeof m.mountPath !== 'string' || !m.mountPath.startsWith('/')) problems.push(`mount path ${m.mountPath}`);
    }
  }
  for (const rule of (spec.podFailurePolicy?.rules ?? []) as J[]) {
    const name = rule.onExitCodes?.containerName;
    if (name !== undefined && !containers.some((c) => c.name === name))
      problems.push(`podFailurePolicy names container ${name}`);
    if (rule.onExitCodes && (rule.onExitCodes.values as number[]).includes(0) && rule.onExitCodes.operator === 'In')
      problems.push('podFailurePolicy In with exit code 0');
  }
  for (const s of (pod.imagePullSecrets ?? []) as J[])
    if (!DNS1123_SUBDOMAIN.test(s.name)) problems.push(`imagePullSecret ${s.name}`);
  if (pod.serviceAccountName !== undefined && !DNS1123_SUBDOMAIN.test(pod.serviceAccountName))
    problems.push(`serviceAccountName ${pod.serviceAccountName}`);
  return problems;
}

/** The schema check of kubernetes-models, by kind; throws on an invalid object. */
function validateSchema(object: KubernetesObject): void {
  const data = object as J;
  switch (object.kind) {
    case 'Job':
      return new Job(data).validate();
    case 'ServiceAccount':
      return new ServiceAccount(data).validate();
    case 'Role':
      return new Role(data).validate();
    case 'RoleBinding':
      return new RoleBinding(data).validate();
    default:
      throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
  }
}

/** The attachment types the DecoratorController declares: Metacontroller refuses to manage any other. */
function declaredAttachments(): Set<string> {
  const controller = parse(readFileSync(join(packageRoot(), 'metacontroller', 'backup-controller.yaml'), 'utf8')) as J;
  const kindOf: Record<string, string> = {
    jobs: 'Job',
    serviceaccounts: 'ServiceAccount',
    roles: 'Role',
    rolebindings: 'RoleBinding',
  };
  return new Set(
    (controller.spec.attachments as J[]).map((a) => `${a.apiVersion} ${kindOf[a.resource] ?? a.resource}`),
  );
}

/** Every problem of one answer's attachments, as the API server and Metacontroller would see them. */
function problemsOf(attachments: KubernetesObject[], namespace: string): string[] {
  const declared = declaredAttachments();
  const problems: string[] = [];
  problems.push(
    ...unique(
      attachments.map((a) => `${a.apiVersion} ${a.kind} ${a.metadata?.name}`),
      'attachment',
    ),
  );
  for (const a of attachments) {
    const where = `${a.kind} ${a.metadata?.name}`;
    try {
      validateSchema(a);
    } catch (error) {
      problems.push(`${where}: ${(error as Error).message}`);
    }
    if (!declared.has(`${a.apiVersion} ${a.kind}`))
      problems.push(`${where}: ${a.apiVersion} ${a.kind} is not a declared attachment`);
    const name = a.metadata?.name;
    if (typeof name !== 'string' || name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) problems.push(`${where}: name`);
    if (a.metadata?.namespace !== namespace) problems.push(`${where}: namespace ${String(a.metadata?.namespace)}`);
    if (a.metadata?.generateName !== undefined) problems.push(`${where}: generateName (Metacontroller cannot use it)`);
    for (const field of ['uid', 'resourceVersion', 'ownerReferences', 'creationTimestamp'])
      if ((a.metadata as J)?.[field] !== undefined) problems.push(`${where}: metadata.${field} in a desired object`);
    if (a.status !== undefined) problems.push(`${where}: status in a desired object`);
    problems.push(...problemsOfLabels(a.metadata?.labels, where));
    if (a.kind === 'Job') problems.push(...problemsOfJob(a).map((p) => `${where}: ${p}`));
  }
  // References between the objects of one answer.
  const named = (kind: string) => new Set(attachments.filter((a) => a.kind === kind).map((a) => a.metadata.name));
  for (const b of attachments.filter((a) => a.kind === 'RoleBinding') as J[]) {
    if (b.roleRef.kind !== 'Role' || !named('Role').has(b.roleRef.name))
      problems.push(`RoleBinding ${b.metadata.name}: roleRef ${b.roleRef.name} is not attached`);
    for (const s of b.subjects as J[])
      if (s.kind !== 'ServiceAccount' || !named('ServiceAccount').has(s.name) || s.namespace !== namespace)
        problems.push(`RoleBinding ${b.metadata.name}: subject ${s.name}`);
  }
  for (const j of attachments.filter((a) => a.kind === 'Job') as J[]) {
    const sa = j.spec.template.spec.serviceAccountName;
    if (sa !== undefined && !named('ServiceAccount').has(sa))
      problems.push(`Job ${j.metadata.name}: ServiceAccount ${sa} is not attached`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios: specs × images × lifecycle steps.

const s3 = {
  bucket: 'etcd-backups',
  region: 'us-east-1',
  endpoint: 'https://minio.example.internal:9000',
  accessKeyID: { name: 's3-credentials', key: 'access-key-id' },
  secretAccessKey: { name: 's3-credentials', key: 'secret-access-key' },
};

const specs: { name: string; spec: Record<string, unknown>; related?: KubernetesObject[] }[] = [
  {
    name: 'minimal (ambient AWS credentials)',
    spec: {
      talosConfigSecretRef: { name: 'etcd-backup' },
      backupStorage: { s3: { bucket: 'etcd-backups', region: 'eu-west-1' } },
    },
  },
  { name: 'S3 keys and an endpoint', spec: { talosConfigSecretRef: { name: 'etcd-backup' }, backupStorage: { s3 } } },
  {
    name: 'full, caBundle from a Secret',
    spec: {
      talosConfigSecretRef: { name: 'etcd-backup', key: 'talosconfig' },
      clusterName: 'prod.eu_1',
      endpoints: ['10.0.0.1', 'cp-2.example.internal:50000'],
      node: '10.0.0.2',
      backupStorage: {
        s3: {
          ...s3,
          forcePathStyle: false,
          insecureSkipTLSVerify: false,
          prefix: 'a/b/c',
          caBundle: { kind: 'Secret', name: 'minio-ca', key: 'ca.pem' },
        },
      },
      deletionPolicy: 'Delete',
      job: {
        activeDeadlineSeconds: 120,
        backoffLimit: 0,
        resources: {
          requests: { cpu: '250m', memory: '200Mi', 'ephemeral-storage': '10Mi' },
          limits: { cpu: 2, memory: '1Gi' },
        },
        nodeSelector: { 'kubernetes.io/os': 'linux', 'node-role.kubernetes.io/control-plane': '' },
        tolerations: [
          { key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' },
          { key: 'dedicated', operator: 'Equal', value: 'backup', effect: 'NoExecute', tolerationSeconds: 3600 },
          { operator: 'Exists' },
        ],
        priorityClassName: 'system-cluster-critical',
      },
    },
  },
  {
    name: 'caBundle from a ConfigMap, insecureSkipTLSVerify, backoffLimit 10',
    spec: {
      talosConfigSecretRef: { name: 'etcd-backup' },
      backupStorage: {
        s3: {
          ...s3,
          insecureSkipTLSVerify: true,
          forcePathStyle: true,
          caBundle: { kind: 'ConfigMap', name: 'kube-root-ca.crt' },
        },
      },
      deletionPolicy: 'Delete',
      job: { backoffLimit: 10, activeDeadlineSeconds: 86400 },
    },
  },
  {
    name: 'a metal TalosControlPlane owned by a TalosCluster',
    spec: { talosControlPlaneRef: { name: 'my-cluster' }, backupStorage: { s3 }, deletionPolicy: 'Delete' },
    related: [
      {
        apiVersion: API_VERSION,
        kind: 'TalosControlPlane',
        metadata: {
          name: 'my-cluster',
          namespace: NS,
          ownerReferences: [
            { apiVersion: API_VERSION, kind: 'TalosCluster', name: 'prod', uid: 'x', controller: true },
          ],
        },
        spec: { mode: 'metal' },
        status: {
          bundleConfig: JSON.stringify({
            clusterName: 'my-cluster',
            clientEndpoint: ['10.0.0.1', '10.0.0.2', '10.0.0.3'],
          }),
        },
      },
    ],
  },
  {
    name: 'a container-mode TalosControlPlane',
    spec: { talosControlPlaneRef: { name: 'lab' }, backupStorage: { s3 } },
    related: [
      {
        apiVersion: API_VERSION,
        kind: 'TalosControlPlane',
        metadata: { name: 'lab', namespace: NS },
        spec: { mode: 'container' },
        status: {},
      },
    ],
  },
];

const images: JobImage[] = [
  { image: 'talos-etcd-backup:0.1.0', pullPolicy: 'IfNotPresent', pullSecrets: [] },
  {
    image: 'registry.example.com:5000/ops/talos-etcd-backup@sha256:' + 'e'.repeat(64),
    pullPolicy: 'Always',
    pullSecrets: ['regcred', 'mirror.pull-secret'],
  },
  { image: 'ghcr.io/acme/talos-etcd-backup:v0.1.0-rc.1', pullPolicy: 'Never', pullSecrets: ['one'] },
];

const names = [
  'manual-backup',
  'daily-backup-schedule-1768478400',
  'a',
  // Long names (valid DNS subdomains), with dots, and some whose shortened prefix would end in a dot or dash.
  ('nightly.' + 'x'.repeat(300)).slice(0, 253),
  ('z'.repeat(44) + '.' + 'q'.repeat(300)).slice(0, 253),
  ('w'.repeat(46) + '-' + 'y'.repeat(300)).slice(0, 253),
  ('v'.repeat(43) + '--' + 'u'.repeat(300)).slice(0, 253),
  'x'.repeat(63),
  'x'.repeat(54),
  'x'.repeat(55),
];

function backupObject(
  name: string,
  spec: Record<string, unknown>,
  status?: unknown,
  scheduled?: string,
): KubernetesObject {
  return {
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: {
      name,
      namespace: NS,
      uid: '7d0b6a8e-6c47-4d2a-9a53-3e1f5b2c9d10',
      generation: 1,
      creationTimestamp: '2026-01-15T12:00:00Z',
      ...(scheduled && { annotations: { [SCHEDULED_TIME_ANNOTATION]: scheduled } }),
    },
    spec,
    ...(status !== undefined && { status }),
  };
}

function req(
  object: KubernetesObject,
  related: KubernetesObject[] = [],
  jobs: KubernetesObject[] = [],
): DecoratorSyncRequest {
  return {
    object,
    attachments: { [JOB_KEY]: Object.fromEntries(jobs.map((j) => [j.metadata.name, j])) },
    related: { [RELATED_CONTROL_PLANE_KEY]: Object.fromEntries(related.map((r) => [r.metadata.name, r])) },
  };
}

interface Answer {
  label: string;
  attachments: KubernetesObject[];
}

/** Every answer with attachments, over the scenarios. */
function answers(): Answer[] {
  const out: Answer[] = [];
  const stored = {
    bucket: 'etcd-backups',
    key: KEY,
    size: 1024,
    sha256: 'a'.repeat(64),
    etcdSha256: 'b'.repeat(64),
    node: '10.0.0.1',
  };
  for (const s of specs) {
    for (const [i, image] of images.entries()) {
      for (const name of i === 0 ? names : names.slice(0, 4)) {
        const label = `${s.name} / ${image.image} / ${name.slice(0, 30)}${name.length > 30 ? `…(${name.length})` : ''}`;
        const fresh = syncBackup(
          req(backupObject(name, s.spec, undefined, i === 1 ? '2026-01-15T06:00:00Z' : undefined), s.related),
          NOW,
          image,
        );
        assert.equal(fresh.response.attachments.length, 4, `${label}: ${JSON.stringify(fresh.response.status)}`);
        out.push({ label: `${label} / new`, attachments: fresh.response.attachments });
        const job = {
          ...fresh.response.attachments.find((a) => a.kind === 'Job')!,
          status: { active: 1, startTime: '2026-01-15T12:00:02Z' },
        };
        const running = syncBackup(
          req(backupObject(name, s.spec, { report: { state: 'Running', bytesUploaded: 1 << 20 } }), s.related, [job]),
          NOW,
          image,
        );
        out.push({ label: `${label} / running`, attachments: running.response.attachments });
        const done = syncBackup(
          req(
            backupObject(name, s.spec, {
              report: { state: 'Succeeded', snapshot: stored, updatedAt: '2026-01-15T12:03:00Z' },
            }),
            s.related,
            [job],
          ),
          NOW,
          image,
        );
        assert.equal(done.response.status.phase, 'Succeeded');
        out.push({ label: `${label} / succeeded`, attachments: done.response.attachments });
        const finalize = finalizeBackup(
          req(backupObject(name, { ...s.spec, deletionPolicy: 'Delete' }, { ...done.response.status })),
          image,
        );
        assert.equal(finalize.response.attachments.length, 1, label);
        out.push({ label: `${label} / finalize`, attachments: finalize.response.attachments });
      }
    }
  }
  return out;
}

describe('backup attachments are valid Kubernetes objects', () => {
  const all = answers();

  it('covers every kind the hooks emit, in every scenario', () => {
    const kinds = new Set(all.flatMap((a) => a.attachments.map((o) => o.kind)));
    assert.deepEqual([...kinds].sort(), ['Job', 'Role', 'RoleBinding', 'ServiceAccount']);
    assert.ok(all.length >= specs.length * (names.length + 8) * 4, `${all.length} answers`);
  });

  it('every emitted object validates against the kubernetes-models schema of its kind', () => {
    let validated = 0;
    for (const answer of all) {
      for (const object of answer.attachments) {
        assert.doesNotThrow(() => validateSchema(object), `${answer.label}: ${object.kind} ${object.metadata.name}`);
        validated++;
      }
    }
    assert.ok(validated > 500, `${validated} objects`);
  });

  it('every answer passes the API server rules the schemas leave out (names, labels, references, pod rules)', () => {
    for (const answer of all) assert.deepEqual(problemsOf(answer.attachments, NS), [], answer.label);
  });

  it('every emitted type is one the DecoratorController declares', () => {
    const declared = declaredAttachments();
    for (const answer of all)
      for (const o of answer.attachments)
        assert.ok(declared.has(`${o.apiVersion} ${o.kind}`), `${answer.label}: ${o.apiVersion} ${o.kind}`);
  });
});

describe('the validation is real (negative controls)', () => {
  const spec = specs[2]!.spec;
  const image = images[1]!;
  const valid = syncBackup(req(backupObject('manual-backup', spec)), NOW, image).response.attachments;
  const job = (): J => structuredClone(valid.find((a) => a.kind === 'Job'));
  const breakJob = (edit: (j: J) => void): KubernetesObject[] => {
    const broken = job();
    edit(broken);
    return valid.map((a) => (a.kind === 'Job' ? broken : a));
  };

  it('the unbroken answer has no problems', () => {
    assert.deepEqual(problemsOf(valid, NS), []);
  });

  it('a Job whose container has no name, or a non-integer backoffLimit, fails the kubernetes-models schema', () => {
    const noName = job();
    delete noName.spec.template.spec.containers[0].name;
    assert.throws(() => new Job(noName).validate(), /name/);
    const badBackoff = job();
    badBackoff.spec.backoffLimit = 'two';
    assert.throws(() => new Job(badBackoff).validate(), /backoffLimit/);
    const badEnv = job();
    badEnv.spec.template.spec.containers[0].env.push({ name: 'X', value: 3 });
    assert.throws(() => new Job(badEnv).validate(), /value/);
    const badQuantity = job();
    badQuantity.spec.template.spec.containers[0].resources.limits.memory = 'lots';
    assert.throws(() => new Job(badQuantity).validate(), /memory/);
    assert.ok(
      problemsOf(
        breakJob((j) => (j.spec.backoffLimit = 'two')),
        NS,
      ).some((p) => /backoffLimit/.test(p)),
    );
  });

  it('a RoleBinding without roleRef fails the schema', () => {
    const binding: J = structuredClone(valid.find((a) => a.kind === 'RoleBinding'));
    delete binding.roleRef;
    assert.throws(() => new RoleBinding(binding).validate(), /roleRef/);
  });

  it('the extra rules catch what the schema lets through', () => {
    const cases: [string, (j: J) => void, RegExp][] = [
      ['a 64-character Job name', (j) => (j.metadata.name = 'j'.repeat(64)), /longer than 63/],
      ['an uppercase name', (j) => (j.metadata.name = 'Manual-Backup-snapshot'), /name/],
      [
        'a label value of 64 characters',
        (j) => (j.metadata.labels['talos.alperen.cloud/backup'] = 'v'.repeat(64)),
        /label talos\.alperen\.cloud\/backup/,
      ],
      [
        'a label value ending in a dash',
        (j) => (j.spec.template.metadata.labels['talos.alperen.cloud/backup'] = 'v-'),
        /pod template: label/,
      ],
      [
        'a mount of a missing volume',
        (j) => j.spec.template.spec.containers[0].volumeMounts.push({ name: 'nope', mountPath: '/nope' }),
        /names no volume/,
      ],
      [
        'a duplicate env var',
        (j) => j.spec.template.spec.containers[0].env.push({ name: 'S3_BUCKET', value: 'x' }),
        /duplicate env var/,
      ],
      [
        'a podFailurePolicy naming another container',
        (j) => (j.spec.podFailurePolicy.rules[0].onExitCodes.containerName = 'other'),
        /podFailurePolicy names container/,
      ],
      [
        'an unattached ServiceAccount',
        (j) => (j.spec.template.spec.serviceAccountName = 'someone-else'),
        /is not attached/,
      ],
      ['a desired status', (j) => (j.status = { active: 1 }), /status in a desired object/],
      ['another namespace', (j) => (j.metadata.namespace = 'kube-system'), /namespace kube-system/],
    ];
    for (const [name, edit, expected] of cases) {
      const broken = breakJob(edit);
      const problems = problemsOf(broken, NS);
      assert.ok(
        problems.some((p) => expected.test(p)),
        `${name}: ${JSON.stringify(problems)}`,
      );
    }
  });

  it('an undeclared attachment type is caught', () => {
    const configMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'x', namespace: NS },
    } as KubernetesObject;
    assert.ok(problemsOf([...valid, configMap], NS).some((p) => /not a declared attachment/.test(p)));
  });
});
