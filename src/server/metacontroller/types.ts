// Shapes of Metacontroller's hook bodies (hook version v1 and v2), from its Go types.
// Vocabulary: "observed" is what a request carries, "desired" is what we answer.

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: unknown[];
  [key: string]: unknown;
}

export interface KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
  [key: string]: unknown;
}

/** `children`/`attachments`/`related`: keyed `<Kind>.<group>/<version>`, then by `name` (v1) or `namespace/name` (v2). */
export type ObjectMap = Record<string, Record<string, KubernetesObject>>;

export interface CompositeSyncRequest {
  controller?: unknown;
  parent: KubernetesObject;
  children: ObjectMap;
  related?: ObjectMap;
  finalizing?: boolean;
}

export interface CompositeSyncResponse {
  /** Replaces the parent's whole `.status` (Metacontroller injects `observedGeneration`). */
  status: Record<string, unknown>;
  /** The complete desired set: every observed child left out is deleted. */
  children: KubernetesObject[];
  /** One-shot requeue of this parent; omitted when nothing is due later. */
  resyncAfterSeconds?: number;
}

export interface DecoratorSyncRequest {
  controller?: unknown;
  /** The decorated object (ours: a TalosEtcdBackup). */
  object: KubernetesObject;
  /** Objects it owns that carry the decorator's annotation, keyed like `children`. */
  attachments?: ObjectMap;
  related?: ObjectMap;
  finalizing?: boolean;
}

export interface DecoratorSyncResponse {
  /** Replaces the object's whole `.status` (no observedGeneration is injected: we write it). */
  status: Record<string, unknown>;
  /** The complete desired set: every observed attachment left out is deleted. */
  attachments: KubernetesObject[];
  resyncAfterSeconds?: number;
  /** Finalize hook only: true lets the object go (Metacontroller removes its finalizer). */
  finalized?: boolean;
}

export interface CustomizeRequest {
  controller?: unknown;
  parent: KubernetesObject;
}

export interface RelatedResourceRule {
  apiVersion: string;
  resource: string;
  namespace?: string;
  names?: string[];
}

export interface CustomizeResponse {
  relatedResources: RelatedResourceRule[];
}
