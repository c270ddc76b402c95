// Where a backup's snapshot comes from: the talosconfig Secret, the Talos API endpoints and the cluster name
// (the <cluster> segment of the object key), from either a talosconfig Secret or a talos-operator
// TalosControlPlane. The TalosControlPlane reaches the hook as a related object (see the customize hook), so
// Metacontroller watches TalosControlPlanes, never Secrets.
//
// talos-operator facts (v0.5.x, read in its controllers): the talosconfig lives in the Secret
// `<owning TalosCluster, else the TalosControlPlane>-talosconfig` under the key `<TalosControlPlane>.talosconfig`,
// and its endpoints are not the real ones. The endpoints are `status.bundleConfig.clientEndpoint` (metal mode: the
// machines' addresses) or, in container mode, the Service named after the TalosControlPlane (port 50000), which
// is what the operator itself dials.

import { RELATED_CONTROL_PLANE_KEY, TALOS_CLUSTER_KIND } from '../../api/constants.js';
import type { BackupSpec, SecretKeyRef } from '../../api/types.js';
import { BACKUP_MESSAGE } from '../conditions.js';
import type { KubernetesObject, ObjectMap } from '../metacontroller/types.js';

export interface TalosSource {
  cluster: string;
  talosconfig: SecretKeyRef;
  /** Endpoints to dial; undefined: the talosconfig's own. */
  endpoints?: string[];
}

export type SourceResolution =
  | { ok: true; source: TalosSource }
  /** `transient`: may resolve by itself soon (the TalosControlPlane is not there or not provisioned yet). */
  | { ok: false; transient: boolean; message: string };

interface OwnerReference {
  kind?: string;
  name?: string;
}

interface ControlPlane {
  metadata: { ownerReferences?: OwnerReference[] };
  spec?: { mode?: string };
  status?: { bundleConfig?: string };
}

/** The related TalosControlPlane, keyed by name (hook v1) or namespace/name (hook v2). */
function relatedControlPlane(
  related: ObjectMap | undefined,
  namespace: string,
  name: string,
): ControlPlane | undefined {
  return (relatedObject(related, RELATED_CONTROL_PLANE_KEY, name) ??
    relatedObject(related, RELATED_CONTROL_PLANE_KEY, `${namespace}/${name}`)) as ControlPlane | undefined;
}

/**
 * One object of a request's object map by its key, own properties only: `constructor` is a valid Kubernetes name,
 * and a plain lookup would find Object.prototype's instead of "not there".
 */
export function relatedObject(map: ObjectMap | undefined, group: string, key: string): KubernetesObject | undefined {
  const objects = map && Object.hasOwn(map, group) ? map[group] : undefined;
  return objects && Object.hasOwn(objects, key) ? objects[key] : undefined;
}

function clientEndpoints(bundleConfig: string | undefined): string[] {
  if (!bundleConfig) return [];
  try {
    const parsed = JSON.parse(bundleConfig) as { clientEndpoint?: unknown };
    return Array.isArray(parsed.clientEndpoint)
      ? parsed.clientEndpoint.filter((e): e is string => typeof e === 'string' && e !== '')
      : [];
  } catch {
    return [];
  }
}

export function resolveTalosSource(
  spec: BackupSpec,
  namespace: string,
  related: ObjectMap | undefined,
): SourceResolution {
  if (spec.talosConfigSecretRef) {
    const ref = spec.talosConfigSecretRef;
    return {
      ok: true,
      source: {
        cluster: spec.clusterName ?? ref.name,
        talosconfig: { name: ref.name, key: ref.key },
        ...(spec.endpoints && { endpoints: spec.endpoints }),
      },
    };
  }
  const name = spec.talosControlPlaneRef!.name;
  const tcp = relatedControlPlane(related, namespace, name);
  const what = `TalosControlPlane ${namespace}/${name}`;
  const failedToGet = `${BACKUP_MESSAGE.sourceMissing}${what}: `;
  if (!tcp) return { ok: false, transient: true, message: `${failedToGet}not found in the backup's namespace` };
  const owners = Array.isArray(tcp.metadata?.ownerReferences) ? tcp.metadata.ownerReferences : [];
  const owner = owners.find((o) => o?.kind === TALOS_CLUSTER_KIND && typeof o.name === 'string' && o.name !== '')?.name;
  const talosconfig = { name: `${owner ?? name}-talosconfig`, key: `${name}.talosconfig` };
  let endpoints = spec.endpoints;
  if (!endpoints) {
    const listed = clientEndpoints(tcp.status?.bundleConfig);
    if (listed.length > 0) endpoints = listed;
    else if (tcp.spec?.mode === 'container') endpoints = [name];
    else {
      return {
        ok: false,
        transient: true,
        message:
          `${failedToGet}it lists no Talos API endpoints yet (status.bundleConfig.clientEndpoint is empty; is it ` +
          'provisioned?); set spec.endpoints to give them',
      };
    }
  }
  return { ok: true, source: { cluster: spec.clusterName ?? name, talosconfig, endpoints } };
}
