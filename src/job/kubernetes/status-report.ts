// The snapshot Job's reports into its TalosEtcdBackup's status.report: Running (with progress, at a bounded
// rate), then Succeeded with the stored object or Failed with the one-line cause. The backup controller turns
// them into conditions; a report is the Job's word, the Job's own status (failed pods) is Kubernetes'.

import { BACKUP_PLURAL, GROUP, VERSION } from '../../api/constants.js';
import type { BackupReport } from '../../api/types.js';
import { KubernetesApiError, type KubernetesApi } from './in-cluster.js';
import { formatTime } from '../../api/conditions.js';
import type { SnapshotOutcome } from '../pipeline/snapshot.js';

// A failed report write is retried: the API may be briefly unavailable.
const FINAL_REPORT_ATTEMPTS = 4;
const RETRY_DELAY_MS = 1_000; // then 2 s, 3 s

// The first report may also be refused (403) because the pod's RoleBinding does not exist yet. Metacontroller
// creates a backup's attachments one by one in its GVK order, ServiceAccount, Job, Role, RoleBinding, through a
// client limited to 5 requests per second (burst 10) that all its controllers and workers share: the pod can start
// while the Role and RoleBinding wait their turn. Measured on the real API server with the Metacontroller stand-in
// (test/server/backup/first-report.test.ts): at the default rate the RoleBinding lands within a few seconds of the pod's
// first report; the wait below covers a Metacontroller whose 5 requests per second are shared by many busy
// controllers (tens of seconds) with a wide margin, and a Role that never comes still fails the Job in a minute.
/** How long the first report waits for its permission before the Job fails (exit 2). */
export const FIRST_REPORT_PERMISSION_WAIT_MS = 60_000;
// Tries during that wait: 250 ms, 500 ms, 1 s, then every 2 s (a refused PATCH is cheap for the API server).
const PERMISSION_RETRY_FIRST_MS = 250;
const PERMISSION_RETRY_MAX_MS = 2_000;

export interface StatusReporter {
  running(): Promise<void>;
  /** Call as bytes go out; writes at most one report per interval, never two at once. */
  progress(bytesUploaded: number): void;
  succeeded(result: SnapshotOutcome): Promise<void>;
  failed(message: string, retryable: boolean): Promise<void>;
}

export interface ReporterOptions {
  api: Pick<KubernetesApi, 'mergePatch'>;
  namespace: string;
  name: string;
  pod?: string | undefined;
  intervalMs: number;
  clock?: () => Date;
  /** Where a failed write is told (stderr); the report is best effort except for the final one. */
  warn: (message: string) => void;
  /** How long the first report retries a 403 (default FIRST_REPORT_PERMISSION_WAIT_MS; tests shorten it). */
  permissionWaitMs?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const isForbidden = (error: unknown) => error instanceof KubernetesApiError && error.status === 403;

/**
 * Writes that must land: failures are retried (FINAL_REPORT_ATTEMPTS in all). With `forbiddenUntil` (the first
 * report), a 403 is retried apart from those until that time: the RoleBinding may still be on its way. Shared by
 * the snapshot Job's and the restore-test Job's reports.
 */
export function reliableWriter(permissionWaitMs: number) {
  let permissionNeverCame = false;
  return {
    permissionWaitMs,
    /** Whether a first report waited in vain: this identity may not write the status. */
    permissionNeverCame: () => permissionNeverCame,
    async write(send: () => Promise<void>, forbiddenUntil?: number): Promise<void> {
      let failures = 0;
      let forbiddenDelay = PERMISSION_RETRY_FIRST_MS;
      for (;;) {
        try {
          return await send();
        } catch (error) {
          if (forbiddenUntil !== undefined && isForbidden(error)) {
            const left = forbiddenUntil - Date.now();
            if (left <= 0) {
              permissionNeverCame = true;
              // The API server's own "forbidden" wording first: it names the user, the verb and the resource.
              const still = `(still refused after ${Math.round(permissionWaitMs / 1000)}s: the backup's Role or RoleBinding is missing or was changed)`;
              throw new KubernetesApiError(`${(error as Error).message} ${still}`, 403, { cause: error });
            }
            await sleep(Math.min(forbiddenDelay, left));
            forbiddenDelay = Math.min(forbiddenDelay * 2, PERMISSION_RETRY_MAX_MS);
            continue;
          }
          failures += 1;
          if (failures >= FINAL_REPORT_ATTEMPTS) throw error;
          await sleep(RETRY_DELAY_MS * failures);
        }
      }
    },
  };
}

export function statusReporter(opts: ReporterOptions): StatusReporter {
  const clock = opts.clock ?? (() => new Date());
  const path = `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(opts.namespace)}/${BACKUP_PLURAL}/${encodeURIComponent(opts.name)}/status`;
  const startedAt = formatTime(clock());
  let lastWrite = 0;
  let inFlight: Promise<void> | undefined;

  // Every write sends the whole report: fields of an earlier attempt (message, snapshot) are cleared with null,
  // as a merge patch would otherwise keep them.
  const write = (report: BackupReport) => {
    const body = {
      status: {
        report: {
          snapshot: null,
          message: null,
          retryable: null,
          ...report,
          ...(opts.pod && { pod: opts.pod }),
          startedAt,
          updatedAt: formatTime(clock()),
        },
      },
    };
    return opts.api.mergePatch(path, body);
  };
  const writer = reliableWriter(opts.permissionWaitMs ?? FIRST_REPORT_PERMISSION_WAIT_MS);
  const writeFinal = async (report: BackupReport, forbiddenUntil?: number) => {
    await inFlight?.catch(() => undefined); // a late progress report must not land after the final one
    return writer.write(() => write(report), forbiddenUntil);
  };
  const permissionWaitMs = writer.permissionWaitMs;

  return {
    running: () => writeFinal({ state: 'Running', bytesUploaded: 0 }, Date.now() + permissionWaitMs),
    progress(bytesUploaded) {
      const now = Date.now();
      if (inFlight || now - lastWrite < opts.intervalMs) return;
      lastWrite = now;
      inFlight = write({ state: 'Running', bytesUploaded })
        .catch((error: Error) => opts.warn(`progress report failed (the backup goes on): ${error.message}`))
        .finally(() => (inFlight = undefined));
    },
    // The outcome is the snapshot's record and how the run went; the record alone goes into the status.
    succeeded: ({ endpoint, durationMs, alreadyUploaded, failedEndpoints, ...snapshot }) =>
      writeFinal({ state: 'Succeeded', bytesUploaded: snapshot.size, snapshot }),
    // Once the first report waited in vain, this identity may not write the status: the failure is the Job's
    // (exit 2), and a report that would be refused again is not tried.
    failed: async (message, retryable) => {
      if (writer.permissionNeverCame()) return;
      await writeFinal({ state: 'Failed', message, retryable });
    },
  };
}
