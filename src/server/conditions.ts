// The status vocabulary of both controllers: condition types, reasons, and the fixed messages and message
// prefixes their statuses use. Users match on them (`kubectl wait --for=condition=Ready`, alerts on reasons, the
// README's troubleshooting table quotes the prefixes), so they live in one place and change only on purpose.
// The generic condition helpers (stable lastTransitionTime, lookup) are src/api/conditions.ts, shared with the Job.

/** Condition types: a schedule has Ready and Failed, a backup Progressing, Ready and Failed. */
export const CONDITION = {
  progressing: 'Progressing',
  ready: 'Ready',
  failed: 'Failed',
  /** Backups and schedules: how the latest restore test went. Never changes Ready. */
  restoreTested: 'RestoreTested',
} as const;

export const RESTORE_TEST_REASON = {
  running: 'RestoreTestRunning',
  succeeded: 'RestoreTestSucceeded',
  failed: 'RestoreTestFailed',
  pending: 'RestoreTestPending',
  notRun: 'NoRestoreTest',
  /** A schedule's spec.restoreTest.schedule cannot be parsed (its backups go on). */
  invalidSchedule: 'InvalidRestoreTestSchedule',
} as const;

/** The restore test's fixed messages and message prefixes. */
export const RESTORE_TEST_MESSAGE = {
  waiting: 'waiting for the restore-test Job to start',
  jobNotCreated: 'Failed to create the restore-test Job: ',
  cannotJudge: 'the restore test ended unjudged: ',
} as const;

export const SCHEDULE_REASON = {
  scheduled: 'Scheduled',
  paused: 'Paused',
  deleting: 'Deleting',
  valid: 'Valid',
  invalidSpec: 'InvalidSpec',
  invalidSchedule: 'InvalidSchedule',
  invalidTimeZone: 'InvalidTimeZone',
} as const;

/** Why a cron expression or time zone cannot be used. */
export type ScheduleProblemReason = (typeof SCHEDULE_REASON)['invalidSchedule' | 'invalidTimeZone'];
/** Why a schedule is Failed. */
export type ScheduleFailureReason = ScheduleProblemReason | (typeof SCHEDULE_REASON)['invalidSpec'];

export const SCHEDULE_MESSAGE = {
  valid: 'the spec is valid',
  paused: 'paused: no backups are created or deleted',
  deleting: 'the schedule is being deleted',
  /** Prefix of the problems the CRD schema and its rules find. */
  invalidSpec: 'invalid spec: ',
} as const;

export const BACKUP_REASON = {
  inProgress: 'BackupInProgress',
  completed: 'BackupCompleted',
  succeeded: 'BackupSucceeded',
  failed: 'BackupFailed',
} as const;

/** The conditions' fixed messages: those that do not carry the verdict's own message. */
export const BACKUP_CONDITION_MESSAGE = {
  finished: 'The backup finished',
  succeeded: 'The backup succeeded',
  failed: 'The backup failed: see the Failed condition',
  notFinished: 'The backup has not finished',
  notFailed: 'The backup has not failed',
} as const;

/**
 * How the messages of a finished backup begin (Ready or Failed, and status.message), which is what users match on.
 * The Progressing messages only describe progress and stay beside the verdict (src/server/backup/status.ts).
 */
export const BACKUP_MESSAGE = {
  stored: 'Snapshot stored at ',
  invalidSpec: 'Invalid spec: ',
  /** A TalosControlPlane that is not there, or lists no endpoints. */
  sourceMissing: 'Failed to get ',
  jobNotCreated: 'Failed to create the snapshot Job: ',
  jobFailedUnreported: 'The snapshot Job failed without reporting a result',
  jobCompletedUnreported: 'The snapshot Job completed without reporting a stored snapshot',
} as const;

export const TALOS_OPERATOR_OFF_MESSAGE =
  `${BACKUP_MESSAGE.sourceMissing}TalosControlPlane: TalosControlPlane CRD not found when talos-etcd-backup was ` +
  'installed (TALOS_OPERATOR=false): install talos-operator and run helm upgrade, or use talosConfigSecretRef';

/** How status.deletion.message begins, while a backup with deletionPolicy Delete is being deleted. */
export const DELETION_MESSAGE = {
  stoppingSnapshotJob: 'Stopping the snapshot Job before deleting ',
  deleting: 'Deleting ',
  deleteFailed: 'Failed to delete snapshot from S3: ',
  kept: 'Kept ',
} as const;
