// POST /hooks/schedule/sync — Metacontroller's CompositeController sync hook for TalosEtcdBackupSchedules.
// The route only checks the envelope, calls the pure syncSchedule and logs what it decided.

import type { FastifyInstance } from 'fastify';
import { API_VERSION, BACKUP_CHILDREN_KEY, SCHEDULE_KIND } from '../api/constants.js';
import { compositeSyncRequestSchema } from '../metacontroller/schemas.js';
import type { CompositeSyncRequest } from '../metacontroller/types.js';
import { syncSchedule } from '../schedule/sync.js';
import type { HookMetrics } from './metrics.js';

export const SCHEDULE_SYNC_PATH = '/hooks/schedule/sync';

export async function scheduleSyncRoute(app: FastifyInstance, opts: { clock: () => Date; metrics: HookMetrics }): Promise<void> {
  app.post<{ Body: CompositeSyncRequest }>(
    SCHEDULE_SYNC_PATH,
    { schema: { body: compositeSyncRequestSchema(API_VERSION, SCHEDULE_KIND, BACKUP_CHILDREN_KEY) }, config: { hook: 'schedule/sync' } },
    async (request) => {
      const { parent } = request.body;
      const { response, created, deleted } = syncSchedule(request.body, opts.clock());
      const failed = (response.status.conditions as { type: string; status: string; reason: string }[]).find((c) => c.type === 'Failed');
      const result = failed?.status === 'True' ? 'invalid' : created ? 'created' : response.resyncAfterSeconds === undefined ? 'paused' : 'idle';
      opts.metrics.scheduleSyncs.inc({ result });
      const fields = { schedule: `${parent.metadata.namespace ?? ''}/${parent.metadata.name}`, result, created, deleted, nextScheduleTime: response.status.nextScheduleTime };
      if (created || deleted.length > 0) request.log.info(fields, 'schedule synced');
      else if (result === 'invalid') request.log.info({ ...fields, reason: failed?.reason }, 'schedule spec is invalid');
      else request.log.debug(fields, 'schedule synced');
      return response;
    },
  );
}
