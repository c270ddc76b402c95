// The backup decorator's customize hook: which related objects Metacontroller sends along with a backup. Never
// Secrets: Metacontroller would watch and cache all of them.

import { API_VERSION, SCHEDULE_PLURAL, TALOS_CONTROL_PLANE_PLURAL } from '../../api/constants.js';
import { owningSchedule } from '../../api/ownership.js';
import type { BackupSpec } from '../../api/types.js';
import type { CustomizeRequest, CustomizeResponse } from '../metacontroller/types.js';
import { DEFAULT_BACKUP_HOOK_SETTINGS, type BackupHookSettings } from './settings.js';

/**
 * Related objects for a backup: its own Namespace (so finalize sees it terminating; Metacontroller already watches
 * Namespaces) and, for talosControlPlaneRef when talos-operator is there, its TalosControlPlane by name in its
 * namespace; and the schedule that owns it, whose restore-test slot may ask for a test of this backup.
 */
export function customizeBackup(
  request: CustomizeRequest,
  settings: Pick<BackupHookSettings, 'talosOperator'> = DEFAULT_BACKUP_HOOK_SETTINGS,
): CustomizeResponse {
  const namespace = request.parent.metadata.namespace;
  const spec = request.parent.spec as Partial<BackupSpec> | undefined;
  const name = spec?.talosControlPlaneRef?.name;
  const wantsControlPlane = settings.talosOperator && typeof name === 'string' && name !== '';
  const controlPlanes = {
    apiVersion: API_VERSION,
    resource: TALOS_CONTROL_PLANE_PLURAL,
    ...(namespace && { namespace }),
  };
  const schedule = owningSchedule(request.parent);
  return {
    relatedResources: [
      ...(namespace ? [{ apiVersion: 'v1', resource: 'namespaces', names: [namespace] }] : []),
      ...(wantsControlPlane ? [{ ...controlPlanes, names: [name] }] : []),
      ...(schedule
        ? [{ apiVersion: API_VERSION, resource: SCHEDULE_PLURAL, ...(namespace && { namespace }), names: [schedule] }]
        : []),
    ],
  };
}
