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
/** Label of an on-demand backup made from a schedule's template (`talos-etcd-backup backup --from-schedule`). */
export const FROM_SCHEDULE_LABEL = `${GROUP}/from-schedule`;
/** Annotation on every backup a schedule creates: the nominal slot it was created for (RFC 3339, UTC). */
export const SCHEDULED_TIME_ANNOTATION = `${GROUP}/scheduled-time`;
/** Label Metacontroller's `generateSelector: true` selects children by. */
export const CONTROLLER_UID_LABEL = 'controller-uid';
/** Annotation Metacontroller keeps on children; never copied back into a desired child. */
export const LAST_APPLIED_ANNOTATION = 'metacontroller.k8s.io/last-applied-configuration';

/** talos-operator's TalosControlPlane: same API group as ours. */
export const TALOS_CONTROL_PLANE_KIND = 'TalosControlPlane';
export const TALOS_CONTROL_PLANE_PLURAL = 'taloscontrolplanes';
/**
 * talos-operator's label on its `<TalosControlPlane>-state` Secret (value `state`): the Secret it restores a
 * TalosControlPlane's status from, holding the cluster's secrets bundle and machine configuration.
 */
export const TALOS_OPERATOR_TYPE_LABEL = `${GROUP}/type`;
/** talos-operator's TalosCluster, which may own a TalosControlPlane (and then names its talosconfig Secret). */
export const TALOS_CLUSTER_KIND = 'TalosCluster';

/** Metacontroller's keys for the objects the backup decorator deals with. */
export const RELATED_CONTROL_PLANE_KEY = `${TALOS_CONTROL_PLANE_KIND}.${API_VERSION}`;
export const JOB_KEY = 'Job.batch/v1';
/** A backup's owning schedule among the backup decorator's related objects. */
export const RELATED_SCHEDULE_KEY = `${SCHEDULE_KIND}.${API_VERSION}`;
/** On a restore-test Job: the request it answers (a Job of an earlier request is never taken for this one's). */
export const RESTORE_TEST_REQUEST_ANNOTATION = `${GROUP}/restore-test-requested-at`;
/** The backup's own Namespace, a related object (cluster-scoped: keyed by its name). */
export const RELATED_NAMESPACE_KEY = 'Namespace.v1';
export const SERVICE_ACCOUNT_KEY = 'ServiceAccount.v1';
export const ROLE_KEY = 'Role.rbac.authorization.k8s.io/v1';
export const ROLE_BINDING_KEY = 'RoleBinding.rbac.authorization.k8s.io/v1';

/** Labels on every Job (and its pods) and helper object: `kubectl get pods -l talos.alperen.cloud/backup=<name>`. */
export const BACKUP_LABEL = `${GROUP}/backup`;
/** The backup's uid, for names too long to be a label value (names above 63 characters are shortened in BACKUP_LABEL). */
export const BACKUP_UID_LABEL = `${GROUP}/backup-uid`;
export const COMPONENT_LABEL = 'app.kubernetes.io/component';
export const NAME_LABEL = 'app.kubernetes.io/name';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const APP_NAME = 'talos-etcd-backup';
