// Which schedule owns a backup: its controller ownerReference, which Metacontroller sets on every child it creates.

import { API_VERSION, SCHEDULE_KIND } from './constants.js';

/**
 * The name of the TalosEtcdBackupSchedule that owns a backup, or '' for one made by hand. The schedule label, which
 * anyone can set on any backup, is not trusted for this.
 */
export function owningSchedule(object: { metadata: { ownerReferences?: unknown[] } }): string {
  const owners = Array.isArray(object.metadata.ownerReferences) ? object.metadata.ownerReferences : [];
  for (const owner of owners) {
    const { kind, name, controller, apiVersion } = (owner ?? {}) as Record<string, unknown>;
    if (controller === true && kind === SCHEDULE_KIND && typeof name === 'string' && apiVersion === API_VERSION)
      return name;
  }
  return '';
}
