// The objects a backup attaches: the snapshot Job with its own ServiceAccount, Role and RoleBinding, and, when a
// backup with deletionPolicy Delete goes away, the delete Job. Pure builders: same backup, same objects.
//
// How the Job learns its inputs: Kubernetes resolves the Secrets (secretKeyRef for the S3 keys, a Secret volume
// for the talosconfig, a Secret or ConfigMap volume for the CA bundle). Every reference is `optional: true`, so
// a missing Secret or key never leaves the pod stuck in CreateContainerConfigError: the CLI starts, finds the
// input missing (REQUIRED_SECRETS says what to expect) and fails at once with "Failed to get secret ...".
// How it reports back: a merge patch on its backup's status subresource (status.report), the only thing its
// ServiceAccount may do. It reads nothing through the API: the kubelet, not the Job's identity, reads the Secrets
// (the cluster secrets stored beside the snapshot too: a whole-Secret volume, not a Role that may get a Secret).

import { GROUP, BACKUP_PLURAL, SCHEDULED_TIME_ANNOTATION } from '../../api/constants.js';
import type { BackupSpec, SecretKeyRef } from '../../api/types.js';
import type { KubernetesObject } from '../metacontroller/types.js';
import { s3SettingsOf, SETTINGS, type SettingName } from '../../contract/settings.js';
import { SNAPSHOT_NODE_FLAGS, SNAPSHOT_RUNTIME_ENV } from '../../contract/runtime.js';
import { formatTime, parseTime } from '../../api/conditions.js';
import { EXIT_CODE } from '../../contract/exit-codes.js';
import { formatRequiredInputs, type RequiredSecret } from '../../contract/required-inputs.js';
import { attachmentLabels, attachmentName, type Component } from './names.js';
import type { TalosSource } from './talos-source.js';
import { secretsPlan } from './cluster-secrets.js';
import { copyCredentialEnv, copySettingsOf, formatCopies, type CopySetting } from '../../contract/copies.js';

/** Where the image keeps the CLI (the Dockerfile puts the compiled project in /app). */
export const IMAGE_ENTRYPOINT = '/app/dist/src/main.js';
export const CONTAINER_NAME = 'backup';

const TALOSCONFIG_DIR = '/var/run/secrets/talos.dev';
const CA_BUNDLE_DIR = '/var/run/secrets/s3-ca';
const CA_BUNDLE_FILE = 'ca.crt';
const AGE_IDENTITY_DIR = '/var/run/secrets/age';
const AGE_IDENTITY_FILE = 'identity.txt';
const CLUSTER_SECRETS_DIR = '/var/run/secrets/cluster-secrets';
// The delete Job only talks to S3; a short deadline keeps a stuck one from holding the finalizer for an hour.
const DELETE_JOB_DEADLINE_SECONDS = 600;
const DELETE_JOB_BACKOFF_LIMIT = 2;
/** The Jobs' pods get this long between SIGTERM and SIGKILL (Kubernetes' default, written out: the delete waits on it). */
export const POD_GRACE_SECONDS = 30;
/**
 * How long the delete Job waits before its second pass when the snapshot may still run: the snapshot Job is gone
 * before the delete Job is asked for, but its pod may stop up to POD_GRACE_SECONDS later, and an upload completing
 * in between would leave an object behind.
 */
export const DELETE_WAIT_AFTER_SNAPSHOT_SECONDS = POD_GRACE_SECONDS + 10;
/** Used when spec.job.resources is unset: streaming needs ~150–200 MiB whatever the snapshot's size (npm run bench). */
export const DEFAULT_RESOURCES = { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '512Mi' } };

export interface JobImage {
  image: string;
  pullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  pullSecrets: string[];
}

/** The backup as the builders need it. */
export interface BackupRef {
  name: string;
  namespace: string;
  uid: string;
  creationTimestamp?: string | undefined;
  annotations?: Record<string, string> | undefined;
}

type EnvVar = { name: string; value?: string; valueFrom?: Record<string, unknown> };

/** The key's timestamp: the slot a schedule created the backup for, else the backup's creation. */
export function backupTime(backup: BackupRef): string | undefined {
  const scheduled = parseTime(backup.annotations?.[SCHEDULED_TIME_ANNOTATION]);
  const created = parseTime(backup.creationTimestamp);
  const time = scheduled ?? created;
  return time && formatTime(time);
}

export function env(name: string, value: string | undefined): EnvVar[] {
  return value === undefined ? [] : [{ name, value }];
}

function secretEnv(name: string, ref: SecretKeyRef): EnvVar {
  return { name, valueFrom: { secretKeyRef: { name: ref.name, key: ref.key, optional: true } } };
}

/** S3 settings shared by the snapshot and delete Jobs: env, volumes, mounts and the secrets they expect. */
export function s3Inputs(spec: BackupSpec) {
  const s3 = spec.backupStorage.s3;
  const vars: EnvVar[] = (Object.entries(s3SettingsOf(s3)) as [SettingName, string][]).flatMap(([name, value]) =>
    env(SETTINGS[name].env, value),
  );
  const required: RequiredSecret[] = [];
  const volumes: Record<string, unknown>[] = [];
  const mounts: Record<string, unknown>[] = [];
  if (s3.accessKeyID && s3.secretAccessKey) {
    vars.push(secretEnv('AWS_ACCESS_KEY_ID', s3.accessKeyID), secretEnv('AWS_SECRET_ACCESS_KEY', s3.secretAccessKey));
    required.push(
      { kind: 'Secret', ...s3.accessKeyID, env: 'AWS_ACCESS_KEY_ID' },
      { kind: 'Secret', ...s3.secretAccessKey, env: 'AWS_SECRET_ACCESS_KEY' },
    );
  }
  if (s3.caBundle) {
    const { kind, name, key } = s3.caBundle;
    const items = [{ key, path: CA_BUNDLE_FILE }];
    volumes.push({
      name: 's3-ca',
      ...(kind === 'ConfigMap'
        ? { configMap: { name, items, optional: true } }
        : { secret: { secretName: name, items, optional: true } }),
    });
    mounts.push({ name: 's3-ca', mountPath: CA_BUNDLE_DIR, readOnly: true });
    vars.push({ name: SETTINGS.caBundle.env, value: `${CA_BUNDLE_DIR}/${CA_BUNDLE_FILE}` });
    required.push({ kind, name, key, pathEnv: SETTINGS.caBundle.env });
  }
  return { vars, required, volumes, mounts };
}

/**
 * The copies (spec.backupStorage.copies) for the snapshot and delete Jobs: S3_COPIES, each copy's keys as
 * S3_COPY_<N>_* from its Secret and its CA bundle as a file. A required copy's Secrets are REQUIRED_SECRETS (missing:
 * the backup fails at once); an optional copy's missing Secret costs that copy only (`keysFromEnv`: never the ambient
 * keys instead). `keys`: the delete Job's, each copy's object (and its cluster secrets') key.
 */
export function copiesInputs(
  spec: BackupSpec,
  keys?: (n: number) => { key?: string | undefined; secretsKey?: string | undefined } | undefined,
) {
  const copies = spec.backupStorage.copies ?? [];
  const vars: EnvVar[] = [];
  const required: RequiredSecret[] = [];
  const volumes: Record<string, unknown>[] = [];
  const mounts: Record<string, unknown>[] = [];
  if (copies.length === 0) return { vars, required, volumes, mounts };
  const settings = copySettingsOf(copies, (copy, n) => {
    const extra: Partial<CopySetting> = { ...keys?.(n) };
    const needed = copy.required ?? true;
    if (copy.accessKeyID && copy.secretAccessKey) {
      const names = copyCredentialEnv(n);
      vars.push(secretEnv(names.accessKeyId, copy.accessKeyID), secretEnv(names.secretAccessKey, copy.secretAccessKey));
      if (needed)
        required.push(
          { kind: 'Secret', ...copy.accessKeyID, env: names.accessKeyId },
          { kind: 'Secret', ...copy.secretAccessKey, env: names.secretAccessKey },
        );
      extra.keysFromEnv = true;
    }
    if (copy.caBundle) {
      const { kind, name, key } = copy.caBundle;
      const volume = `s3-ca-copy-${n}`;
      const dir = `${CA_BUNDLE_DIR}-copy-${n}`;
      const items = [{ key, path: CA_BUNDLE_FILE }];
      volumes.push({
        name: volume,
        ...(kind === 'ConfigMap'
          ? { configMap: { name, items, optional: true } }
          : { secret: { secretName: name, items, optional: true } }),
      });
      mounts.push({ name: volume, mountPath: dir, readOnly: true });
      extra.caBundle = `${dir}/${CA_BUNDLE_FILE}`;
    }
    return extra;
  });
  vars.push({ name: SETTINGS.copies.env, value: formatCopies(settings) });
  return { vars, required, volumes, mounts };
}

interface PodParts {
  component: Component;
  command: string;
  vars: EnvVar[];
  required: RequiredSecret[];
  volumes: Record<string, unknown>[];
  mounts: Record<string, unknown>[];
  serviceAccountName?: string;
  activeDeadlineSeconds: number;
  backoffLimit: number;
}

/** A container of this image running one CLI command, restricted (no privilege, read-only root, no capability). */
export function cliContainer(
  name: string,
  image: JobImage,
  parts: Pick<PodParts, 'command' | 'vars' | 'required' | 'mounts'>,
  resources: BackupSpec['job']['resources'],
): Record<string, unknown> {
  return {
    name,
    image: image.image,
    imagePullPolicy: image.pullPolicy,
    command: ['node', ...SNAPSHOT_NODE_FLAGS, IMAGE_ENTRYPOINT, parts.command],
    env: [
      ...Object.entries(SNAPSHOT_RUNTIME_ENV).map(([name, value]) => ({ name, value })),
      ...parts.vars,
      { name: SETTINGS.requiredSecrets.env, value: formatRequiredInputs(parts.required) },
      { name: SETTINGS.podName.env, valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    ],
    resources: resources ?? DEFAULT_RESOURCES,
    ...(parts.mounts.length > 0 && { volumeMounts: parts.mounts }),
    securityContext: RESTRICTED_CONTAINER,
  };
}

export const RESTRICTED_CONTAINER = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ['ALL'] },
};

/** The pod's security context: the restricted Pod Security Standard, as the image's non-root user. */
export const RESTRICTED_POD = {
  runAsNonRoot: true,
  runAsUser: 65532,
  runAsGroup: 65532,
  seccompProfile: { type: 'RuntimeDefault' },
};

/** A Job running one CLI command under the restricted Pod Security Standard. */
function cliJob(backup: BackupRef, spec: BackupSpec, image: JobImage, parts: PodParts): KubernetesObject {
  const labels = attachmentLabels(backup, parts.component);
  const job = spec.job;
  const container = cliContainer(CONTAINER_NAME, image, parts, job.resources);
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: attachmentName(backup.name, parts.component), namespace: backup.namespace, labels },
    spec: {
      backoffLimit: parts.backoffLimit,
      activeDeadlineSeconds: parts.activeDeadlineSeconds,
      // Exit code 2 means no retry can help (bad settings, a missing Secret): fail the Job at once instead of
      // spending the backoff. Evicted or preempted pods do not count against backoffLimit.
      podFailurePolicy: {
        rules: [
          {
            action: 'FailJob',
            onExitCodes: { containerName: CONTAINER_NAME, operator: 'In', values: [EXIT_CODE.permanent] },
          },
          { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
        ],
      },
      // No ttlSecondsAfterFinished: Metacontroller would recreate a Job the TTL controller removed while the
      // backup still lists it, and run the backup again. The Job goes when the backup's status records the outcome.
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: POD_GRACE_SECONDS,
          ...(parts.serviceAccountName
            ? { serviceAccountName: parts.serviceAccountName, automountServiceAccountToken: true }
            : { automountServiceAccountToken: false }),
          securityContext: RESTRICTED_POD,
          ...(image.pullSecrets.length > 0 && { imagePullSecrets: image.pullSecrets.map((name) => ({ name })) }),
          ...(job.nodeSelector && { nodeSelector: job.nodeSelector }),
          ...(job.tolerations && { tolerations: job.tolerations }),
          ...(job.priorityClassName && { priorityClassName: job.priorityClassName }),
          containers: [container],
          ...(parts.volumes.length > 0 && { volumes: parts.volumes }),
        },
      },
    },
  };
}

/**
 * How the object is protected and checked: compression, age recipients, server-side encryption, Object Lock, and
 * the read-back. The age identity is mounted only when the read-back can use it: taking a backup never needs it.
 */
function protectionInputs(spec: BackupSpec) {
  const s3 = spec.backupStorage.s3;
  const vars: EnvVar[] = [
    ...env(SETTINGS.compression.env, spec.compression),
    ...env(SETTINGS.ageRecipients.env, spec.encryption?.age.recipients.join(',')),
    ...env(SETTINGS.sse.env, s3.serverSideEncryption?.algorithm),
    ...env(SETTINGS.sseKmsKeyId.env, s3.serverSideEncryption?.kmsKeyID),
    ...env(SETTINGS.objectLockMode.env, s3.objectLock?.mode),
    ...env(SETTINGS.objectLockRetainDays.env, s3.objectLock && String(s3.objectLock.retainDays)),
    ...env(SETTINGS.verify.env, String(spec.verify)),
  ];
  const identity = identityInputs(spec.verify ? spec.encryption?.age.identitySecretRef : undefined);
  return { ...identity, vars: [...vars, ...identity.vars] };
}

/** An age identity from a Secret, as a file the CLI reads (AGE_IDENTITY_FILE); nothing without one. */
export function identityInputs(identity: SecretKeyRef | undefined) {
  if (!identity) return { vars: [] as EnvVar[], required: [] as RequiredSecret[], volumes: [], mounts: [] };
  return {
    vars: [{ name: SETTINGS.ageIdentity.env, value: `${AGE_IDENTITY_DIR}/${AGE_IDENTITY_FILE}` }] as EnvVar[],
    required: [{ kind: 'Secret', ...identity, pathEnv: SETTINGS.ageIdentity.env }] as RequiredSecret[],
    volumes: [
      {
        name: 'age-identity',
        secret: { secretName: identity.name, items: [{ key: identity.key, path: AGE_IDENTITY_FILE }], optional: true },
      },
    ],
    mounts: [{ name: 'age-identity', mountPath: AGE_IDENTITY_DIR, readOnly: true }],
  };
}

/**
 * The cluster secrets stored beside the snapshot (cluster-secrets.ts): the whole Secret as a volume, every key a
 * file; required (a missing Secret fails the backup) only when the spec names it.
 */
function secretsInputs(spec: BackupSpec) {
  const plan = secretsPlan(spec);
  if (plan.action !== 'store')
    return { vars: [] as EnvVar[], required: [] as RequiredSecret[], volumes: [], mounts: [] };
  return {
    vars: [
      { name: SETTINGS.clusterSecretsDir.env, value: CLUSTER_SECRETS_DIR },
      { name: SETTINGS.clusterSecretsName.env, value: plan.secretName },
      { name: SETTINGS.clusterSecretsSource.env, value: plan.source },
    ],
    required: plan.required
      ? ([{ kind: 'Secret', name: plan.secretName, pathEnv: SETTINGS.clusterSecretsDir.env }] as RequiredSecret[])
      : [],
    volumes: [{ name: 'cluster-secrets', secret: { secretName: plan.secretName, optional: true } }],
    mounts: [{ name: 'cluster-secrets', mountPath: CLUSTER_SECRETS_DIR, readOnly: true }],
  };
}

/** The Job that takes the snapshot, as `talos-etcd-backup snapshot` with the settings of the backup. */
export function snapshotJob(
  backup: BackupRef,
  spec: BackupSpec,
  source: TalosSource,
  image: JobImage,
): KubernetesObject {
  const s3 = s3Inputs(spec);
  const protection = protectionInputs(spec);
  const secrets = secretsInputs(spec);
  const copies = copiesInputs(spec);
  const talosconfigFile = SETTINGS.talosconfig.default;
  const vars: EnvVar[] = [
    ...env(SETTINGS.talosconfig.env, talosconfigFile),
    ...env(SETTINGS.endpoints.env, source.endpoints?.join(',')),
    ...env(SETTINGS.node.env, spec.node),
    ...s3.vars,
    ...env(SETTINGS.prefix.env, spec.backupStorage.s3.prefix),
    ...env(SETTINGS.cluster.env, source.cluster),
    ...env(SETTINGS.time.env, backupTime(backup)),
    ...env(SETTINGS.backupNamespace.env, backup.namespace),
    ...env(SETTINGS.backupName.env, backup.name),
    ...env(SETTINGS.backupUid.env, backup.uid),
    ...env(SETTINGS.reportStatus.env, 'true'),
    ...protection.vars,
    ...secrets.vars,
    ...copies.vars,
  ];
  const talosconfigItem = talosconfigFile.slice(TALOSCONFIG_DIR.length + 1);
  return cliJob(backup, spec, image, {
    component: 'snapshot',
    command: 'snapshot',
    vars,
    required: [
      { kind: 'Secret', ...source.talosconfig, pathEnv: SETTINGS.talosconfig.env },
      ...s3.required,
      ...protection.required,
      ...secrets.required,
      ...copies.required,
    ],
    volumes: [
      {
        name: 'talosconfig',
        secret: {
          secretName: source.talosconfig.name,
          items: [{ key: source.talosconfig.key, path: talosconfigItem }],
          optional: true,
        },
      },
      ...s3.volumes,
      ...protection.volumes,
      ...secrets.volumes,
      ...copies.volumes,
    ],
    mounts: [
      { name: 'talosconfig', mountPath: TALOSCONFIG_DIR, readOnly: true },
      ...s3.mounts,
      ...protection.mounts,
      ...secrets.mounts,
      ...copies.mounts,
    ],
    serviceAccountName: attachmentName(backup.name, 'snapshot'),
    activeDeadlineSeconds: spec.job.activeDeadlineSeconds,
    backoffLimit: spec.job.backoffLimit,
  });
}

/**
 * The identity of a Job that reports (the snapshot Job, the restore-test Job): it may patch its own backup's status
 * and create Events, and nothing else.
 */
export function reportingIdentity(
  backup: BackupRef,
  component: 'snapshot' | 'restore-test' = 'snapshot',
): KubernetesObject[] {
  const name = attachmentName(backup.name, component);
  const labels = attachmentLabels(backup, component);
  const metadata = { name, namespace: backup.namespace, labels };
  return [
    // The token is mounted by the pod spec (automountServiceAccountToken), not by default for this account.
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata, automountServiceAccountToken: false },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata,
      rules: [
        { apiGroups: [GROUP], resources: [`${BACKUP_PLURAL}/status`], resourceNames: [backup.name], verbs: ['patch'] },
        // Its Events on the backup (BackupStarted/Succeeded/Failed). Kubernetes' RBAC cannot limit `create` by
        // resourceNames (the name is not known when the request is authorized), so this is create on any Event of
        // the namespace: it cannot read, change or delete one.
        { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace: backup.namespace }],
    },
  ];
}

/**
 * The Job that removes the backup's object from S3 (deletionPolicy Delete), and its cluster secrets' object at
 * `opts.secretsKey`; it needs no Kubernetes API access.
 */
export function deleteJob(
  backup: BackupRef,
  spec: BackupSpec,
  key: string,
  image: JobImage,
  opts: {
    afterSnapshot?: boolean;
    secretsKey?: string | undefined;
    /** Copy N's object and cluster secrets to delete (N from 1); a copy without a key is skipped. */
    copyKeys?: (n: number) => { key?: string | undefined; secretsKey?: string | undefined } | undefined;
  } = {},
): KubernetesObject {
  const s3 = s3Inputs(spec);
  // Only the copies with a key to delete (a copy never stored has nothing), renumbered in that order.
  const stored = (spec.backupStorage.copies ?? []).flatMap((copy, i) => {
    const keys = opts.copyKeys?.(i + 1);
    return keys?.key ? [{ copy: { ...copy, name: copy.name ?? `copy-${i + 1}` }, keys }] : [];
  });
  const copies = copiesInputs(
    { ...spec, backupStorage: { ...spec.backupStorage, copies: stored.map((s) => s.copy) } },
    (n) => stored[n - 1]!.keys,
  );
  return cliJob(backup, spec, image, {
    component: 'delete',
    command: 'delete',
    vars: [
      ...s3.vars,
      ...env(SETTINGS.key.env, key),
      ...env(SETTINGS.secretsKey.env, opts.secretsKey),
      ...env(SETTINGS.backupUid.env, backup.uid),
      ...(opts.afterSnapshot ? env(SETTINGS.deleteWait.env, String(DELETE_WAIT_AFTER_SNAPSHOT_SECONDS)) : []),
      ...copies.vars,
    ],
    required: [...s3.required, ...copies.required],
    volumes: [...s3.volumes, ...copies.volumes],
    mounts: [...s3.mounts, ...copies.mounts],
    activeDeadlineSeconds: DELETE_JOB_DEADLINE_SECONDS,
    backoffLimit: DELETE_JOB_BACKOFF_LIMIT,
  });
}
