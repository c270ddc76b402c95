// Prometheus metrics: one registry per app (so several apps can live in one process, as in tests) at /metrics.
// The hook server holds no state of its own: the per-schedule gauges are the figures of the newest sync of each
// schedule (src/server/schedule/figures.ts), kept until `expirySeconds` pass without another. Each replica exports
// what it answered, so the alerts and the dashboard read each schedule's figures from the replica that synced it
// last (`talos_etcd_backup_schedule_synced_timestamp_seconds`).

import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BackupOutcome } from '../backup/sync.js';
import { PHASES, type ScheduleFigures } from '../schedule/figures.js';
import type { ScheduleSyncOutcome } from '../schedule/sync.js';

// Every result of the sync counters exists from the start at 0: a replica that has answered nothing yet still says
// so (the TalosEtcdBackupSchedulesUnsynced alert reads the schedule syncs' rate), and a first answer shows in rate().
const SCHEDULE_SYNC_RESULTS: readonly ScheduleSyncOutcome[] = ['created', 'idle', 'paused', 'deleting', 'invalid'];
const BACKUP_SYNC_RESULTS: readonly BackupOutcome[] = ['pending', 'running', 'succeeded', 'failed', 'finished'];

/** A backup's outcome as `backups_finished_total` counts it. */
type FinishedResult = 'succeeded' | 'failed';
const RESULTS: readonly FinishedResult[] = ['succeeded', 'failed'];

/** Labels of every per-schedule series: `schedule` is empty for backups no schedule owns. */
interface ScheduleLabels {
  namespace: string;
  schedule: string;
}

const keyOf = (labels: ScheduleLabels): string => `${labels.namespace}/${labels.schedule}`;

/**
 * The newest figures of each schedule, and when each schedule (or one of its backups) was last synced. An entry
 * not refreshed for `expiryMs` is dropped at the next scrape: a deleted schedule's series disappear with it.
 */
class ScheduleSeries {
  readonly #figures = new Map<string, ScheduleFigures>();
  readonly #seen = new Map<string, { labels: ScheduleLabels; at: number }>();

  constructor(
    private readonly expiryMs: number,
    private readonly now: () => number,
  ) {}

  /** Keeps a schedule's newest figures (`seen` marks them refreshed). */
  record(figures: ScheduleFigures): void {
    this.#figures.set(keyOf(figures), figures);
  }

  /** Marks a schedule's series as refreshed; true the first time it is seen (or seen again after expiring). */
  seen(labels: ScheduleLabels): boolean {
    const key = keyOf(labels);
    const first = !this.#seen.has(key);
    this.#seen.set(key, { labels: { namespace: labels.namespace, schedule: labels.schedule }, at: this.now() });
    return first;
  }

  /** Drops what expired and returns the labels dropped (their counters go too). */
  expire(): ScheduleLabels[] {
    const cutoff = this.now() - this.expiryMs;
    const dropped: ScheduleLabels[] = [];
    for (const [key, { labels, at }] of this.#seen) {
      if (at >= cutoff) continue;
      this.#seen.delete(key);
      this.#figures.delete(key);
      dropped.push(labels);
    }
    return dropped;
  }

  figures(): IterableIterator<ScheduleFigures> {
    return this.#figures.values();
  }
}

export interface HookMetrics {
  registry: Registry;
  requests: Counter<'hook' | 'code'>;
  duration: Histogram<'hook'>;
  scheduleSyncs: Counter<'result'>;
  backupSyncs: Counter<'result'>;
  /** Call with the figures of every answered schedule sync. */
  recordSchedule(figures: ScheduleFigures): void;
  /** Call with every answered backup sync; `result` when this answer records the backup's outcome. */
  recordBackup(labels: ScheduleLabels, result: FinishedResult | undefined, restoreTest?: FinishedResult): void;
}

/** One gauge per figure: name, help and how to read it (undefined: no sample for that schedule). */
const SCHEDULE_GAUGES: { name: string; help: string; value: (f: ScheduleFigures) => number | undefined }[] = [
  {
    name: 'talos_etcd_backup_schedule_synced_timestamp_seconds',
    help: "When this replica last answered a sync of the schedule; the replica with the newest holds the schedule's current figures.",
    value: (f) => f.syncedAt,
  },
  {
    name: 'talos_etcd_backup_schedule_last_success_timestamp_seconds',
    help: "Completion time of the schedule's newest successful backup (status.lastSuccessfulBackupTime); absent until one succeeds.",
    value: (f) => f.lastSuccessAt,
  },
  {
    name: 'talos_etcd_backup_schedule_last_status',
    help: "1 when the schedule's newest finished backup succeeded, 0 when it failed; absent until one finishes.",
    value: (f) => f.lastStatus,
  },
  {
    name: 'talos_etcd_backup_schedule_expected_interval_seconds',
    help: "Longest gap between consecutive slots of the schedule's cron in its time zone (the slot in progress and the one before); absent when the schedule is Failed.",
    value: (f) => f.expectedIntervalSeconds,
  },
  {
    name: 'talos_etcd_backup_schedule_created_timestamp_seconds',
    help: 'Creation time of the schedule.',
    value: (f) => f.createdAt,
  },
  {
    name: 'talos_etcd_backup_schedule_paused',
    help: '1 when the schedule is paused (spec.paused), else 0.',
    value: (f) => (f.paused ? 1 : 0),
  },
  {
    name: 'talos_etcd_backup_schedule_failed',
    help: '1 when the schedule is Failed (its spec, cron expression or time zone cannot be used: it creates no backups), else 0.',
    value: (f) => (f.failed ? 1 : 0),
  },
  {
    name: 'talos_etcd_backup_schedule_unfinished_deadline_timestamp_seconds',
    help: "Of the schedule's Pending or Running backups, the earliest creation time plus its Job's activeDeadlineSeconds; absent when none is unfinished.",
    value: (f) => f.unfinishedDeadlineAt,
  },
  {
    name: 'talos_etcd_backup_schedule_last_success_size_bytes',
    help: "Bytes stored by the schedule's newest successful backup still kept (status.snapshot.size).",
    value: (f) => f.lastSuccess?.sizeBytes,
  },
  {
    name: 'talos_etcd_backup_schedule_last_success_duration_seconds',
    help: "Start to completion of the schedule's newest successful backup still kept.",
    value: (f) => f.lastSuccess?.durationSeconds,
  },
  {
    name: 'talos_etcd_backup_schedule_last_success_verified',
    help: "1 when the schedule's newest successful backup still kept was read back and checked (status.snapshot.verified), else 0.",
    value: (f) => (f.lastSuccess ? (f.lastSuccess.verified ? 1 : 0) : undefined),
  },
  {
    name: 'talos_etcd_backup_schedule_restore_test_enabled',
    help: '1 when the schedule restore-tests its backups (spec.restoreTest), else 0.',
    value: (f) => (f.restoreTestEnabled ? 1 : 0),
  },
  {
    name: 'talos_etcd_backup_schedule_last_restore_test_timestamp_seconds',
    help: "When the newest restore test of one of the schedule's backups finished (status.lastRestoreTestTime).",
    value: (f) => f.lastRestoreTestAt,
  },
  {
    name: 'talos_etcd_backup_schedule_last_successful_restore_test_timestamp_seconds',
    help: 'When the newest successful restore test finished (status.lastSuccessfulRestoreTestTime); absent before the first.',
    value: (f) => f.lastSuccessfulRestoreTestAt,
  },
  {
    name: 'talos_etcd_backup_schedule_last_restore_test_status',
    help: 'The RestoreTested condition: 1 when the newest restore test succeeded, 0 when it failed; absent before the first.',
    value: (f) => f.lastRestoreTestStatus,
  },
];

export interface MetricsOptions {
  /** How long a schedule's series stay without a sync of it or of one of its backups. */
  expirySeconds: number;
  clock: () => Date;
}

export function createMetrics(opts: MetricsOptions): HookMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const series = new ScheduleSeries(opts.expirySeconds * 1000, () => opts.clock().getTime());
  const restoreTests = new Counter({
    name: 'talos_etcd_backup_restore_tests_finished_total',
    help: 'Restore tests whose outcome a backup sync answer of this replica recorded, by namespace, schedule (empty: no schedule owns the backup) and result; a repeated request may count twice.',
    labelNames: ['namespace', 'schedule', 'result'],
    registers: [registry],
  });
  const finished = new Counter({
    name: 'talos_etcd_backup_backups_finished_total',
    help: 'Backups whose outcome a backup sync answer of this replica recorded, by namespace, schedule (empty: no schedule owns it) and result; a repeated request may count twice.',
    labelNames: ['namespace', 'schedule', 'result'],
    registers: [registry],
    collect: () => expire(),
  });
  // Every collect expires first (a walk over the schedules), so no series outlives its expiry by a scrape.
  const expire = (): void => {
    for (const labels of series.expire())
      for (const result of RESULTS) {
        finished.remove({ ...labels, result });
        restoreTests.remove({ ...labels, result });
      }
  };
  for (const gauge of SCHEDULE_GAUGES) {
    new Gauge({
      name: gauge.name,
      help: gauge.help,
      labelNames: ['namespace', 'schedule'],
      registers: [registry],
      collect() {
        expire();
        this.reset();
        for (const figures of series.figures()) {
          const value = gauge.value(figures);
          if (value !== undefined) this.set({ namespace: figures.namespace, schedule: figures.schedule }, value);
        }
      },
    });
  }
  new Gauge({
    name: 'talos_etcd_backup_schedule_backups',
    help: "The schedule's backups (not being deleted) by status.phase; one without a phase yet counts as Pending.",
    labelNames: ['namespace', 'schedule', 'phase'],
    registers: [registry],
    collect() {
      expire();
      this.reset();
      for (const figures of series.figures())
        for (const phase of PHASES)
          this.set({ namespace: figures.namespace, schedule: figures.schedule, phase }, figures.backupsByPhase[phase]);
    },
  });
  // Counters start at 0 for both results, so the first outcome shows in increase() and rate().
  const seen = ({ namespace, schedule }: ScheduleLabels): void => {
    if (series.seen({ namespace, schedule }))
      for (const result of RESULTS) {
        finished.inc({ namespace, schedule, result }, 0);
        restoreTests.inc({ namespace, schedule, result }, 0);
      }
  };
  const scheduleSyncs = new Counter({
    name: 'talos_etcd_backup_schedule_syncs_total',
    help: 'Schedule sync answers, by result: created (a backup for a slot), idle, paused, deleting, invalid.',
    labelNames: ['result'],
    registers: [registry],
  });
  const backupSyncs = new Counter({
    name: 'talos_etcd_backup_backup_syncs_total',
    help: 'Backup sync answers, by result: pending, running, succeeded, failed (this answer records the outcome), finished (recorded before).',
    labelNames: ['result'],
    registers: [registry],
  });
  for (const result of SCHEDULE_SYNC_RESULTS) scheduleSyncs.inc({ result }, 0);
  for (const result of BACKUP_SYNC_RESULTS) backupSyncs.inc({ result }, 0);
  return {
    registry,
    scheduleSyncs,
    backupSyncs,
    requests: new Counter({
      name: 'talos_etcd_backup_hook_requests_total',
      help: 'Hook requests answered, by hook and HTTP status code.',
      labelNames: ['hook', 'code'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'talos_etcd_backup_hook_request_duration_seconds',
      help: 'Time to answer a hook request, by hook.',
      labelNames: ['hook'],
      // Metacontroller's default hook timeout is 10 s; answers should take milliseconds.
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    }),
    recordSchedule(figures) {
      seen(figures);
      series.record(figures);
    },
    recordBackup({ namespace, schedule }, result, restoreTest) {
      seen({ namespace, schedule });
      if (result) finished.inc({ namespace, schedule, result });
      if (restoreTest) restoreTests.inc({ namespace, schedule, result: restoreTest });
    },
  };
}

/** Metrics are a side show: a fault in recording them is logged, and the hook still answers. */
export function recordSafely(log: FastifyBaseLogger, record: () => void): void {
  try {
    record();
  } catch (error) {
    log.error({ err: error }, 'metrics not recorded');
  }
}

/**
 * Counts and times every route that declares `config.hook`, and serves the registry at /metrics.
 * Wrapped with fastify-plugin so its onResponse hook sees the routes registered beside it, not only its own.
 */
export const metricsPlugin = fp(async function metricsRoutes(
  app: FastifyInstance,
  opts: { metrics: HookMetrics },
): Promise<void> {
  const { metrics } = opts;
  app.addHook('onResponse', async (request, reply) => {
    const hook = (request.routeOptions.config as { hook?: string }).hook;
    if (!hook) return;
    metrics.requests.inc({ hook, code: String(reply.statusCode) });
    metrics.duration.observe({ hook }, reply.elapsedTime / 1000);
  });
  app.get('/metrics', async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
});
