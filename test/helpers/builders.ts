// Builders for Metacontroller requests shaped like the real thing (full objects, managedFields, last-applied).

import { randomUUID } from 'node:crypto';
import {
  API_VERSION,
  BACKUP_CHILDREN_KEY,
  BACKUP_KIND,
  CONTROLLER_UID_LABEL,
  LAST_APPLIED_ANNOTATION,
  SCHEDULE_KIND,
  SCHEDULE_LABEL,
  SCHEDULED_TIME_ANNOTATION,
} from '../../src/api/constants.js';
import type { CompositeSyncRequest, KubernetesObject } from '../../src/server/metacontroller/types.js';
import type { Condition } from '../../src/api/conditions.js';

export const NAMESPACE = 'talos-backup';
export const SCHEDULE_NAME = 'daily-backup-schedule';
export const SCHEDULE_UID = '5f0c2c7e-8d3a-4a59-9c1e-2f0a6b1d7e11';

export const at = (iso: string): Date => new Date(iso);
export const unix = (date: Date | string): number => Math.floor(new Date(date).getTime() / 1000);
export const iso = (date: Date): string => date.toISOString().replace(/\.\d{3}Z$/, 'Z');
export const minutesAfter = (date: Date | string, minutes: number): Date =>
  new Date(new Date(date).getTime() + minutes * 60_000);
export const secondsAfter = (date: Date | string, seconds: number): Date =>
  new Date(new Date(date).getTime() + seconds * 1000);

export function backupTemplateSpec(): Record<string, unknown> {
  return {
    talosConfigSecretRef: { name: 'talosconfig' },
    backupStorage: {
      s3: {
        bucket: 'etcd-backups',
        region: 'us-east-1',
        endpoint: 'https://s3.example.internal',
        accessKeyID: { name: 's3-credentials', key: 'access-key-id' },
        secretAccessKey: { name: 's3-credentials', key: 'secret-access-key' },
      },
    },
  };
}

export interface ScheduleOptions {
  name?: string;
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  created?: string;
  generation?: number;
  deletionTimestamp?: string;
  uid?: string;
}

export function schedule(opts: ScheduleOptions = {}): KubernetesObject {
  const spec = { schedule: '0 */6 * * *', retention: 3, backupTemplate: { spec: backupTemplateSpec() }, ...opts.spec };
  return {
    apiVersion: API_VERSION,
    kind: SCHEDULE_KIND,
    metadata: {
      name: opts.name ?? SCHEDULE_NAME,
      namespace: NAMESPACE,
      uid: opts.uid ?? SCHEDULE_UID,
      generation: opts.generation ?? 1,
      resourceVersion: '81234',
      creationTimestamp: opts.created ?? '2026-01-01T00:00:00Z',
      ...(opts.deletionTimestamp !== undefined && { deletionTimestamp: opts.deletionTimestamp }),
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ spec }) },
      managedFields: [
        {
          manager: 'kubectl-client-side-apply',
          operation: 'Update',
          apiVersion: API_VERSION,
          time: '2026-01-01T00:00:00Z',
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:spec': { 'f:schedule': {} } },
        },
      ],
    },
    spec,
    ...(opts.status !== undefined && { status: opts.status }),
  };
}

export type Outcome = 'succeeded' | 'failed' | 'active';

function conditionsFor(outcome: Outcome, finished: string): Condition[] {
  const c = (type: string, status: 'True' | 'False', reason: string): Condition => ({
    type,
    status,
    reason,
    message: '',
    lastTransitionTime: finished,
  });
  if (outcome === 'succeeded')
    return [
      c('Progressing', 'False', 'BackupCompleted'),
      c('Ready', 'True', 'BackupSucceeded'),
      c('Failed', 'False', 'BackupSucceeded'),
    ];
  if (outcome === 'failed')
    return [
      c('Progressing', 'False', 'BackupCompleted'),
      c('Ready', 'False', 'BackupFailed'),
      c('Failed', 'True', 'BackupFailed'),
    ];
  return [c('Progressing', 'True', 'BackupInProgress')];
}

export interface BackupOptions {
  scheduleName?: string;
  deleting?: boolean;
  /** Minutes from the slot to completion (for completionTime). */
  tookMinutes?: number;
  annotate?: boolean;
}

/** A TalosEtcdBackup as the API server returns it for a schedule's slot. */
export function backup(slot: Date | string, outcome: Outcome, opts: BackupOptions = {}): KubernetesObject {
  const scheduleName = opts.scheduleName ?? SCHEDULE_NAME;
  const slotDate = new Date(slot);
  const name = `${scheduleName}-${unix(slotDate)}`;
  const started = iso(secondsAfter(slotDate, 1));
  const finished = iso(minutesAfter(slotDate, opts.tookMinutes ?? 3));
  const labels = { [SCHEDULE_LABEL]: scheduleName, [CONTROLLER_UID_LABEL]: SCHEDULE_UID };
  const annotations: Record<string, string> =
    opts.annotate === false ? {} : { [SCHEDULED_TIME_ANNOTATION]: iso(slotDate) };
  const spec = backupTemplateSpec();
  return {
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: {
      name,
      namespace: NAMESPACE,
      uid: randomUUID(),
      generation: 1,
      resourceVersion: String(100000 + (unix(slotDate) % 100000)),
      creationTimestamp: started,
      ...(opts.deleting && { deletionTimestamp: iso(minutesAfter(slotDate, 60)) }),
      labels,
      annotations: {
        ...annotations,
        [LAST_APPLIED_ANNOTATION]: JSON.stringify({
          apiVersion: API_VERSION,
          kind: BACKUP_KIND,
          metadata: { name, labels, annotations },
          spec,
        }),
      },
      finalizers: ['metacontroller.io/decoratorcontroller-talos-etcd-backup'],
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: SCHEDULE_KIND,
          name: scheduleName,
          uid: SCHEDULE_UID,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
      managedFields: [
        {
          manager: 'metacontroller',
          operation: 'Update',
          apiVersion: API_VERSION,
          time: started,
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:metadata': { 'f:labels': {} }, 'f:spec': {} },
        },
        {
          manager: 'metacontroller',
          operation: 'Update',
          apiVersion: API_VERSION,
          time: finished,
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:status': {} },
          subresource: 'status',
        },
      ],
    },
    spec,
    status: {
      conditions: conditionsFor(outcome, outcome === 'active' ? started : finished),
      phase: outcome === 'succeeded' ? 'Succeeded' : outcome === 'failed' ? 'Failed' : 'Running',
      startTime: started,
      ...(outcome !== 'active' && { completionTime: finished }),
      ...(outcome === 'failed' && { message: 'Failed to upload snapshot to S3: NoSuchBucket' }),
    },
  };
}

/** A sync request exactly as Metacontroller v1 sends it: children keyed by name (or namespace/name for v2). */
export function syncRequest(
  parent: KubernetesObject,
  children: KubernetesObject[],
  keying: 'v1' | 'v2' = 'v1',
): CompositeSyncRequest {
  const map: Record<string, KubernetesObject> = {};
  for (const child of children)
    map[keying === 'v1' ? child.metadata.name : `${child.metadata.namespace}/${child.metadata.name}`] = child;
  return {
    controller: {
      metadata: { name: 'talos-etcd-backup-schedule', uid: 'c0ffee00-0000-4000-8000-000000000001', generation: 1 },
      spec: {
        generateSelector: true,
        resyncPeriodSeconds: 300,
        parentResource: { apiVersion: API_VERSION, resource: 'talosetcdbackupschedules' },
      },
      status: {},
    },
    parent,
    children: { [BACKUP_CHILDREN_KEY]: map },
    related: {},
    finalizing: false,
  };
}

/** Names of the desired children in an answer. */
export const childNames = (response: { children: KubernetesObject[] }): string[] =>
  response.children.map((c) => c.metadata.name).sort();

export function condition(status: Record<string, unknown>, type: string): Condition | undefined {
  return (status.conditions as Condition[] | undefined)?.find((c) => c.type === type);
}
