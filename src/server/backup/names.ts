// Names and labels of what a backup's Jobs and helpers are called. Kubernetes caps label values (and so Job
// names, which become the `job-name` label of their pods) at 63 characters, while a backup's name may have 253:
// longer names are shortened (and attachment names, DNS labels like the pod names made from them, lose their dots):
// every such name carries a hash of the whole name, in a form no name kept as it is can take, so that two backups
// never share a Job, ServiceAccount, Role or RoleBinding.

import { createHash } from 'node:crypto';
import {
  APP_NAME,
  BACKUP_LABEL,
  BACKUP_UID_LABEL,
  COMPONENT_LABEL,
  MANAGED_BY_LABEL,
  NAME_LABEL,
} from '../../api/constants.js';

const MAX_LABEL_VALUE = 63;
const HASH_LENGTH = 8;

function hash8(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, HASH_LENGTH);
}

/** The first `length` characters of a DNS name, without trailing `-` or `.` (a name part must end alphanumeric). */
function prefixOf(name: string, length: number): string {
  return name.slice(0, length).replace(/[-.]+$/, '');
}

/**
 * A label value for a name: the name if it fits in `max` characters, else a prefix of it + `_` + 8 hex of its hash.
 * Backup names (DNS subdomains) never contain `_`, label values may: a shortened value never equals a name.
 */
export function fitName(text: string, max = MAX_LABEL_VALUE): string {
  if (text.length <= max) return text;
  return `${prefixOf(text, max - HASH_LENGTH - 1)}_${hash8(text)}`;
}

export type Component = 'snapshot' | 'delete' | 'restore-test';

/**
 * Name of a backup's Job (and, for the snapshot, of its ServiceAccount, Role and RoleBinding), a DNS label of at
 * most 63 characters: `<backup>-<component>` when the backup's name is a DNS label (no dots) and that fits, else
 * `<prefix, dots as dashes>-<component>-<8 hex of the hash of the backup name>`. The first form ends in the
 * component, the second in 8 hex digits, which no component's last 8 characters are: no two backups, and no two
 * components, get the same name (up to a collision of the 32-bit hash among long or dotted names).
 */
export function attachmentName(backupName: string, component: Component): string {
  const plain = `${backupName}-${component}`;
  if (plain.length <= MAX_LABEL_VALUE && !backupName.includes('.')) return plain;
  const prefix = prefixOf(backupName.replace(/\./g, '-'), MAX_LABEL_VALUE - component.length - HASH_LENGTH - 2);
  return `${prefix}-${component}-${hash8(backupName)}`;
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
