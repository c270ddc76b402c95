// The snapshot Job's reports into its TalosEtcdBackup's status.report: Running (with progress, at a bounded
// rate), then Succeeded with the stored object or Failed with the one-line cause. The backup controller turns
// them into conditions; a report is the Job's word, the Job's own status (failed pods) is Kubernetes'.

import { BACKUP_PLURAL, GROUP, VERSION } from '../api/constants.js';
import type { BackupReport } from '../api/types.js';
import type { KubernetesApi } from '../kubernetes/in-cluster.js';
import { formatTime } from '../status/conditions.js';
import type { SnapshotOutcome } from './run.js';

// A failed report write is retried: right after the pod starts, its RoleBinding may not be in the API server's
// authorizer cache yet (403), and the API may be briefly unavailable.
const FINAL_REPORT_ATTEMPTS = 4;
const RETRY_DELAY_MS = 1_000; // then 2 s, 3 s

export interface StatusReporter {
  running(): Promise<void>;
  /** Call as bytes go out; writes at most one report per interval, never two at once. */
  progress(bytesUploaded: number): void;
  succeeded(result: SnapshotOutcome): Promise<void>;
  failed(message: string, retryable: boolean): Promise<void>;
}

export interface ReporterOptions {
  api: KubernetesApi;
  namespace: string;
  name: string;
  pod?: string | undefined;
  intervalMs: number;
  clock?: () => Date;
  /** Where a failed write is told (stderr); the report is best effort except for the final one. */
  warn: (message: string) => void;
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
    const body = { status: { report: { snapshot: null, message: null, retryable: null, ...report, ...(opts.pod && { pod: opts.pod }), startedAt, updatedAt: formatTime(clock()) } } };
    return opts.api.mergePatch(path, body);
  };
  const writeFinal = async (report: BackupReport) => {
    await inFlight?.catch(() => undefined); // a late progress report must not land after the final one
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await write(report);
      } catch (error) {
        if (attempt >= FINAL_REPORT_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS * attempt));
      }
    }
  };

  return {
    running: () => writeFinal({ state: 'Running', bytesUploaded: 0 }),
    progress(bytesUploaded) {
      const now = Date.now();
      if (inFlight || now - lastWrite < opts.intervalMs) return;
      lastWrite = now;
      inFlight = write({ state: 'Running', bytesUploaded })
        .catch((error: Error) => opts.warn(`progress report failed (the backup goes on): ${error.message}`))
        .finally(() => (inFlight = undefined));
    },
    succeeded: (result) =>
      writeFinal({
        state: 'Succeeded',
        bytesUploaded: result.size,
        snapshot: {
          bucket: result.bucket,
          key: result.key,
          size: result.size,
          sha256: result.sha256,
          etcdSha256: result.etcdSha256,
          node: result.node,
          compression: result.compression,
          encrypted: result.encrypted,
          ...(result.retainUntil && { retainUntil: result.retainUntil }),
          verified: result.verified,
          ...(result.verifiedAt && { verifiedAt: result.verifiedAt }),
          ...(result.verification && { verification: result.verification }),
          ...(result.revision !== undefined && { revision: result.revision }),
          ...(result.keys !== undefined && { keys: result.keys }),
        },
      }),
    failed: (message, retryable) => writeFinal({ state: 'Failed', message, retryable }),
  };
}
