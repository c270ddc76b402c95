// Names of the project's Kubernetes API: group, kinds, and the labels and annotations it writes.

export const GROUP = 'talos.alperen.cloud';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const BACKUP_KIND = 'TalosEtcdBackup';
export const SCHEDULE_KIND = 'TalosEtcdBackupSchedule';
export const BACKUP_PLURAL = 'talosetcdbackups';
export const SCHEDULE_PLURAL = 'talosetcdbackupschedules';

/** Metacontroller's key for our backups in `children` maps: `<Kind>.<group>/<version>`. */
export const BACKUP_CHILDREN_KEY = `${BACKUP_KIND}.${API_VERSION}`;

/** Label on every backup a schedule creates; its value is the schedule's name. */
export const SCHEDULE_LABEL = `${GROUP}/backup-schedule`;
/** Annotation on every backup a schedule creates: the nominal slot it was created for (RFC 3339, UTC). */
export const SCHEDULED_TIME_ANNOTATION = `${GROUP}/scheduled-time`;
/** Label Metacontroller's `generateSelector: true` selects children by. */
export const CONTROLLER_UID_LABEL = 'controller-uid';
/** Annotation Metacontroller keeps on children; never copied back into a desired child. */
export const LAST_APPLIED_ANNOTATION = 'metacontroller.k8s.io/last-applied-configuration';
