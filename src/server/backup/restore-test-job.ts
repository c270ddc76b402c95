// The restore-test Job of a backup: one pod, four containers sharing an emptyDir (/restore), under the restricted
// Pod Security Standard:
//   init  fetch    (this image)  download, decrypt, decompress, verify against the status → /restore/snapshot.db
//   init  etcdutl  (etcd image)  etcdutl snapshot restore → /restore/etcd
//   init  etcd     (etcd image)  a native sidecar (restartPolicy Always): the restored etcd, listening only on the
//                                unix socket /restore/etcd.sock:2379 (no TCP port); stopped once check ends
//   main  check    (this image)  asks that etcd what it serves; the pod's outcome is this container's
// The restored data (every Secret of the cluster) exists only in that emptyDir and goes with the pod. Native
// sidecars need Kubernetes 1.29 or later (on by default since 1.29, GA in 1.33).

import type { BackupSpec, RestoreTestSettings, SnapshotInfo } from '../../api/types.js';
import { RESTORE_TEST_REQUEST_ANNOTATION } from '../../api/constants.js';
import { SETTINGS } from '../../contract/settings.js';
import { EXIT_CODE } from '../../contract/exit-codes.js';
import type { KubernetesObject } from '../metacontroller/types.js';
import {
  cliContainer,
  env,
  identityInputs,
  POD_GRACE_SECONDS,
  RESTRICTED_CONTAINER,
  RESTRICTED_POD,
  s3Inputs,
  type BackupRef,
  type JobImage,
} from './job.js';
import { attachmentLabels, attachmentName } from './names.js';

const RESTORE_DIR = '/restore';
const ETCD_DATA_DIR = `${RESTORE_DIR}/etcd`;
/** Where etcd's release images keep their binaries (gcr.io/etcd-development/etcd, quay.io/coreos/etcd). */
const ETCD_BIN = '/usr/local/bin';
/** etcd's default backend quota is 2 GiB; a restored database may be larger (8 GiB is etcd's suggested maximum). */
const ETCD_QUOTA_BYTES = 8 * 1024 * 1024 * 1024;
const DEFAULT_ETCD_RESOURCES = { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '2Gi' } };
/** A restore test is one attempt: a transient failure is retried once; a damaged backup fails at once (exit 2). */
const RESTORE_TEST_BACKOFF_LIMIT = 1;

/** What a restore test needs to know about its request: when it was asked for and how it runs. */
export interface RestoreTestRequest {
  requestedAt: string;
  settings: RestoreTestSettings;
}

export function restoreTestJobName(backupName: string): string {
  return attachmentName(backupName, 'restore-test');
}

/** The age identity a test decrypts with: its own, else the one the backup names for verify. */
export function restoreTestIdentity(spec: BackupSpec, settings: RestoreTestSettings) {
  return settings.identitySecretRef ?? spec.encryption?.age.identitySecretRef;
}

export function restoreTestJob(
  backup: BackupRef,
  spec: BackupSpec,
  snapshot: SnapshotInfo,
  request: RestoreTestRequest,
  image: JobImage,
): KubernetesObject {
  const component = 'restore-test';
  const labels = attachmentLabels(backup, component);
  const s3 = s3Inputs(spec);
  const identity = identityInputs(snapshot.encrypted ? restoreTestIdentity(spec, request.settings) : undefined);
  const restoreMount = { name: 'restore', mountPath: RESTORE_DIR };
  const recorded = [
    ...env(SETTINGS.restoreTestDir.env, RESTORE_DIR),
    ...env(SETTINGS.requestedAt.env, request.requestedAt),
    ...env(SETTINGS.expectedRevision.env, snapshot.revision?.toString()),
    ...env(SETTINGS.expectedKeys.env, snapshot.keys?.toString()),
  ];
  const reporting = [
    ...env(SETTINGS.backupNamespace.env, backup.namespace),
    ...env(SETTINGS.backupName.env, backup.name),
    ...env(SETTINGS.backupUid.env, backup.uid),
    ...env(SETTINGS.reportStatus.env, 'true'),
  ];
  const fetch = cliContainer(
    'fetch',
    image,
    {
      command: 'restore-test-fetch',
      vars: [
        ...s3.vars,
        ...env(SETTINGS.key.env, snapshot.key),
        ...env(SETTINGS.expectedSize.env, String(snapshot.size)),
        ...env(SETTINGS.expectedSha256.env, snapshot.sha256),
        ...env(SETTINGS.expectedEtcdSha256.env, snapshot.etcdSha256),
        // The cluster secrets stored beside it are part of what a restore needs: decrypted and checked too.
        ...env(SETTINGS.secretsKey.env, snapshot.secrets?.key),
        ...env(SETTINGS.expectedSecretsSha256.env, snapshot.secrets?.key && snapshot.secrets.sha256),
        ...recorded,
        ...reporting,
        ...identity.vars,
      ],
      required: [...s3.required, ...identity.required],
      mounts: [restoreMount, ...s3.mounts, ...identity.mounts],
    },
    spec.job.resources,
  );
  const check = cliContainer(
    'check',
    image,
    { command: 'restore-test-check', vars: [...recorded, ...reporting], required: [], mounts: [restoreMount] },
    spec.job.resources,
  );
  const etcdContainer = (name: string, command: string[], extra: Record<string, unknown> = {}) => ({
    name,
    image: request.settings.etcdImage,
    imagePullPolicy: 'IfNotPresent',
    command,
    workingDir: RESTORE_DIR,
    resources: request.settings.resources ?? DEFAULT_ETCD_RESOURCES,
    volumeMounts: [restoreMount],
    securityContext: RESTRICTED_CONTAINER,
    ...extra,
  });
  const socket = 'unix://etcd.sock:2379';
  const sizeLimit = request.settings.volumeSizeLimit;
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: restoreTestJobName(backup.name),
      namespace: backup.namespace,
      labels,
      annotations: { [RESTORE_TEST_REQUEST_ANNOTATION]: request.requestedAt },
    },
    spec: {
      backoffLimit: RESTORE_TEST_BACKOFF_LIMIT,
      activeDeadlineSeconds: request.settings.activeDeadlineSeconds,
      podFailurePolicy: {
        rules: [
          // A damaged backup, a wrong identity, a record that does not match: a second attempt proves nothing new.
          { action: 'FailJob', onExitCodes: { containerName: 'fetch', operator: 'In', values: [EXIT_CODE.permanent] } },
          { action: 'FailJob', onExitCodes: { containerName: 'check', operator: 'In', values: [EXIT_CODE.permanent] } },
          { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
        ],
      },
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: POD_GRACE_SECONDS,
          serviceAccountName: restoreTestJobName(backup.name),
          automountServiceAccountToken: true,
          securityContext: RESTRICTED_POD,
          ...(image.pullSecrets.length > 0 && { imagePullSecrets: image.pullSecrets.map((name) => ({ name })) }),
          ...(spec.job.nodeSelector && { nodeSelector: spec.job.nodeSelector }),
          ...(spec.job.tolerations && { tolerations: spec.job.tolerations }),
          ...(spec.job.priorityClassName && { priorityClassName: spec.job.priorityClassName }),
          initContainers: [
            fetch,
            etcdContainer('etcdutl', [
              `${ETCD_BIN}/etcdutl`,
              'snapshot',
              'restore',
              `${RESTORE_DIR}/snapshot.db`,
              `--data-dir=${ETCD_DATA_DIR}`,
            ]),
            etcdContainer(
              'etcd',
              [
                `${ETCD_BIN}/etcd`,
                `--data-dir=${ETCD_DATA_DIR}`,
                `--listen-client-urls=${socket}`,
                `--advertise-client-urls=${socket}`,
                '--listen-peer-urls=unix://etcd-peer.sock:2380',
                `--quota-backend-bytes=${ETCD_QUOTA_BYTES}`,
              ],
              { restartPolicy: 'Always' },
            ),
          ],
          containers: [check],
          volumes: [
            { name: 'restore', emptyDir: sizeLimit === undefined ? {} : { sizeLimit } },
            ...s3.volumes,
            ...identity.volumes,
          ],
        },
      },
    },
  };
}
