// A Metacontroller stand-in for tests: it reads the project's own manifests (metacontroller/*.yaml) and CRDs (crds/),
// keeps every object in the fake Kubernetes API (kube-api.ts, the only store: it reads and writes nothing else), and
// drives our hook server over real HTTP the way Metacontroller v4 does with hook version v1
// (../shared/reference/metacontroller.md §1–§4, checked against pkg/controller/{composite,decorator,common}):
//   - requests: `controller` (the manifest, without TypeMeta), `parent`/`object`, `children`/`attachments` keyed
//     `Kind.group/version` (core: `Kind.version`) then by name, one entry per child rule even when empty, `related`
//     from the customize hook (cached per uid + generation for 20 minutes), `finalizing`;
//   - webhook: POST JSON to a base URL (rotating over hookUrls) + the manifest's path, the manifest's timeout
//     (Go duration, default 10s); anything but 200, a timeout or bad JSON fails the sync: nothing is applied, the error
//     is recorded and the key is requeued with client-go's per-item backoff (5ms·2^n, at most 1000s); 429 requeues
//     after Retry-After without an error;
//   - answers, loosely decoded: Composite status replaces .status with observedGeneration injected (written last,
//     skipped when equal); Decorator status (null = unchanged), labels and annotations (null deletes) are written with
//     the resourceVersion of the object read when the sync started, so a concurrent write makes the sync end early
//     without touching attachments; children/attachments are the complete desired set: missing ones are deleted,
//     new ones created with the controller ownerReference, the last-applied annotation, `controller-uid` (Composite
//     generateSelector) or the decorator annotation; existing ones are never updated (OnDelete);
//   - finalizers `metacontroller.io/{composite,decorator}controller-<name>` added when a finalize hook exists, the
//     finalize hook called while the object is deleted (or no longer selected), the finalizer removed on `finalized`;
//   - triggers: changes to a parent, to an object it controls, or to an object its customize answer named;
//     `resyncAfterSeconds` (one-shot) and `resyncPeriodSeconds`, both on the simulated clock; one key at a time.
// The API server's part (in apply() and every write here): CRD schema with defaults and CEL rules, fields the schema
// would prune (an error here: a test wants to know), status dropped on create, generation bumped on spec changes,
// label syntax. Garbage collection and finalizer-blocked deletion are kube-api.ts's.
// Deliberately left out: hook version v2, update strategies other than OnDelete (refused at start), Rolling*
// revisions, adoption/release of orphans, ETags, server-side apply, managedFields, events, schemas of built-in kinds
// (test/backup/attachments.test.ts checks those), concurrent workers. Stricter than Metacontroller: a desired object
// of an undeclared kind, in another namespace, or listed twice is a sync error (Metacontroller would misbehave).

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { packageRoot } from '../../src/api/crds.js';
import { validateAgainstSchema } from '../../src/api/validation.js';
import type { FakeKubeApi, KubeObject } from './kube-api.js';

export interface StandInOptions {
  api: FakeKubeApi;
  /** Base URLs of hook servers (e.g. http://127.0.0.1:PORT); calls rotate through them (several replicas). The manifests' service/path give the path. */
  hookUrls: readonly string[];
  /** Simulated clock: resyncs and backoff are due on it. */
  clock: () => Date;
  /** Default: <repo>/metacontroller. */
  manifestsDir?: string;
  /** Default: <repo>/crds. */
  crdsDir?: string;
}

export interface HookCall {
  controller: string;
  hook: 'sync' | 'customize' | 'finalize';
  /** namespace/name */
  key: string;
  at: Date;
  url: string;
  request: unknown;
  response?: unknown;
  error?: string;
}

export interface MetacontrollerStandIn {
  /** A user's `kubectl apply` of a whole object: checked and defaulted like the API server does; throws if it would refuse. Changes enqueue syncs. */
  apply(object: KubeObject): KubeObject;
  /** A user's `kubectl delete` (finalizers and garbage collection as kube-api.ts does them). */
  delete(apiVersion: string, kind: string, namespace: string, name: string): void;
  /** Processes queued syncs (and resyncs due at clock()) until none is left; hook calls are real HTTP. Safe to call repeatedly. */
  settle(): Promise<void>;
  readonly calls: HookCall[];
  /** Sync errors (non-200, timeout, invalid answer or child, refused status) in order. */
  readonly errors: string[];
  stop(): void;
}

type Json = Record<string, unknown>;
type ObjectMap = Record<string, Record<string, KubeObject>>;

interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

interface KindInfo {
  apiVersion: string;
  kind: string;
  resource: string;
  namespaced: boolean;
  statusSubresource: boolean;
  /** openAPIV3Schema, for the kinds of crds/ only. */
  schema?: Json;
}

interface HookSpec {
  path: string;
  timeoutMs: number;
}

interface Controller {
  name: string;
  type: 'composite' | 'decorator';
  /** As Metacontroller sends it: from a typed cache, without apiVersion/kind. */
  body: Json;
  parents: { info: KindInfo; labelSelector?: LabelSelector; annotationSelector?: { matchAnnotations?: Record<string, string>; matchExpressions?: LabelSelector['matchExpressions'] } }[];
  children: KindInfo[];
  hooks: Partial<Record<HookCall['hook'], HookSpec>>;
  generateSelector: boolean;
  finalizer: string;
  resyncPeriodMs?: number;
  nextPeriodicAt?: number;
}

interface RelatedRule {
  apiVersion: string;
  resource: string;
  namespace?: string;
  names?: string[];
  labelSelector?: LabelSelector;
}

interface QueueItem {
  controller: Controller;
  info: KindInfo;
  namespace: string;
  name: string;
}

interface Answer {
  status?: Json | null;
  objects: unknown[];
  labels?: Record<string, string | null>;
  annotations?: Record<string, string | null>;
  resyncAfterSeconds: number;
  finalized: boolean;
}

const DECORATOR_ANNOTATION = 'metacontroller.k8s.io/decorator-controller';
const LAST_APPLIED_ANNOTATION = 'metacontroller.k8s.io/last-applied-configuration';
const CONTROLLER_UID_LABEL = 'controller-uid';
const GC_FINALIZERS = ['foregroundDeletion', 'orphan'];
const CUSTOMIZE_CACHE_MS = 20 * 60_000;
const MAX_BACKOFF_MS = 1000_000;
/** A settle() that needs more syncs than this is a hot loop (a hook whose answer changes on every call). */
const MAX_SYNCS_PER_SETTLE = 200;

// Kinds without a CRD in crds/ that the manifests or hooks may name (kube-api.ts stores them by kind).
const BUILT_IN_KINDS: [apiVersion: string, kind: string, resource: string][] = [
  ['v1', 'Secret', 'secrets'],
  ['v1', 'ConfigMap', 'configmaps'],
  ['v1', 'ServiceAccount', 'serviceaccounts'],
  ['batch/v1', 'Job', 'jobs'],
  ['rbac.authorization.k8s.io/v1', 'Role', 'roles'],
  ['rbac.authorization.k8s.io/v1', 'RoleBinding', 'rolebindings'],
  // talos-operator's, with no CRD here: known by name only
  ['talos.alperen.cloud/v1alpha1', 'TalosControlPlane', 'taloscontrolplanes'],
  ['talos.alperen.cloud/v1alpha1', 'TalosCluster', 'talosclusters'],
];

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const groupOf = (apiVersion: string): string => (apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.lastIndexOf('/')) : '');
/** Metacontroller's map key: Go's GroupVersionKind text, `Kind.group/version` or `Kind.version`. */
const mapKey = (apiVersion: string, kind: string): string => `${kind}.${apiVersion}`;
const ref = (o: KubeObject): string => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));
/** Equality of JSON documents (Go's DeepEqual of decoded JSON: absent and undefined are the same). */
const sameJson = (a: unknown, b: unknown): boolean => isDeepStrictEqual(a === undefined ? undefined : JSON.parse(JSON.stringify(a)), b === undefined ? undefined : JSON.parse(JSON.stringify(b)));

function yamlDocuments(dir: string): Json[] {
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.toJS() as unknown))
    .filter(isObject);
}

/** Go's time.ParseDuration for what manifests use: `10s`, `1m30s`, `500ms`, `1.5h`. */
export function parseGoDuration(text: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) throw new Error(`invalid Go duration ${JSON.stringify(text)}`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0);
}

function matchesSelector(selector: LabelSelector | undefined, labels: Record<string, string> | undefined): boolean {
  const set = labels ?? {};
  if (!selector) return true;
  const labelsOk = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => set[k] === v);
  return (
    labelsOk &&
    (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
      switch (operator) {
        case 'In':
          return key in set && values.includes(set[key]!);
        case 'NotIn':
          return !(key in set) || !values.includes(set[key]!);
        case 'Exists':
          return key in set;
        case 'DoesNotExist':
          return !(key in set);
        default:
          throw new Error(`unknown selector operator ${operator}`);
      }
    })
  );
}

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** ObjectMeta rules every kind shares: name, label keys and values (apimachinery's validation). */
function metadataProblems(object: KubeObject): string[] {
  const problems: string[] = [];
  const { name, labels } = object.metadata;
  if (typeof name !== 'string' || name.length > 253 || !DNS_SUBDOMAIN.test(name)) problems.push(`metadata.name: invalid name ${JSON.stringify(name)}`);
  for (const [key, value] of Object.entries((labels ?? {}) as Record<string, unknown>)) {
    const [prefix, label] = key.includes('/') ? [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)] : [undefined, key];
    if ((prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) || label.length > 63 || !LABEL_NAME.test(label)) problems.push(`metadata.labels: invalid key ${JSON.stringify(key)}`);
    if (typeof value !== 'string' || (value !== '' && (value.length > 63 || !LABEL_NAME.test(value)))) problems.push(`metadata.labels.${key}: invalid value ${JSON.stringify(value)}`);
  }
  return problems;
}

/** Loosely decodes an answer as Go's encoding/json does into Metacontroller's response struct: wrong types fail. */
function decodeAnswer(body: unknown, listField: 'children' | 'attachments', decorator: boolean): Answer {
  if (body === null) body = {}; // JSON null decodes to the zero response (which deletes every child)
  if (!isObject(body)) throw new Error(`can't unmarshal hook response: not a JSON object`);
  const fail = (field: string): never => {
    throw new Error(`can't unmarshal hook response: ${field} has the wrong type: ${JSON.stringify(body[field])}`);
  };
  const { status, resyncAfterSeconds, finalized } = body;
  if (status !== undefined && status !== null && !isObject(status)) fail('status');
  const list = body[listField];
  if (list !== undefined && list !== null && !(Array.isArray(list) && list.every(isObject))) fail(listField);
  if (resyncAfterSeconds !== undefined && resyncAfterSeconds !== null && typeof resyncAfterSeconds !== 'number') fail('resyncAfterSeconds');
  if (finalized !== undefined && finalized !== null && typeof finalized !== 'boolean') fail('finalized');
  const stringMap = (field: 'labels' | 'annotations'): Record<string, string | null> | undefined => {
    const value = body[field];
    if (value === undefined || value === null) return undefined;
    if (!isObject(value) || !Object.values(value).every((v) => v === null || typeof v === 'string')) return fail(field);
    return value as Record<string, string | null>;
  };
  return {
    status: status as Json | null | undefined,
    objects: (list ?? []) as unknown[],
    ...(decorator && { labels: stringMap('labels'), annotations: stringMap('annotations') }),
    resyncAfterSeconds: (resyncAfterSeconds as number | undefined) ?? 0,
    finalized: finalized === true,
  };
}

class TooManyRequests extends Error {
  constructor(readonly afterMs: number) {
    super('too many requests');
  }
}

export async function startMetacontroller(opts: StandInOptions): Promise<MetacontrollerStandIn> {
  const { api, clock } = opts;
  if (opts.hookUrls.length === 0) throw new Error('at least one hook URL is needed');
  const root = packageRoot();

  // ----- kinds: the CRDs of crds/ (with their schemas) and the built-in kinds named above
  const kinds: KindInfo[] = BUILT_IN_KINDS.map(([apiVersion, kind, resource]) => ({ apiVersion, kind, resource, namespaced: true, statusSubresource: kind === 'Job' }));
  for (const crd of yamlDocuments(opts.crdsDir ?? join(root, 'crds'))) {
    const spec = crd.spec as { group: string; scope: string; names: { kind: string; plural: string }; versions: { name: string; served?: boolean; subresources?: { status?: unknown }; schema?: { openAPIV3Schema: Json } }[] };
    for (const v of spec.versions.filter((x) => x.served !== false)) {
      kinds.push({
        apiVersion: `${spec.group}/${v.name}`,
        kind: spec.names.kind,
        resource: spec.names.plural,
        namespaced: spec.scope === 'Namespaced',
        statusSubresource: v.subresources?.status !== undefined,
        ...(v.schema && { schema: v.schema.openAPIV3Schema }),
      });
    }
  }
  const byResource = (apiVersion: string, resource: string): KindInfo => {
    const found = kinds.find((k) => k.apiVersion === apiVersion && k.resource === resource);
    if (!found) throw new Error(`no resource ${resource} in ${apiVersion} (not in crds/ nor among the stand-in's built-in kinds)`);
    return found;
  };
  const byKind = (apiVersion: string, kind: string): KindInfo | undefined => kinds.find((k) => k.apiVersion === apiVersion && k.kind === kind);

  // ----- controllers from the manifests
  const hookSpec = (controller: string, hook: unknown): HookSpec | undefined => {
    if (!isObject(hook)) return undefined;
    if ((hook.version ?? 'v1') !== 'v1') throw new Error(`${controller}: hook version ${String(hook.version)} is not supported by the stand-in (v1 only)`);
    const webhook = (hook.webhook ?? {}) as { url?: string; path?: string; timeout?: string; service?: unknown };
    if (webhook.url === undefined && webhook.service === undefined) throw new Error(`${controller}: a webhook needs url or service`);
    const path = webhook.url !== undefined ? new URL(webhook.url).pathname + new URL(webhook.url).search : (webhook.path ?? '');
    const timeout = webhook.timeout === undefined ? 0 : parseGoDuration(webhook.timeout);
    return { path, timeoutMs: timeout > 0 ? timeout : 10_000 }; // <= 0 means Metacontroller's default, 10s
  };
  const childRule = (controller: string, rule: Json): KindInfo => {
    const method = (rule.updateStrategy as { method?: string } | undefined)?.method ?? 'OnDelete';
    if (method !== 'OnDelete') throw new Error(`${controller}: updateStrategy ${method} is not supported by the stand-in (OnDelete only)`);
    return byResource(rule.apiVersion as string, rule.resource as string);
  };
  const controllers: Controller[] = [];
  for (const manifest of yamlDocuments(opts.manifestsDir ?? join(root, 'metacontroller'))) {
    if (manifest.apiVersion !== 'metacontroller.k8s.io/v1alpha1' || (manifest.kind !== 'CompositeController' && manifest.kind !== 'DecoratorController')) continue;
    const meta = manifest.metadata as { name: string; labels?: Record<string, string> };
    const spec = manifest.spec as Json;
    const composite = manifest.kind === 'CompositeController';
    const hooks = (spec.hooks ?? {}) as Json;
    const rules = (composite ? [spec.parentResource] : (spec.resources as unknown[])) as Json[];
    const controller: Controller = {
      name: meta.name,
      type: composite ? 'composite' : 'decorator',
      body: { metadata: { name: meta.name, uid: `00000000-0000-4000-8000-${String(controllers.length + 1).padStart(12, '0')}`, generation: 1, ...(meta.labels && { labels: meta.labels }) }, spec, status: {} },
      parents: rules.map((r) => ({
        info: byResource(r.apiVersion as string, r.resource as string),
        ...(r.labelSelector !== undefined && { labelSelector: r.labelSelector as LabelSelector }),
        ...(r.annotationSelector !== undefined && { annotationSelector: r.annotationSelector as Controller['parents'][number]['annotationSelector'] }),
      })),
      children: ((composite ? spec.childResources : spec.attachments) as Json[] | undefined ?? []).map((r) => childRule(meta.name, r)),
      hooks: Object.fromEntries((['sync', 'finalize', 'customize'] as const).flatMap((h) => {
        const found = hookSpec(meta.name, hooks[h]);
        return found ? [[h, found]] : [];
      })),
      generateSelector: spec.generateSelector === true,
      finalizer: `metacontroller.io/${composite ? 'compositecontroller' : 'decoratorcontroller'}-${meta.name}`,
      ...(typeof spec.resyncPeriodSeconds === 'number' && { resyncPeriodMs: Math.max(1, spec.resyncPeriodSeconds) * 1000 }),
    };
    // Metacontroller ignores a CompositeController whose parent CRD has no status subresource (a Warning event only).
    if (composite && !controller.parents[0]!.info.statusSubresource) throw new Error(`${meta.name}: the parent CRD has no status subresource; Metacontroller would ignore this CompositeController`);
    if (controller.resyncPeriodMs !== undefined) controller.nextPeriodicAt = clock().getTime() + controller.resyncPeriodMs;
    controllers.push(controller);
  }
  if (controllers.length === 0) throw new Error('no CompositeController or DecoratorController in the manifests');

  // ----- the API server's checks
  const schemaProblems = (info: KindInfo | undefined, object: KubeObject): { object: KubeObject; problems: string[] } => {
    const problems = metadataProblems(object);
    if (!info?.schema) return { object, problems };
    const checked = validateAgainstSchema(info.schema, object);
    return checked.ok ? { object: checked.value as KubeObject, problems } : { object, problems: [...problems, ...checked.problems] };
  };
  const statusProblems = (info: KindInfo, status: unknown): { status: unknown; problems: string[] } => {
    const schema = (info.schema?.properties as Record<string, Json> | undefined)?.status;
    if (!schema) return { status, problems: [] };
    const checked = validateAgainstSchema(schema, status, 'status');
    return checked.ok ? { status: checked.value, problems: [] } : { status, problems: checked.problems };
  };
  /** Writes through kube-api: a new resourceVersion every time (put would keep a given one). */
  const write = (object: KubeObject): KubeObject => {
    const copy = structuredClone(object);
    delete copy.metadata.resourceVersion;
    return api.put(copy);
  };
  const SERVER_FIELDS = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'selfLink'];
  /** A create as the API server does it: checked, defaulted, status dropped (status subresource), generation 1. */
  const create = (info: KindInfo | undefined, desired: KubeObject): KubeObject => {
    const object = structuredClone(desired);
    for (const f of SERVER_FIELDS) delete object.metadata[f];
    if (info?.statusSubresource) delete object.status;
    const checked = schemaProblems(info, object);
    if (checked.problems.length > 0) throw new Error(`the API server would refuse ${ref(object)}: ${checked.problems.join('; ')}`);
    checked.object.metadata.generation = 1;
    return write(checked.object);
  };

  // ----- state
  const calls: HookCall[] = [];
  const errors: string[] = [];
  const items = new Map<string, QueueItem>();
  const ready = new Set<string>(); // FIFO, deduplicated: client-go's workqueue
  const delayed = new Map<string, number>(); // key → due (ms on the simulated clock), the earliest wins
  const failures = new Map<string, number>();
  const customizeCache = new Map<string, { generation: number | undefined; expires: number; rules: RelatedRule[] }>();
  const relatedWatches = new Map<string, { item: QueueItem; rules: RelatedRule[] }>();
  const changes = new Map<string, number>(); // object → change count: stands in for "the cached resourceVersion"
  let urlTurn = 0;
  let stopped = false;

  const objectId = (apiVersion: string, kind: string, namespace: string | undefined, name: string): string => `${groupOf(apiVersion)}|${kind}|${namespace ?? ''}|${name}`;
  const idOf = (o: KubeObject): string => objectId(o.apiVersion, o.kind, o.metadata.namespace, o.metadata.name);
  const keyOf = (item: QueueItem): string => `${item.controller.name}|${item.info.apiVersion}|${item.info.kind}|${item.namespace}|${item.name}`;
  const enqueue = (item: QueueItem, dueAt?: number): void => {
    const key = keyOf(item);
    items.set(key, item);
    if (dueAt === undefined) ready.add(key);
    else if (!delayed.has(key) || dueAt < delayed.get(key)!) delayed.set(key, dueAt);
  };
  // Like Metacontroller, parents are matched by group and kind (any version).
  const parentRule = (c: Controller, apiVersion: string, kind: string) => c.parents.find((p) => p.info.kind === kind && groupOf(p.info.apiVersion) === groupOf(apiVersion));
  const parentItem = (c: Controller, o: KubeObject): QueueItem | undefined => {
    const rule = parentRule(c, o.apiVersion, o.kind);
    return rule && { controller: c, info: rule.info, namespace: o.metadata.namespace ?? '', name: o.metadata.name };
  };
  const finalizersOf = (o: KubeObject): string[] => (Array.isArray(o.metadata.finalizers) ? (o.metadata.finalizers as string[]) : []);
  /** Whether the controller's selectors (labels, and annotations for a decorator) pick this parent. */
  const selected = (c: Controller, o: KubeObject): boolean => {
    const rule = parentRule(c, o.apiVersion, o.kind);
    if (!rule) return false;
    const annotationsOk = !rule.annotationSelector || matchesSelector({ matchLabels: rule.annotationSelector.matchAnnotations, matchExpressions: rule.annotationSelector.matchExpressions } as LabelSelector, o.metadata.annotations as Record<string, string> | undefined);
    return annotationsOk && matchesSelector(rule.labelSelector, o.metadata.labels as Record<string, string> | undefined);
  };
  const controllerRefOf = (o: KubeObject): Json | undefined => ((o.metadata.ownerReferences ?? []) as Json[]).find((r) => r.controller === true);

  // ----- watches: what each change enqueues
  const onChange = (object: KubeObject): void => {
    changes.set(idOf(object), (changes.get(idOf(object)) ?? 0) + 1);
    for (const c of controllers) {
      const own = parentItem(c, object);
      if (own) enqueue(own);
      // An object a parent controls: its parent (if it is still the same object and still ours).
      const owner = controllerRefOf(object);
      if (owner && c.children.some((k) => k.kind === object.kind && groupOf(k.apiVersion) === groupOf(object.apiVersion))) {
        const rule = parentRule(c, owner.apiVersion as string, owner.kind as string);
        const parent = rule && api.get(rule.info.apiVersion, rule.info.kind, object.metadata.namespace ?? '', owner.name as string);
        if (parent && parent.metadata.uid === owner.uid && (selected(c, parent) || finalizersOf(parent).includes(c.finalizer))) enqueue(parentItem(c, parent)!);
      }
    }
    // Parents whose customize answer names this object.
    for (const { item, rules } of relatedWatches.values()) {
      const info = byKind(object.apiVersion, object.kind);
      const matches = rules.some((r) => info && r.apiVersion === info.apiVersion && r.resource === info.resource && (object.metadata.namespace ?? '') === item.namespace && (r.names ? r.names.includes(object.metadata.name) : matchesSelector(r.labelSelector, object.metadata.labels as Record<string, string> | undefined)));
      if (matches) enqueue(item);
    }
  };
  const unsubscribe = api.onChange((event) => onChange(event.object));

  // Metacontroller's informers start with a list: every existing parent is synced once.
  const enqueueAllParents = (c: Controller): void => {
    for (const p of c.parents) for (const o of api.list(p.info.apiVersion, p.info.kind)) enqueue(parentItem(c, o)!);
  };
  for (const c of controllers) enqueueAllParents(c);

  // ----- hook calls
  const callHook = async (c: Controller, hook: HookCall['hook'], item: QueueItem, request: unknown): Promise<unknown> => {
    const spec = c.hooks[hook];
    if (!spec) throw new Error(`${hook} hook not defined`);
    const url = `${opts.hookUrls[urlTurn++ % opts.hookUrls.length]!.replace(/\/$/, '')}${spec.path}`;
    const call: HookCall = { controller: c.name, hook, key: `${item.namespace}/${item.name}`, at: clock(), url, request: structuredClone(request) };
    calls.push(call);
    try {
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request), signal: AbortSignal.timeout(spec.timeoutMs) });
      const text = await response.text();
      if (response.status === 429) {
        throw new TooManyRequests(Number(response.headers.get('retry-after')) * 1000 || 0); // seconds only (an HTTP date means nothing on a simulated clock)
      }
      if (response.status !== 200) throw new Error(`unsupported status code: ${response.status} body: ${text}`);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (err) {
        throw new Error(`can't unmarshal hook response: ${message(err)}`);
      }
      call.response = body;
      return body;
    } catch (err) {
      const reason = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError') ? `Client.Timeout exceeded (${spec.timeoutMs}ms)` : message(err);
      call.error = reason;
      if (err instanceof TooManyRequests) throw err;
      throw new Error(`${hook} hook ${url} failed: ${reason}`);
    }
  };

  /** The customize answer (cached per uid + generation) and the related objects it names, keyed like children. */
  const relatedObjects = async (item: QueueItem, parent: KubeObject): Promise<ObjectMap> => {
    const c = item.controller;
    if (!c.hooks.customize) return {};
    const cacheKey = `${c.name}|${parent.metadata.uid}`;
    const now = clock().getTime();
    let cached = customizeCache.get(cacheKey);
    if (!cached || cached.generation !== parent.metadata.generation || cached.expires <= now) {
      const answer = await callHook(c, 'customize', item, { controller: c.body, parent });
      const rules = isObject(answer) ? answer.relatedResources : undefined;
      if (rules !== undefined && rules !== null && !(Array.isArray(rules) && rules.every(isObject))) throw new Error(`can't unmarshal customize response: relatedResources ${JSON.stringify(rules)}`);
      cached = { generation: parent.metadata.generation as number | undefined, expires: now + CUSTOMIZE_CACHE_MS, rules: (rules ?? []) as unknown as RelatedRule[] };
      customizeCache.set(cacheKey, cached);
    }
    relatedWatches.set(keyOf(item), { item, rules: cached.rules });
    const related: ObjectMap = {};
    for (const rule of cached.rules) {
      const info = byResource(rule.apiVersion, rule.resource);
      if (rule.labelSelector && (rule.namespace || rule.names)) throw new Error(`related rule cannot have both labelSelector and namespace/names: ${JSON.stringify(rule)}`);
      // Hook v1 with a namespaced parent: related objects come from the parent's namespace only.
      if (rule.namespace && rule.namespace !== item.namespace) throw new Error(`requested related object namespace ${rule.namespace} differs from parent object namespace ${item.namespace}`);
      const group = (related[mapKey(info.apiVersion, info.kind)] ??= {});
      for (const o of api.list(info.apiVersion, info.kind, item.namespace)) {
        if (rule.names ? rule.names.includes(o.metadata.name) : matchesSelector(rule.labelSelector, o.metadata.labels as Record<string, string> | undefined)) group[o.metadata.name] = o;
      }
    }
    return related;
  };

  /** Children (Composite) or attachments (Decorator) of a parent: controlled by it (and marked by the decorator), one entry per rule. */
  const observedObjects = (c: Controller, parent: KubeObject, selector: LabelSelector | undefined): ObjectMap => {
    const map: ObjectMap = {};
    for (const info of c.children) {
      const group = (map[mapKey(info.apiVersion, info.kind)] ??= {});
      for (const o of api.list(info.apiVersion, info.kind, parent.metadata.namespace)) {
        if (controllerRefOf(o)?.uid !== parent.metadata.uid) continue;
        if (c.type === 'decorator' && (o.metadata.annotations as Record<string, string> | undefined)?.[DECORATOR_ANNOTATION] !== c.name) continue;
        if (c.type === 'composite' && !matchesSelector(selector, o.metadata.labels as Record<string, string> | undefined)) continue;
        group[o.metadata.name] = o;
      }
    }
    return map;
  };

  /** The answer's objects, checked and completed as Metacontroller does before it manages them. */
  const desiredObjects = (c: Controller, parent: KubeObject, answered: unknown[], selector: LabelSelector | undefined): ObjectMap => {
    const desired: ObjectMap = {};
    const what = c.type === 'composite' ? 'child' : 'attachment';
    for (const raw of answered) {
      const o = structuredClone(raw) as KubeObject;
      if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string' || !isObject(o.metadata) || typeof o.metadata.name !== 'string' || o.metadata.name === '') {
        throw new Error(`desired ${what} without apiVersion, kind or metadata.name: ${JSON.stringify(raw).slice(0, 200)}`);
      }
      o.metadata.namespace ??= parent.metadata.namespace;
      if (!c.children.some((k) => k.apiVersion === o.apiVersion && k.kind === o.kind)) throw new Error(`desired ${what} ${ref(o)} is a ${mapKey(o.apiVersion, o.kind)}, not one of the controller's ${what} resources`);
      if (o.metadata.namespace !== parent.metadata.namespace) throw new Error(`desired ${what} ${ref(o)} is not in the parent's namespace ${parent.metadata.namespace}`);
      if (c.type === 'composite') {
        const labels = (o.metadata.labels ??= {}) as Record<string, string>;
        if (c.generateSelector && !(CONTROLLER_UID_LABEL in labels)) labels[CONTROLLER_UID_LABEL] = parent.metadata.uid!;
        if (!matchesSelector(selector, labels)) throw new Error(`labels on desired child ${ref(o)} don't match parent selector`);
      } else {
        o.metadata.annotations = { ...(o.metadata.annotations as Record<string, string> | undefined), [DECORATOR_ANNOTATION]: c.name };
      }
      const group = (desired[mapKey(o.apiVersion, o.kind)] ??= {});
      if (group[o.metadata.name]) throw new Error(`desired ${what} ${ref(o)} is listed twice`);
      group[o.metadata.name] = o;
    }
    return desired;
  };

  /** common.ManageChildren with OnDelete: delete what is not desired, create what is missing; every failure is collected. */
  const manageChildren = (parent: KubeObject, observed: ObjectMap, desired: ObjectMap): void => {
    const problems: string[] = [];
    for (const [key, group] of Object.entries(observed)) {
      for (const [name, o] of Object.entries(group)) {
        if (o.metadata.deletionTimestamp || desired[key]?.[name]) continue;
        const live = api.get(o.apiVersion, o.kind, o.metadata.namespace ?? '', name);
        if (live?.metadata.uid === o.metadata.uid) api.remove(o.apiVersion, o.kind, o.metadata.namespace ?? '', name); // UID precondition, background propagation
      }
    }
    for (const [key, group] of Object.entries(desired)) {
      for (const [name, o] of Object.entries(group)) {
        if (observed[key]?.[name]) continue; // OnDelete: an existing object is never updated
        if (api.get(o.apiVersion, o.kind, o.metadata.namespace ?? '', name)) continue; // AlreadyExists is swallowed
        const annotations = { ...(o.metadata.annotations as Record<string, string> | undefined) };
        delete annotations[LAST_APPLIED_ANNOTATION];
        const applied = { ...o, metadata: { ...o.metadata, annotations } };
        const child: KubeObject = {
          ...o,
          metadata: {
            ...o.metadata,
            annotations: { ...annotations, [LAST_APPLIED_ANNOTATION]: JSON.stringify(applied) },
            ownerReferences: [
              ...((o.metadata.ownerReferences ?? []) as unknown[]),
              { apiVersion: parent.apiVersion, kind: parent.kind, name: parent.metadata.name, uid: parent.metadata.uid, controller: true, blockOwnerDeletion: true },
            ],
          },
        };
        try {
          create(byKind(o.apiVersion, o.kind), child);
        } catch (err) {
          problems.push(message(err));
        }
      }
    }
    if (problems.length > 0) throw new Error(`can't reconcile children for ${ref(parent)}: ${problems.join('; ')}`);
  };

  /** finalizer.SyncObject: our finalizer on every live parent while a finalize hook exists, and never otherwise. */
  const syncFinalizer = (c: Controller, parent: KubeObject): KubeObject => {
    const enabled = c.hooks.finalize !== undefined;
    const has = finalizersOf(parent).includes(c.finalizer);
    if (has === enabled || (enabled && parent.metadata.deletionTimestamp)) return parent;
    const finalizers = enabled ? [...finalizersOf(parent), c.finalizer] : finalizersOf(parent).filter((f) => f !== c.finalizer);
    return write({ ...parent, metadata: { ...parent.metadata, finalizers } });
  };
  const shouldFinalize = (c: Controller, parent: KubeObject): boolean =>
    c.hooks.finalize !== undefined && finalizersOf(parent).includes(c.finalizer) && !finalizersOf(parent).some((f) => GC_FINALIZERS.includes(f));

  const syncComposite = async (item: QueueItem, parent: KubeObject): Promise<void> => {
    const c = item.controller;
    const selector: LabelSelector | undefined = c.generateSelector ? { matchLabels: { [CONTROLLER_UID_LABEL]: parent.metadata.uid! } } : ((parent.spec as Json | undefined)?.selector as LabelSelector | undefined);
    if (!selector || (Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0)) throw new Error('.spec.selector must have either matchLabels, matchExpressions, or both');
    const children = observedObjects(c, parent, selector);
    const related = await relatedObjects(item, parent);
    const finalizing = c.hooks.finalize !== undefined && (Boolean(parent.metadata.deletionTimestamp) || !selected(c, parent));
    const body = await callHook(c, finalizing ? 'finalize' : 'sync', item, { controller: c.body, parent, children, related, finalizing });
    const answer = decodeAnswer(body, 'children', false);
    if (answer.resyncAfterSeconds > 0) enqueue(item, clock().getTime() + answer.resyncAfterSeconds * 1000);
    if (answer.finalized) {
      const live = api.get(parent.apiVersion, parent.kind, item.namespace, item.name); // atomic: a fresh read
      if (live && finalizersOf(live).includes(c.finalizer)) parent = write({ ...live, metadata: { ...live.metadata, finalizers: finalizersOf(live).filter((f) => f !== c.finalizer) } });
    }
    const desired = desiredObjects(c, parent, answer.objects, selector);
    let manageError: unknown;
    if (!parent.metadata.deletionTimestamp || shouldFinalize(c, parent)) {
      try {
        manageChildren(parent, children, desired);
      } catch (err) {
        manageError = err;
      }
    }
    // The whole status, with observedGeneration, on a fresh read; equal → no write; a parent gone → nothing.
    const status = { ...(answer.status ?? {}), observedGeneration: parent.metadata.generation };
    const live = api.get(parent.apiVersion, parent.kind, item.namespace, item.name);
    if (live) {
      const checked = statusProblems(item.info, status);
      if (checked.problems.length > 0) throw new Error(`can't update status for ${ref(parent)}: ${checked.problems.join('; ')}`);
      if (!sameJson(live.status, checked.status)) write({ ...live, status: checked.status });
    }
    if (manageError) throw manageError;
  };

  const syncDecorator = async (item: QueueItem, parent: KubeObject, readAt: number | undefined): Promise<void> => {
    const c = item.controller;
    const id = idOf(parent);
    const attachments = observedObjects(c, parent, undefined);
    const related = await relatedObjects(item, parent);
    const finalizing = c.hooks.finalize !== undefined && (Boolean(parent.metadata.deletionTimestamp) || !selected(c, parent));
    const body = await callHook(c, finalizing ? 'finalize' : 'sync', item, { controller: c.body, object: parent, attachments, related, finalizing });
    const answer = decodeAnswer(body, 'attachments', true);
    if (answer.resyncAfterSeconds > 0) enqueue(item, clock().getTime() + answer.resyncAfterSeconds * 1000);

    const labels = { ...(parent.metadata.labels as Record<string, string> | undefined) };
    const annotations = { ...(parent.metadata.annotations as Record<string, string> | undefined) };
    const update = (target: Record<string, string>, changes: Record<string, string | null> = {}): boolean => {
      let changed = false;
      for (const [k, v] of Object.entries(changes)) {
        if (v === null ? k in target : target[k] !== v) changed = true;
        if (v === null) delete target[k];
        else target[k] = v;
      }
      return changed;
    };
    const labelsChanged = update(labels, answer.labels);
    const annotationsChanged = update(annotations, answer.annotations);
    const status = answer.status === undefined || answer.status === null ? parent.status : answer.status; // null: unchanged
    const statusChanged = !sameJson(parent.status, status);
    const removeFinalizer = answer.finalized && finalizersOf(parent).includes(c.finalizer);
    if (labelsChanged || annotationsChanged || statusChanged || removeFinalizer) {
      // Both writes carry the resourceVersion read when the sync started: a write since then is a conflict,
      // which Metacontroller swallows, ending the sync (the change that caused it enqueued another one).
      if (changes.get(id) !== readAt) return;
      let live = api.get(parent.apiVersion, parent.kind, item.namespace, item.name);
      if (!live) return;
      if (statusChanged && item.info.statusSubresource) {
        const checked = statusProblems(item.info, status);
        if (checked.problems.length > 0) throw new Error(`can't update status: ${checked.problems.join('; ')}`);
        if (!sameJson(live.status, checked.status)) live = write({ ...live, status: checked.status });
      } else if (statusChanged) {
        live = { ...live, status };
      }
      const finalizers = removeFinalizer ? finalizersOf(live).filter((f) => f !== c.finalizer) : finalizersOf(live);
      // Empty maps and lists are not stored (omitempty), so they must not count as a change either.
      const { labels: _l, annotations: _a, finalizers: _f, ...rest } = live.metadata;
      const next = { ...live, metadata: { ...rest, ...(Object.keys(labels).length > 0 && { labels }), ...(Object.keys(annotations).length > 0 && { annotations }), ...(finalizers.length > 0 && { finalizers }) } };
      const checked = metadataProblems(next);
      if (checked.length > 0) throw new Error(`can't update ${ref(parent)}: ${checked.join('; ')}`);
      if (!sameJson({ ...next, metadata: { ...next.metadata, resourceVersion: undefined } }, { ...live, metadata: { ...live.metadata, resourceVersion: undefined } })) write(next);
    }
    const desired = desiredObjects(c, parent, answer.objects, undefined);
    if (!parent.metadata.deletionTimestamp || shouldFinalize(c, parent)) manageChildren(parent, attachments, desired);
  };

  const syncItem = async (item: QueueItem): Promise<void> => {
    const c = item.controller;
    let parent = api.get(item.info.apiVersion, item.info.kind, item.namespace, item.name);
    if (!parent) {
      // Gone: nothing to do, nothing to remember.
      relatedWatches.delete(keyOf(item));
      return;
    }
    if (!selected(c, parent) && !finalizersOf(parent).includes(c.finalizer)) return;
    parent = syncFinalizer(c, parent); // before anything else, so every later action gets its cleanup
    if (!selected(c, parent) && !finalizersOf(parent).includes(c.finalizer)) return;
    const readAt = changes.get(idOf(parent));
    if (c.type === 'composite') await syncComposite(item, parent);
    else await syncDecorator(item, parent, readAt);
  };

  const process = async (key: string): Promise<void> => {
    const item = items.get(key)!;
    try {
      await syncItem(item);
      failures.delete(key); // queue.Forget
    } catch (err) {
      const now = clock().getTime();
      if (err instanceof TooManyRequests) {
        enqueue(item, now + err.afterMs);
        return;
      }
      errors.push(`${item.controller.name} ${item.info.kind} ${item.namespace}/${item.name}: ${message(err)}`);
      const n = (failures.get(key) ?? 0) + 1;
      failures.set(key, n);
      enqueue(item, now + Math.min(5 * 2 ** (n - 1), MAX_BACKOFF_MS)); // queue.AddRateLimited
    }
  };

  let settling: Promise<void> = Promise.resolve();
  const run = async (): Promise<void> => {
    for (let syncs = 0; !stopped; ) {
      const now = clock().getTime();
      for (const c of controllers) {
        if (c.nextPeriodicAt === undefined || c.resyncPeriodMs === undefined || now < c.nextPeriodicAt) continue;
        enqueueAllParents(c); // informer resync: every parent, every period
        while (c.nextPeriodicAt <= now) c.nextPeriodicAt += c.resyncPeriodMs;
      }
      for (const [key, due] of [...delayed].sort((a, b) => a[1] - b[1])) {
        if (due > now) break;
        delayed.delete(key);
        ready.add(key);
      }
      const next = ready.values().next();
      if (next.done) return;
      ready.delete(next.value);
      if (++syncs > MAX_SYNCS_PER_SETTLE) {
        throw new Error(`settle(): more than ${MAX_SYNCS_PER_SETTLE} syncs at ${clock().toISOString()} (a hook whose answer changes on every call?); last calls: ${JSON.stringify(calls.slice(-4).map((x) => [x.controller, x.hook, x.key]))}`);
      }
      await process(next.value);
    }
  };

  return {
    apply(object) {
      const info = byKind(object.apiVersion, object.kind);
      const namespace = object.metadata.namespace ?? '';
      const existing = api.get(object.apiVersion, object.kind, namespace, object.metadata.name);
      if (!existing) return create(info, object);
      // An update replaces what the user owns; the server keeps identity, finalizers and owners unless given, and
      // (status subresource) the status.
      const next = structuredClone(object);
      for (const f of SERVER_FIELDS) delete next.metadata[f];
      for (const f of ['uid', 'creationTimestamp', 'deletionTimestamp', 'generation']) if (existing.metadata[f] !== undefined) next.metadata[f] = existing.metadata[f];
      for (const f of ['finalizers', 'ownerReferences']) if (next.metadata[f] === undefined && existing.metadata[f] !== undefined) next.metadata[f] = existing.metadata[f];
      if (info?.statusSubresource || next.status === undefined) {
        delete next.status;
        if (existing.status !== undefined) next.status = existing.status;
      }
      const checked = schemaProblems(info, next);
      if (checked.problems.length > 0) throw new Error(`the API server would refuse ${ref(next)}: ${checked.problems.join('; ')}`);
      const result = checked.object;
      // metadata.generation counts changes of everything but metadata and status.
      const specOf = ({ metadata: _m, status: _s, ...rest }: KubeObject) => rest;
      if (!sameJson(specOf(existing), specOf(result))) result.metadata.generation = ((existing.metadata.generation as number | undefined) ?? 0) + 1;
      if (sameJson({ ...result, metadata: { ...result.metadata, resourceVersion: existing.metadata.resourceVersion } }, existing)) return existing;
      return write(result);
    },
    delete(apiVersion, kind, namespace, name) {
      api.remove(apiVersion, kind, namespace, name);
    },
    settle() {
      settling = settling.then(run, run);
      return settling;
    },
    calls,
    errors,
    stop() {
      stopped = true;
      unsubscribe();
      ready.clear();
      delayed.clear();
    },
  };
}
