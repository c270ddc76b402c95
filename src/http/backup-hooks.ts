// POST /hooks/backup/{customize,sync,finalize} — Metacontroller's DecoratorController hooks for TalosEtcdBackups.
// The routes check the envelope, call the pure functions of src/backup/sync.ts and log what they decided.

import type { FastifyInstance } from 'fastify';
import { API_VERSION, BACKUP_KIND } from '../api/constants.js';
import type { JobImage } from '../backup/job.js';
import { customizeBackup, finalizeBackup, syncBackup } from '../backup/sync.js';
import { customizeRequestSchema, decoratorSyncRequestSchema } from '../metacontroller/schemas.js';
import type { CustomizeRequest, DecoratorSyncRequest } from '../metacontroller/types.js';
import type { HookMetrics } from './metrics.js';

export const BACKUP_CUSTOMIZE_PATH = '/hooks/backup/customize';
export const BACKUP_SYNC_PATH = '/hooks/backup/sync';
export const BACKUP_FINALIZE_PATH = '/hooks/backup/finalize';

export interface BackupHookOptions {
  clock: () => Date;
  metrics: HookMetrics;
  jobImage: JobImage;
}

const name = (object: { metadata: { name: string; namespace?: string } }) => `${object.metadata.namespace ?? ''}/${object.metadata.name}`;

export async function backupHookRoutes(app: FastifyInstance, opts: BackupHookOptions): Promise<void> {
  const syncSchema = { body: decoratorSyncRequestSchema(API_VERSION, BACKUP_KIND) };

  app.post<{ Body: CustomizeRequest }>(BACKUP_CUSTOMIZE_PATH, { schema: { body: customizeRequestSchema(API_VERSION, BACKUP_KIND) }, config: { hook: 'backup/customize' } }, async (request) =>
    customizeBackup(request.body),
  );

  app.post<{ Body: DecoratorSyncRequest }>(BACKUP_SYNC_PATH, { schema: syncSchema, config: { hook: 'backup/sync' } }, async (request) => {
    const { response, outcome, message } = syncBackup(request.body, opts.clock(), opts.jobImage);
    opts.metrics.backupSyncs.inc({ result: outcome });
    const fields = { backup: name(request.body.object), outcome, phase: response.status.phase, ...(message && { message }) };
    // Outcomes are worth a line; the many progress syncs of a running backup are not.
    if (outcome === 'succeeded' || outcome === 'failed') request.log.info(fields, 'backup synced');
    else request.log.debug(fields, 'backup synced');
    return response;
  });

  app.post<{ Body: DecoratorSyncRequest }>(BACKUP_FINALIZE_PATH, { schema: syncSchema, config: { hook: 'backup/finalize' } }, async (request) => {
    const { response, outcome } = finalizeBackup(request.body, opts.jobImage, opts.clock());
    // The backup goes with this answer: the log keeps what happened to its object (e.g. kept by Object Lock).
    const deletion = (response.status as { deletion?: { message?: string } }).deletion?.message;
    const fields = { backup: name(request.body.object), outcome, ...(deletion && { deletion }) };
    if (outcome === 'deleting') request.log.debug(fields, 'backup finalizing');
    else request.log.info(fields, 'backup finalizing');
    return response;
  });
}
