// Names and labels of what a backup's Jobs and helpers are called. Kubernetes caps label values (and so Job
// names, which become the `job-name` label of their pods) at 63 characters, while a backup's name may have 253:
// longer names are shortened and made unique again with a hash of the whole name.

import { createHash } from 'node:crypto';
import { APP_NAME, BACKUP_LABEL, BACKUP_UID_LABEL, COMPONENT_LABEL, MANAGED_BY_LABEL, NAME_LABEL } from '../api/constants.js';

const MAX_LABEL_VALUE = 63;

function hash8(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8);
}

/** `<text>` if it fits in `max` characters, else a prefix of it + `-` + 8 hex of its hash (same length as max). */
export function fitName(text: string, max = MAX_LABEL_VALUE): string {
  if (text.length <= max) return text;
  const prefix = text.slice(0, max - 9).replace(/[-.]+$/, ''); // a name part must not end in - or .
  return `${prefix}-${hash8(text)}`;
}

export type Component = 'snapshot' | 'delete';

/** Name of a backup's Job (and, for the snapshot, of its ServiceAccount, Role and RoleBinding). */
export function attachmentName(backupName: string, component: Component): string {
  return `${fitName(backupName, MAX_LABEL_VALUE - component.length - 1)}-${component}`;
}

/** Labels on a backup's Jobs, their pods and the helpers: `kubectl get pods -l talos.alperen.cloud/backup=<name>`. */
export function attachmentLabels(backup: { name: string; uid: string }, component: Component): Record<string, string> {
  return {
    [NAME_LABEL]: APP_NAME,
    [COMPONENT_LABEL]: component,
    [MANAGED_BY_LABEL]: APP_NAME,
    [BACKUP_LABEL]: fitName(backup.name),
    [BACKUP_UID_LABEL]: backup.uid,
  };
}
