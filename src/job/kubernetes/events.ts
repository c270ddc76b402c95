// The snapshot Job's Kubernetes Events on its TalosEtcdBackup (events.k8s.io/v1): BackupStarted, BackupSucceeded,
// BackupFailed, shown by `kubectl describe teb NAME` and `kubectl events`. The hook server cannot emit Events
// (Metacontroller's hooks only answer), so the Job does, with its own token under the backup's Role (create on
// events in events.k8s.io).
//
// Best effort: an Event that cannot be written is one warning line on stderr, never a failed backup or another
// exit code. No Event holds a secret: the notes are built from the snapshot's record and from the failure's one
// line, which is already redacted (the same text as status.report.message); no environment value goes in.

import { randomBytes } from 'node:crypto';
import { API_VERSION, BACKUP_KIND, GROUP } from '../../api/constants.js';
import type { KubernetesApi } from './in-cluster.js';
import type { SnapshotOutcome } from '../pipeline/snapshot.js';

/** events.k8s.io's reportingController: the project's API group and the component. */
export const REPORTING_CONTROLLER = `${GROUP}/talos-etcd-backup`;
export const EVENT_ACTION = 'Backup';
const RESTORE_TEST_ACTION = 'RestoreTest';
// events.k8s.io/v1 validation limits (k8s.io/kubernetes pkg/apis/core/validation/events.go).
const NOTE_MAX_BYTES = 1024;
const INSTANCE_MAX = 128;
const NAME_MAX = 253;

export type BackupEventReason =
  | 'BackupStarted'
  | 'BackupSucceeded'
  | 'BackupFailed'
  | 'RestoreTestStarted'
  | 'RestoreTestSucceeded'
  | 'RestoreTestFailed';

export interface EventRegarding {
  namespace: string;
  name: string;
  /** The backup's uid (BACKUP_UID); kubectl describe finds the Events by it. */
  uid?: string | undefined;
}

export interface BackupEventInput {
  backup: EventRegarding;
  reason: BackupEventReason;
  note: string;
  /** The pod's name (POD_NAME). */
  instance: string;
  time: Date;
  /** Makes the name unique: `<backup>.<suffix>`. */
  suffix: string;
}

/** MicroTime, as events.k8s.io requires for eventTime: RFC 3339 with six fractional digits. */
export function microTime(time: Date): string {
  return time.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** At most `max` UTF-8 bytes, cut at a character boundary, with an ellipsis when cut. */
function truncateBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let out = text;
  while (Buffer.byteLength(out) > max - 3) out = out.slice(0, -1);
  return `${out}...`;
}

/** An events.k8s.io/v1 Event about the backup (pure: the caller gives the time and the name's suffix). */
export function backupEvent(input: BackupEventInput): Record<string, unknown> {
  const { backup } = input;
  const prefix = backup.name.slice(0, NAME_MAX - input.suffix.length - 1).replace(/[.-]+$/, '');
  return {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: { name: `${prefix}.${input.suffix}`, namespace: backup.namespace },
    eventTime: microTime(input.time),
    reportingController: REPORTING_CONTROLLER,
    reportingInstance: input.instance.slice(0, INSTANCE_MAX),
    action: input.reason.startsWith('RestoreTest') ? RESTORE_TEST_ACTION : EVENT_ACTION,
    reason: input.reason,
    type: input.reason.endsWith('Failed') ? 'Warning' : 'Normal',
    note: truncateBytes(input.note.replace(/[\r\n]+/g, ' '), NOTE_MAX_BYTES),
    regarding: {
      apiVersion: API_VERSION,
      kind: BACKUP_KIND,
      name: backup.name,
      namespace: backup.namespace,
      ...(backup.uid && { uid: backup.uid }),
    },
  };
}

/** The notes of the three Events. */
export const notes = {
  started: () => 'Streaming the etcd snapshot from the Talos API into S3',
  succeeded: (o: SnapshotOutcome) => {
    const verified = o.verified ? `verified${o.verification ? ` (${o.verification})` : ''}` : 'not verified';
    const earlier = o.alreadyUploaded ? ', found complete from an earlier attempt' : '';
    const secrets = o.secrets?.key
      ? `; cluster secrets (Secret ${o.secrets.secretName}) stored at s3://${o.bucket}/${o.secrets.key}`
      : o.secrets?.notStored
        ? `; cluster secrets not stored: ${o.secrets.notStored}`
        : '';
    // Each copy by name and place; an optional one not stored says why (the Ready message says it too).
    const copies = o.copies?.length
      ? `; copies: ${o.copies.map((c) => (c.error ? `${c.name} NOT stored (${c.error})` : `${c.name} s3://${c.bucket}/${c.key}`)).join(', ')}`
      : '';
    return `Stored s3://${o.bucket}/${o.key}: ${o.size} bytes in ${(o.durationMs / 1000).toFixed(1)}s${earlier}, ${verified}${secrets}${copies}`;
  },
  /** The failure's one line, as written into status.report.message (already redacted). */
  failed: (message: string) => message,
};

export interface BackupEvents {
  started(): Promise<void>;
  succeeded(outcome: SnapshotOutcome): Promise<void>;
  failed(message: string): Promise<void>;
}

export interface EventOptions {
  api: Pick<KubernetesApi, 'create'>;
  backup: EventRegarding;
  instance: string;
  /** Where a failed write is told (one stderr line). */
  warn: (message: string) => void;
  clock?: () => Date;
  suffix?: () => string;
}

/** Writes one Event on the backup; resolves, never rejects: a failed write is only a warning. */
export function eventRecorder(opts: EventOptions): (reason: BackupEventReason, note: string) => Promise<void> {
  const clock = opts.clock ?? (() => new Date());
  const suffix = opts.suffix ?? (() => randomBytes(8).toString('hex'));
  const path = `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(opts.backup.namespace)}/events`;
  return async (reason: BackupEventReason, note: string) => {
    try {
      const body = backupEvent({
        backup: opts.backup,
        reason,
        note,
        instance: opts.instance,
        time: clock(),
        suffix: suffix(),
      });
      await opts.api.create(path, body);
    } catch (error) {
      opts.warn(`could not record the Event ${reason} (the backup is not affected): ${(error as Error).message}`);
    }
  };
}

/** The snapshot Job's Events. */
export function backupEvents(opts: EventOptions): BackupEvents {
  const record = eventRecorder(opts);
  return {
    started: () => record('BackupStarted', notes.started()),
    succeeded: (outcome) => record('BackupSucceeded', notes.succeeded(outcome)),
    failed: (message) => record('BackupFailed', notes.failed(message)),
  };
}
