// A minimal Kubernetes API server for tests. There is no cluster here, yet the snapshot Job talks to the API
// (status reports) with the Role the hook emits; this server makes a missing permission fail the test:
//   - HTTPS on 127.0.0.1 (free port), serving certificate for IP:127.0.0.1 and DNS:kubernetes.default.svc from a
//     CA generated at start (caPem is what a pod finds in its service-account ca.crt),
//   - bearer tokens for service accounts (tokenFor); anything else is 401,
//   - RBAC as kube-apiserver evaluates it, for RoleBindings (to Roles or ClusterRoles) in the request namespace;
//     ClusterRoleBindings and aggregated ClusterRoles are not consulted,
//   - namespaced get/list/create/update/delete and JSON merge patch, with the status subresource split
//     (every resource is treated as having one, like the CRDs and Jobs we use), Status bodies as the real server's.
//
//   const api = await startFakeKubeApi();
//   api.put(role); api.put(roleBinding); api.put(backup);
//   ... a client with api.tokenFor('ns', 'sa') ...
//   assert.deepEqual(api.requests.map((r) => r.status), [200]);
//   await api.close();

import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { createTalosPki } from './pki.js';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface ApiRequestRecord {
  method: string;
  /** URL path without the query. */
  path: string;
  /** `system:serviceaccount:<ns>:<name>`; '' when the request did not authenticate (401). */
  user: string;
  verb: string;
  resource: string;
  subresource?: string;
  name?: string;
  namespace?: string;
  status: number;
}

export interface FakeKubeApi {
  /** https://127.0.0.1:<port> (listens on 127.0.0.1 only, free port) */
  url: string;
  host: string;
  port: number;
  /** PEM of the CA that signed the serving certificate (what a pod finds in its service-account ca.crt) */
  caPem: string;
  /** Adds or replaces an object (no authorization); assigns uid/resourceVersion if missing. Returns a copy. */
  put(object: KubeObject): KubeObject;
  /** A copy of the stored object. */
  get(apiVersion: string, kind: string, namespace: string, name: string): KubeObject | undefined;
  /** A bearer token authenticating as system:serviceaccount:<namespace>:<name> (the same one on every call). */
  tokenFor(namespace: string, serviceAccount: string): string;
  readonly requests: ApiRequestRecord[];
  /** Copies of the stored objects of a kind (in one namespace, or all), sorted by namespace and name. */
  list(apiVersion: string, kind: string, namespace?: string): KubeObject[];
  /**
   * Deletes as the API server and the garbage collector do: an object with finalizers only gets a
   * deletionTimestamp (it goes once a write leaves its finalizers empty); a deleted object's dependents (by
   * ownerReferences uid) are deleted too (background propagation). Unknown objects are ignored.
   */
  remove(apiVersion: string, kind: string, namespace: string, name: string): void;
  /** Called after every change, whether made through HTTP or put/remove. Returns an unsubscribe function. */
  onChange(listener: (event: ChangeEvent) => void): () => void;
  /** Destroys open connections and stops listening. Idempotent. */
  close(): Promise<void>;
}

export interface ChangeEvent {
  type: 'added' | 'modified' | 'deleted';
  object: KubeObject;
}

export interface FakeKubeApiOptions {
  /** The clock of creation and deletion timestamps (default: the real one). */
  clock?: () => Date;
}

const RBAC_GROUP = 'rbac.authorization.k8s.io';
const MAX_BODY = 4 * 1024 * 1024;

const PLURALS: Record<string, string> = {
  Secret: 'secrets',
  ConfigMap: 'configmaps',
  ServiceAccount: 'serviceaccounts',
  Role: 'roles',
  RoleBinding: 'rolebindings',
  ClusterRole: 'clusterroles',
  Job: 'jobs',
  TalosEtcdBackup: 'talosetcdbackups',
  TalosControlPlane: 'taloscontrolplanes',
};

/** The plural resource of a kind (Secret → secrets; fallback lowercase + 's'). */
export function resourceOf(kind: string): string {
  return PLURALS[kind] ?? `${kind.toLowerCase()}s`;
}

/** `talos.alperen.cloud/v1alpha1` → `talos.alperen.cloud`; `v1` → '' (core). */
function groupOf(apiVersion: string): string {
  const slash = apiVersion.lastIndexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}

/** A failure answered as a Kubernetes `Status` body. */
class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, string>,
  ) {
    super(message);
  }
}

function statusBody(code: number, reason: string, message: string, details?: Record<string, string>): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

interface Target {
  group: string;
  version: string;
  namespace: string;
  resource: string;
  name?: string;
  subresource?: string;
}

/** `/api/v1/namespaces/{ns}/{resource}[/{name}[/{sub}]]` or `/apis/{group}/{version}/namespaces/...`. */
function parsePath(pathname: string): Target | undefined {
  let parts: string[];
  try {
    parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return undefined;
  }
  const core = parts[0] === 'api';
  if (!core && parts[0] !== 'apis') return undefined;
  const [group, version] = core ? ['', parts[1]] : [parts[1], parts[2]];
  const rest = parts.slice(core ? 2 : 3);
  const [keyword, namespace, resource, name, subresource] = rest;
  if (group === undefined || !version || keyword !== 'namespaces' || !namespace || !resource || rest.length > 5) return undefined;
  return { group, version, namespace, resource, ...(name ? { name } : {}), ...(subresource ? { subresource } : {}) };
}

function verbOf(method: string, name: string | undefined): string | undefined {
  switch (method) {
    case 'GET':
      return name ? 'get' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return name ? 'delete' : 'deletecollection';
    default:
      return undefined;
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** RFC 7386 JSON merge patch: objects merge recursively, null deletes a key, anything else replaces. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// RBAC (plugin/pkg/auth/authorizer/rbac: appliesToUser, RuleAllows)

interface User {
  name: string;
  namespace: string;
  serviceAccount: string;
  groups: string[];
}

interface Subject {
  kind?: string;
  name?: string;
  namespace?: string;
}

interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
}

function subjectApplies(subject: Subject, user: User, bindingNamespace: string): boolean {
  switch (subject.kind) {
    case 'ServiceAccount':
      // A RoleBinding's ServiceAccount subject without namespace means the binding's namespace.
      return subject.name === user.serviceAccount && (subject.namespace || bindingNamespace) === user.namespace;
    case 'User':
      return subject.name === user.name;
    case 'Group':
      return subject.name !== undefined && user.groups.includes(subject.name);
    default:
      return false;
  }
}

function ruleAllows(rule: PolicyRule, group: string, verb: string, resource: string, subresource: string | undefined, name: string | undefined): boolean {
  const combined = subresource ? `${resource}/${subresource}` : resource;
  const resourceMatches = (rule.resources ?? []).some(
    (r) => r === '*' || r === combined || (subresource !== undefined && r === `*/${subresource}`),
  );
  const names = rule.resourceNames ?? [];
  return (
    (rule.verbs ?? []).some((v) => v === '*' || v === verb) &&
    (rule.apiGroups ?? []).some((g) => g === '*' || g === group) &&
    resourceMatches &&
    // list and create requests carry no name, so a rule with resourceNames never allows them
    (names.length === 0 || (name !== undefined && names.includes(name)))
  );
}

// ---------------------------------------------------------------------------------------------------------------

export async function startFakeKubeApi(options: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
  const clock = options.clock ?? (() => new Date());
  const timestamp = () => clock().toISOString().replace(/\.\d+Z$/, 'Z');
  const listeners = new Set<(event: ChangeEvent) => void>();
  const emit = (type: ChangeEvent['type'], object: KubeObject) => {
    for (const listener of listeners) listener({ type, object: structuredClone(object) });
  };
  // ECDSA P-256 (not pki.ts' Ed25519 default): closer to a cluster CA, and every TLS client accepts it.
  const pki = await createTalosPki({
    algorithm: 'ECDSA-P256',
    caOrganization: 'kubernetes',
    server: { commonName: 'kube-apiserver', ips: ['127.0.0.1'], dnsNames: ['kubernetes.default.svc', 'kubernetes.default', 'kubernetes', 'localhost'] },
  });

  const store = new Map<string, KubeObject>(); // `${group}|${resource}|${namespace}|${name}`
  const kinds = new Map<string, string>(Object.entries(PLURALS).map(([kind, plural]) => [plural, kind])); // resource → Kind
  const tokens = new Map<string, User>();
  const tokenByAccount = new Map<string, string>();
  const requests: ApiRequestRecord[] = [];
  let revision = 0;

  const keyOf = (group: string, resource: string, namespace: string, name: string): string => `${group}|${resource}|${namespace}|${name}`;
  const lookup = (group: string, resource: string, namespace: string, name: string): KubeObject | undefined =>
    store.get(keyOf(group, resource, namespace, name));
  const listOf = (group: string, resource: string, namespace: string): KubeObject[] => {
    const prefix = keyOf(group, resource, namespace, '');
    return [...store].filter(([k]) => k.startsWith(prefix)).map(([, o]) => o).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  };

  /** Removes an object and, as the garbage collector does, every object it owns. */
  const erase = (group: string, resource: string, object: KubeObject): void => {
    if (!store.delete(keyOf(group, resource, object.metadata.namespace ?? '', object.metadata.name))) return;
    emit('deleted', object);
    for (const [key, dependent] of [...store]) {
      const owners = (dependent.metadata.ownerReferences ?? []) as { uid?: string }[];
      if (!owners.some((o) => o.uid === object.metadata.uid)) continue;
      const [g, r] = key.split('|') as [string, string];
      remove(g, r, dependent);
    }
  };
  const finalizersOf = (object: KubeObject): unknown[] => (Array.isArray(object.metadata.finalizers) ? object.metadata.finalizers : []);
  /** Deletion: with finalizers, only a deletionTimestamp; without, gone (with its dependents). */
  const remove = (group: string, resource: string, object: KubeObject): void => {
    if (finalizersOf(object).length === 0) return erase(group, resource, object);
    if (object.metadata.deletionTimestamp) return;
    save(group, resource, { ...object, metadata: { ...object.metadata, deletionTimestamp: timestamp() } });
  };

  /** Stores a copy with a new resourceVersion (unless `keepVersion` is given) and uid/creationTimestamp when missing. */
  const save = (group: string, resource: string, object: KubeObject, keepVersion?: string): KubeObject => {
    const copy = structuredClone(object);
    copy.metadata.uid ??= randomUUID();
    copy.metadata.creationTimestamp ??= timestamp();
    copy.metadata.resourceVersion = keepVersion ?? String(++revision);
    kinds.set(resource, copy.kind);
    const key = keyOf(group, resource, copy.metadata.namespace ?? '', copy.metadata.name);
    const existed = store.has(key);
    // A write that leaves a deleted object without finalizers completes its deletion.
    if (copy.metadata.deletionTimestamp && finalizersOf(copy).length === 0) {
      erase(group, resource, copy);
      return structuredClone(copy);
    }
    store.set(key, copy);
    emit(existed ? 'modified' : 'added', copy);
    return structuredClone(copy);
  };

  const authorize = (user: User, t: Target, verb: string): void => {
    const errors: string[] = [];
    for (const binding of listOf(RBAC_GROUP, 'rolebindings', t.namespace)) {
      const subjects = (binding.subjects ?? []) as Subject[];
      if (!subjects.some((s) => subjectApplies(s, user, t.namespace))) continue;
      const ref = (binding.roleRef ?? {}) as { apiGroup?: string; kind?: string; name?: string };
      if (ref.apiGroup !== RBAC_GROUP || !ref.name || (ref.kind !== 'Role' && ref.kind !== 'ClusterRole')) continue;
      const role = ref.kind === 'Role' ? lookup(RBAC_GROUP, 'roles', t.namespace, ref.name) : lookup(RBAC_GROUP, 'clusterroles', '', ref.name);
      if (!role) {
        errors.push(`${ref.kind.toLowerCase()}.${RBAC_GROUP} "${ref.name}" not found`);
        continue;
      }
      if (((role.rules ?? []) as PolicyRule[]).some((rule) => ruleAllows(rule, t.group, verb, t.resource, t.subresource, t.name))) return;
    }
    // The message kube-apiserver writes (responsewriters.forbiddenMessage + NewForbidden), with RBAC's reason.
    const qualified = t.group ? `${t.resource}.${t.group}` : t.resource;
    const combined = t.subresource ? `${t.resource}/${t.subresource}` : t.resource;
    const reason = errors.length === 0 ? '' : `: RBAC: ${errors.length === 1 ? errors[0] : `[${errors.join(', ')}]`}`;
    throw new ApiError(
      403,
      'Forbidden',
      `${qualified}${t.name ? ` "${t.name}"` : ''} is forbidden: User "${user.name}" cannot ${verb} resource "${combined}" in API group "${t.group}" in the namespace "${t.namespace}"${reason}`,
      { ...(t.name ? { name: t.name } : {}), group: t.group, kind: t.resource },
    );
  };

  /** Executes an authorized request; returns [status code, body]. */
  const operate = (t: Target, verb: string, contentType: string, raw: string): [number, unknown] => {
    const qualified = t.group ? `${t.resource}.${t.group}` : t.resource;
    const details = (name: string): Record<string, string> => ({ name, group: t.group, kind: t.resource });
    const notFound = (name: string): ApiError => new ApiError(404, 'NotFound', `${qualified} "${name}" not found`, details(name));
    const conflict = (name: string): ApiError =>
      new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified} "${name}": the object has been modified; please apply your changes to the latest version and try again`, details(name));
    const noSuchPath = new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const notAllowed = new ApiError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
    if (t.subresource !== undefined && t.subresource !== 'status') throw noSuchPath;
    const body = (): Record<string, unknown> => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch (err) {
        throw new ApiError(400, 'BadRequest', `the body of the request could not be decoded: ${(err as Error).message}`);
      }
      if (!isPlainObject(parsed)) throw new ApiError(400, 'BadRequest', 'the body of the request must be a JSON object');
      return parsed;
    };
    const stored = t.name === undefined ? undefined : lookup(t.group, t.resource, t.namespace, t.name);
    const rvPrecondition = (meta: unknown, current: KubeObject): void => {
      const rv = isPlainObject(meta) ? meta.resourceVersion : undefined;
      if (typeof rv === 'string' && rv !== '' && rv !== current.metadata.resourceVersion) throw conflict(current.metadata.name);
    };
    /** The next version of `current`: only .status from `next` on /status; everything but .status and identity otherwise. */
    const nextVersion = (current: KubeObject, next: Record<string, unknown>): KubeObject => {
      if (t.subresource === 'status') {
        const { status: _old, ...rest } = current;
        return { ...rest, ...(next.status !== undefined ? { status: next.status } : {}) } as KubeObject;
      }
      const { status: _ignored, ...rest } = next;
      const meta = isPlainObject(next.metadata) ? next.metadata : {};
      const { name, namespace, uid, creationTimestamp } = current.metadata;
      return {
        ...rest,
        apiVersion: current.apiVersion,
        kind: current.kind,
        metadata: { ...meta, name, namespace, uid, creationTimestamp },
        ...(current.status !== undefined ? { status: current.status } : {}),
      } as KubeObject;
    };

    switch (verb) {
      case 'get':
        if (!stored) throw notFound(t.name!);
        return [200, stored];
      case 'list': {
        if (t.subresource) throw noSuchPath;
        const kind = kinds.get(t.resource) ?? t.resource;
        const apiVersion = t.group ? `${t.group}/${t.version}` : t.version;
        return [200, { kind: `${kind}List`, apiVersion, metadata: { resourceVersion: String(revision) }, items: listOf(t.group, t.resource, t.namespace) }];
      }
      case 'create': {
        if (t.name !== undefined) throw notAllowed;
        const object = body();
        const meta = isPlainObject(object.metadata) ? { ...object.metadata } : {};
        if (meta.namespace !== undefined && meta.namespace !== t.namespace) {
          throw new ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
        }
        const kind = kinds.get(t.resource);
        if (kind && object.kind !== undefined && object.kind !== kind) throw new ApiError(400, 'BadRequest', `${object.kind as string} is not ${kind}`);
        let name = typeof meta.name === 'string' ? meta.name : '';
        if (!name && typeof meta.generateName === 'string') name = meta.generateName + randomBytes(4).toString('hex').slice(0, 5);
        if (!name) throw new ApiError(422, 'Invalid', `${t.resource} "" is invalid: metadata.name: Required value: name or generateName is required`);
        if (lookup(t.group, t.resource, t.namespace, name)) throw new ApiError(409, 'AlreadyExists', `${qualified} "${name}" already exists`, details(name));
        // The server owns uid, resourceVersion and (with a status subresource) status on create.
        const { status: _ignored, ...rest } = object;
        const created = {
          ...rest,
          apiVersion: typeof object.apiVersion === 'string' ? object.apiVersion : t.group ? `${t.group}/${t.version}` : t.version,
          kind: kind ?? object.kind,
          metadata: { ...meta, name, namespace: t.namespace, uid: undefined, creationTimestamp: undefined },
        } as KubeObject;
        return [201, save(t.group, t.resource, created)];
      }
      case 'update': {
        if (t.name === undefined) throw notAllowed;
        const object = body();
        const meta = isPlainObject(object.metadata) ? object.metadata : {};
        if (meta.name !== t.name) throw new ApiError(400, 'BadRequest', `the name of the object (${String(meta.name)}) does not match the name on the URL (${t.name})`);
        if (!stored) throw notFound(t.name);
        rvPrecondition(meta, stored);
        return [200, save(t.group, t.resource, nextVersion(stored, object))];
      }
      case 'patch': {
        if (t.name === undefined) throw notAllowed;
        if (contentType !== 'application/merge-patch+json') {
          throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json`);
        }
        const patch = body();
        if (!stored) throw notFound(t.name);
        rvPrecondition(patch.metadata, stored);
        return [200, save(t.group, t.resource, nextVersion(stored, mergePatch(stored, patch) as Record<string, unknown>))];
      }
      case 'delete':
        if (t.subresource) throw notAllowed;
        if (!stored) throw notFound(t.name!);
        remove(t.group, t.resource, stored);
        return [200, stored];
      default:
        throw notAllowed;
    }
  };

  const readBody = (req: IncomingMessage): Promise<string> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY) {
          reject(new ApiError(413, 'RequestEntityTooLarge', 'the request body is too large'));
          req.destroy();
        } else chunks.push(chunk);
      });
      req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.once('error', reject);
    });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'https://127.0.0.1').pathname;
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const user = token === undefined ? undefined : tokens.get(token);
    const t = parsePath(path);
    const verb = verbOf(method, t?.name) ?? method.toLowerCase();
    let code: number;
    let body: unknown;
    try {
      if (!user) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
      if (!t) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      authorize(user, t, verb);
      const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const raw = method === 'GET' || method === 'DELETE' ? '' : await readBody(req);
      [code, body] = operate(t, verb, contentType, raw);
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(500, 'InternalError', `fake kube-api: ${(err as Error).message}`);
      [code, body] = [e.code, statusBody(e.code, e.reason, e.message, e.details)];
    }
    requests.push({
      method,
      path,
      user: user?.name ?? '',
      verb,
      resource: t?.resource ?? '',
      ...(t?.subresource ? { subresource: t.subresource } : {}),
      ...(t?.name ? { name: t.name } : {}),
      ...(t ? { namespace: t.namespace } : {}),
      status: code,
    });
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const server = createServer({ cert: pki.serverCertPem, key: pki.serverKeyPem }, (req, res) => {
    void handle(req, res);
  });
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  return {
    url: `https://127.0.0.1:${port}`,
    host: '127.0.0.1',
    port,
    caPem: pki.caPem,
    requests,
    put(object) {
      const given = object.metadata.resourceVersion;
      // A caller's resourceVersion is kept; later writes still get higher ones.
      if (given !== undefined && Number(given) > revision) revision = Number(given);
      return save(groupOf(object.apiVersion), resourceOf(object.kind), object, given);
    },
    get(apiVersion, kind, namespace, name) {
      const found = lookup(groupOf(apiVersion), resourceOf(kind), namespace, name);
      return found && structuredClone(found);
    },
    list(apiVersion, kind, namespace) {
      const prefix = `${groupOf(apiVersion)}|${resourceOf(kind)}|${namespace === undefined ? '' : `${namespace}|`}`;
      return [...store]
        .filter(([k]) => k.startsWith(prefix))
        .map(([, o]) => structuredClone(o))
        .sort((a, b) => `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`));
    },
    remove(apiVersion, kind, namespace, name) {
      const group = groupOf(apiVersion);
      const resource = resourceOf(kind);
      const found = lookup(group, resource, namespace, name);
      if (found) remove(group, resource, found);
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    tokenFor(namespace, serviceAccount) {
      const account = `${namespace}:${serviceAccount}`;
      let token = tokenByAccount.get(account);
      if (!token) {
        token = randomBytes(32).toString('base64url');
        tokenByAccount.set(account, token);
        tokens.set(token, {
          name: `system:serviceaccount:${account}`,
          namespace,
          serviceAccount,
          groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
        });
      }
      return token;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}
