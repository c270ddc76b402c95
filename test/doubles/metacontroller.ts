// A Metacontroller stand-in for tests, on a REAL Kubernetes API server (test/harness/control-plane.ts), through
// @kubernetes/client-node (its HTTP layer with the KubeConfig's client certificate, and its Watch). It reads the
// project's manifests (metacontroller/*.yaml, or objects given in `manifests`), runs the controllers they declare
// (all, or those named in `controllers`), and drives our hook server over real HTTP the way Metacontroller
// v4.17.2 does with hook version v1 (what it promises and leaves out: test/doubles/README.md), as read in its
// pkg/controller/{composite,decorator,common}, pkg/dynamic/clientset and pkg/hooks:
//
//   Informers: one list/watch per resource (parents, children/attachments, and related resources once a customize
//   answer names them), cluster-wide unless `namespaces` narrows them (a test-isolation aid: Metacontroller always
//   watches every namespace). Watch events reach the cache after `cacheLagMs` (per resource if a function), so
//   hooks can be shown stale objects; event handlers run when the cache is updated, as client-go's do: a parent
//   change enqueues the parent (when it is selected or carries our finalizer), a child change (new
//   resourceVersion) enqueues its controlling parent, a related-object change enqueues every parent whose
//   customize answer names it (calling customize if its answer is not cached).
//   Work queue: client-go's semantics per controller: a key is never processed by two workers at once (a key
//   added while it is processed is processed again afterwards), `workers` workers (default 5) per controller,
//   AddAfter keeps the earliest due time per key, per-key exponential backoff 5 ms·2^n up to 1000 s after a failed
//   sync (Forget after a good one), 429 + Retry-After requeues after that many seconds without an error.
//   Time: hooks get the simulated `clock` (pass the same one to startServer); resyncAfterSeconds, backoff,
//   Retry-After, resyncPeriodSeconds and the customize cache's 20 minutes are due on that clock (checked every
//   `pollMs` of real time and in settle()); webhook timeouts, the client's rate limit and everything the API
//   server stamps (creationTimestamp, deletionTimestamp, Events) are real time.
//   Requests: `controller` (the manifest, without TypeMeta), `parent`/`object` from the cache, `children`/
//   `attachments` keyed `Kind.group/version` (core `Kind.version`) then by name (namespace/name for a cluster-scoped
//   parent), one entry per declared resource even when empty, `related` keyed the same way, `finalizing`; POSTed
//   as JSON to a base URL of `hookUrls` (rotating; a function may return a list that changes when a replica
//   restarts) + the manifest's path, with the manifest's timeout (Go duration, default 10s). Anything but 200,
//   a timeout or invalid JSON fails the sync; answers are decoded loosely (unknown fields ignored, case-sensitive
//   names, wrong types fail).
//   A sync, as syncParentObject does it: parent from the cache (gone: nothing); not selected and without our
//   finalizer: nothing; our finalizer `metacontroller.io/{composite,decorator}controller-<name>` added (finalize
//   hook declared; not while deleting) or removed (no finalize hook) by a fresh GET + Update, retried on conflict;
//   observed children (controllerRef = parent, and the generated/parent selector for a composite, the decorator
//   annotation for a decorator); related objects: customize answer (cached per uid + generation for 20 minutes),
//   then each rule's resource through discovery: a kind the API server does not serve (e.g. no
//   TalosControlPlane CRD) fails the sync AND the finalize before the sync/finalize hook is called (no status, the
//   finalizer stays) until discovery, refreshed at most every `discoveryIntervalMs`, finds it; then the hook
//   (finalize instead of sync while the parent is deleted or no longer selected).
//   Composite answer: resyncAfterSeconds (one-shot), `finalized` removes the finalizer (fresh GET + Update),
//   desired children get the parent's namespace, `controller-uid` (generateSelector) and must match the selector,
//   then children are reconciled (below, unless the parent is deleted without a finalize hook or carries a GC
//   finalizer), then the status: the answer's whole status with observedGeneration injected, on a fresh GET,
//   skipped when equal, retried on conflict, a final conflict/NotFound swallowed; a reconcile error is returned
//   after the status write.
//   Decorator answer: resyncAfterSeconds; labels/annotations (null deletes), status (null = unchanged) and a
//   finalizer removal are written as Metacontroller does: UpdateStatus on a copy of the CACHED object (its
//   resourceVersion), then Update with the resourceVersion UpdateStatus returned; a 409 or 404 on either is
//   swallowed and the sync ends there, before attachments (`applied.conflict`); then the decorator annotation
//   `metacontroller.k8s.io/decorator-controller` on every desired attachment, then attachments are reconciled.
//   Reconciling (common.ManageChildren, OnDelete): observed objects not desired are deleted (UID precondition,
//   background propagation; NotFound swallowed; already deleting: skipped), then missing desired ones are created
//   group by group in GVK order (sorted by group, version, kind, as GetAllGVKs sorts them: for the backup
//   decorator ServiceAccount, Job, Role, RoleBinding) with the last-applied annotation and a controller
//   ownerReference (blockOwnerDeletion); AlreadyExists is swallowed; every other failure (ResourceQuota, RBAC,
//   admission, a terminating namespace, a schema the API server refuses) is collected, the others go on, and the
//   sync fails with it: a Warning Event `SyncError` ("Sync error: ...") on the parent through the API (deduplicated
//   like client-go's correlator: count and lastTimestamp patched; at most 25 per object then 1 per 5 minutes) and
//   a retry with backoff. The hook just sees the object still absent next time.
//   API client: all sync-time requests (GETs, creates, updates, deletes) go through one token bucket of `qps` /
//   `burst` (Metacontroller's --client-go-qps 5 / --client-go-burst 10 by default; Infinity turns it off);
//   informers' lists/watches and discovery through a second one of the same size; Events through their own
//   unlimited client.
//   settle(): returns when nothing is queued or being processed, no delayed sync is due at clock(), no Event or
//   related-object task is in flight, and every informer's cache holds exactly what a fresh LIST returns (same
//   names, same resourceVersions); it fails after `maxSyncsPerSettle` syncs (a hot loop: a hook whose answer
//   changes every call, or a status the API server prunes) or `settleTimeoutMs` of real time.
//   For tests: `calls` (every hook call: request, response, error, and for sync/finalize what applying it did),
//   `syncs` (every sync with its real start/end), `errors`, `events`, `apiRequests`, `pending()` / `fire()` /
//   `enqueue()` to drive time precisely, `apply()`/`delete()` as a user's kubectl (server-side apply), `get()` /
//   `list()` fresh from the API, `stop()` (idempotent; closes every watch).
//
// Deliberately left out (or simplified): hook version v2, update strategies other than OnDelete (refused at
// start), Rolling* revisions and ControllerRevisions, adoption and release of orphans (children are only those a
// parent already controls), ETags, server-side apply as the apply strategy, webhook auth/TLS options, the
// namespace informer and namespaceSelector, leader election, the global 10 qps retry bucket of client-go's
// controller rate limiter, and the "related informer not synced yet" requeue (the first use of a related resource
// waits for its initial list instead). Controller objects are not read from the API (the `controller` field is
// the manifest with made-up metadata). Stricter than Metacontroller: a desired object of an undeclared kind, in
// another namespace, without a name, or listed twice fails the sync. Events cannot be recorded in a terminating
// namespace (the API server refuses them too); they are then only in `events`.

import { readdirSync, readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import {
  HttpMethod,
  RequestContext,
  Watch,
  createConfiguration,
  type HttpLibrary,
  type KubeConfig,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { packageRoot } from '../../src/api/crds.js';
import type { KubernetesObject } from '../../src/server/metacontroller/types.js';
import type { ControlPlane } from '../harness/control-plane.js';

export type KubeObject = KubernetesObject;
type Json = Record<string, unknown>;
/** `Kind.group/version` → canonical `namespace/name` (or `name`) → object. */
type ObjectMap = Record<string, Record<string, KubeObject>>;

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

export type HookName = 'sync' | 'customize' | 'finalize';

/** What applying a sync/finalize answer did. */
export interface Applied {
  /** Objects created, as the API server returned them, in creation order. */
  created: KubeObject[];
  /** Observed objects deleted (as they were in the cache). */
  deleted: KubeObject[];
  /** Creates or deletes the API server refused (their messages). */
  refused: string[];
  /** The parent's status was written (a composite's on a fresh read; a decorator's UpdateStatus). */
  statusWritten: boolean;
  /** A decorator's Update of the parent's metadata (labels, annotations, finalizer removal) went through. */
  parentUpdated: boolean;
  /** Our finalizer was removed (`finalized: true`). */
  finalizerRemoved: boolean;
  /** A decorator write got 409 (stale cache) or 404: dropped, and the sync ended before attachments. */
  conflict: boolean;
  /** The sync failed after the hook answered (invalid answer, refused create, refused status...). */
  error?: string;
}

export interface HookCall {
  /** 1-based, in call order. */
  seq: number;
  controller: string;
  hook: HookName;
  kind: string;
  namespace: string;
  name: string;
  /** namespace/name */
  key: string;
  /** The simulated clock when the call started. */
  at: Date;
  url: string;
  request: unknown;
  response?: unknown;
  error?: string;
  /** sync/finalize calls whose answer was applied (also when applying it failed). */
  applied?: Applied;
  /** Real time (ms since the epoch). */
  startedAt: number;
  finishedAt?: number;
}

export interface SyncRun {
  controller: string;
  kind: string;
  namespace: string;
  name: string;
  /** Real time (ms since the epoch). */
  startedAt: number;
  finishedAt?: number;
  error?: string;
}

export interface RecordedEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  involvedObject: { apiVersion: string; kind: string; namespace: string; name: string; uid: string };
  /** Real time of the last occurrence. */
  at: Date;
  count: number;
  /** The API server refused to store it (e.g. a terminating namespace), or the spam filter dropped it. */
  notStored?: string;
}

export interface ApiRequest {
  method: string;
  path: string;
  /** Real time (ms) at which the request was sent (after the rate limiter let it go). */
  sentAt: number;
  code?: number;
}

export type PendingReason = 'resyncAfter' | 'backoff' | 'retryAfter';

export interface SyncTarget {
  controller: string;
  namespace: string;
  name: string;
  /** Needed only when a decorator decorates several kinds. */
  kind?: string;
}

export interface PendingSync extends Required<SyncTarget> {
  dueAt: Date;
  reason: PendingReason;
}

export interface MetacontrollerOptions {
  /** Metacontroller's identity (e.g. the control plane's admin; a narrower user to test RBAC). */
  kubeConfig: KubeConfig;
  /** Base URLs of hook servers (http://127.0.0.1:PORT); calls rotate through them. A function is asked on every call. */
  hookUrls: readonly string[] | (() => readonly string[]);
  /** The hooks' (simulated) clock; delayed syncs are due on it. */
  clock: () => Date;
  /** Default: <repo>/metacontroller. */
  manifestsDir?: string;
  /** The manifests themselves (instead of reading manifestsDir). */
  manifests?: readonly Json[];
  /** Names of the controllers to run (default: every CompositeController and DecoratorController found). */
  controllers?: readonly string[];
  /** Sync workers per controller (Metacontroller's --workers, default 5). */
  workers?: number;
  /** Client rate limit (--client-go-qps, default 5; Infinity: none) and burst (--client-go-burst, default 10). */
  qps?: number;
  burst?: number;
  /** Delay (real ms) between a watch event's arrival and its cache update; a function gets the resource (plural). Default 0. */
  cacheLagMs?: number | ((resource: string) => number);
  /** Watch only these namespaces (test isolation); default: all. */
  namespaces?: readonly string[];
  /** settle() fails after this many syncs (a hot loop). Default 200. */
  maxSyncsPerSettle?: number;
  /** settle() fails after this much real time. Default 60 s. */
  settleTimeoutMs?: number;
  /** A resource discovery did not find is looked up again at most this often (real ms). Default 0 (every time). */
  discoveryIntervalMs?: number;
  /** How often (real ms) the simulated clock is looked at for due syncs. Default 10. */
  pollMs?: number;
}

export interface MetacontrollerStandIn {
  /** A user's `kubectl apply --server-side --force-conflicts` of a whole object. Throws the API server's refusal. */
  apply(object: KubeObject): Promise<KubeObject>;
  /** A user's `kubectl delete` (background propagation). */
  delete(apiVersion: string, kind: string, namespace: string, name: string): Promise<void>;
  /** Fresh from the API server (not the cache); undefined when not found. */
  get(apiVersion: string, kind: string, namespace: string, name: string): Promise<KubeObject | undefined>;
  /** Fresh from the API server, sorted by namespace and name. */
  list(apiVersion: string, kind: string, namespace?: string): Promise<KubeObject[]>;
  /** An unlimited client with Metacontroller's identity, for tests' own reads and writes. */
  readonly rest: KubeRest;
  settle(): Promise<void>;
  /** Delayed syncs (resyncAfterSeconds, backoff, Retry-After) not yet due, earliest first. */
  pending(): PendingSync[];
  /** When resyncPeriodSeconds next re-enqueues every parent of a controller. */
  nextPeriodicResync(controller: string): Date | undefined;
  /** Makes a delayed sync due now (e.g. a resync firing early); false if none is pending for the target. */
  fire(target: SyncTarget): boolean;
  /** Enqueues a sync as an informer event would. */
  enqueue(target: SyncTarget): void;
  readonly calls: HookCall[];
  readonly syncs: SyncRun[];
  /** Failed syncs: `<controller> <Kind> <namespace>/<name>: <error>`. */
  readonly errors: string[];
  readonly events: RecordedEvent[];
  /** Requests of the rate-limited sync-time client. */
  readonly apiRequests: ApiRequest[];
  stop(): Promise<void>;
}

const DECORATOR_ANNOTATION = 'metacontroller.k8s.io/decorator-controller';
const LAST_APPLIED_ANNOTATION = 'metacontroller.k8s.io/last-applied-configuration';
const CONTROLLER_UID_LABEL = 'controller-uid';
const GC_FINALIZERS = ['foregroundDeletion', 'orphan'];
const CUSTOMIZE_CACHE_MS = 20 * 60_000;
const MAX_BACKOFF_MS = 1000_000;
const EVENT_BURST = 25;
const EVENT_REFILL_MS = 5 * 60_000;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const groupOf = (apiVersion: string): string =>
  apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.lastIndexOf('/')) : '';
const versionOf = (apiVersion: string): string => apiVersion.slice(apiVersion.lastIndexOf('/') + 1);
/** Metacontroller's map key: Go's GroupVersionKind text, `Kind.group/version` or `Kind.version`. */
export const gvkKey = (apiVersion: string, kind: string): string => `${kind}.${apiVersion}`;
const describe = (o: KubeObject): string => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const canonicalName = (o: KubeObject): string =>
  o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
const rfc3339 = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, 'Z');
/** Equality of decoded JSON (Go's reflect.DeepEqual on unstructured content: absent is not `{}`). */
const sameJson = (a: unknown, b: unknown): boolean =>
  isDeepStrictEqual(
    a === undefined ? undefined : JSON.parse(JSON.stringify(a)),
    b === undefined ? undefined : JSON.parse(JSON.stringify(b)),
  );
const finalizersOf = (o: KubeObject): string[] => (Array.isArray(o.metadata.finalizers) ? o.metadata.finalizers : []);

interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}
const controllerRefOf = (o: KubeObject): OwnerReference | undefined =>
  ((o.metadata.ownerReferences ?? []) as OwnerReference[]).find((r) => r.controller === true);

/** JSON with object keys sorted, as Go's encoding/json marshals maps (the last-applied annotation). */
function goJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(goJson).join(',')}]`;
  if (isObject(value)) {
    return `{${Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${goJson(value[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Go's time.ParseDuration for what manifests use: `10s`, `1m30s`, `500ms`, `1.5h`. */
export function parseGoDuration(text: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text)
    throw new Error(`invalid Go duration ${JSON.stringify(text)}`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0);
}

export function matchesSelector(
  selector: LabelSelector | undefined,
  labels: Record<string, string> | undefined,
): boolean {
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

/**
 * The order in which Metacontroller walks the groups of an object map (GetAllGVKs): by group, then version, then
 * kind (byte order). Takes `Kind.group/version` keys.
 */
export function sortGvkKeys(keys: readonly string[]): string[] {
  const parts = (key: string): [string, string, string] => {
    const dot = key.indexOf('.');
    const apiVersion = key.slice(dot + 1);
    return [groupOf(apiVersion), versionOf(apiVersion), key.slice(0, dot)];
  };
  const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  return [...keys].sort((a, b) => {
    const [ga, va, ka] = parts(a);
    const [gb, vb, kb] = parts(b);
    return cmp(ga, gb) || cmp(va, vb) || cmp(ka, kb);
  });
}

function yamlDocuments(dir: string): Json[] {
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.toJS() as unknown))
    .filter(isObject);
}

/** The project's Metacontroller manifests (metacontroller/*.yaml) as objects, e.g. to adjust before passing them as `manifests`. */
export function loadManifests(dir: string = join(packageRoot(), 'metacontroller')): Json[] {
  return yamlDocuments(dir).filter(
    (m) =>
      m.apiVersion === 'metacontroller.k8s.io/v1alpha1' &&
      (m.kind === 'CompositeController' || m.kind === 'DecoratorController'),
  );
}

/** Installs test/fixtures/talos-operator-crds.yaml (TalosControlPlane, TalosCluster) and waits until they are served. */
export async function installTalosOperatorCrds(cp: ControlPlane): Promise<void> {
  const file = join(packageRoot(), 'test', 'fixtures', 'talos-operator-crds.yaml');
  const applied = await cp.kubectl(['apply', '--server-side', '--field-manager=talos-etcd-backup-tests', '-f', file]);
  if (applied.code !== 0) throw new Error(`kubectl apply -f ${file} failed: ${applied.stderr}`);
  const established = await cp.kubectl(['wait', '--for=condition=Established', '--timeout=30s', '-f', file]);
  if (established.code !== 0)
    throw new Error(`the talos-operator fixture CRDs are not Established: ${established.stderr}`);
}

// ================================================================================================ API client

/** client-go's token bucket (x/time/rate): starts full, `qps` tokens a second, at most `burst`. */
export class TokenBucket {
  private tokens: number;
  private last = Date.now();
  constructor(
    readonly qps: number,
    readonly burst: number,
  ) {
    this.tokens = burst;
  }
  async take(): Promise<void> {
    if (!Number.isFinite(this.qps)) return;
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    this.tokens -= 1; // a reservation: later callers wait behind earlier ones
    if (this.tokens < 0) await sleep((-this.tokens / this.qps) * 1000);
  }
}

export class KubeApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly status: unknown,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeApiError && err.code === 404;
export const isConflict = (err: unknown): boolean =>
  err instanceof KubeApiError && err.code === 409 && err.reason !== 'AlreadyExists';
export const isAlreadyExists = (err: unknown): boolean =>
  err instanceof KubeApiError && err.code === 409 && err.reason === 'AlreadyExists';

export interface ResourceInfo {
  apiVersion: string;
  group: string;
  version: string;
  /** The plural, e.g. `jobs`. */
  resource: string;
  kind: string;
  namespaced: boolean;
  subresources: string[];
}

const apiBase = (apiVersion: string): string =>
  apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;

export function resourcePath(info: ResourceInfo, namespace?: string, name?: string, subresource?: string): string {
  let path = apiBase(info.apiVersion);
  if (info.namespaced && namespace) path += `/namespaces/${encodeURIComponent(namespace)}`;
  path += `/${info.resource}`;
  if (name !== undefined) path += `/${encodeURIComponent(name)}`;
  if (subresource) path += `/${subresource}`;
  return path;
}

/**
 * Plain JSON REST calls through client-node's HTTP layer with the KubeConfig's credentials (no typed
 * (de)serialization: objects stay exactly as the API server sends them). One keep-alive connection pool.
 */
export class KubeRest {
  readonly requests: ApiRequest[] = [];
  private readonly http: HttpLibrary = createConfiguration().httpApi;
  private auth: Promise<{ agent: Agent; headers: Record<string, string> }> | undefined;

  constructor(
    readonly kubeConfig: KubeConfig,
    private readonly opts: { limiter?: TokenBucket; record?: boolean; userAgent?: string } = {},
  ) {}

  private credentials(): Promise<{ agent: Agent; headers: Record<string, string> }> {
    this.auth ??= (async () => {
      const options: {
        ca?: unknown;
        cert?: unknown;
        key?: unknown;
        headers?: Record<string, unknown>;
        rejectUnauthorized?: boolean;
      } = {};
      await this.kubeConfig.applyToHTTPSOptions(options as never);
      const agent = new Agent({
        ca: options.ca as string,
        cert: options.cert as string,
        key: options.key as string,
        keepAlive: true,
        ...(options.rejectUnauthorized !== undefined && { rejectUnauthorized: options.rejectUnauthorized }),
      });
      return {
        agent,
        headers: Object.fromEntries(Object.entries(options.headers ?? {}).map(([k, v]) => [k, String(v)])),
      };
    })();
    return this.auth;
  }

  async request<T = Json>(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    o: {
      query?: Record<string, string | number | boolean | undefined>;
      body?: unknown;
      contentType?: string;
      signal?: AbortSignal;
      attempt?: number;
    } = {},
  ): Promise<T> {
    const server = this.kubeConfig.getCurrentCluster()?.server;
    if (!server) throw new Error('the KubeConfig has no current cluster');
    const url = new URL(server + path);
    for (const [k, v] of Object.entries(o.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const { agent, headers } = await this.credentials();
    await this.opts.limiter?.take();
    const ctx = new RequestContext(url.toString(), HttpMethod[method]);
    ctx.setAgent(agent);
    for (const [k, v] of Object.entries(headers)) ctx.setHeaderParam(k, v);
    ctx.setHeaderParam('Accept', 'application/json');
    ctx.setHeaderParam('User-Agent', this.opts.userAgent ?? 'metacontroller-stand-in');
    if (o.body !== undefined) {
      ctx.setHeaderParam('Content-Type', o.contentType ?? 'application/json');
      ctx.setBody(JSON.stringify(o.body));
    }
    if (o.signal) ctx.setSignal(o.signal);
    const record: ApiRequest = { method, path, sentAt: Date.now() };
    if (this.opts.record) this.requests.push(record);
    const response = await this.http.send(ctx).toPromise();
    const text = await response.body.text();
    record.code = response.httpStatusCode;
    // client-go's rest client retries a 429 or 5xx that carries Retry-After (e.g. "storage is (re)initializing"
    // while a new CRD's watch cache starts), up to 10 times.
    const retryAfter = response.headers['retry-after'];
    if (
      (response.httpStatusCode === 429 || response.httpStatusCode >= 500) &&
      retryAfter !== undefined &&
      /^\d+$/.test(retryAfter) &&
      (o.attempt ?? 0) < 10
    ) {
      await sleep(Number(retryAfter) * 1000);
      return this.request<T>(method, path, { ...o, attempt: (o.attempt ?? 0) + 1 });
    }
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = text;
    }
    if (response.httpStatusCode < 200 || response.httpStatusCode >= 300) {
      const status = isObject(body) ? body : {};
      throw new KubeApiError(
        response.httpStatusCode,
        typeof status.reason === 'string' ? status.reason : '',
        typeof status.message === 'string'
          ? status.message
          : `${method} ${path}: HTTP ${response.httpStatusCode}: ${text.slice(0, 300)}`,
        body,
      );
    }
    return body as T;
  }

  async get(info: ResourceInfo, namespace: string | undefined, name: string): Promise<KubeObject> {
    return this.request<KubeObject>('GET', resourcePath(info, namespace, name));
  }
  /** Items get the list's apiVersion and kind (a LIST of built-in kinds omits them), as client-go's unstructured lists do. */
  async list(
    info: ResourceInfo,
    namespace?: string,
    query: Record<string, string | undefined> = {},
  ): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    const list = await this.request<{ items?: KubeObject[]; metadata?: { resourceVersion?: string } }>(
      'GET',
      resourcePath(info, namespace),
      { query },
    );
    const items = (list.items ?? []).map((i) => ({
      ...i,
      apiVersion: i.apiVersion ?? info.apiVersion,
      kind: i.kind ?? info.kind,
    }));
    return { items, resourceVersion: list.metadata?.resourceVersion ?? '' };
  }
  async create(info: ResourceInfo, object: KubeObject): Promise<KubeObject> {
    return this.request<KubeObject>('POST', resourcePath(info, object.metadata.namespace), { body: object });
  }
  async update(info: ResourceInfo, object: KubeObject, subresource?: 'status'): Promise<KubeObject> {
    return this.request<KubeObject>(
      'PUT',
      resourcePath(info, object.metadata.namespace, object.metadata.name, subresource),
      { body: object },
    );
  }
  async mergePatch(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    subresource?: 'status',
  ): Promise<KubeObject> {
    return this.request<KubeObject>('PATCH', resourcePath(info, namespace, name, subresource), {
      body: patch,
      contentType: 'application/merge-patch+json',
    });
  }
  async remove(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    options: { uid?: string; propagationPolicy?: 'Background' | 'Foreground' | 'Orphan' } = {},
  ): Promise<void> {
    await this.request('DELETE', resourcePath(info, namespace, name), {
      body: {
        kind: 'DeleteOptions',
        apiVersion: 'v1',
        ...(options.uid && { preconditions: { uid: options.uid } }),
        ...(options.propagationPolicy && { propagationPolicy: options.propagationPolicy }),
      },
    });
  }
  close(): void {
    void this.auth?.then((a) => a.agent.destroy());
  }
}

/** API discovery (GET /api/v1, /apis/<group>/<version>), looked up again for a miss at most every intervalMs. */
export class Discovery {
  private readonly cache = new Map<string, { at: number; resources: ResourceInfo[] | undefined }>();
  constructor(
    private readonly rest: KubeRest,
    private readonly intervalMs = 0,
  ) {}

  private async fetchGroupVersion(apiVersion: string): Promise<ResourceInfo[] | undefined> {
    let list: { resources?: { name: string; kind: string; namespaced: boolean }[] };
    try {
      list = await this.rest.request('GET', apiBase(apiVersion));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const all = list.resources ?? [];
    return all
      .filter((r) => !r.name.includes('/'))
      .map((r) => ({
        apiVersion,
        group: groupOf(apiVersion),
        version: versionOf(apiVersion),
        resource: r.name,
        kind: r.kind,
        namespaced: r.namespaced,
        subresources: all.filter((s) => s.name.startsWith(`${r.name}/`)).map((s) => s.name.slice(r.name.length + 1)),
      }));
  }

  private async lookup(apiVersion: string, match: (r: ResourceInfo) => boolean): Promise<ResourceInfo | undefined> {
    let entry = this.cache.get(apiVersion);
    if (!entry || (!entry.resources?.some(match) && Date.now() - entry.at >= this.intervalMs)) {
      entry = { at: Date.now(), resources: await this.fetchGroupVersion(apiVersion) };
      this.cache.set(apiVersion, entry);
    }
    return entry.resources?.find(match);
  }

  async resource(apiVersion: string, resource: string): Promise<ResourceInfo> {
    const found = await this.lookup(apiVersion, (r) => r.resource === resource);
    if (!found) throw new Error(`discovery: can't find resource ${resource} in apiVersion ${apiVersion}`);
    return found;
  }

  async kind(apiVersion: string, kind: string): Promise<ResourceInfo> {
    const found = await this.lookup(apiVersion, (r) => r.kind === kind);
    if (!found) throw new Error(`discovery: can't find kind ${kind} in apiVersion ${apiVersion}`);
    return found;
  }
}

// ================================================================================================ informers

interface Handler {
  add?(object: KubeObject): void;
  update?(old: KubeObject, current: KubeObject): void;
  delete?(object: KubeObject): void;
}

interface WatchSource {
  namespace: string | undefined;
  resourceVersion: string;
  abort?: AbortController;
  expired: boolean;
}

const storeKey = (namespace: string | undefined, name: string): string => `${namespace ?? ''}/${name}`;

/** A list/watch cache of one resource (client-go's reflector + store), with an optional delay on watch events. */
class Informer {
  private readonly store = new Map<string, KubeObject>();
  private readonly handlers: Handler[] = [];
  private readonly sources: WatchSource[];
  private readonly lagged: { dueAt: number; type: string; object: KubeObject }[] = [];
  private lagTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private started: Promise<void> | undefined;

  constructor(
    readonly info: ResourceInfo,
    private readonly listRest: KubeRest,
    private readonly freshRest: KubeRest,
    private readonly lagMs: number,
    namespaces: readonly string[] | undefined,
    private readonly hooks: { activity(): void; error(text: string): void },
  ) {
    this.sources =
      info.namespaced && namespaces
        ? namespaces.map((namespace) => ({ namespace, resourceVersion: '', expired: false }))
        : [{ namespace: undefined, resourceVersion: '', expired: false }];
  }

  addHandler(handler: Handler): void {
    this.handlers.push(handler);
    for (const o of this.store.values()) this.call(() => handler.add?.(o)); // a late handler sees the cache as adds
  }

  get(namespace: string | undefined, name: string): KubeObject | undefined {
    const o = this.store.get(storeKey(this.info.namespaced ? namespace : undefined, name));
    return o && structuredClone(o);
  }

  /** Cached objects (no copies: callers must not modify them), in one namespace or all. */
  list(namespace?: string): KubeObject[] {
    const all = [...this.store.values()];
    return namespace === undefined || !this.info.namespaced
      ? all
      : all.filter((o) => o.metadata.namespace === namespace);
  }

  start(): Promise<void> {
    this.started ??= (async () => {
      for (const source of this.sources) await this.relist(source);
      for (const source of this.sources) void this.watchLoop(source);
    })();
    return this.started;
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.hooks.error(`${this.info.resource} event handler: ${message(err)}`);
    }
  }

  private apply(type: string, object: KubeObject): void {
    const key = storeKey(object.metadata.namespace, object.metadata.name);
    const old = this.store.get(key);
    if (type === 'DELETED') {
      this.store.delete(key);
      for (const h of this.handlers) this.call(() => h.delete?.(object));
    } else {
      this.store.set(key, object);
      for (const h of this.handlers) this.call(() => (old ? h.update?.(old, object) : h.add?.(object)));
    }
    this.hooks.activity();
  }

  private inScope(source: WatchSource, o: KubeObject): boolean {
    return source.namespace === undefined || o.metadata.namespace === source.namespace;
  }

  /** LIST and replace the source's part of the cache (client-go's Replace: deletes, updates, adds). */
  private async relist(source: WatchSource): Promise<void> {
    const { items, resourceVersion } = await this.listRest.list(this.info, source.namespace);
    const fresh = new Map(items.map((o) => [storeKey(o.metadata.namespace, o.metadata.name), o]));
    for (const [key, o] of [...this.store]) if (this.inScope(source, o) && !fresh.has(key)) this.apply('DELETED', o);
    for (const [key, o] of fresh)
      if (this.store.get(key)?.metadata.resourceVersion !== o.metadata.resourceVersion) this.apply('ADDED', o);
    source.resourceVersion = resourceVersion;
  }

  private async watchLoop(source: WatchSource): Promise<void> {
    const watch = new Watch(this.listRest.kubeConfig);
    while (!this.stopped) {
      try {
        if (source.expired) {
          source.expired = false;
          await this.relist(source);
        }
        const ended = new Promise<unknown>((resolve) => {
          watch
            .watch(
              resourcePath(this.info, source.namespace),
              { resourceVersion: source.resourceVersion, allowWatchBookmarks: true },
              (type: string, object: unknown) => this.onWatchEvent(source, type, object),
              resolve,
            )
            .then((abort) => {
              source.abort = abort;
              if (this.stopped) abort.abort();
            }, resolve);
        });
        const err = await ended;
        if (!this.stopped && err && !source.expired) await sleep(200); // connection trouble: try again shortly
      } catch (err) {
        if (this.stopped) return;
        this.hooks.error(`${this.info.resource} watch: ${message(err)}`);
        await sleep(200);
      }
    }
  }

  private onWatchEvent(source: WatchSource, type: string, object: unknown): void {
    if (this.stopped || !isObject(object)) return;
    if (type === 'ERROR') {
      // 410 Gone: the resourceVersion is too old; list again (a new watch starts from the new list).
      source.expired = true;
      source.abort?.abort();
      return;
    }
    const meta = object.metadata as { resourceVersion?: string } | undefined;
    if (meta?.resourceVersion) source.resourceVersion = meta.resourceVersion;
    if (type === 'BOOKMARK') return;
    const o = object as unknown as KubeObject;
    o.apiVersion ??= this.info.apiVersion;
    o.kind ??= this.info.kind;
    if (this.lagMs <= 0) {
      this.apply(type, o);
      return;
    }
    this.lagged.push({ dueAt: Date.now() + this.lagMs, type, object: o });
    this.hooks.activity();
    this.scheduleLagged();
  }

  private scheduleLagged(): void {
    if (this.lagTimer || this.stopped) return;
    const head = this.lagged[0];
    if (!head) return;
    // One event per turn of the event loop: what its handlers enqueue reads the cache before the next event lands.
    this.lagTimer = setTimeout(
      () => {
        this.lagTimer = undefined;
        const next = this.lagged[0];
        if (next && next.dueAt <= Date.now()) {
          this.lagged.shift();
          this.apply(next.type, next.object);
        }
        this.scheduleLagged();
      },
      Math.max(0, head.dueAt - Date.now()),
    );
  }

  /** The cache holds exactly what a fresh LIST returns (names and resourceVersions), and no event waits for its lag. */
  async caughtUp(): Promise<boolean> {
    if (this.lagged.length > 0) return false;
    for (const source of this.sources) {
      const { items } = await this.freshRest.list(this.info, source.namespace);
      const cached = [...this.store.values()].filter((o) => this.inScope(source, o));
      if (cached.length !== items.length) return false;
      for (const o of items)
        if (
          this.store.get(storeKey(o.metadata.namespace, o.metadata.name))?.metadata.resourceVersion !==
          o.metadata.resourceVersion
        )
          return false;
    }
    return this.lagged.length === 0;
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.sources) s.abort?.abort();
    if (this.lagTimer) clearTimeout(this.lagTimer);
    this.lagged.length = 0;
  }
}

// ================================================================================================ work queue

/** client-go's rate-limiting work queue, with delays on the simulated clock. */
class WorkQueue {
  private readonly items: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  readonly waiting = new Map<string, { dueAt: number; reason: PendingReason }>();
  private readonly failures = new Map<string, number>();
  private readonly getters: ((key: string | undefined) => void)[] = [];
  private shut = false;

  constructor(private readonly activity: () => void) {}

  private hand(key: string): void {
    const getter = this.getters.shift();
    if (getter) {
      this.processing.add(key);
      this.dirty.delete(key);
      getter(key);
    } else {
      this.items.push(key);
    }
  }

  add(key: string): void {
    if (this.shut || this.dirty.has(key)) return;
    this.dirty.add(key);
    this.activity();
    if (!this.processing.has(key)) this.hand(key);
  }

  /** AddAfter: a key already waiting keeps the earlier of the two times. */
  addAfter(key: string, dueAt: number, reason: PendingReason, now: number): void {
    if (this.shut) return;
    if (dueAt <= now) {
      this.add(key);
      return;
    }
    const existing = this.waiting.get(key);
    if (!existing || dueAt < existing.dueAt) this.waiting.set(key, { dueAt, reason });
    this.activity();
  }

  /** ItemExponentialFailureRateLimiter: 5 ms·2^n, at most 1000 s. */
  backoffMs(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    return Math.min(5 * 2 ** n, MAX_BACKOFF_MS);
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  promote(now: number): void {
    for (const [key, w] of [...this.waiting]) {
      if (w.dueAt > now) continue;
      this.waiting.delete(key);
      this.add(key);
    }
  }

  fire(key: string): boolean {
    if (!this.waiting.delete(key)) return false;
    this.add(key);
    return true;
  }

  get(): Promise<string | undefined> {
    if (this.shut) return Promise.resolve(undefined);
    const key = this.items.shift();
    if (key !== undefined) {
      this.processing.add(key);
      this.dirty.delete(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.getters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shut) this.hand(key); // added while it was processed: again
    this.activity();
  }

  busy(): boolean {
    return this.items.length > 0 || this.processing.size > 0;
  }

  shutDown(): void {
    this.shut = true;
    for (const g of this.getters.splice(0)) g(undefined);
  }
}

// ================================================================================================ controllers

interface HookSpec {
  path: string;
  timeoutMs: number;
}

interface ParentRule {
  info: ResourceInfo;
  labelSelector?: LabelSelector;
  annotationSelector?: {
    matchAnnotations?: Record<string, string>;
    matchExpressions?: LabelSelector['matchExpressions'];
  };
  ignoreStatusChanges: boolean;
}

interface Controller {
  name: string;
  type: 'composite' | 'decorator';
  /** As Metacontroller sends it: from a typed cache, without apiVersion/kind. */
  body: Json;
  parents: ParentRule[];
  children: ResourceInfo[];
  hooks: Partial<Record<HookName, HookSpec>>;
  generateSelector: boolean;
  finalizer: string;
  resyncPeriodMs?: number;
  nextPeriodicAt?: number;
  queue: WorkQueue;
}

interface RelatedRule {
  apiVersion: string;
  resource: string;
  namespace?: string;
  names?: string[];
  labelSelector?: LabelSelector;
  namespaceSelector?: unknown;
}

interface Answer {
  status?: Json | null;
  objects: unknown[];
  labels?: Record<string, string | null>;
  annotations?: Record<string, string | null>;
  resyncAfterSeconds: number;
  finalized: boolean;
}

/** Loosely decodes an answer as Metacontroller (v1, loose mode) does into its response struct: wrong types fail. */
function decodeAnswer(
  body: unknown,
  listField: 'children' | 'attachments',
  hook: HookName,
  decorator: boolean,
): Answer {
  if (body === null) body = {}; // JSON null decodes to the zero response (which deletes every child)
  const fail = (why: string): never => {
    throw new Error(`can't unmarshal webhookResponse (version: v1, type: ${hook}): ${why}`);
  };
  if (!isObject(body)) return fail('not a JSON object');
  const wrong = (field: string): never => fail(`${field} has the wrong type: ${JSON.stringify(body[field])}`);
  const { status, resyncAfterSeconds, finalized } = body;
  if (status !== undefined && status !== null && !isObject(status)) wrong('status');
  const list = body[listField];
  if (list !== undefined && list !== null && !(Array.isArray(list) && list.every((o) => o === null || isObject(o))))
    wrong(listField);
  if (resyncAfterSeconds !== undefined && resyncAfterSeconds !== null && typeof resyncAfterSeconds !== 'number')
    wrong('resyncAfterSeconds');
  if (finalized !== undefined && finalized !== null && typeof finalized !== 'boolean') wrong('finalized');
  const stringMap = (field: 'labels' | 'annotations'): Record<string, string | null> | undefined => {
    const value = body[field];
    if (value === undefined || value === null) return undefined;
    if (!isObject(value) || !Object.values(value).every((v) => v === null || typeof v === 'string'))
      return wrong(field);
    return value as Record<string, string | null>;
  };
  return {
    status: status as Json | null | undefined,
    objects: ((list ?? []) as unknown[]).filter((o) => o !== null),
    ...(decorator && { labels: stringMap('labels'), annotations: stringMap('annotations') }),
    resyncAfterSeconds: (resyncAfterSeconds as number | null | undefined) ?? 0,
    finalized: finalized === true,
  };
}

class TooManyRequests extends Error {
  constructor(readonly afterMs: number) {
    super('too many requests');
  }
}

interface SyncContext {
  parent?: KubeObject;
  call?: HookCall;
}

export async function startMetacontroller(opts: MetacontrollerOptions): Promise<MetacontrollerStandIn> {
  const { clock } = opts;
  const workers = opts.workers ?? 5;
  const qps = opts.qps ?? 5;
  const burst = opts.burst ?? 10;
  const maxSyncs = opts.maxSyncsPerSettle ?? 200;
  const settleTimeoutMs = opts.settleTimeoutMs ?? 60_000;
  const hookUrls = (): readonly string[] => (typeof opts.hookUrls === 'function' ? opts.hookUrls() : opts.hookUrls);
  const lagFor = (resource: string): number =>
    typeof opts.cacheLagMs === 'function' ? opts.cacheLagMs(resource) : (opts.cacheLagMs ?? 0);

  // Clients: sync-time requests (rate-limited, recorded), informers and discovery (rate-limited), Events, and an
  // unlimited one for settle()'s checks and the tests' own reads and writes.
  const client = new KubeRest(opts.kubeConfig, {
    limiter: new TokenBucket(qps, burst),
    record: true,
    userAgent: 'metacontroller',
  });
  const informerClient = new KubeRest(opts.kubeConfig, {
    limiter: new TokenBucket(qps, burst),
    userAgent: 'metacontroller',
  });
  const eventClient = new KubeRest(opts.kubeConfig, { userAgent: 'metacontroller' });
  const fresh = new KubeRest(opts.kubeConfig, { userAgent: 'kubectl' });
  const discovery = new Discovery(informerClient, opts.discoveryIntervalMs ?? 0);
  const userDiscovery = new Discovery(fresh, 0);

  // ----- state
  const calls: HookCall[] = [];
  const syncRuns: SyncRun[] = [];
  const errors: string[] = [];
  const events: RecordedEvent[] = [];
  const informers = new Map<string, Informer>();
  const tasks = new Set<Promise<unknown>>();
  const customizeCache = new Map<string, { expires: number; rules: RelatedRule[] }>();
  const relatedRegistrations = new Set<string>();
  const eventKeys = new Map<string, { entry: RecordedEvent; written: Promise<string | undefined> }>();
  const eventBuckets = new Map<string, { tokens: number; last: number }>();
  const idleWaiters: (() => void)[] = [];
  let activityCount = 0;
  let syncCount = 0;
  let running = 0;
  let urlTurn = 0;
  let stopped = false;
  let stopping: Promise<void> | undefined;

  const activity = (): void => {
    activityCount += 1;
    for (const w of idleWaiters.splice(0)) w();
  };
  const track = <T>(p: Promise<T>): Promise<T> => {
    tasks.add(p);
    activity();
    void p.then(
      () => {
        tasks.delete(p);
        activity();
      },
      () => {
        tasks.delete(p);
        activity();
      },
    );
    return p;
  };
  const internalError = (text: string): void => {
    if (!stopped) errors.push(`stand-in: ${text}`);
  };

  const informerFor = (info: ResourceInfo): Informer => {
    const key = `${info.apiVersion}|${info.resource}`;
    let informer = informers.get(key);
    if (!informer) {
      informer = new Informer(info, informerClient, fresh, lagFor(info.resource), opts.namespaces, {
        activity,
        error: internalError,
      });
      informers.set(key, informer);
    }
    return informer;
  };

  // ----- controllers from the manifests
  const manifests = opts.manifests ?? loadManifests(opts.manifestsDir);
  const hookSpec = (controller: string, hook: unknown): HookSpec | undefined => {
    if (!isObject(hook)) return undefined;
    if ((hook.version ?? 'v1') !== 'v1')
      throw new Error(`${controller}: hook version ${String(hook.version)} is not supported by the stand-in (v1 only)`);
    const webhook = (hook.webhook ?? {}) as { url?: string; path?: string; timeout?: string; service?: unknown };
    if (webhook.url === undefined && webhook.service === undefined)
      throw new Error(`${controller}: a webhook needs url or service`);
    const path =
      webhook.url !== undefined ? new URL(webhook.url).pathname + new URL(webhook.url).search : (webhook.path ?? '');
    const timeout = webhook.timeout === undefined ? 0 : parseGoDuration(webhook.timeout);
    return { path, timeoutMs: timeout > 0 ? timeout : 10_000 }; // <= 0 means Metacontroller's default, 10s
  };
  const closeClients = (): void => {
    for (const r of [client, informerClient, eventClient, fresh]) r.close();
  };
  const wanted = opts.controllers && new Set(opts.controllers);
  const controllers: Controller[] = [];
  try {
    for (const manifest of manifests) {
      const meta = manifest.metadata as { name: string; labels?: Record<string, string> };
      if (wanted && !wanted.has(meta.name)) continue;
      const spec = manifest.spec as Json;
      const composite = manifest.kind === 'CompositeController';
      const hooks = (spec.hooks ?? {}) as Json;
      const rules = (composite ? [spec.parentResource] : (spec.resources as unknown[])) as Json[];
      const childRules = ((composite ? spec.childResources : spec.attachments) as Json[] | undefined) ?? [];
      for (const rule of childRules) {
        const method = (rule.updateStrategy as { method?: string } | undefined)?.method ?? 'OnDelete';
        if (method !== 'OnDelete')
          throw new Error(`${meta.name}: updateStrategy ${method} is not supported by the stand-in (OnDelete only)`);
      }
      const controller: Controller = {
        name: meta.name,
        type: composite ? 'composite' : 'decorator',
        body: {
          metadata: {
            name: meta.name,
            uid: `00000000-0000-4000-8000-${String(controllers.length + 1).padStart(12, '0')}`,
            generation: 1,
            ...(meta.labels && { labels: meta.labels }),
          },
          spec,
          status: {},
        },
        parents: await Promise.all(
          rules.map(async (r) => ({
            info: await discovery.resource(r.apiVersion as string, r.resource as string),
            ...(r.labelSelector !== undefined && { labelSelector: r.labelSelector as LabelSelector }),
            ...(r.annotationSelector !== undefined && {
              annotationSelector: r.annotationSelector as ParentRule['annotationSelector'],
            }),
            ignoreStatusChanges: r.ignoreStatusChanges === true,
          })),
        ),
        children: await Promise.all(
          childRules.map((r) => discovery.resource(r.apiVersion as string, r.resource as string)),
        ),
        hooks: Object.fromEntries(
          (['sync', 'finalize', 'customize'] as const).flatMap((h) => {
            const found = hookSpec(meta.name, hooks[h]);
            return found ? [[h, found]] : [];
          }),
        ),
        generateSelector: spec.generateSelector === true,
        finalizer: `metacontroller.io/${composite ? 'compositecontroller' : 'decoratorcontroller'}-${meta.name}`,
        ...(typeof spec.resyncPeriodSeconds === 'number' && {
          resyncPeriodMs: Math.max(1, spec.resyncPeriodSeconds) * 1000,
        }),
        queue: new WorkQueue(activity),
      };
      // Metacontroller ignores a CompositeController whose parent CRD has no status subresource (a Warning event only).
      if (composite && !controller.parents[0]!.info.subresources.includes('status'))
        throw new Error(
          `${meta.name}: the parent resource has no status subresource; Metacontroller would ignore this CompositeController`,
        );
      if (!controller.hooks.sync) throw new Error(`${meta.name}: no sync hook`);
      if (controller.resyncPeriodMs !== undefined)
        controller.nextPeriodicAt = clock().getTime() + controller.resyncPeriodMs;
      controllers.push(controller);
    }
    for (const name of wanted ?? [])
      if (!controllers.some((c) => c.name === name)) throw new Error(`no controller named ${name} in the manifests`);
    if (controllers.length === 0) throw new Error('no CompositeController or DecoratorController to run');
  } catch (err) {
    closeClients();
    throw err;
  }
  const controllerNamed = (name: string): Controller => {
    const found = controllers.find((c) => c.name === name);
    if (!found) throw new Error(`no controller ${name}`);
    return found;
  };

  // ----- keys, selection, enqueueing
  const keyOf = (kind: string, apiVersion: string, namespace: string, name: string): string =>
    `${apiVersion}:${kind}:${namespace}:${name}`;
  const parseKey = (key: string): { apiVersion: string; kind: string; namespace: string; name: string } => {
    const [apiVersion = '', kind = '', namespace = '', ...rest] = key.split(':');
    return { apiVersion, kind, namespace, name: rest.join(':') };
  };
  // Like Metacontroller, parents are matched by group and kind (any version).
  const parentRule = (c: Controller, apiVersion: string, kind: string): ParentRule | undefined =>
    c.parents.find((p) => p.info.kind === kind && p.info.group === groupOf(apiVersion));
  const selected = (c: Controller, o: KubeObject): boolean => {
    const rule = parentRule(c, o.apiVersion, o.kind);
    if (!rule) return false;
    const annotationsOk =
      !rule.annotationSelector ||
      matchesSelector(
        {
          ...(rule.annotationSelector.matchAnnotations && { matchLabels: rule.annotationSelector.matchAnnotations }),
          ...(rule.annotationSelector.matchExpressions && {
            matchExpressions: rule.annotationSelector.matchExpressions,
          }),
        },
        o.metadata.annotations,
      );
    return annotationsOk && matchesSelector(rule.labelSelector, o.metadata.labels);
  };
  const cares = (c: Controller, o: KubeObject): boolean => selected(c, o) || finalizersOf(o).includes(c.finalizer);
  const enqueueParent = (c: Controller, o: KubeObject): void => {
    const rule = parentRule(c, o.apiVersion, o.kind);
    if (!rule || !cares(c, o)) return;
    c.queue.add(keyOf(rule.info.kind, rule.info.apiVersion, o.metadata.namespace ?? '', o.metadata.name));
  };
  /** The cached parent a controllerRef points at, if it is ours (same uid, selected or with our finalizer). */
  const resolveControllerRef = (
    c: Controller,
    childNamespace: string | undefined,
    ref: OwnerReference,
  ): KubeObject | undefined => {
    const rule = parentRule(c, ref.apiVersion, ref.kind);
    if (!rule) return undefined;
    const parent = informerFor(rule.info).get(rule.info.namespaced ? childNamespace : undefined, ref.name);
    if (!parent || parent.metadata.uid !== ref.uid || !cares(c, parent)) return undefined;
    return parent;
  };

  // ----- informer event handlers (what each change enqueues)
  for (const c of controllers) {
    for (const rule of c.parents) {
      informerFor(rule.info).addHandler({
        add: (o) => enqueueParent(c, o),
        update: (old, cur) => {
          if (
            rule.ignoreStatusChanges &&
            old.metadata.generation === cur.metadata.generation &&
            sameJson(old.metadata.labels, cur.metadata.labels) &&
            sameJson(old.metadata.annotations, cur.metadata.annotations) &&
            !cur.metadata.deletionTimestamp
          )
            return;
          enqueueParent(c, cur);
        },
        delete: (o) => enqueueParent(c, o),
      });
    }
    for (const info of c.children) {
      const onChild = (child: KubeObject): void => {
        const ref = controllerRefOf(child);
        if (!ref) return; // orphans: adoption is not implemented
        const parent = resolveControllerRef(c, child.metadata.namespace, ref);
        if (parent) enqueueParent(c, parent);
      };
      informerFor(info).addHandler({
        add: onChild,
        update: (old, cur) => {
          if (old.metadata.resourceVersion !== cur.metadata.resourceVersion) onChild(cur);
        },
        delete: onChild,
      });
    }
  }

  // ----- hook calls
  const callHook = async (
    c: Controller,
    hook: HookName,
    target: { kind: string; namespace: string; name: string },
    request: unknown,
  ): Promise<{ body: unknown; call: HookCall }> => {
    const spec = c.hooks[hook];
    if (!spec) throw new Error(`${hook} hook not defined`);
    const urls = hookUrls();
    if (urls.length === 0) throw new Error('no hook URL');
    const url = `${urls[urlTurn++ % urls.length]!.replace(/\/$/, '')}${spec.path}`;
    const call: HookCall = {
      seq: calls.length + 1,
      controller: c.name,
      hook,
      kind: target.kind,
      namespace: target.namespace,
      name: target.name,
      key: `${target.namespace}/${target.name}`,
      at: clock(),
      url,
      request: structuredClone(request),
      startedAt: Date.now(),
    };
    calls.push(call);
    const fail = (reason: string): never => {
      call.error = reason;
      call.finishedAt = Date.now();
      throw new Error(reason);
    };
    let status: number;
    let text: string;
    let retryAfter: string | null;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(request),
        signal: AbortSignal.timeout(spec.timeoutMs),
      });
      status = response.status;
      retryAfter = response.headers.get('retry-after');
      text = await response.text();
    } catch (err) {
      const timeout = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
      return fail(
        `http error: Post "${url}": ${timeout ? `context deadline exceeded (Client.Timeout exceeded while awaiting headers; timeout ${spec.timeoutMs}ms)` : message(err)}`,
      );
    }
    if (status === 429) {
      // Integer seconds, or an HTTP date (counted from real now, then applied on the simulated clock).
      const seconds =
        retryAfter === null
          ? 0
          : /^\d+$/.test(retryAfter.trim())
            ? Number(retryAfter)
            : Math.max(0, Math.ceil((Date.parse(retryAfter) - Date.now()) / 1000)) || 0;
      call.error = `too many requests (Retry-After: ${retryAfter ?? ''})`;
      call.finishedAt = Date.now();
      throw new TooManyRequests(seconds * 1000);
    }
    if (status !== 200) return fail(`unsupported status code: ${status} body: ${text}`);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      return fail(`can't unmarshal webhookResponse (version: v1, type: ${hook}): ${message(err)}`);
    }
    call.response = body;
    call.finishedAt = Date.now();
    return { body, call };
  };

  // ----- customize and related objects
  const customizeRules = async (c: Controller, parent: KubeObject): Promise<RelatedRule[]> => {
    const cacheKey = `${c.name}|${parent.metadata.uid}|${parent.metadata.generation}`;
    const now = clock().getTime();
    const cached = customizeCache.get(cacheKey);
    if (cached && cached.expires > now) return cached.rules;
    const { body } = await callHook(
      c,
      'customize',
      { kind: parent.kind, namespace: parent.metadata.namespace ?? '', name: parent.metadata.name },
      { controller: c.body, parent },
    );
    const rules = isObject(body) ? body.relatedResources : body === null ? undefined : 'invalid';
    if (rules !== undefined && rules !== null && !(Array.isArray(rules) && rules.every(isObject)))
      throw new Error(
        `can't unmarshal webhookResponse (version: v1, type: customize): relatedResources ${JSON.stringify(rules)}`,
      );
    const result = ((rules ?? []) as unknown as RelatedRule[]).map((r) => structuredClone(r));
    customizeCache.set(cacheKey, { expires: now + CUSTOMIZE_CACHE_MS, rules: result });
    return result;
  };

  type Selection = 'labels' | 'namespaceAndLabels' | 'namespaceSelector' | 'namespaceAndNames';
  const selectionOf = (rule: RelatedRule): Selection => {
    const hasNames = (rule.names?.length ?? 0) > 0;
    if (hasNames && (rule.labelSelector || rule.namespaceSelector))
      throw new Error(
        `related rule cannot have both names and labelSelector/namespaceSelector specified: ${JSON.stringify(rule)}`,
      );
    if (rule.namespace && rule.namespaceSelector)
      throw new Error(
        `related rule cannot have both namespace and namespaceSelector specified: ${JSON.stringify(rule)}`,
      );
    if (rule.namespaceSelector) return 'namespaceSelector';
    if (rule.labelSelector && rule.namespace) return 'namespaceAndLabels';
    if (rule.namespace || hasNames) return 'namespaceAndNames';
    return 'labels';
  };
  /** Whether a related object is named by a rule (hook v1 semantics; a namespaced parent sees its own namespace only). */
  const relatedMatches = (
    parent: KubeObject,
    parentNamespaced: boolean,
    info: ResourceInfo,
    rule: RelatedRule,
    o: KubeObject,
  ): boolean => {
    if (o.apiVersion !== rule.apiVersion || o.kind !== info.kind) return false;
    const ownNamespace = !parentNamespaced || !info.namespaced || o.metadata.namespace === parent.metadata.namespace;
    switch (selectionOf(rule)) {
      case 'labels':
        return ownNamespace && matchesSelector(rule.labelSelector, o.metadata.labels);
      case 'namespaceAndLabels':
        return (
          ownNamespace &&
          (!info.namespaced || o.metadata.namespace === rule.namespace) &&
          matchesSelector(rule.labelSelector, o.metadata.labels)
        );
      case 'namespaceAndNames':
        return (
          ownNamespace &&
          (!info.namespaced || !rule.namespace || o.metadata.namespace === rule.namespace) &&
          (!rule.names?.length || rule.names.includes(o.metadata.name))
        );
      case 'namespaceSelector':
        throw new Error('namespaceSelector is not supported for namespaced parent in v1 hook version');
    }
  };

  const relatedInformer = async (c: Controller, info: ResourceInfo): Promise<Informer> => {
    const informer = informerFor(info);
    const registration = `${c.name}|${info.apiVersion}|${info.resource}`;
    if (!relatedRegistrations.has(registration)) {
      relatedRegistrations.add(registration);
      // Related-object changes: every parent of this controller whose customize answer names the object.
      const notify = (...related: KubeObject[]): void => {
        void track(
          (async () => {
            for (const rule of c.parents) {
              for (const parent of informerFor(rule.info).list()) {
                let rules: RelatedRule[];
                try {
                  rules = await customizeRules(c, parent);
                } catch {
                  continue;
                }
                const matched = rules.some((r) =>
                  related.some((o) => {
                    try {
                      return (
                        r.apiVersion === info.apiVersion &&
                        r.resource === info.resource &&
                        relatedMatches(parent, rule.info.namespaced, info, r, o)
                      );
                    } catch {
                      return false;
                    }
                  }),
                );
                if (matched) enqueueParent(c, parent);
              }
            }
          })(),
        );
      };
      informer.addHandler({
        add: (o) => notify(o),
        update: (old, cur) => {
          if (old.metadata.resourceVersion !== cur.metadata.resourceVersion) notify(old, cur);
        },
        delete: (o) => notify(o),
      });
    }
    await informer.start(); // deviation: the first use waits for the initial list (Metacontroller requeues)
    return informer;
  };

  const relatedObjects = async (c: Controller, parent: KubeObject, parentNamespaced: boolean): Promise<ObjectMap> => {
    if (!c.hooks.customize) return {};
    const rules = await customizeRules(c, parent);
    const related: ObjectMap = {};
    for (const rule of rules) {
      const info = await discovery.resource(rule.apiVersion, rule.resource); // a kind nobody serves fails here
      const informer = await relatedInformer(c, info);
      const selection = selectionOf(rule);
      if (
        (selection === 'namespaceAndLabels' || selection === 'namespaceAndNames') &&
        parentNamespaced &&
        info.namespaced &&
        rule.namespace &&
        rule.namespace !== parent.metadata.namespace
      ) {
        throw new Error(
          `requested related object namespace ${rule.namespace} differs from parent object namespace ${parent.metadata.namespace ?? ''}`,
        );
      }
      const group = (related[gvkKey(info.apiVersion, info.kind)] ??= {});
      for (const o of informer.list())
        if (relatedMatches(parent, parentNamespaced, info, rule, o)) group[canonicalName(o)] = structuredClone(o);
    }
    return related;
  };

  /** Observed children/attachments, canonical keys, one group per declared resource. */
  const observedObjects = (
    c: Controller,
    parent: KubeObject,
    parentNamespaced: boolean,
    selector: LabelSelector | undefined,
  ): ObjectMap => {
    const map: ObjectMap = {};
    for (const info of c.children) {
      const group = (map[gvkKey(info.apiVersion, info.kind)] ??= {});
      for (const o of informerFor(info).list(parentNamespaced ? parent.metadata.namespace : undefined)) {
        if (controllerRefOf(o)?.uid !== parent.metadata.uid) continue;
        if (c.type === 'decorator' && o.metadata.annotations?.[DECORATOR_ANNOTATION] !== c.name) continue;
        if (c.type === 'composite' && !matchesSelector(selector, o.metadata.labels)) continue; // Metacontroller would release it
        group[canonicalName(o)] = structuredClone(o);
      }
    }
    return map;
  };

  /** Hook v1 keys: the name, or namespace/name when the parent is cluster-scoped and the object namespaced. */
  const forRequest = (parent: KubeObject, map: ObjectMap): ObjectMap =>
    Object.fromEntries(
      Object.entries(map).map(([gvk, group]) => [
        gvk,
        Object.fromEntries(
          Object.values(group).map((o) => [
            o.metadata.namespace && o.metadata.namespace === parent.metadata.namespace
              ? o.metadata.name
              : canonicalName(o),
            o,
          ]),
        ),
      ]),
    );

  /** The answer's objects, checked and completed as Metacontroller does before it manages them. */
  const desiredObjects = (
    c: Controller,
    parent: KubeObject,
    answered: unknown[],
    selector: LabelSelector | undefined,
  ): ObjectMap => {
    const desired: ObjectMap = {};
    const what = c.type === 'composite' ? 'child' : 'attachment';
    for (const raw of answered) {
      const o = structuredClone(raw) as KubeObject;
      if (
        typeof o.apiVersion !== 'string' ||
        typeof o.kind !== 'string' ||
        !isObject(o.metadata) ||
        typeof o.metadata.name !== 'string' ||
        o.metadata.name === ''
      ) {
        throw new Error(
          `desired ${what} without apiVersion, kind or metadata.name: ${JSON.stringify(raw).slice(0, 200)}`,
        );
      }
      if (!o.metadata.namespace && parent.metadata.namespace) o.metadata.namespace = parent.metadata.namespace;
      if (!c.children.some((k) => k.apiVersion === o.apiVersion && k.kind === o.kind))
        throw new Error(
          `desired ${what} ${describe(o)} is a ${gvkKey(o.apiVersion, o.kind)}, not one of the controller's ${what} resources`,
        );
      if (o.metadata.namespace !== parent.metadata.namespace)
        throw new Error(
          `desired ${what} ${describe(o)} is not in the parent's namespace ${parent.metadata.namespace ?? ''}`,
        );
      if (c.type === 'composite') {
        if (
          o.metadata.labels !== undefined &&
          !(isObject(o.metadata.labels) && Object.values(o.metadata.labels).every((v) => typeof v === 'string'))
        )
          throw new Error(`invalid labels on desired child ${describe(o)}`);
        const labels = (o.metadata.labels ??= {});
        if (c.generateSelector && !(CONTROLLER_UID_LABEL in labels))
          labels[CONTROLLER_UID_LABEL] = parent.metadata.uid ?? '';
        if (!matchesSelector(selector, labels))
          throw new Error(`labels on desired child ${describe(o)} don't match parent selector`);
      }
      const group = (desired[gvkKey(o.apiVersion, o.kind)] ??= {});
      if (group[canonicalName(o)]) throw new Error(`desired ${what} ${describe(o)} is listed twice`);
      group[canonicalName(o)] = o;
    }
    return desired;
  };

  /** common.ManageChildren with OnDelete: delete what is not desired, then create what is missing, group by group in GVK order. */
  const manageChildren = async (
    c: Controller,
    parent: KubeObject,
    observed: ObjectMap,
    desired: ObjectMap,
    applied: Applied,
  ): Promise<void> => {
    const problems: string[] = [];
    const infoOf = (apiVersion: string, kind: string): ResourceInfo =>
      c.children.find((k) => k.apiVersion === apiVersion && k.kind === kind)!;
    for (const key of sortGvkKeys(Object.keys(observed))) {
      for (const [name, o] of Object.entries(observed[key] ?? {})) {
        if (o.metadata.deletionTimestamp || desired[key]?.[name]) continue;
        try {
          await client.remove(infoOf(o.apiVersion, o.kind), o.metadata.namespace, o.metadata.name, {
            ...(o.metadata.uid && { uid: o.metadata.uid }),
            propagationPolicy: 'Background',
          });
          applied.deleted.push(o);
        } catch (err) {
          if (isNotFound(err)) continue; // already gone
          problems.push(`can't delete ${describe(o)}: ${message(err)}`);
          applied.refused.push(message(err));
        }
      }
    }
    for (const key of sortGvkKeys(Object.keys(desired))) {
      for (const [name, o] of Object.entries(desired[key] ?? {})) {
        if (observed[key]?.[name]) continue; // OnDelete: an existing object is never updated
        const annotations = { ...o.metadata.annotations };
        delete annotations[LAST_APPLIED_ANNOTATION];
        const applying: KubeObject = {
          ...o,
          metadata: {
            ...o.metadata,
            ...(Object.keys(annotations).length > 0 ? { annotations } : { annotations: undefined }),
          },
        };
        const ownerRefs = (o.metadata.ownerReferences ?? []) as OwnerReference[];
        const child: KubeObject = {
          ...o,
          metadata: {
            ...o.metadata,
            annotations: { ...annotations, [LAST_APPLIED_ANNOTATION]: goJson(applying) },
            ownerReferences: ownerRefs.some((r) => r.uid === parent.metadata.uid)
              ? ownerRefs
              : [
                  ...ownerRefs,
                  {
                    apiVersion: parent.apiVersion,
                    kind: parent.kind,
                    name: parent.metadata.name,
                    uid: parent.metadata.uid ?? '',
                    controller: true,
                    blockOwnerDeletion: true,
                  },
                ],
          },
        };
        try {
          applied.created.push(await client.create(infoOf(o.apiVersion, o.kind), child));
        } catch (err) {
          if (isAlreadyExists(err)) continue; // swallowed: no point retrying
          problems.push(message(err));
          applied.refused.push(message(err));
        }
      }
    }
    if (problems.length > 0) throw new Error(problems.length === 1 ? problems[0] : `[${problems.join(', ')}]`);
  };

  /** ResourceClient.AtomicUpdate / AtomicStatusUpdate: fresh GET, same uid, change, Update; retried on conflict (10, 50, 250 ms). */
  const atomicUpdate = async (
    info: ResourceInfo,
    orig: KubeObject,
    change: (o: KubeObject) => boolean,
    subresource?: 'status',
  ): Promise<KubeObject> => {
    for (let attempt = 0; ; attempt++) {
      const current = await client.get(info, orig.metadata.namespace, orig.metadata.name);
      if (current.metadata.uid !== orig.metadata.uid)
        throw new KubeApiError(404, 'NotFound', `${info.resource} "${orig.metadata.name}" not found`, undefined);
      current.apiVersion ??= info.apiVersion;
      current.kind ??= info.kind;
      if (!change(current)) return current;
      try {
        return await client.update(info, current, subresource);
      } catch (err) {
        if (!isConflict(err) || attempt >= 3) throw err;
        await sleep(10 * 5 ** attempt);
      }
    }
  };

  /** finalizer.SyncObject: our finalizer on every live parent while a finalize hook exists, and never otherwise. */
  const syncFinalizer = async (c: Controller, info: ResourceInfo, parent: KubeObject): Promise<KubeObject> => {
    const enabled = c.hooks.finalize !== undefined;
    if (finalizersOf(parent).includes(c.finalizer) === enabled) return parent;
    if (enabled && parent.metadata.deletionTimestamp) return parent;
    try {
      return await atomicUpdate(info, parent, (o) => {
        const has = finalizersOf(o).includes(c.finalizer);
        if (has === enabled) return false;
        o.metadata.finalizers = enabled
          ? [...finalizersOf(o), c.finalizer]
          : finalizersOf(o).filter((f) => f !== c.finalizer);
        return true;
      });
    } catch (err) {
      throw new Error(`can't sync finalizer for ${describe(parent)}: ${message(err)}`);
    }
  };
  const shouldFinalize = (c: Controller, parent: KubeObject): boolean =>
    c.hooks.finalize !== undefined &&
    finalizersOf(parent).includes(c.finalizer) &&
    !finalizersOf(parent).some((f) => GC_FINALIZERS.includes(f));
  const newApplied = (): Applied => ({
    created: [],
    deleted: [],
    refused: [],
    statusWritten: false,
    parentUpdated: false,
    finalizerRemoved: false,
    conflict: false,
  });

  const syncComposite = async (
    c: Controller,
    rule: ParentRule,
    parent: KubeObject,
    key: string,
    ctx: SyncContext,
  ): Promise<void> => {
    const info = rule.info;
    const selector: LabelSelector | undefined = c.generateSelector
      ? { matchLabels: { [CONTROLLER_UID_LABEL]: parent.metadata.uid ?? '' } }
      : ((parent.spec as Json | undefined)?.selector as LabelSelector | undefined);
    if (
      !selector ||
      (Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0)
    )
      throw new Error('.spec.selector must have either matchLabels, matchExpressions, or both');
    const children = observedObjects(c, parent, info.namespaced, selector);
    const related = await relatedObjects(c, parent, info.namespaced);
    const finalizing =
      c.hooks.finalize !== undefined && (Boolean(parent.metadata.deletionTimestamp) || !selected(c, parent));
    const hook = finalizing ? 'finalize' : 'sync';
    const target = { kind: parent.kind, namespace: parent.metadata.namespace ?? '', name: parent.metadata.name };
    let result: { body: unknown; call: HookCall };
    try {
      result = await callHook(c, hook, target, {
        controller: c.body,
        parent,
        children: forRequest(parent, children),
        related: forRequest(parent, related),
        finalizing,
      });
    } catch (err) {
      if (err instanceof TooManyRequests) throw err;
      throw new Error(`${hook} hook failed (version=v1): ${message(err)}`);
    }
    const applied = (result.call.applied = newApplied());
    ctx.call = result.call;
    const answer = decodeAnswer(result.body, 'children', hook, false);
    if (answer.resyncAfterSeconds > 0)
      c.queue.addAfter(key, clock().getTime() + answer.resyncAfterSeconds * 1000, 'resyncAfter', clock().getTime());
    if (answer.finalized) {
      try {
        parent = await atomicUpdate(info, parent, (o) => {
          if (!finalizersOf(o).includes(c.finalizer)) return false;
          o.metadata.finalizers = finalizersOf(o).filter((f) => f !== c.finalizer);
          return true;
        });
        applied.finalizerRemoved = true;
      } catch (err) {
        throw new Error(`can't remove finalizer for ${describe(parent)}: ${message(err)}`);
      }
    }
    const desired = desiredObjects(c, parent, answer.objects, selector);
    let manageError: unknown;
    if (!parent.metadata.deletionTimestamp || shouldFinalize(c, parent)) {
      try {
        await manageChildren(c, parent, children, desired, applied);
      } catch (err) {
        manageError = new Error(
          `can't reconcile children for ${info.kind} ${parent.metadata.namespace ?? ''}/${parent.metadata.name}: ${message(err)}`,
        );
      }
    }
    // The whole status with observedGeneration, on a fresh read, skipped when equal; a final conflict or a parent gone is swallowed.
    const status = { ...(answer.status ?? {}), observedGeneration: parent.metadata.generation };
    try {
      await atomicUpdate(
        info,
        parent,
        (o) => {
          if (sameJson(o.status, status)) return false;
          o.status = status;
          applied.statusWritten = true;
          return true;
        },
        'status',
      );
    } catch (err) {
      applied.statusWritten = false;
      if (!isNotFound(err) && !isConflict(err))
        throw new Error(
          `can't update status for ${info.kind} ${parent.metadata.namespace ?? ''}/${parent.metadata.name}: ${message(err)}`,
        );
    }
    if (manageError) throw manageError;
  };

  const syncDecorator = async (
    c: Controller,
    rule: ParentRule,
    parent: KubeObject,
    key: string,
    ctx: SyncContext,
  ): Promise<void> => {
    const info = rule.info;
    const attachments = observedObjects(c, parent, info.namespaced, undefined);
    const related = await relatedObjects(c, parent, info.namespaced);
    const finalizing =
      c.hooks.finalize !== undefined && (Boolean(parent.metadata.deletionTimestamp) || !selected(c, parent));
    const hook = finalizing ? 'finalize' : 'sync';
    const target = { kind: parent.kind, namespace: parent.metadata.namespace ?? '', name: parent.metadata.name };
    let result: { body: unknown; call: HookCall };
    try {
      result = await callHook(c, hook, target, {
        controller: c.body,
        object: parent,
        attachments: forRequest(parent, attachments),
        related: forRequest(parent, related),
        finalizing,
      });
    } catch (err) {
      if (err instanceof TooManyRequests) throw err;
      throw new Error(`${hook} hook failed (version=v1): ${message(err)}`);
    }
    const applied = (result.call.applied = newApplied());
    ctx.call = result.call;
    const answer = decodeAnswer(result.body, 'attachments', hook, true);
    if (answer.resyncAfterSeconds > 0)
      c.queue.addAfter(key, clock().getTime() + answer.resyncAfterSeconds * 1000, 'resyncAfter', clock().getTime());

    const labels = { ...parent.metadata.labels };
    const annotations = { ...parent.metadata.annotations };
    const update = (target: Record<string, string>, changes: Record<string, string | null> = {}): boolean => {
      let changed = false;
      for (const [k, v] of Object.entries(changes)) {
        if (v === null) {
          if (k in target) {
            delete target[k];
            changed = true;
          }
        } else if (target[k] !== v) {
          target[k] = v;
          changed = true;
        }
      }
      return changed;
    };
    const labelsChanged = update(labels, answer.labels);
    const annotationsChanged = update(annotations, answer.annotations);
    const status = answer.status === undefined || answer.status === null ? parent.status : answer.status; // null: unchanged
    const statusChanged = !sameJson(parent.status, status);
    if (
      labelsChanged ||
      annotationsChanged ||
      statusChanged ||
      (answer.finalized && finalizersOf(parent).includes(c.finalizer))
    ) {
      // A copy of the CACHED object: its resourceVersion makes a write based on a stale read a 409, which is swallowed.
      const updated: KubeObject = structuredClone(parent);
      updated.metadata.labels = labels;
      updated.metadata.annotations = annotations;
      updated.status = status;
      if (statusChanged && info.subresources.includes('status')) {
        try {
          const written = await client.update(info, updated, 'status');
          applied.statusWritten = true;
          updated.metadata.resourceVersion = written.metadata.resourceVersion;
        } catch (err) {
          if (isNotFound(err) || isConflict(err)) {
            applied.conflict = true;
            return;
          }
          throw new Error(`can't update status: ${message(err)}`);
        }
      }
      if (answer.finalized) updated.metadata.finalizers = finalizersOf(updated).filter((f) => f !== c.finalizer);
      try {
        await client.update(info, updated);
        applied.parentUpdated = true;
        if (answer.finalized && finalizersOf(parent).includes(c.finalizer)) applied.finalizerRemoved = true;
      } catch (err) {
        if (isNotFound(err) || isConflict(err)) {
          applied.conflict = true;
          return;
        }
        throw new Error(`can't update ${describe(parent)}: ${message(err)}`);
      }
    }
    const desired = desiredObjects(c, parent, answer.objects, undefined);
    for (const group of Object.values(desired))
      for (const o of Object.values(group))
        o.metadata.annotations = { ...o.metadata.annotations, [DECORATOR_ANNOTATION]: c.name };
    if (!parent.metadata.deletionTimestamp || shouldFinalize(c, parent)) {
      try {
        await manageChildren(c, parent, attachments, desired, applied);
      } catch (err) {
        throw new Error(
          `can't reconcile children for ${info.kind} ${parent.metadata.namespace ?? ''}/${parent.metadata.name}: ${message(err)}`,
        );
      }
    }
  };

  const syncKey = async (c: Controller, key: string, ctx: SyncContext): Promise<void> => {
    const { apiVersion, kind, namespace, name } = parseKey(key);
    const rule = parentRule(c, apiVersion, kind);
    if (!rule) throw new Error(`can't find kind ${kind} in apiVersion ${apiVersion}`);
    let parent = informerFor(rule.info).get(namespace, name);
    if (!parent) return; // gone: nothing to do
    ctx.parent = parent;
    if (!cares(c, parent)) return;
    parent = await syncFinalizer(c, rule.info, parent); // before anything else, so every later action gets its cleanup
    if (!cares(c, parent)) return;
    if (c.type === 'composite') await syncComposite(c, rule, parent, key, ctx);
    else await syncDecorator(c, rule, parent, key, ctx);
  };

  // ----- Events (client-go's recorder: spam-filtered per object, correlated, written asynchronously)
  const EVENT_INFO: ResourceInfo = {
    apiVersion: 'v1',
    group: '',
    version: 'v1',
    resource: 'events',
    kind: 'Event',
    namespaced: true,
    subresources: [],
  };
  const recordEvent = (object: KubeObject, type: RecordedEvent['type'], reason: string, text: string): void => {
    const involvedObject = {
      apiVersion: object.apiVersion,
      kind: object.kind,
      namespace: object.metadata.namespace ?? '',
      name: object.metadata.name,
      uid: object.metadata.uid ?? '',
    };
    const now = Date.now();
    const objectKey = `${involvedObject.kind}|${involvedObject.namespace}|${involvedObject.name}|${involvedObject.uid}`;
    const bucket = eventBuckets.get(objectKey) ?? { tokens: EVENT_BURST, last: now };
    bucket.tokens = Math.min(EVENT_BURST, bucket.tokens + (now - bucket.last) / EVENT_REFILL_MS);
    bucket.last = now;
    eventBuckets.set(objectKey, bucket);
    const dedupeKey = `${objectKey}|${type}|${reason}|${text}`;
    const existing = eventKeys.get(dedupeKey);
    if (bucket.tokens < 1) {
      if (existing) existing.entry.notStored = 'dropped by the spam filter';
      else
        events.push({
          type,
          reason,
          message: text,
          involvedObject,
          at: new Date(now),
          count: 1,
          notStored: 'dropped by the spam filter',
        });
      return;
    }
    bucket.tokens -= 1;
    const namespace = involvedObject.namespace || 'default';
    const timestamp = rfc3339(new Date(now));
    const create = async (entry: RecordedEvent): Promise<string> => {
      const name = `${involvedObject.name}.${(BigInt(now) * 1_000_000n + BigInt(events.length)).toString(16)}`;
      await eventClient.create(EVENT_INFO, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace },
        involvedObject: {
          ...involvedObject,
          ...(object.metadata.resourceVersion && { resourceVersion: object.metadata.resourceVersion }),
        },
        reason,
        message: text,
        type,
        source: { component: 'metacontroller' },
        reportingComponent: 'metacontroller',
        reportingInstance: 'metacontroller-stand-in',
        firstTimestamp: timestamp,
        lastTimestamp: timestamp,
        count: entry.count,
      });
      return name;
    };
    if (existing) {
      // The correlator's dedupe: the same event again only counts (a patch of count and lastTimestamp).
      existing.entry.count += 1;
      existing.entry.at = new Date(now);
      const count = existing.entry.count;
      existing.written = track(
        existing.written.then(async (name) => {
          if (name === undefined) return undefined;
          try {
            await eventClient.mergePatch(EVENT_INFO, namespace, name, { count, lastTimestamp: timestamp });
            return name;
          } catch (err) {
            if (!isNotFound(err)) {
              existing.entry.notStored = message(err);
              return name;
            }
            return create(existing.entry).catch((e: unknown) => {
              existing.entry.notStored = message(e);
              return undefined;
            });
          }
        }),
      );
      return;
    }
    const entry: RecordedEvent = { type, reason, message: text, involvedObject, at: new Date(now), count: 1 };
    events.push(entry);
    eventKeys.set(dedupeKey, {
      entry,
      written: track(
        create(entry).catch((err: unknown) => {
          entry.notStored = message(err);
          return undefined;
        }),
      ),
    });
  };

  // ----- workers
  const process = async (c: Controller, key: string): Promise<void> => {
    const { kind, namespace, name } = parseKey(key);
    const run: SyncRun = { controller: c.name, kind, namespace, name, startedAt: Date.now() };
    syncRuns.push(run);
    running += 1;
    const ctx: SyncContext = {};
    try {
      await syncKey(c, key, ctx);
      c.queue.forget(key);
    } catch (err) {
      if (stopped) return;
      const now = clock().getTime();
      if (err instanceof TooManyRequests) {
        c.queue.addAfter(key, now + err.afterMs, 'retryAfter', now);
        return;
      }
      const text = message(err);
      run.error = text;
      if (ctx.call?.applied) ctx.call.applied.error = text;
      errors.push(`${c.name} ${kind} ${namespace}/${name}: ${text}`);
      if (ctx.parent) recordEvent(ctx.parent, 'Warning', 'SyncError', `Sync error: ${text}`);
      c.queue.addAfter(key, now + c.queue.backoffMs(key), 'backoff', now);
    } finally {
      running -= 1;
      syncCount += 1;
      run.finishedAt = Date.now();
    }
  };
  const workerLoops: Promise<void>[] = [];
  const startWorkers = (c: Controller): void => {
    for (let i = 0; i < workers; i++) {
      workerLoops.push(
        (async () => {
          for (;;) {
            const key = await c.queue.get();
            if (key === undefined) return;
            try {
              await process(c, key);
            } catch (err) {
              internalError(`worker: ${message(err)}`);
            } finally {
              c.queue.done(key);
            }
          }
        })(),
      );
    }
  };

  /** Due delayed syncs and periodic resyncs (resyncPeriodSeconds: every cached parent, every period) on the simulated clock. */
  const pump = (): void => {
    if (stopped) return;
    let now: number;
    try {
      now = clock().getTime();
    } catch {
      return;
    }
    for (const c of controllers) {
      if (c.resyncPeriodMs !== undefined && c.nextPeriodicAt !== undefined && now >= c.nextPeriodicAt) {
        for (const rule of c.parents) for (const o of informerFor(rule.info).list()) enqueueParent(c, o);
        while (c.nextPeriodicAt <= now) c.nextPeriodicAt += c.resyncPeriodMs;
      }
      c.queue.promote(now);
    }
  };

  // ----- start: informers list (every parent is enqueued by its initial add), then workers
  try {
    await Promise.all([...informers.values()].map((i) => i.start()));
  } catch (err) {
    for (const i of informers.values()) i.stop();
    closeClients();
    throw new Error(`Metacontroller stand-in: informers failed to start: ${message(err)}`, { cause: err });
  }
  for (const c of controllers) startWorkers(c);
  const pumpTimer = setInterval(pump, opts.pollMs ?? 10);
  pumpTimer.unref();

  const targetKey = (target: SyncTarget): { c: Controller; key: string } => {
    const c = controllerNamed(target.controller);
    const info = target.kind ? c.parents.find((p) => p.info.kind === target.kind)?.info : c.parents[0]?.info;
    if (!info) throw new Error(`${target.controller} has no parent kind ${target.kind ?? ''}`);
    return { c, key: keyOf(info.kind, info.apiVersion, target.namespace, target.name) };
  };

  const idle = (): boolean => running === 0 && tasks.size === 0 && controllers.every((c) => !c.queue.busy());
  const changed = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  const caughtUp = async (): Promise<boolean> =>
    (await Promise.all([...informers.values()].map((i) => i.caughtUp()))).every(Boolean);

  const settle = async (): Promise<void> => {
    const deadline = Date.now() + settleTimeoutMs;
    const startSyncs = syncCount;
    for (;;) {
      if (stopped) throw new Error('settle(): the stand-in is stopped');
      if (syncCount - startSyncs > maxSyncs) {
        throw new Error(
          `settle(): more than ${maxSyncs} syncs at ${clock().toISOString()} (a hook whose answer changes on every call, or a status the API server prunes?); last calls: ${JSON.stringify(calls.slice(-4).map((x) => [x.controller, x.hook, x.key, x.applied?.statusWritten]))}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(
          `settle(): not quiescent after ${settleTimeoutMs} ms: ${running} syncs running, ${tasks.size} tasks, queues ${JSON.stringify(controllers.map((c) => [c.name, c.queue.busy()]))}; errors: ${JSON.stringify(errors.slice(-3))}`,
        );
      }
      pump();
      if (!idle()) {
        await changed(50);
        continue;
      }
      const mark = activityCount;
      if (!(await caughtUp())) {
        await changed(20);
        continue;
      }
      pump();
      if (idle() && activityCount === mark) return;
    }
  };

  const kindInfo = (apiVersion: string, kind: string): Promise<ResourceInfo> => userDiscovery.kind(apiVersion, kind);

  return {
    async apply(object) {
      const info = await kindInfo(object.apiVersion, object.kind);
      return fresh.request<KubeObject>('PATCH', resourcePath(info, object.metadata.namespace, object.metadata.name), {
        query: { fieldManager: 'kubectl', force: true },
        body: object,
        contentType: 'application/apply-patch+yaml',
      });
    },
    async delete(apiVersion, kind, namespace, name) {
      await fresh.remove(await kindInfo(apiVersion, kind), namespace, name, { propagationPolicy: 'Background' });
    },
    async get(apiVersion, kind, namespace, name) {
      try {
        const o = await fresh.get(await kindInfo(apiVersion, kind), namespace, name);
        return { ...o, apiVersion: o.apiVersion ?? apiVersion, kind: o.kind ?? kind };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async list(apiVersion, kind, namespace) {
      const { items } = await fresh.list(await kindInfo(apiVersion, kind), namespace);
      return items.sort((a, b) => canonicalName(a).localeCompare(canonicalName(b)));
    },
    rest: fresh,
    settle,
    pending() {
      return controllers
        .flatMap((c) =>
          [...c.queue.waiting].map(([key, w]) => {
            const { kind, namespace, name } = parseKey(key);
            return { controller: c.name, kind, namespace, name, dueAt: new Date(w.dueAt), reason: w.reason };
          }),
        )
        .sort((a, b) => a.dueAt.getTime() - b.dueAt.getTime());
    },
    nextPeriodicResync(controller) {
      const at = controllerNamed(controller).nextPeriodicAt;
      return at === undefined ? undefined : new Date(at);
    },
    fire(target) {
      const { c, key } = targetKey(target);
      return c.queue.fire(key);
    },
    enqueue(target) {
      const { c, key } = targetKey(target);
      c.queue.add(key);
    },
    calls,
    syncs: syncRuns,
    errors,
    events,
    apiRequests: client.requests,
    stop() {
      stopping ??= (async () => {
        stopped = true;
        clearInterval(pumpTimer);
        for (const c of controllers) c.queue.shutDown();
        for (const i of informers.values()) i.stop();
        activity();
        await Promise.allSettled(workerLoops);
        await Promise.allSettled([...tasks]);
        closeClients();
      })();
      return stopping;
    },
  };
}
