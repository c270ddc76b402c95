// Which Secret a backup stores beside its snapshot (pure): spec.clusterSecretsRef; else, for talosControlPlaneRef,
// talos-operator's `<TalosControlPlane>-state` Secret (as talos-operator itself uploads it next to each snapshot),
// but only when the backup is age-encrypted: that Secret holds the cluster's CA keys, and an unencrypted backup
// keeps working as before, snapshot only, its status saying why the secrets were not stored.
//
// talos-operator facts (v0.5.x): the state Secret is named `<TalosControlPlane>-state`, labelled
// `talos.alperen.cloud/type=state`, has no ownerReference (it outlives the TalosControlPlane) and holds the keys
// secretBundle (the `talosctl gen secrets` bundle), bundleConfig, state, config (the control-plane machine
// configuration) and observedKubeVersion. talos-operator re-creates a TalosControlPlane's status from it.

import type { BackupSpec, ClusterSecretsSource, StoredSecrets } from '../../api/types.js';

export type SecretsPlan =
  /** Mounted into the snapshot Job and stored; `required`: a missing Secret fails the backup (an explicit ref). */
  | { action: 'store'; secretName: string; source: ClusterSecretsSource; required: boolean }
  /** Not stored, and the status says why. */
  | { action: 'skip'; record: StoredSecrets }
  | { action: 'none' };

/** talos-operator's state Secret of a TalosControlPlane. */
export function talosOperatorStateSecret(controlPlane: string): string {
  return `${controlPlane}-state`;
}

/** What the backup does about the cluster's secrets (the CRD has checked that clusterSecretsRef comes with age). */
export function secretsPlan(spec: BackupSpec): SecretsPlan {
  if (spec.clusterSecretsRef)
    return { action: 'store', secretName: spec.clusterSecretsRef.name, source: 'clusterSecretsRef', required: true };
  if (!spec.talosControlPlaneRef) return { action: 'none' };
  const secretName = talosOperatorStateSecret(spec.talosControlPlaneRef.name);
  // Missing, it is recorded as not stored rather than failing the backup: the snapshot alone still recovers a
  // cluster whose machines keep their configuration (etcd quorum lost), and backups that worked must go on working.
  if (spec.encryption) return { action: 'store', secretName, source: 'talosOperatorState', required: false };
  return {
    action: 'skip',
    record: {
      source: 'talosOperatorState',
      secretName,
      notStored:
        "the backup is not age-encrypted, and talos-operator's state Secret holds the cluster's CA keys: it is " +
        'stored only age-encrypted (set spec.encryption.age.recipients)',
    },
  };
}
