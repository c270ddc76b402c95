// POST /hooks/schedule/sync — Metacontroller's CompositeController sync hook for TalosEtcdBackupSchedules.
// The route only checks the envelope, calls the pure syncSchedule and logs what it decided.

import type { FastifyInstance } from 'fastify';
import { API_VERSION, BACKUP_CHILDREN_KEY, SCHEDULE_KIND } from '../../api/constants.js';
import { compositeSyncRequestSchema } from '../metacontroller/schemas.js';
import type { CompositeSyncRequest } from '../metacontroller/types.js';
import { scheduleFigures } from '../schedule/figures.js';
import { syncSchedule } from '../schedule/sync.js';
import { recordSafely, type HookMetrics } from './metrics.js';

export const SCHEDULE_SYNC_PATH = '/hooks/schedule/sync';

export async function scheduleSyncRoute(
  app: FastifyInstance,
  opts: { clock: () => Date; metrics: HookMetrics },
): Promise<void> {
  app.post<{ Body: CompositeSyncRequest }>(
    SCHEDULE_SYNC_PATH,
    {
      schema: { body: compositeSyncRequestSchema(API_VERSION, SCHEDULE_KIND, BACKUP_CHILDREN_KEY) },
      config: { hook: 'schedule/sync' },
    },
    async (request) => {
      const { parent } = request.body;
      const now = opts.clock();
      const result = syncSchedule(request.body, now);
      const { response, outcome, reason, created, deleted } = result;
      opts.metrics.scheduleSyncs.inc({ result: outcome });
      recordSafely(request.log, () => opts.metrics.recordSchedule(scheduleFigures(parent, result, now)));
      const fields = {
        schedule: `${parent.metadata.namespace ?? ''}/${parent.metadata.name}`,
        outcome,
        reason,
        created,
        deleted,
        nextScheduleTime: response.status.nextScheduleTime,
      };
      // Only answers that change something (or need a human) are worth a line at info level.
      if (created || deleted.length > 0 || outcome === 'invalid') request.log.info(fields, 'schedule synced');
      else request.log.debug(fields, 'schedule synced');
      return response;
    },
  );
}
