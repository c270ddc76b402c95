// The schedule hook as one pure function: (Metacontroller's sync request, now) → desired children and status.
// Same request and clock, same answer: child names come from cron slots, never from "now", so replays and
// several hook replicas never create a backup twice.

import {
  API_VERSION,
  BACKUP_CHILDREN_KEY,
  BACKUP_KIND,
  CONTROLLER_UID_LABEL,
  LAST_APPLIED_ANNOTATION,
  SCHEDULE_LABEL,
  SCHEDULED_TIME_ANNOTATION,
} from '../../api/constants.js';
import { specProblems } from '../../api/spec-checks.js';
import type { ScheduleSpec, ScheduleStatus } from '../../api/types.js';
import { readScheduleStatus, validateSchedule } from '../../api/validation.js';
import type { CompositeSyncRequest, CompositeSyncResponse, KubernetesObject } from '../metacontroller/types.js';
import { formatTime, latestTime, nextCondition, parseTime, type Condition } from '../../api/conditions.js';
import { CONDITION, SCHEDULE_MESSAGE, SCHEDULE_REASON, type ScheduleFailureReason } from '../conditions.js';
import { newestFirst, readBackup, type ObservedBackup } from './backups.js';
import { parseSchedule, type CronSchedule } from './cron.js';
import { MAX_KEPT_SUCCESSFUL, selectForRetention, type RetentionDecision } from './retention.js';
import { scheduleRestoreTests, type RestoreTestFacts } from './restore-tests.js';

/** What an answer does, for logs and metrics. */
export type ScheduleSyncOutcome = 'created' | 'idle' | 'paused' | 'deleting' | 'invalid';

export interface ScheduleSyncResult {
  response: CompositeSyncResponse;
  outcome: ScheduleSyncOutcome;
  /** The failure reason when `outcome` is `invalid`. */
  reason?: ScheduleFailureReason;
  /** Name of the backup this answer creates, if any (for logs and metrics). */
  created: string | undefined;
  /** Names of observed backups this answer leaves out, so Metacontroller deletes them. */
  deleted: string[];
  /** The children as read (for metrics: src/server/schedule/figures.ts). */
  backups: readonly ObservedBackup[];
  /** The parsed cron expression and time zone, when they are valid (for the expected interval). */
  cron: CronSchedule | undefined;
}

// Metacontroller may call back a hair before the slot (timer granularity); resyncing 100 ms late avoids a
// wasted call that finds nothing due. Kubernetes' CronJob controller pads its requeue the same way.
const RESYNC_PAD_MS = 100;
// Long lists of problems are cut: the message is for a human reading `kubectl describe`.
const MAX_MESSAGE_LENGTH = 1024;

/** `<schedule>-<unix seconds of the slot>`: one name per slot, whoever computes it and whenever. */
export function backupName(scheduleName: string, slot: Date): string {
  return `${scheduleName}-${Math.floor(slot.getTime() / 1000)}`;
}

function truncate(message: string): string {
  return message.length <= MAX_MESSAGE_LENGTH ? message : `${message.slice(0, MAX_MESSAGE_LENGTH - 1)}…`;
}

/** An observed backup as it goes back into the desired set: identity, labels, annotations and spec, nothing else. */
function reemit(backup: ObservedBackup): KubernetesObject {
  const { metadata } = backup.object;
  const { [LAST_APPLIED_ANNOTATION]: _lastApplied, ...annotations } = metadata.annotations ?? {};
  return {
    apiVersion: backup.object.apiVersion,
    kind: backup.object.kind,
    metadata: {
      name: metadata.name,
      ...(metadata.namespace !== undefined && { namespace: metadata.namespace }),
      ...(metadata.labels !== undefined && { labels: metadata.labels }),
      ...(Object.keys(annotations).length > 0 && { annotations }),
    },
    ...(backup.object.spec !== undefined && { spec: backup.object.spec }),
  };
}

/** The TalosEtcdBackup for one slot, from the schedule's template (as written: the API server applies defaults). */
function newBackup(parent: KubernetesObject, spec: ScheduleSpec, slot: Date): KubernetesObject {
  const template = (parent.spec as { backupTemplate: ScheduleSpec['backupTemplate'] }).backupTemplate;
  return {
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: {
      name: backupName(parent.metadata.name, slot),
      ...(parent.metadata.namespace !== undefined && { namespace: parent.metadata.namespace }),
      labels: {
        ...spec.backupTemplate.metadata?.labels,
        [SCHEDULE_LABEL]: parent.metadata.name,
        ...(parent.metadata.uid !== undefined && { [CONTROLLER_UID_LABEL]: parent.metadata.uid }),
      },
      annotations: { ...spec.backupTemplate.metadata?.annotations, [SCHEDULED_TIME_ANNOTATION]: formatTime(slot) },
    },
    spec: structuredClone(template.spec),
  };
}

interface StatusFacts {
  observed: ScheduleStatus;
  generation: number | undefined;
  backups: readonly ObservedBackup[];
  lastScheduled: Date | undefined;
  activeNames: string[];
  next: Date | undefined;
  ready: Omit<Condition, 'lastTransitionTime' | 'type'>;
  failure: { reason: ScheduleFailureReason; message: string } | undefined;
  /** The restore tests' facts; unset (an invalid or paused schedule): what was recorded is kept. */
  restore?: RestoreTestFacts;
  /** What retention keeps; unset (an invalid or paused schedule): what was recorded is kept. */
  retained?: RetentionDecision['retained'];
}

/** The restore-test fields of the status: the facts, else those recorded. */
function restoreTestStatus(facts: StatusFacts): { fields: Record<string, unknown>; condition?: Condition } {
  const o = facts.observed;
  const r = facts.restore;
  const fields = r
    ? {
        ...(r.lastRestoreTestTime && { lastRestoreTestTime: r.lastRestoreTestTime }),
        ...(r.lastSuccessfulRestoreTestTime && { lastSuccessfulRestoreTestTime: r.lastSuccessfulRestoreTestTime }),
        ...(r.nextRestoreTestTime && { nextRestoreTestTime: r.nextRestoreTestTime }),
        ...(r.request && { restoreTestRequest: r.request }),
      }
    : {
        ...(o.lastRestoreTestTime && { lastRestoreTestTime: o.lastRestoreTestTime }),
        ...(o.lastSuccessfulRestoreTestTime && { lastSuccessfulRestoreTestTime: o.lastSuccessfulRestoreTestTime }),
        ...(o.restoreTestRequest && { restoreTestRequest: o.restoreTestRequest }),
      };
  const condition = r ? r.condition : o.conditions?.find((c) => c.type === CONDITION.restoreTested);
  return { fields, ...(condition && { condition }) };
}

function buildStatus(facts: StatusFacts, now: Date): Record<string, unknown> {
  const succeeded = facts.backups.map((b) => b.succeededAt);
  const lastSuccess = latestTime(parseTime(facts.observed.lastSuccessfulBackupTime), ...succeeded);
  const generation = facts.generation !== undefined ? { observedGeneration: facts.generation } : {};
  const conditions = [
    nextCondition(facts.observed.conditions, { type: CONDITION.ready, ...facts.ready, ...generation }, now),
    nextCondition(
      facts.observed.conditions,
      {
        type: CONDITION.failed,
        ...(facts.failure
          ? { status: 'True', reason: facts.failure.reason, message: facts.failure.message }
          : { status: 'False', reason: SCHEDULE_REASON.valid, message: SCHEDULE_MESSAGE.valid }),
        ...generation,
      },
      now,
    ),
  ];
  const restore = restoreTestStatus(facts);
  if (restore.condition) conditions.push(restore.condition);
  return {
    ...(facts.lastScheduled && { lastScheduleTime: formatTime(facts.lastScheduled) }),
    ...(lastSuccess && { lastSuccessfulBackupTime: formatTime(lastSuccess) }),
    ...(facts.next && { nextScheduleTime: formatTime(facts.next) }),
    activeBackups: facts.activeNames,
    ...((facts.retained ?? facts.observed.retained) && {
      retained: facts.retained
        ? { backups: facts.retained.backups, byRule: facts.retained.byRule }
        : facts.observed.retained,
    }),
    ...restore.fields,
    conditions,
    ...generation,
  };
}

function activeNames(backups: readonly ObservedBackup[], created?: string): string[] {
  return [...backups.filter((b) => b.outcome === 'active').map((b) => b.name), ...(created ? [created] : [])].sort();
}

/**
 * The answer for a spec we cannot act on: every observed backup stays (leaving one out would delete it),
 * nothing is created, and the schedule is `Failed` with a reason and a message the user can act on.
 */
function invalidAnswer(
  base: Omit<StatusFacts, 'activeNames' | 'next' | 'ready' | 'failure'>,
  live: readonly ObservedBackup[],
  failure: { reason: ScheduleFailureReason; message: string },
  now: Date,
): ScheduleSyncResult {
  const message = truncate(failure.message);
  const status = buildStatus(
    {
      ...base,
      activeNames: activeNames(live),
      next: undefined,
      ready: { status: 'False', reason: failure.reason, message },
      failure: { ...failure, message },
    },
    now,
  );
  return {
    response: { status, children: [...live].sort(newestFirst).map(reemit) },
    outcome: 'invalid',
    reason: failure.reason,
    created: undefined,
    deleted: [],
    backups: base.backups,
    cron: undefined,
  };
}

interface SlotDecision {
  /** The slot to create a backup for now, if any. */
  create: Date | undefined;
  /** Why a due slot was not created, for the Ready message. */
  note: string | undefined;
}

/**
 * Which slot, if any, gets a backup now. Only the most recent slot is ever considered (after downtime, one
 * catch-up, never a burst), and only if it is after the schedule's creation and after every slot already
 * handled (so a pruned or hand-deleted backup is never re-created).
 */
function decideSlot(
  schedule: CronSchedule,
  spec: ScheduleSpec,
  earliest: Date | undefined,
  active: readonly ObservedBackup[],
  now: Date,
): SlotDecision {
  const slot = schedule.mostRecentSlot(now);
  if (!slot || (earliest && slot <= earliest)) return { create: undefined, note: undefined };
  const lateSeconds = Math.floor((now.getTime() - slot.getTime()) / 1000);
  if (spec.startingDeadlineSeconds !== undefined && lateSeconds > spec.startingDeadlineSeconds) {
    return {
      create: undefined,
      note: `skipped the ${formatTime(slot)} slot: ${lateSeconds}s late, more than startingDeadlineSeconds (${spec.startingDeadlineSeconds})`,
    };
  }
  if (spec.concurrencyPolicy === 'Forbid' && active.length > 0) {
    const names = active
      .map((b) => b.name)
      .sort()
      .join(', ');
    return {
      create: undefined,
      note: `the ${formatTime(slot)} slot waits for ${names} to finish (concurrencyPolicy Forbid)`,
    };
  }
  return { create: slot, note: undefined };
}

/**
 * Metacontroller's sync hook for a TalosEtcdBackupSchedule, as a pure function of the request and the clock.
 * Returns the response (complete desired children, complete status, resyncAfterSeconds until the next slot)
 * and, for logs and metrics, its outcome, the backup it creates and those it deletes.
 */
export function syncSchedule(request: CompositeSyncRequest, now: Date): ScheduleSyncResult {
  const parent = request.parent;
  const scheduleName = parent.metadata.name;
  const observed = readScheduleStatus(parent.status);
  const backups = Object.values(request.children[BACKUP_CHILDREN_KEY] ?? {}).map((o) => readBackup(o, scheduleName));
  const live = backups.filter((b) => !b.deleting);
  const lastScheduled = latestTime(parseTime(observed.lastScheduleTime), ...backups.map((b) => b.scheduledTime));
  const base = { observed, generation: parent.metadata.generation, backups, lastScheduled };

  const validated = validateSchedule(parent);
  const invalidSpec = (problems: string[]) => {
    const message = `${SCHEDULE_MESSAGE.invalidSpec}${problems.join('; ')}`;
    return invalidAnswer(base, live, { reason: SCHEDULE_REASON.invalidSpec, message }, now);
  };
  if (!validated.ok) return invalidSpec(validated.problems);
  const spec = validated.value;
  const problems = specProblems(spec.backupTemplate.spec, 'spec.backupTemplate.spec');
  if (problems.length > 0) return invalidSpec(problems);
  const parsed = parseSchedule(spec.schedule, spec.timeZone);
  if (!parsed.ok) return invalidAnswer(base, live, parsed, now);
  const schedule = parsed.schedule;

  // Paused, or the schedule is being deleted: nothing is created and nothing is deleted.
  const deleting = Boolean(parent.metadata.deletionTimestamp);
  if (spec.paused || deleting) {
    const ready = spec.paused
      ? { status: 'False' as const, reason: SCHEDULE_REASON.paused, message: SCHEDULE_MESSAGE.paused }
      : { status: 'False' as const, reason: SCHEDULE_REASON.deleting, message: SCHEDULE_MESSAGE.deleting };
    const status = buildStatus(
      { ...base, activeNames: activeNames(live), next: undefined, ready, failure: undefined },
      now,
    );
    return {
      response: { status, children: [...live].sort(newestFirst).map(reemit) },
      outcome: spec.paused ? 'paused' : 'deleting',
      created: undefined,
      deleted: [],
      backups,
      cron: schedule,
    };
  }

  const { kept, pruned, retained } = selectForRetention(live, spec);
  const active = kept.filter((b) => b.outcome === 'active');
  const earliest = latestTime(parseTime(parent.metadata.creationTimestamp), lastScheduled);
  const decision = decideSlot(schedule, spec, earliest, active, now);
  const replaced = decision.create && spec.concurrencyPolicy === 'Replace' ? active : [];
  const remaining = kept.filter((b) => !replaced.includes(b));
  const created = decision.create ? newBackup(parent, spec, decision.create) : undefined;

  const next = schedule.nextSlot(now) ?? undefined;
  const unreadable = live
    .filter((b) => b.outcome === 'unreadable')
    .map((b) => b.name)
    .sort();
  const notes = [
    decision.note,
    unreadable.length > 0
      ? `kept without counting ${unreadable.join(', ')}: spec or status does not match the CRD`
      : undefined,
    retained.capped
      ? `retention keeps the newest ${MAX_KEPT_SUCCESSFUL} successful backups only (keepWithin would keep more)`
      : undefined,
    next ? `next backup at ${formatTime(next)}` : 'no further slot',
  ]
    .filter(Boolean)
    .join('; ');
  const restore = scheduleRestoreTests(
    spec,
    observed,
    backups,
    parseTime(parent.metadata.creationTimestamp),
    parent.metadata.generation,
    now,
  );
  const status = buildStatus(
    {
      ...base,
      // The new slot is recorded once its backup is observed: if Metacontroller fails to create it (quota, an
      // admission webhook), the status it writes anyway must not mark the slot as handled.
      lastScheduled,
      activeNames: activeNames(remaining, created?.metadata.name),
      next,
      ready: {
        status: 'True',
        reason: SCHEDULE_REASON.scheduled,
        message: restore.problem ? `${notes}; ${restore.problem}` : notes,
      },
      failure: undefined,
      restore,
      retained,
    },
    now,
  );
  const wake = [next, restore.next]
    .filter((d): d is Date => d !== undefined)
    .sort((a, b) => a.getTime() - b.getTime())[0];
  const response: CompositeSyncResponse = {
    status,
    children: [...(created ? [created] : []), ...remaining.sort(newestFirst).map(reemit)],
    ...(wake && { resyncAfterSeconds: (wake.getTime() - now.getTime() + RESYNC_PAD_MS) / 1000 }),
  };
  return {
    response,
    outcome: created ? 'created' : 'idle',
    created: created?.metadata.name,
    deleted: [...pruned, ...replaced].map((b) => b.name),
    backups,
    cron: schedule,
  };
}
