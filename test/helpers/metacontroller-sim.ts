// A small in-memory Metacontroller CompositeController for tests: one TalosEtcdBackupSchedule, the TalosEtcdBackups
// it owns, and a simulated clock. It calls the real hook over HTTP with Metacontroller v1 request bodies and applies
// each answer as Metacontroller does (reference/metacontroller.md §1.2–1.6): creates the missing children with an
// owner reference and the controller-uid label, deletes the observed children the answer leaves out, replaces the
// parent's status (injecting observedGeneration) and remembers resyncAfterSeconds. Existing children are never
// updated (updateStrategy OnDelete). The simulator also plays the API server: it applies the CRDs' defaults and
// refuses objects and statuses the CRDs would reject.

import { isDeepStrictEqual } from 'node:util';
import { API_VERSION, BACKUP_CHILDREN_KEY, BACKUP_KIND, BACKUP_PLURAL, CONTROLLER_UID_LABEL, LAST_APPLIED_ANNOTATION, SCHEDULE_KIND, SCHEDULE_PLURAL } from '../../src/api/constants.js';
import { isReadableBackup, readScheduleStatus, validateBackupSpec, validateSchedule } from '../../src/api/validation.js';
import { SCHEDULE_SYNC_PATH } from '../../src/http/schedule-sync.js';
import type { CompositeSyncRequest, CompositeSyncResponse, Condition, KubernetesObject } from '../../src/metacontroller/types.js';
import { iso } from './builders.js';

/** Why Metacontroller called the hook; only for reading histories and failure messages. */
export type SyncReason = 'parent-created' | 'resync' | 'child-changed' | 'duplicate';

export type BackupResult = 'succeeded' | 'failed';

/** One hook call and what applying its answer did. */
export interface SyncRecord {
  /** 1-based position in the simulator's history. */
  seq: number;
  reason: SyncReason;
  /** The simulated clock at the call. */
  at: Date;
  /** The hook server that answered. */
  url: string;
  request: CompositeSyncRequest;
  answer: CompositeSyncResponse;
  /** Names of the children created, in answer order. */
  created: string[];
  /** The children deleted, as they were just before deletion. */
  deleted: KubernetesObject[];
  /** Whether the parent's status changed (a write, a resourceVersion bump). */
  statusWritten: boolean;
  /** Existing children the answer would modify if the update strategy were InPlace (their re-emission drifted). */
  drifted: string[];
}

export interface SimulatorOptions {
  /** Base URLs of hook servers; calls go to them in turn, one per call. */
  hookUrls: readonly string[];
  name: string;
  namespace: string;
  uid: string;
  /** The schedule's spec as a user would apply it; the CRD's defaults are applied on creation. */
  spec: Record<string, unknown>;
  /** Creation time of the schedule, and the simulated clock's start. */
  createdAt: Date;
}

// The CompositeController of metacontroller/schedule-controller.yaml, as Metacontroller sends it (no TypeMeta).
const CONTROLLER = {
  metadata: { name: 'talos-etcd-backup-schedule', uid: 'c0ffee00-0000-4000-8000-000000000001', generation: 1 },
  spec: {
    generateSelector: true,
    parentResource: { apiVersion: API_VERSION, resource: SCHEDULE_PLURAL },
    childResources: [{ apiVersion: API_VERSION, resource: BACKUP_PLURAL, updateStrategy: { method: 'OnDelete' } }],
    hooks: { sync: { version: 'v1', webhook: { path: SCHEDULE_SYNC_PATH, timeout: '10s' } } },
  },
  status: {},
};

const HOOK_TIMEOUT_MS = 10_000;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Paths at which `desired` sets a value that `live` does not have (what an apply would change), e.g. `spec.a.b`. */
function differences(desired: unknown, live: unknown, path: string): string[] {
  if (isObject(desired) && isObject(live)) {
    return Object.entries(desired).flatMap(([key, value]) => differences(value, live[key], path ? `${path}.${key}` : key));
  }
  return isDeepStrictEqual(desired, live) ? [] : [path];
}

/** Checks an answer's top-level shape the way Metacontroller's (loose) JSON decoding would fail on it. */
function readAnswer(body: unknown): CompositeSyncResponse {
  if (!isObject(body)) throw new Error(`hook answer is not a JSON object: ${JSON.stringify(body)}`);
  const { status, children, resyncAfterSeconds } = body;
  if (status !== undefined && status !== null && !isObject(status)) throw new Error(`answer.status is not an object: ${JSON.stringify(status)}`);
  if (children !== undefined && children !== null && !Array.isArray(children)) throw new Error('answer.children is not an array');
  if (resyncAfterSeconds !== undefined && typeof resyncAfterSeconds !== 'number') throw new Error('answer.resyncAfterSeconds is not a number');
  // Omitted or null children mean "no children": every observed child is deleted.
  return {
    status: (status ?? {}) as Record<string, unknown>,
    children: (children ?? []) as KubernetesObject[],
    ...(resyncAfterSeconds !== undefined && { resyncAfterSeconds }),
  };
}

export class CompositeSimulator {
  /** The simulated clock; only advanceTo moves it. */
  now: Date;
  /** When Metacontroller's one-shot requeue (from resyncAfterSeconds) fires next; `undefined` when none is pending. */
  nextResyncAt: Date | undefined;
  readonly history: SyncRecord[] = [];

  private parent: KubernetesObject;
  private readonly children = new Map<string, KubernetesObject>();
  private readonly hookUrls: readonly string[];
  private resourceVersion = 1000;
  private uids = 0;

  constructor(opts: SimulatorOptions) {
    if (opts.hookUrls.length === 0) throw new Error('at least one hook URL is needed');
    this.hookUrls = opts.hookUrls;
    this.now = new Date(opts.createdAt);
    const metadata = {
      name: opts.name,
      namespace: opts.namespace,
      uid: opts.uid,
      generation: 1,
      resourceVersion: this.nextResourceVersion(),
      creationTimestamp: iso(opts.createdAt),
      labels: { 'app.kubernetes.io/part-of': 'talos-etcd-backup' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ apiVersion: API_VERSION, kind: SCHEDULE_KIND, metadata: { name: opts.name, namespace: opts.namespace }, spec: opts.spec }) },
    };
    // The API server stores the spec with the CRD's defaults (retention, concurrencyPolicy, paused, ...).
    const validated = validateSchedule({ metadata, spec: opts.spec });
    if (!validated.ok) throw new Error(`the API server would reject this schedule: ${validated.problems.join('; ')}`);
    this.parent = { apiVersion: API_VERSION, kind: SCHEDULE_KIND, metadata, spec: validated.value };
  }

  /** The parent as stored now (a copy). */
  get parentObject(): KubernetesObject {
    return structuredClone(this.parent);
  }

  /** The children as stored now (copies), sorted by name. */
  childObjects(): KubernetesObject[] {
    return [...this.children.values()].map((c) => structuredClone(c)).sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  }

  child(name: string): KubernetesObject | undefined {
    const found = this.children.get(name);
    return found && structuredClone(found);
  }

  advanceTo(time: Date): void {
    if (time < this.now) throw new Error(`the simulated clock cannot go back from ${this.now.toISOString()} to ${time.toISOString()}`);
    this.now = new Date(time);
  }

  /**
   * The pending resyncAfterSeconds requeue fires: Metacontroller forgets it and syncs the parent. The caller picks
   * the moment, usually nextResyncAt; Metacontroller's timer and the hook's clock need not agree to the millisecond.
   */
  resync(): Promise<SyncRecord> {
    if (!this.nextResyncAt) throw new Error(`no resync is pending at ${this.now.toISOString()}`);
    this.nextResyncAt = undefined;
    return this.sync('resync');
  }

  /**
   * The backup decorator finishes a backup: a realistic status is written on the child, and (as in Metacontroller,
   * where any change to a child enqueues its owner) the parent is synced.
   */
  setBackupOutcome(name: string, result: BackupResult): Promise<SyncRecord> {
    const child = this.children.get(name);
    if (!child) throw new Error(`no child ${name} to finish`);
    const finished = iso(this.now);
    const condition = (type: string, status: 'True' | 'False', reason: string, message: string): Condition => ({ type, status, reason, message, lastTransitionTime: finished, observedGeneration: 1 });
    const bucket = ((child.spec as { backupStorage?: { s3?: { bucket?: string } } }).backupStorage?.s3?.bucket) ?? 'unknown';
    const status =
      result === 'succeeded'
        ? {
            conditions: [
              condition('Progressing', 'False', 'BackupCompleted', 'the snapshot Job finished'),
              condition('Ready', 'True', 'BackupSucceeded', `uploaded to s3://${bucket}`),
              condition('Failed', 'False', 'BackupSucceeded', ''),
            ],
            phase: 'Succeeded',
            startTime: child.metadata.creationTimestamp,
            completionTime: finished,
            snapshot: { bucket, key: `talosconfig/etcd-snapshot-${finished.replace(/:/g, '')}.db.zst`, size: 52_428_800, compression: 'zstd', encrypted: false, verified: false },
          }
        : {
            conditions: [
              condition('Progressing', 'False', 'BackupCompleted', 'the snapshot Job finished'),
              condition('Ready', 'False', 'BackupFailed', 'no snapshot was stored'),
              condition('Failed', 'True', 'BackupFailed', 'Failed to upload snapshot to S3: SlowDown'),
            ],
            phase: 'Failed',
            startTime: child.metadata.creationTimestamp,
            completionTime: finished,
            message: 'Failed to upload snapshot to S3: SlowDown',
          };
    if (!isReadableBackup({ spec: child.spec, status })) throw new Error(`the API server would reject this status of ${name}: ${JSON.stringify(status)}`);
    child.status = status;
    child.metadata.resourceVersion = this.nextResourceVersion();
    return this.sync('child-changed');
  }

  /** One sync of the parent: the hook is called with the current objects and its answer is applied. */
  async sync(reason: SyncReason): Promise<SyncRecord> {
    const at = new Date(this.now);
    const request: CompositeSyncRequest = {
      controller: CONTROLLER,
      parent: structuredClone(this.parent),
      // v1 keys children by name (parent and child are both namespaced); the entry exists even when empty.
      children: { [BACKUP_CHILDREN_KEY]: Object.fromEntries([...this.children].map(([name, child]) => [name, structuredClone(child)])) },
      related: {},
      finalizing: false,
    };
    const url = this.hookUrls[this.history.length % this.hookUrls.length]!;
    const response = await fetch(`${url}${SCHEDULE_SYNC_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(request),
      signal: AbortSignal.timeout(HOOK_TIMEOUT_MS),
    });
    const text = await response.text();
    // Metacontroller accepts only 200; anything else fails the sync, and nothing is applied.
    if (response.status !== 200) throw new Error(`sync #${this.history.length + 1} (${reason}) at ${at.toISOString()}: hook ${url} answered ${response.status}: ${text}`);
    const answer = readAnswer(JSON.parse(text));
    const record: SyncRecord = { seq: this.history.length + 1, reason, at, url, request, answer, created: [], deleted: [], statusWritten: false, drifted: [] };
    this.apply(record);
    this.history.push(record);
    return record;
  }

  private nextResourceVersion(): string {
    this.resourceVersion += 1;
    return String(this.resourceVersion);
  }

  private nextUid(): string {
    this.uids += 1;
    return `00000000-0000-4000-8000-${String(this.uids).padStart(12, '0')}`;
  }

  /** Checks every desired child before anything is written: one bad child fails the whole sync, as in Metacontroller. */
  private desiredChildren(answer: CompositeSyncResponse): Map<string, KubernetesObject> {
    const parentUid = this.parent.metadata.uid!;
    const desired = new Map<string, KubernetesObject>();
    for (const answered of answer.children) {
      const child = structuredClone(answered);
      if (child.apiVersion !== API_VERSION || child.kind !== BACKUP_KIND) throw new Error(`answered child ${JSON.stringify(child.metadata?.name)} is a ${child.kind} ${child.apiVersion}, not a childResource`);
      if (!child.metadata?.name) throw new Error(`answered child without metadata.name: ${JSON.stringify(child)}`);
      child.metadata.namespace ??= this.parent.metadata.namespace;
      if (child.metadata.namespace !== this.parent.metadata.namespace) throw new Error(`answered child ${child.metadata.name} is in namespace ${child.metadata.namespace}, not the parent's`);
      // generateSelector: Metacontroller adds the selector label when it is absent, then requires it to match.
      child.metadata.labels = { [CONTROLLER_UID_LABEL]: parentUid, ...child.metadata.labels };
      if (child.metadata.labels[CONTROLLER_UID_LABEL] !== parentUid) {
        throw new Error(`labels on desired child ${child.metadata.name} don't match parent selector: ${JSON.stringify(child.metadata.labels)}`);
      }
      if (desired.has(child.metadata.name)) throw new Error(`the answer lists child ${child.metadata.name} twice`);
      desired.set(child.metadata.name, child);
    }
    return desired;
  }

  private apply(record: SyncRecord): void {
    const desired = this.desiredChildren(record.answer);

    for (const [name, child] of desired) {
      const existing = this.children.get(name);
      if (existing) {
        // OnDelete: an existing child is left as it is; note where an in-place update would have changed it.
        if (differences(child, existing, '').length > 0) record.drifted.push(name);
        continue;
      }
      record.created.push(name);
      this.children.set(name, this.create(child, record.answer.children.find((c) => c.metadata.name === name)!));
    }
    for (const [name, child] of [...this.children]) {
      if (desired.has(name)) continue;
      this.children.delete(name);
      record.deleted.push(child);
    }

    // Status goes through the /status subresource: the whole status is replaced, and an equal one is not written.
    const status = { ...record.answer.status, observedGeneration: this.parent.metadata.generation };
    if (!isDeepStrictEqual(status, this.parent.status)) {
      if (!isDeepStrictEqual(readScheduleStatus(status), status)) throw new Error(`the API server would reject the status: ${JSON.stringify(status)}`);
      this.parent.status = status;
      this.parent.metadata.resourceVersion = this.nextResourceVersion();
      record.statusWritten = true;
    }

    if (record.answer.resyncAfterSeconds !== undefined && record.answer.resyncAfterSeconds > 0) {
      const requested = new Date(record.at.getTime() + Math.round(record.answer.resyncAfterSeconds * 1000));
      // client-go's delaying queue keeps one pending entry per key, at the earlier of the two times.
      if (!this.nextResyncAt || requested < this.nextResyncAt) this.nextResyncAt = requested;
    }
  }

  /** A child as the API server stores it on create: identity, owner reference, defaulted spec, no status. */
  private create(desired: KubernetesObject, answered: KubernetesObject): KubernetesObject {
    const spec = validateBackupSpec(desired.spec);
    if (!spec.ok) throw new Error(`the API server would reject child ${desired.metadata.name}: ${spec.problems.join('; ')}`);
    const { status: _ignored, ...withoutStatus } = desired; // the status subresource ignores status on create
    return {
      ...withoutStatus,
      metadata: {
        ...desired.metadata,
        uid: this.nextUid(),
        generation: 1,
        resourceVersion: this.nextResourceVersion(),
        creationTimestamp: iso(this.now),
        annotations: { ...desired.metadata.annotations, [LAST_APPLIED_ANNOTATION]: JSON.stringify(answered) },
        ownerReferences: [
          { apiVersion: this.parent.apiVersion, kind: this.parent.kind, name: this.parent.metadata.name, uid: this.parent.metadata.uid, controller: true, blockOwnerDeletion: true },
        ],
      },
      spec: spec.value,
    };
  }
}
