// POST /hooks/backup/{customize,sync,finalize} — Metacontroller's DecoratorController hooks for TalosEtcdBackups.
// The routes check the envelope, call the pure hook functions of src/server/backup/ (customize.ts, sync.ts,
// finalize.ts) and log what they decided: the backup's namespace/name (from a body that passed the envelope schema)
// and the outcome, never a message.

import type { FastifyInstance } from 'fastify';
import { API_VERSION, BACKUP_KIND } from '../../api/constants.js';
import { owningSchedule } from '../../api/ownership.js';
import type { JobImage } from '../backup/job.js';
import { customizeBackup } from '../backup/customize.js';
import { finalizeBackup } from '../backup/finalize.js';
import type { BackupHookSettings } from '../backup/settings.js';
import { syncBackup } from '../backup/sync.js';
import { customizeRequestSchema, decoratorSyncRequestSchema } from '../metacontroller/schemas.js';
import type { CustomizeRequest, DecoratorSyncRequest } from '../metacontroller/types.js';
import { recordSafely, type HookMetrics } from './metrics.js';

export const BACKUP_CUSTOMIZE_PATH = '/hooks/backup/customize';
export const BACKUP_SYNC_PATH = '/hooks/backup/sync';
export const BACKUP_FINALIZE_PATH = '/hooks/backup/finalize';

export interface BackupHookOptions {
  clock: () => Date;
  metrics: HookMetrics;
  jobImage: JobImage;
  settings: BackupHookSettings;
}

const name = (object: { metadata: { name: string; namespace?: string } }) =>
  `${object.metadata.namespace ?? ''}/${object.metadata.name}`;

export async function backupHookRoutes(app: FastifyInstance, opts: BackupHookOptions): Promise<void> {
  const syncSchema = { body: decoratorSyncRequestSchema(API_VERSION, BACKUP_KIND) };

  app.post<{ Body: CustomizeRequest }>(
    BACKUP_CUSTOMIZE_PATH,
    { schema: { body: customizeRequestSchema(API_VERSION, BACKUP_KIND) }, config: { hook: 'backup/customize' } },
    async (request) => customizeBackup(request.body, opts.settings),
  );

  app.post<{ Body: DecoratorSyncRequest }>(
    BACKUP_SYNC_PATH,
    { schema: syncSchema, config: { hook: 'backup/sync' } },
    async (request) => {
      const { response, outcome, restoreTest } = syncBackup(request.body, opts.clock(), opts.jobImage, opts.settings);
      opts.metrics.backupSyncs.inc({ result: outcome });
      const { object } = request.body;
      recordSafely(request.log, () =>
        opts.metrics.recordBackup(
          { namespace: object.metadata.namespace ?? '', schedule: owningSchedule(object) },
          outcome === 'succeeded' || outcome === 'failed' ? outcome : undefined,
          restoreTest,
        ),
      );
      // No message: a failure's message quotes the Job's report and the spec (request content); it is in the
      // backup's status.message, where `kubectl describe` shows it.
      const fields = { backup: name(request.body.object), outcome, phase: response.status.phase };
      // Outcomes are worth a line; the many progress syncs of a running backup are not.
      if (outcome === 'succeeded' || outcome === 'failed') request.log.info(fields, 'backup synced');
      else if (restoreTest) request.log.info({ ...fields, restoreTest }, 'restore test recorded');
      else request.log.debug(fields, 'backup synced');
      return response;
    },
  );

  app.post<{ Body: DecoratorSyncRequest }>(
    BACKUP_FINALIZE_PATH,
    { schema: syncSchema, config: { hook: 'backup/finalize' } },
    async (request) => {
      const { response, outcome } = finalizeBackup(request.body, opts.jobImage, opts.clock(), opts.settings);
      // The outcome says what happened to the object (deleted, kept, the delete Job failed); the message beside it in
      // status.deletion quotes the delete Job's report and the object's key (request content), so it is not logged.
      const fields = { backup: name(request.body.object), outcome };
      if (outcome === 'deleting') request.log.debug(fields, 'backup finalizing');
      else request.log.info(fields, 'backup finalizing');
      return response;
    },
  );
}
