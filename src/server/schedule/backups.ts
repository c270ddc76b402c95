// Reads the TalosEtcdBackups a schedule owns (Metacontroller's `children`) into what scheduling needs.
// Vocabulary: "observed" = from the request; "outcome" = what a backup's conditions say about it.

import { SCHEDULED_TIME_ANNOTATION } from '../../api/constants.js';
import type { BackupStatus } from '../../api/types.js';
import { isReadableBackup } from '../../api/validation.js';
import type { KubernetesObject } from '../metacontroller/types.js';
import { findCondition, parseTime } from '../../api/conditions.js';
import { CONDITION } from '../conditions.js';

/**
 * - `succeeded`: Ready=True — counts toward retention.
 * - `failed`: Failed=True — the newest failedBackupsHistoryLimit (default 3) are kept, never counted toward retention.
 * - `active`: neither yet — never deleted by retention; blocks a new slot under concurrencyPolicy Forbid.
 * - `unreadable`: its spec or status does not match the CRD — always kept, never counted, never blocks.
 */
export type BackupOutcome = 'succeeded' | 'failed' | 'active' | 'unreadable';

export interface ObservedBackup {
  object: KubernetesObject;
  name: string;
  /** The slot it was created for: the annotation, else the `<schedule>-<unix seconds>` name; `undefined` if neither. */
  scheduledTime: Date | undefined;
  /** Ordering key for retention: the scheduled time, else the creation time. */
  sortTime: number;
  outcome: BackupOutcome;
  /** When it finished successfully: status.completionTime, else the Ready condition's transition. */
  succeededAt: Date | undefined;
  /** Already being deleted: neither counted nor re-emitted. */
  deleting: boolean;
}

function scheduledTimeOf(object: KubernetesObject, scheduleName: string): Date | undefined {
  const annotated = parseTime(object.metadata.annotations?.[SCHEDULED_TIME_ANNOTATION]);
  if (annotated) return annotated;
  const suffix = object.metadata.name.slice(scheduleName.length + 1);
  if (object.metadata.name.startsWith(`${scheduleName}-`) && /^\d{1,12}$/.test(suffix))
    return new Date(Number(suffix) * 1000);
  return undefined;
}

function outcomeOf(object: KubernetesObject, status: BackupStatus | undefined): BackupOutcome {
  if (!isReadableBackup(object)) return 'unreadable';
  if (findCondition(status?.conditions, CONDITION.failed)?.status === 'True') return 'failed';
  if (findCondition(status?.conditions, CONDITION.ready)?.status === 'True') return 'succeeded';
  return 'active';
}

function succeededAt(status: BackupStatus | undefined): Date | undefined {
  const ready = findCondition(status?.conditions, CONDITION.ready);
  return parseTime(status?.completionTime) ?? parseTime(ready?.lastTransitionTime);
}

export function readBackup(object: KubernetesObject, scheduleName: string): ObservedBackup {
  const status = object.status as BackupStatus | undefined;
  const outcome = outcomeOf(object, status);
  const scheduledTime = scheduledTimeOf(object, scheduleName);
  const created = parseTime(object.metadata.creationTimestamp);
  return {
    object,
    name: object.metadata.name,
    scheduledTime,
    sortTime: (scheduledTime ?? created)?.getTime() ?? 0,
    outcome,
    succeededAt: outcome === 'succeeded' ? succeededAt(status) : undefined,
    deleting: Boolean(object.metadata.deletionTimestamp),
  };
}

/** Newest first: by scheduled (or creation) time, then by name, so equal times still order the same way every call. */
export function newestFirst(a: ObservedBackup, b: ObservedBackup): number {
  return b.sortTime - a.sortTime || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0);
}
