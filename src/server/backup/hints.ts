// Where a backup's messages send the user to look further: the kubectl commands they quote.

import { BACKUP_LABEL, COMPONENT_LABEL } from '../../api/constants.js';
import type { BackupRef } from './job.js';
import { attachmentName, fitName, type Component } from './names.js';

/** Where to look further. The pods go with the Job once the outcome is recorded; their events stay about an hour. */
export function podsHint(ref: BackupRef, component: Component = 'snapshot'): string {
  const selector = `${BACKUP_LABEL}=${fitName(ref.name)},${COMPONENT_LABEL}=${component}`;
  const name = attachmentName(ref.name, component);
  const events = `kubectl get events -n ${ref.namespace} --field-selector involvedObject.name=${name}`;
  return `${events} (and the pods' events; while the Job exists: kubectl logs -n ${ref.namespace} -l ${selector})`;
}

/** Where Metacontroller says why it could not create or delete a backup's objects. */
export function backupEventsHint(ref: BackupRef): string {
  return `kubectl get events -n ${ref.namespace} --field-selector involvedObject.name=${ref.name}`;
}
