// Realistic Metacontroller sync bodies for the benchmarks: objects shaped as the API server returns them.

import { createHash } from 'node:crypto';
import {
  API_VERSION,
  BACKUP_CHILDREN_KEY,
  BACKUP_KIND,
  CONTROLLER_UID_LABEL,
  LAST_APPLIED_ANNOTATION,
  SCHEDULE_KIND,
  SCHEDULE_LABEL,
  SCHEDULED_TIME_ANNOTATION,
} from '../src/api/constants.js';
import type { CompositeSyncRequest } from '../src/server/metacontroller/types.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const HOUR_MS = 3_600_000;
const SLOT_MS = 6 * HOUR_MS; // matches the cron expression below
const CRON = '0 */6 * * *';
const NAMESPACE = 'talos-system';
const KUBECTL_LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
// The finalizer Metacontroller puts on objects of a CompositeController that has a finalize hook (the backup controller).
const BACKUP_FINALIZER = 'metacontroller.io/compositecontroller-talos-etcd-backup';
const NODES = ['10.20.0.11', '10.20.0.12', '10.20.0.13'];

export interface ScheduleFixtureOptions {
  /** Backups the schedule owns, one per consecutive slot ending at `newestSlot`. */
  children?: number;
  /** The newest slot; must be a slot of `0 *\/6 * * *` (UTC). */
  newestSlot?: Date;
}

export interface ScheduleFixture {
  request: CompositeSyncRequest;
  /** The request as Metacontroller sends it: compact JSON, object keys sorted (Go's encoding/json sorts map keys). */
  body: string;
  /** The hook's clock: one hour after the newest slot, so no backup is due and every call answers the same. */
  now: Date;
  scheduleName: string;
  childNames: string[];
  failedCount: number;
}

/** RFC 3339 at second precision, as the API server writes metav1.Time. */
function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function hex(seed: string, length = 64): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, length);
}

/** A stable, UUID-shaped uid: the fixture is the same on every run, so runs compare. */
function uid(seed: string): string {
  const h = hex(`uid:${seed}`, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** A small deterministic integer in [0, range) from a seed. */
function pick(seed: string, range: number): number {
  return parseInt(hex(seed, 8), 16) % range;
}

/** Deep copy with object keys sorted, like a Go map marshalled by encoding/json. */
function sortKeys(value: Json): Json {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  const out: JsonObject = {};
  for (const key of Object.keys(value).sort()) out[key] = sortKeys(value[key] as Json);
  return out;
}

/** A fieldsV1 set: every key of `value` as `f:<key>`, recursively, with `.` on objects, as server-side apply tracks them. */
function fieldsOf(value: Json): JsonObject {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return {};
  const out: JsonObject = { '.': {} };
  for (const [key, child] of Object.entries(value)) {
    out[`f:${key}`] = child !== null && typeof child === 'object' && !Array.isArray(child) ? fieldsOf(child) : {};
  }
  return out;
}

function conditionFields(types: string[]): JsonObject {
  const out: JsonObject = { '.': {} };
  for (const type of types) {
    out[`k:{"type":"${type}"}`] = {
      '.': {},
      'f:lastTransitionTime': {},
      'f:message': {},
      'f:observedGeneration': {},
      'f:reason': {},
      'f:status': {},
      'f:type': {},
    };
  }
  return out;
}

/** The template spec as the user wrote it (kubectl keeps this, without defaults, in its last-applied annotation). */
function appliedTemplateSpec(): JsonObject {
  return {
    talosConfigSecretRef: { name: 'prod-talosconfig', key: 'config' },
    backupStorage: {
      s3: {
        bucket: 'acme-prod-etcd-backups',
        region: 'eu-central-1',
        accessKeyID: { name: 'etcd-backup-s3-credentials', key: 'access-key-id' },
        secretAccessKey: { name: 'etcd-backup-s3-credentials', key: 'secret-access-key' },
        endpoint: 'https://minio.storage.svc.cluster.local:9000',
        prefix: 'talos-operator-etcd-backups/prod',
      },
    },
  };
}

/** The template spec as the API server stores it: the user's fields plus the CRD's defaults. */
function backupTemplateSpec(): JsonObject {
  const applied = appliedTemplateSpec() as { backupStorage: { s3: JsonObject } };
  return {
    ...applied,
    backupStorage: { s3: { ...applied.backupStorage.s3, insecureSkipTLSVerify: false } },
    compression: 'none',
    deletionPolicy: 'Retain',
    verify: false,
    job: { activeDeadlineSeconds: 3600, backoffLimit: 2 },
  };
}

function controller(): JsonObject {
  return {
    apiVersion: 'metacontroller.k8s.io/v1alpha1',
    kind: 'CompositeController',
    metadata: {
      name: 'talos-etcd-backup-schedule',
      uid: uid('controller'),
      generation: 1,
      resourceVersion: '1029',
      creationTimestamp: '2025-01-10T09:12:44Z',
    },
    spec: {
      generateSelector: true,
      parentResource: { apiVersion: API_VERSION, resource: 'talosetcdbackupschedules' },
      childResources: [
        { apiVersion: API_VERSION, resource: 'talosetcdbackups', updateStrategy: { method: 'OnDelete' } },
      ],
      hooks: {
        sync: {
          webhook: { url: 'http://talos-etcd-backup.talos-system.svc:8080/hooks/schedule/sync', timeout: '10s' },
        },
      },
    },
    status: {},
  };
}

function parentObject(
  name: string,
  parentUid: string,
  created: number,
  newestSlot: number,
  lastSuccess: number,
  now: number,
): JsonObject {
  // What the user applied with kubectl: kubectl keeps it (without defaults) in its last-applied annotation.
  const applied = {
    apiVersion: API_VERSION,
    kind: SCHEDULE_KIND,
    metadata: { annotations: {}, name, namespace: NAMESPACE },
    spec: {
      schedule: CRON,
      retention: 100,
      // Every failed backup of the fixture stays (the default keeps 3), so each call answers the same children.
      failedBackupsHistoryLimit: 100,
      backupTemplate: {
        spec: appliedTemplateSpec(),
      },
    },
  };
  const spec: JsonObject = {
    schedule: CRON,
    retention: 100,
    failedBackupsHistoryLimit: 100,
    paused: false,
    concurrencyPolicy: 'Forbid',
    backupTemplate: { spec: backupTemplateSpec() },
  };
  const generation = 3;
  const readySince = rfc3339(created + 2_000);
  const status: JsonObject = {
    lastScheduleTime: rfc3339(newestSlot),
    lastSuccessfulBackupTime: rfc3339(lastSuccess),
    nextScheduleTime: rfc3339(newestSlot + SLOT_MS),
    activeBackups: [],
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'Scheduled',
        message: `next backup at ${rfc3339(newestSlot + SLOT_MS)}`,
        lastTransitionTime: readySince,
        observedGeneration: generation,
      },
      {
        type: 'Failed',
        status: 'False',
        reason: 'Valid',
        message: 'the spec is valid',
        lastTransitionTime: readySince,
        observedGeneration: generation,
      },
    ],
    observedGeneration: generation,
  };
  return {
    apiVersion: API_VERSION,
    kind: SCHEDULE_KIND,
    metadata: {
      name,
      namespace: NAMESPACE,
      uid: parentUid,
      generation,
      resourceVersion: String(48_000_000 + Math.floor((now - created) / 60_000)),
      creationTimestamp: rfc3339(created),
      annotations: { [KUBECTL_LAST_APPLIED]: `${JSON.stringify(applied)}\n` },
      managedFields: [
        {
          manager: 'kubectl-client-side-apply',
          operation: 'Update',
          apiVersion: API_VERSION,
          time: rfc3339(created + 30 * 24 * HOUR_MS),
          fieldsType: 'FieldsV1',
          fieldsV1: {
            'f:metadata': { 'f:annotations': { '.': {}, [`f:${KUBECTL_LAST_APPLIED}`]: {} } },
            'f:spec': fieldsOf(spec),
          },
        },
        {
          manager: 'metacontroller',
          operation: 'Update',
          apiVersion: API_VERSION,
          time: rfc3339(newestSlot + 1_000),
          fieldsType: 'FieldsV1',
          fieldsV1: {
            'f:status': {
              '.': {},
              'f:activeBackups': {},
              'f:conditions': conditionFields(['Ready', 'Failed']),
              'f:lastScheduleTime': {},
              'f:lastSuccessfulBackupTime': {},
              'f:nextScheduleTime': {},
              'f:observedGeneration': {},
            },
          },
          subresource: 'status',
        },
      ],
    },
    spec,
    status,
  };
}

interface ChildFacts {
  name: string;
  slot: number;
  index: number;
  failed: boolean;
  scheduleName: string;
  parentUid: string;
}

function childObject(f: ChildFacts): JsonObject {
  const created = f.slot + 100 + pick(`${f.name}:created`, 900); // Metacontroller reacts a few hundred ms after the slot
  const started = created + 2_000 + pick(`${f.name}:started`, 3_000);
  const completed = started + (f.failed ? 60_000 : 15_000 + pick(`${f.name}:took`, 30_000));
  const node = NODES[pick(`${f.name}:node`, NODES.length)] ?? '10.20.0.11';
  const cluster = 'prod-talosconfig';
  const stamp = rfc3339(started).replace(/[-:]/g, '');
  const key = `talos-operator-etcd-backups/prod/${cluster}/etcd-snapshot-${stamp}.db`;
  const size = 48_000_000 + f.index * 65_536 + pick(`${f.name}:size`, 1_000_000);
  const spec = backupTemplateSpec();
  const labels = { [SCHEDULE_LABEL]: f.scheduleName, [CONTROLLER_UID_LABEL]: f.parentUid };
  const scheduledTime = rfc3339(f.slot);

  // The child as the schedule hook answered it; Metacontroller stores that as its last-applied configuration.
  const desired = {
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: {
      name: f.name,
      namespace: NAMESPACE,
      labels,
      annotations: { [SCHEDULED_TIME_ANNOTATION]: scheduledTime },
    },
    spec,
  };
  const lastApplied = JSON.stringify(sortKeys(desired));

  const done = rfc3339(completed);
  const status: JsonObject = f.failed
    ? {
        phase: 'Failed',
        cluster,
        startTime: rfc3339(started),
        completionTime: done,
        message: `etcd snapshot from ${node}:50000 failed: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp ${node}:50000: connect: connection refused"`,
        conditions: [
          {
            type: 'Progressing',
            status: 'False',
            reason: 'Failed',
            message: 'the snapshot Job failed',
            lastTransitionTime: done,
            observedGeneration: 1,
          },
          {
            type: 'Ready',
            status: 'False',
            reason: 'SnapshotFailed',
            message: 'no snapshot was stored',
            lastTransitionTime: done,
            observedGeneration: 1,
          },
          {
            type: 'Failed',
            status: 'True',
            reason: 'SnapshotFailed',
            message: `the snapshot Job failed after 3 attempts (backoffLimit 2): etcd snapshot from ${node}:50000 failed: connection refused`,
            lastTransitionTime: done,
            observedGeneration: 1,
          },
        ],
        observedGeneration: 1,
      }
    : {
        phase: 'Succeeded',
        cluster,
        startTime: rfc3339(started),
        completionTime: done,
        snapshot: {
          bucket: 'acme-prod-etcd-backups',
          key,
          size,
          sha256: hex(`${f.name}:sha256`),
          etcdSha256: hex(`${f.name}:etcd`),
          node,
          compression: 'none',
          encrypted: false,
          verified: false,
        },
        progress: { bytesUploaded: size },
        conditions: [
          {
            type: 'Progressing',
            status: 'False',
            reason: 'Completed',
            message: 'the snapshot Job completed',
            lastTransitionTime: done,
            observedGeneration: 1,
          },
          {
            type: 'Ready',
            status: 'True',
            reason: 'BackupSucceeded',
            message: `snapshot stored at s3://acme-prod-etcd-backups/${key} (${size} bytes)`,
            lastTransitionTime: done,
            observedGeneration: 1,
          },
          {
            type: 'Failed',
            status: 'False',
            reason: 'Succeeded',
            message: 'the backup succeeded',
            lastTransitionTime: done,
            observedGeneration: 1,
          },
        ],
        observedGeneration: 1,
      };

  return {
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: {
      name: f.name,
      namespace: NAMESPACE,
      uid: uid(f.name),
      generation: 1,
      resourceVersion: String(40_000_000 + f.index * 1_337),
      creationTimestamp: rfc3339(created),
      labels,
      annotations: { [SCHEDULED_TIME_ANNOTATION]: scheduledTime, [LAST_APPLIED_ANNOTATION]: lastApplied },
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: SCHEDULE_KIND,
          name: f.scheduleName,
          uid: f.parentUid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
      finalizers: [BACKUP_FINALIZER],
      managedFields: [
        {
          // Metacontroller creating the child from the hook's answer.
          manager: 'metacontroller',
          operation: 'Update',
          apiVersion: API_VERSION,
          time: rfc3339(created),
          fieldsType: 'FieldsV1',
          fieldsV1: {
            'f:metadata': {
              'f:annotations': {
                '.': {},
                [`f:${LAST_APPLIED_ANNOTATION}`]: {},
                [`f:${SCHEDULED_TIME_ANNOTATION}`]: {},
              },
              'f:labels': { '.': {}, [`f:${CONTROLLER_UID_LABEL}`]: {}, [`f:${SCHEDULE_LABEL}`]: {} },
              'f:ownerReferences': { '.': {}, [`k:{"uid":"${f.parentUid}"}`]: {} },
            },
            'f:spec': fieldsOf(spec),
          },
        },
        {
          // The backup controller's Metacontroller adding its finalizer.
          manager: 'metacontroller',
          operation: 'Update',
          apiVersion: API_VERSION,
          time: rfc3339(created + 50),
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:metadata': { 'f:finalizers': { '.': {}, [`v:"${BACKUP_FINALIZER}"`]: {} } } },
        },
        {
          // The backup controller writing the status subresource.
          manager: 'metacontroller',
          operation: 'Update',
          apiVersion: API_VERSION,
          time: done,
          fieldsType: 'FieldsV1',
          fieldsV1: {
            'f:status': { ...fieldsOf(status), 'f:conditions': conditionFields(['Progressing', 'Ready', 'Failed']) },
          },
          subresource: 'status',
        },
      ],
    },
    spec,
    status,
  };
}

/**
 * A schedule (`0 *\/6 * * *`, retention 100) with `children` backups for consecutive slots, a few of them failed.
 * With `now` one hour after the newest slot nothing is due and retention keeps everything: a steady state.
 */
export function scheduleSyncFixture(opts: ScheduleFixtureOptions = {}): ScheduleFixture {
  const count = opts.children ?? 100;
  const newestSlot = (opts.newestSlot ?? new Date('2025-06-01T18:00:00Z')).getTime();
  if (newestSlot % SLOT_MS !== 0)
    throw new Error(`newestSlot ${new Date(newestSlot).toISOString()} is not a slot of "${CRON}"`);
  const scheduleName = 'prod-etcd';
  const parentUid = uid(scheduleName);
  const oldestSlot = newestSlot - (count - 1) * SLOT_MS;
  const created = oldestSlot - 24 * HOUR_MS + 17 * 60_000; // the schedule existed before its first backup
  const now = newestSlot + HOUR_MS;

  const children: Record<string, JsonObject> = {};
  const childNames: string[] = [];
  let failedCount = 0;
  let lastSuccess = 0;
  for (let index = 0; index < count; index += 1) {
    const slot = oldestSlot + index * SLOT_MS;
    const name = `${scheduleName}-${Math.floor(slot / 1000)}`;
    // A few failures, never the newest: a realistic history that retention still keeps in full.
    const failed = index % 17 === 9;
    if (failed) failedCount += 1;
    else lastSuccess = slot;
    children[name] = childObject({ name, slot, index, failed, scheduleName, parentUid });
    childNames.push(name);
  }

  const request = sortKeys({
    controller: controller(),
    parent: parentObject(scheduleName, parentUid, created, newestSlot, lastSuccess, now),
    children: { [BACKUP_CHILDREN_KEY]: children },
    related: {},
    finalizing: false,
  }) as unknown as CompositeSyncRequest;
  return { request, body: JSON.stringify(request), now: new Date(now), scheduleName, childNames, failedCount };
}
