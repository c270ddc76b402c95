// The backup hooks' settings (server configuration: ATTACHMENT_DEADLINE_SECONDS, TALOS_OPERATOR). A module of its
// own so that reading the configuration loads none of the hooks' code.

/**
 * How long the snapshot Job (or, while deleting, the delete Job) may be asked for without appearing. Metacontroller
 * never tells the hook that a create was refused (a ResourceQuota on jobs, an admission webhook, RBAC, the RBAC
 * escalation check on the Role): it records a Warning event on the backup and retries, so without a bound the
 * backup would wait forever (and block a Forbid schedule).
 */
export const DEFAULT_ATTACHMENT_DEADLINE_SECONDS = 600;

export interface BackupHookSettings {
  attachmentDeadlineSeconds: number;
  /**
   * Whether talos-operator's TalosControlPlane kind can be asked for (the chart sets it from whether the cluster
   * serves that CRD). Metacontroller resolves a related kind before it calls sync or finalize: a kind without CRD
   * fails both, so a backup asking for it would never get a status and never be deleted.
   */
  talosOperator: boolean;
}

export const DEFAULT_BACKUP_HOOK_SETTINGS: BackupHookSettings = {
  attachmentDeadlineSeconds: DEFAULT_ATTACHMENT_DEADLINE_SECONDS,
  talosOperator: true,
};
