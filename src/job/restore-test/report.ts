// The restore-test Job's reports into its TalosEtcdBackup's status.restoreTestReport, and its Events on the backup
// (RestoreTestStarted, RestoreTestSucceeded, RestoreTestFailed as a Warning). Both steps report: fetch that the test
// runs (or how it failed), check how it ended. The controller turns the report into status.restoreTest.

import { BACKUP_PLURAL, GROUP, VERSION } from '../../api/constants.js';
import { formatTime } from '../../api/conditions.js';
import type { RestoreTestFigures, RestoreTestReport } from '../../api/types.js';
import { eventRecorder, type EventOptions } from '../kubernetes/events.js';
import type { KubernetesApi } from '../kubernetes/in-cluster.js';
import { FIRST_REPORT_PERMISSION_WAIT_MS, reliableWriter } from '../kubernetes/status-report.js';

export interface RestoreTestReporter {
  /** The first report of the test (fetch): waits for the Role like the snapshot Job's first report. */
  started(): Promise<void>;
  checking(): Promise<void>;
  succeeded(figures: RestoreTestFigures): Promise<void>;
  failed(step: 'fetch' | 'check', message: string): Promise<void>;
}

export interface RestoreTestReporterOptions {
  api: Pick<KubernetesApi, 'mergePatch' | 'create'>;
  namespace: string;
  name: string;
  uid?: string | undefined;
  pod?: string | undefined;
  requestedAt?: string | undefined;
  startedAt: string;
  permissionWaitMs?: number;
  warn: (message: string) => void;
  clock?: () => Date;
}

/** The Events' notes (no secret: figures, and the failure's one line, already redacted). */
const restoreTestNotes = {
  started: () => 'Restoring the backup into a new etcd inside the restore-test pod',
  succeeded: (f: RestoreTestFigures) =>
    `The restored etcd ${f.etcdVersion ?? ''} serves revision ${f.revision ?? '?'}: ${f.servedKeys ?? '?'} keys at ` +
    `the backup's revision, the newest read back; the snapshot holds the recorded ${f.keys ?? '?'} keys (revisions)`,
};

export function restoreTestReporter(opts: RestoreTestReporterOptions): RestoreTestReporter {
  const clock = opts.clock ?? (() => new Date());
  const path = `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(opts.namespace)}/${BACKUP_PLURAL}/${encodeURIComponent(opts.name)}/status`;
  const writer = reliableWriter(opts.permissionWaitMs ?? FIRST_REPORT_PERMISSION_WAIT_MS);
  const eventOptions: EventOptions = {
    api: opts.api,
    backup: { namespace: opts.namespace, name: opts.name, uid: opts.uid },
    instance: opts.pod ?? 'restore-test',
    warn: opts.warn,
    clock,
  };
  const event = eventRecorder(eventOptions);
  // The whole report each time: a merge patch would keep fields of the previous one.
  const write = (report: RestoreTestReport, forbiddenUntil?: number) =>
    writer.write(
      () =>
        opts.api.mergePatch(path, {
          status: {
            restoreTestReport: {
              message: null,
              etcdVersion: null,
              revision: null,
              keys: null,
              servedKeys: null,
              ...report,
              ...(opts.requestedAt && { requestedAt: opts.requestedAt }),
              ...(opts.pod && { pod: opts.pod }),
              startedAt: opts.startedAt,
              updatedAt: formatTime(clock()),
            },
          },
        }),
      forbiddenUntil,
    );
  return {
    started: async () => {
      await write({ state: 'Running', step: 'fetch' }, Date.now() + writer.permissionWaitMs);
      await event('RestoreTestStarted', restoreTestNotes.started());
    },
    checking: () => write({ state: 'Running', step: 'check' }, Date.now() + writer.permissionWaitMs),
    succeeded: async (figures) => {
      await write({ state: 'Succeeded', step: 'check', ...figures });
      await event('RestoreTestSucceeded', restoreTestNotes.succeeded(figures));
    },
    failed: async (step, message) => {
      try {
        if (!writer.permissionNeverCame()) await write({ state: 'Failed', step, message });
      } finally {
        if (!writer.permissionNeverCame()) await event('RestoreTestFailed', message);
      }
    },
  };
}
