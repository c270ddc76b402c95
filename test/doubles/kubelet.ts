// A test kubelet: plays one node on the real Kubernetes API server (test/harness/control-plane.ts) through
// @kubernetes/client-node, so that the real Job controller's pods run here as local processes.
//
//   const kubelet = await startKubelet({ controlPlane: cp, imagePaths: { '/app': packageRoot() } });
//   ... create a Job; the real Job controller creates its pod; the kubelet binds it, runs it, reports ...
//   const run = await kubelet.waitForPod({ namespace: 'ns', job: 'my-job' }, 'terminated');
//   await kubelet.stop();
//
// What it does, as the kubelet (and, for binding, the scheduler) would:
//   - registers its Node (default `test-node`: Ready, InternalIP 127.0.0.1, kubernetes.io/hostname/os/arch
//     labels); list+watches every pod (resourceVersion kept, bookmarks, reconnects, relists on 410 Gone);
//   - binds each unbound pod to its node (POST pods/binding) when the node satisfies its nodeSelector and no
//     schedulingGates hold it (else PodScheduled False, Unschedulable), and runs pods bound to its node;
//   - resolves, from the pod as the API server stored it (with what admission added, e.g. the ServiceAccount
//     plugin's projected kube-api-access-* volume): volumes (secret, configMap with items/defaultMode/optional,
//     emptyDir, downwardAPI, projected: serviceAccountToken minted with the TokenRequest API bound to the pod,
//     configMap, secret, downwardAPI), then env (envFrom, value with $(VAR) expansion, secretKeyRef,
//     configMapKeyRef, fieldRef with the kubelet's fields, `optional` semantics) and the Kubernetes service
//     variables (KUBERNETES_SERVICE_HOST/PORT... → the control plane's 127.0.0.1:port, as there is no kube-proxy);
//   - while something is missing, keeps the pod Pending and retries every retryIntervalMs (default 1 s; a real
//     kubelet backs off to ~10 s): a volume that cannot be set up leaves the container waiting in
//     ContainerCreating (configErrors: `MountVolume.SetUp failed for volume "v" : secret "s" not found`), a missing
//     env reference in CreateContainerConfigError with the kubelet's message (`secret "s" not found`,
//     `couldn't find key k in Secret ns/name`);
//   - runs the init containers in order (one that fails fails the pod: restartPolicy Never), a native sidecar
//     (an init container with restartPolicy Always) started and kept running, restarted after 1 s if it stops, and
//     stopped (SIGTERM, SIGKILL after the grace period) once the main container ended, whose outcome is the pod's;
//   - runs the one main container's command (else the image's ENTRYPOINT/CMD, opts.image) as a local process and writes
//     pods/status as the kubelet does: Running (state.running.startedAt, conditions PodScheduled,
//     PodReadyToStartContainers, Initialized, ContainersReady, Ready), then Succeeded/Failed with
//     state.terminated {exitCode, reason Completed/Error, signal, startedAt, finishedAt} (exit by signal N:
//     exitCode 128+N, as container runtimes report it) — what the Job controller's podFailurePolicy reads;
//   - on a deletionTimestamp: SIGTERM, then SIGKILL after deletionGracePeriodSeconds (else
//     terminationGracePeriodSeconds, else 30 s); once the container stopped (or never started: terminated with
//     ContainerStatusUnknown, 137) the terminal status, then a delete with gracePeriodSeconds 0 and the pod's UID
//     as precondition. Job pods then stay until the Job controller removes its batch.kubernetes.io/job-tracking
//     finalizer.
//
// A process cannot see /var/run/...: each pod gets a temporary directory (PodRun.dir) holding its volumes, and
// `<dir><mountPath>` links to each mounted volume (subPath supported). Any argv element or env value equal to a
// mount path or under one (`<mountPath>/...`, also `--flag=<path>` in argv) is rewritten to that local path; image
// paths (opts.imagePaths, e.g. { '/app': packageRoot() }) likewise, and argv[0] `node` is this Node.js. The one
// deviation the application sees: KUBERNETES_SERVICE_ACCOUNT_DIR names the local service-account directory when
// the container mounts one at /var/run/secrets/kubernetes.io/serviceaccount (src/job/kubernetes/in-cluster.ts reads it
// from there). The environment holds only what the container would see, plus PATH (the image's ENV PATH, else
// this machine's without node_modules/.bin), HOME=/ unless set, the image's ENV under the container's, and
// opts.extraEnv over everything (tests shorten intervals with it).
//
// Not emulated, ignored: securityContext (user, read-only root filesystem: test/image/recipe.test.ts confines the
// process itself through opts.launch), resources, readOnly mounts, imagePullPolicy, events, token rotation (the
// tests are far shorter than a token's hour), service links of other Services, the node's lease and heartbeats.
// Images: opts.image/imagePaths describe this project's image; opts.images maps other image references (by prefix)
// to their own paths and configuration, e.g. etcd's image to the locally built etcd binaries.
// Not emulated, refused loudly: more than one main container, ephemeral containers, restartPolicy other than
// Never, probes and lifecycle hooks, other volume or projection types, resourceFieldRef, subPathExpr, required
// node affinity, other fieldRefs. Such a pod stays Pending with waiting reason TestKubeletUnsupported, the message
// goes into problems(), and idle()/waitFor() reject with it.
// The kubelet acts as the cluster admin (a real one as system:node:<name> under the Node authorizer).

import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { arch, constants as osConstants, tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { CoreV1Api, PatchStrategy, setHeaderOptions, Watch, type KubeConfig } from '@kubernetes/client-node';
import type { ControlPlane } from '../harness/control-plane.js';
import { ownDir, trackChild } from '../harness/processes.js';

// ---------------------------------------------------------------------------------------------------------------
// The pod as the API serves it (JSON), as far as the kubelet reads it.

interface KeyRef {
  name?: string;
  key: string;
  optional?: boolean;
}
interface FieldRef {
  apiVersion?: string;
  fieldPath: string;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: KeyRef;
    configMapKeyRef?: KeyRef;
    fieldRef?: FieldRef;
    resourceFieldRef?: unknown;
    fileKeyRef?: unknown;
  };
}
interface EnvFromSource {
  prefix?: string;
  configMapRef?: { name?: string; optional?: boolean };
  secretRef?: { name?: string; optional?: boolean };
}
interface KeyToPath {
  key: string;
  path: string;
  mode?: number;
}
interface DownwardItem {
  path: string;
  fieldRef?: FieldRef;
  resourceFieldRef?: unknown;
  mode?: number;
}
interface ProjectionSource {
  serviceAccountToken?: { audience?: string; expirationSeconds?: number; path: string };
  configMap?: { name?: string; items?: KeyToPath[]; optional?: boolean };
  secret?: { name?: string; items?: KeyToPath[]; optional?: boolean };
  downwardAPI?: { items?: DownwardItem[] };
  [other: string]: unknown;
}
interface Volume {
  name: string;
  secret?: { secretName?: string; items?: KeyToPath[]; optional?: boolean; defaultMode?: number };
  configMap?: { name?: string; items?: KeyToPath[]; optional?: boolean; defaultMode?: number };
  emptyDir?: object;
  downwardAPI?: { items?: DownwardItem[]; defaultMode?: number };
  projected?: { sources?: ProjectionSource[]; defaultMode?: number };
  [other: string]: unknown;
}
interface VolumeMount {
  name: string;
  mountPath: string;
  subPath?: string;
  subPathExpr?: string;
  readOnly?: boolean;
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: EnvVar[];
  envFrom?: EnvFromSource[];
  volumeMounts?: VolumeMount[];
  livenessProbe?: unknown;
  readinessProbe?: unknown;
  startupProbe?: unknown;
  lifecycle?: unknown;
  restartPolicy?: string;
}
export interface Pod {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
    finalizers?: string[];
  };
  spec: {
    containers: Container[];
    initContainers?: Container[];
    ephemeralContainers?: Container[];
    volumes?: Volume[];
    nodeName?: string;
    nodeSelector?: Record<string, string>;
    affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: unknown } };
    schedulingGates?: { name: string }[];
    serviceAccountName?: string;
    restartPolicy?: string;
    terminationGracePeriodSeconds?: number;
    hostname?: string;
  };
  status?: { phase?: string; conditions?: { type: string; status: string }[] };
}

// ---------------------------------------------------------------------------------------------------------------
// The API

/** The image's configuration, as a container runtime applies it (see test/image/docker-recipe.ts ImageConfig). */
export interface ImageConfig {
  entrypoint?: string[];
  cmd?: string[];
  /** WORKDIR: the process's directory unless the container sets workingDir (mapped through imagePaths). */
  workingDir?: string;
  /** ENV: under the container's env. */
  env?: Record<string, string>;
}

/** A pod resolved into what its container process gets, before it starts (handed to opts.launch). */
export interface PreparedPod {
  pod: Pod;
  container: Container;
  /** argv with $(VAR) expanded and paths mapped; argv[0] `node` is this Node.js. */
  command: string[];
  /** The whole environment of the process. Holds secret values: never print it. */
  env: Record<string, string>;
  cwd: string;
  /** The pod's local root: `<dir><mountPath>` is each mounted volume. */
  dir: string;
  /** Local path of /var/run/secrets/kubernetes.io/serviceaccount, when the container mounts it. */
  serviceAccountDir?: string;
}

/** A pod's containers, prepared: the init containers in order (sidecars among them), then the main one. */
interface PreparedPlan {
  dir: string;
  inits: { prepared: PreparedPod; sidecar: boolean }[];
  main: PreparedPod;
}

/** What the kubelet did with one init container (a sidecar among them). */
export interface InitContainerRun {
  name: string;
  sidecar: boolean;
  command: string[];
  exitCode?: number;
  /** Sidecars: how often it was started again after it stopped. */
  restarts: number;
  stdout: string;
  stderr: string;
}

/** An image other than the project's: where its paths are on this machine, and its configuration. */
export interface ImageMapping {
  paths?: Record<string, string>;
  config?: ImageConfig;
}

/** A started container: the process, and how a signal reaches the container's command (default child.kill). */
export interface Launched {
  child: ChildProcess;
  kill?(signal: NodeJS.Signals): void;
}

export interface KubeletOptions {
  /** The control plane to join (its admin kubeconfig and its URL). Or kubeConfig + url. */
  controlPlane?: ControlPlane;
  kubeConfig?: KubeConfig;
  /** https://127.0.0.1:<port>: what KUBERNETES_SERVICE_HOST/PORT point at. */
  url?: string;
  /** Default `test-node`. */
  nodeName?: string;
  /** Image path prefix → local directory, e.g. { '/app': packageRoot() }. */
  imagePaths?: Record<string, string>;
  /** The configuration of every container's image not in opts.images (this project's). */
  image?: ImageConfig;
  /** Image reference prefix → its mapping, e.g. { 'gcr.io/etcd-development/etcd:': { paths: { '/usr/local/bin': dir } } }. */
  images?: Record<string, ImageMapping>;
  /** Added to every container's environment, over everything else. */
  extraEnv?: Record<string, string>;
  /** Starts the prepared container; default: spawn(command) with cwd and env, stdin ignored, stdout/stderr piped. */
  launch?: (prepared: PreparedPod) => Launched | Promise<Launched>;
  /** How often a pod that cannot start yet is tried again (default 1000 ms). */
  retryIntervalMs?: number;
  /** timeoutSeconds of each pod watch: the API server ends it then, and the kubelet watches on (default 120). */
  watchTimeoutSeconds?: number;
}

export type PodRunState =
  | 'Unbound' // seen, not yet bound (or not schedulable here: see configErrors)
  | 'Waiting' // bound here, container not started (configErrors says why)
  | 'Running'
  | 'Terminated' // the container stopped; terminal status written
  | 'Unsupported'; // the pod needs something this kubelet does not emulate (problems())

/** What the kubelet did with one pod: a live record, updated as the pod goes. */
export interface PodRun {
  namespace: string;
  name: string;
  uid: string;
  /** The owning Job (label batch.kubernetes.io/job-name), if any. */
  job?: string;
  /** 1 for the first pod of its Job this kubelet saw, 2 for the next (a retry), ...; 0 without a Job. */
  attempt: number;
  state: PodRunState;
  /** Why the container has not started (the latest try), e.g. `secret "x" not found`; empty once it started. */
  configErrors: string[];
  /** The waiting reason written with them: CreateContainerConfigError, ContainerCreating, Unschedulable. */
  waitingReason?: string;
  command?: string[];
  /** The resolved environment. Holds secret values: never print it. */
  env?: Record<string, string>;
  /** The pod's local root while it runs (removed once the container stopped). */
  dir?: string;
  serviceAccountDir?: string;
  pid?: number;
  startedAt?: Date;
  finishedAt?: Date;
  exitCode?: number;
  /** The signal that ended the process, if one did. */
  signal?: NodeJS.Signals;
  /** Signals the kubelet sent (deletion, kill(), stop()), in order. */
  signalsSent: NodeJS.Signals[];
  stdout: string;
  stderr: string;
  /** The init containers (sidecars among them), in the order they started. */
  initContainers: InitContainerRun[];
  /** The pod is gone from the API. */
  deleted: boolean;
}

export interface PodMatch {
  namespace?: string;
  name?: string;
  job?: string;
  attempt?: number;
}

export interface Kubelet {
  nodeName: string;
  /** Every pod this kubelet has seen bound to it or bound itself, in the order it saw them. */
  pods(): PodRun[];
  /** Pods whose process is running. */
  running(): PodRun[];
  /** The newest matching record. */
  pod(match: PodMatch): PodRun | undefined;
  /** Resolves with the first match in `state` (Running: started, also if it has stopped since; Terminated: stopped). */
  waitForPod(match: PodMatch, state: 'Waiting' | 'Running' | 'Terminated', timeoutMs?: number): Promise<PodRun>;
  /** Polls `check` until it returns a value other than undefined/false; rejects after timeoutMs naming `what`. */
  waitFor<T>(
    what: string,
    check: () => T | undefined | false | Promise<T | undefined | false>,
    timeoutMs?: number,
  ): Promise<T>;
  /** Resolves once no pod runs and none waits to start (bounded: rejects after timeoutMs, default 60 s). */
  idle(timeoutMs?: number): Promise<void>;
  /** Fault injection: sends `signal` (default SIGKILL) to a running pod's process. */
  kill(namespace: string, podName: string, signal?: NodeJS.Signals): void;
  /** What this kubelet could not emulate or failed at (status writes refused, ...). */
  problems(): string[];
  /** Stops watching, kills every process (SIGTERM, SIGKILL after 2 s), removes every directory. Idempotent. */
  stop(): Promise<void>;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const POD_IP = '127.0.0.1';
const OUTPUT_LIMIT = 8 * 1024 * 1024;
const JOB_NAME_LABEL = 'batch.kubernetes.io/job-name';
const JOB_UID_LABEL = 'batch.kubernetes.io/controller-uid';

class Unsupported extends Error {
  override name = 'Unsupported';
}

/** Kubernetes' $(VAR) expansion (third_party/forked/golang/expansion): `$$` → `$`, unknown or unclosed references stay. */
export function expandVars(input: string, lookup: (name: string) => string | undefined): string {
  return input.replace(/\$(\$|\(([^)]*)\))/g, (whole, inner: string, name: string | undefined) => {
    if (inner === '$') return '$';
    return lookup(name!) ?? whole;
  });
}

const errorCode = (err: unknown): number | undefined => {
  const code = (err as { code?: unknown; statusCode?: unknown })?.code ?? (err as { statusCode?: unknown })?.statusCode;
  return typeof code === 'number' ? code : undefined;
};
/** The API's Status message of a client-node error, else the error's message. */
const errorMessage = (err: unknown): string => {
  const body = (err as { body?: unknown })?.body;
  if (typeof body === 'string') {
    try {
      const message = (JSON.parse(body) as { message?: string }).message;
      if (message) return message;
    } catch {
      // not JSON
    }
  }
  return (err as Error)?.message ?? String(err);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function checkRelative(path: string): void {
  if (isAbsolute(path) || path.split('/').includes('..'))
    throw new Unsupported(`invalid relative path ${JSON.stringify(path)} (the API server would reject this pod)`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Go's FormatMap for downward API labels/annotations: sorted `key="value"` lines. */
function formatMap(map: Record<string, string> | undefined): string {
  return Object.keys(map ?? {})
    .sort()
    .map((k) => `${k}=${JSON.stringify(map![k])}`)
    .join('\n');
}

/** A missing object or key the pod needs: the pod waits (the message is the kubelet's). */
class NotReady extends Error {
  constructor(
    readonly reason: 'CreateContainerConfigError' | 'ContainerCreating',
    message: string,
  ) {
    super(message);
  }
}

interface ResolveContext {
  core: CoreV1Api;
  /** The kubelet's directory: one directory per pod below it. */
  root: string;
  nodeName: string;
  apiHost: string;
  apiPort: number;
  imagePaths: Record<string, string>;
  image: ImageConfig;
  images: Record<string, ImageMapping>;
  extraEnv: Record<string, string>;
}

/** Secret `data` (base64) or ConfigMap `data` (+ `binaryData` for volumes) as bytes; undefined when not found. */
async function readSource(
  ctx: ResolveContext,
  kind: 'Secret' | 'ConfigMap',
  namespace: string,
  name: string,
  forEnv: boolean,
): Promise<Map<string, Buffer> | undefined> {
  try {
    const out = new Map<string, Buffer>();
    if (kind === 'Secret') {
      const secret = await ctx.core.readNamespacedSecret({ namespace, name });
      for (const [k, v] of Object.entries(secret.data ?? {})) out.set(k, Buffer.from(v, 'base64'));
    } else {
      const cm = await ctx.core.readNamespacedConfigMap({ namespace, name });
      for (const [k, v] of Object.entries(cm.data ?? {})) out.set(k, Buffer.from(v, 'utf8'));
      if (!forEnv) for (const [k, v] of Object.entries(cm.binaryData ?? {})) out.set(k, Buffer.from(v, 'base64'));
    }
    return out;
  } catch (err) {
    if (errorCode(err) === 404) return undefined;
    throw err;
  }
}

/** A fieldRef as the kubelet resolves it (env: podFieldSelectorRuntimeValue; volumes: the downward API). */
function fieldValue(pod: Pod, ref: FieldRef, nodeName: string): string {
  const path = ref.fieldPath;
  const subscript = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (subscript) return (pod.metadata[subscript[1] as 'labels' | 'annotations'] ?? {})[subscript[2]!] ?? '';
  switch (path) {
    case 'metadata.name':
      return pod.metadata.name;
    case 'metadata.namespace':
      return pod.metadata.namespace;
    case 'metadata.uid':
      return pod.metadata.uid;
    case 'metadata.labels':
      return formatMap(pod.metadata.labels);
    case 'metadata.annotations':
      return formatMap(pod.metadata.annotations);
    case 'spec.nodeName':
      return pod.spec.nodeName ?? nodeName;
    case 'spec.serviceAccountName':
      return pod.spec.serviceAccountName ?? '';
    case 'status.hostIP':
    case 'status.hostIPs':
    case 'status.podIP':
    case 'status.podIPs':
      return POD_IP;
    default:
      throw new Unsupported(`fieldRef ${path} is not emulated`);
  }
}

/** Refuses what this kubelet cannot run faithfully. */
function checkSupported(pod: Pod): Container {
  const spec = pod.spec;
  if (spec.containers.length !== 1)
    throw new Unsupported(`${spec.containers.length} containers: only pods with one container are emulated`);
  if (spec.ephemeralContainers?.length) throw new Unsupported('ephemeral containers are not emulated');
  if ((spec.restartPolicy ?? 'Always') !== 'Never')
    throw new Unsupported(
      `restartPolicy ${spec.restartPolicy ?? 'Always'}: only Never is emulated (no container restarts)`,
    );
  const container = spec.containers[0]!;
  for (const field of ['livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle', 'restartPolicy'] as const) {
    if (container[field] !== undefined) throw new Unsupported(`container ${container.name}: ${field} is not emulated`);
  }
  for (const init of spec.initContainers ?? []) {
    for (const field of ['livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle'] as const) {
      if (init[field] !== undefined) throw new Unsupported(`init container ${init.name}: ${field} is not emulated`);
    }
    if (init.restartPolicy !== undefined && init.restartPolicy !== 'Always')
      throw new Unsupported(
        `init container ${init.name}: restartPolicy ${init.restartPolicy} (only Always, a sidecar)`,
      );
  }
  return container;
}

/**
 * Resolves a pod bound to this node into its process's argv, environment and directories, setting up its volumes
 * under a new temporary directory. Throws NotReady while something it needs is missing (the directory is then
 * removed), Unsupported for what is not emulated.
 */
async function preparePod(pod: Pod, ctx: ResolveContext): Promise<PreparedPlan> {
  const main = checkSupported(pod);
  const { namespace } = pod.metadata;
  // Readable by any user, as a pod's volumes are by its container's user (test/image/recipe.test.ts runs it as 65532).
  const dir = await mkdtemp(join(ctx.root, `${namespace}_${pod.metadata.name}-`));
  await chmod(dir, 0o755);
  try {
    // ---- volumes: every pod volume is set up before any container starts (WaitForAttachAndMount)
    const volumeDirs = new Map<string, string>();
    const mountFailed = (volume: string, why: string) =>
      new NotReady('ContainerCreating', `MountVolume.SetUp failed for volume "${volume}" : ${why}`);
    const writeItems = async (
      vdir: string,
      data: Map<string, Buffer>,
      items: KeyToPath[] | undefined,
      defaultMode: number,
      missingKey: (key: string) => string,
      optional: boolean,
      volume: string,
    ) => {
      for (const item of items ?? [...data.keys()].map((key): KeyToPath => ({ key, path: key }))) {
        checkRelative(item.path);
        const bytes = data.get(item.key);
        if (!bytes) {
          if (optional) continue;
          throw mountFailed(volume, missingKey(item.key));
        }
        await writeVolumeFile(vdir, item.path, bytes, item.mode ?? defaultMode);
      }
    };
    const writeDownward = async (vdir: string, items: DownwardItem[] | undefined, defaultMode: number) => {
      for (const item of items ?? []) {
        checkRelative(item.path);
        if (item.resourceFieldRef !== undefined || !item.fieldRef)
          throw new Unsupported(`downward API item ${item.path}: only fieldRef is emulated`);
        await writeVolumeFile(
          vdir,
          item.path,
          Buffer.from(fieldValue(pod, item.fieldRef, ctx.nodeName)),
          item.mode ?? defaultMode,
        );
      }
    };
    for (const volume of pod.spec.volumes ?? []) {
      const sources = Object.keys(volume).filter((k) => k !== 'name');
      if (sources.length !== 1) throw new Unsupported(`volume ${volume.name}: ${sources.join(', ') || 'no source'}`);
      const vdir = join(dir, '.volumes', volume.name);
      await mkdir(vdir, { recursive: true });
      volumeDirs.set(volume.name, vdir);
      if (volume.emptyDir) continue;
      if (volume.secret || volume.configMap) {
        const kind = volume.secret ? 'Secret' : 'ConfigMap';
        const source = (volume.secret ?? volume.configMap)!;
        const name = (volume.secret ? volume.secret.secretName : volume.configMap!.name) ?? '';
        const data = await readSource(ctx, kind, namespace, name, false);
        if (!data) {
          if (source.optional) continue;
          throw mountFailed(volume.name, `${kind.toLowerCase()} "${name}" not found`);
        }
        const missing = (key: string) =>
          kind === 'Secret'
            ? `references non-existent secret key: ${key}`
            : `configmap references non-existent config key: ${key}`;
        await writeItems(
          vdir,
          data,
          source.items,
          source.defaultMode ?? 0o644,
          missing,
          source.optional === true,
          volume.name,
        );
        continue;
      }
      if (volume.downwardAPI) {
        await writeDownward(vdir, volume.downwardAPI.items, volume.downwardAPI.defaultMode ?? 0o644);
        continue;
      }
      if (volume.projected) {
        const defaultMode = volume.projected.defaultMode ?? 0o644;
        for (const source of volume.projected.sources ?? []) {
          const kinds = Object.keys(source);
          if (kinds.length !== 1) throw new Unsupported(`projected volume ${volume.name}: source ${kinds.join(', ')}`);
          if (source.serviceAccountToken) {
            const { audience, expirationSeconds, path } = source.serviceAccountToken;
            checkRelative(path);
            const sa = pod.spec.serviceAccountName || 'default';
            // As the kubelet's token manager asks: bound to this pod, the projection's audience and lifetime.
            let token: string | undefined;
            try {
              const answer = await ctx.core.createNamespacedServiceAccountToken({
                namespace,
                name: sa,
                body: {
                  spec: {
                    audiences: audience ? [audience] : [],
                    expirationSeconds: expirationSeconds ?? 3600,
                    boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata.name, uid: pod.metadata.uid },
                  },
                },
              });
              token = answer.status?.token;
            } catch (err) {
              const code = errorCode(err);
              if (code !== undefined && code < 500)
                throw mountFailed(volume.name, `failed to fetch token: ${errorMessage(err)}`);
              throw err;
            }
            if (!token) throw mountFailed(volume.name, 'failed to fetch token: the TokenRequest answer holds no token');
            await writeVolumeFile(vdir, path, Buffer.from(token), defaultMode);
          } else if (source.configMap || source.secret) {
            const kind = source.secret ? 'Secret' : 'ConfigMap';
            const s = (source.secret ?? source.configMap)!;
            const name = s.name ?? '';
            const data = await readSource(ctx, kind, namespace, name, false);
            if (!data) {
              if (s.optional) continue;
              throw mountFailed(volume.name, `${kind.toLowerCase()} "${name}" not found`);
            }
            const missing = (key: string) => `${kind.toLowerCase()} ${namespace}/${name} has no key ${key}`;
            await writeItems(vdir, data, s.items, defaultMode, missing, s.optional === true, volume.name);
          } else if (source.downwardAPI) {
            await writeDownward(vdir, source.downwardAPI.items, defaultMode);
          } else {
            throw new Unsupported(`projected volume ${volume.name}: ${kinds.join(', ')} sources are not emulated`);
          }
        }
        continue;
      }
      throw new Unsupported(`volume ${volume.name}: ${sources.join(', ')} volumes are not emulated`);
    }

    // Each container sees its mounts under its own root: the main container's is the pod's directory, an init
    // container's `<dir>/.containers/<name>`.
    const inits: PreparedPlan['inits'] = [];
    for (const init of pod.spec.initContainers ?? []) {
      const root = join(dir, '.containers', init.name);
      await mkdir(root, { recursive: true });
      inits.push({
        prepared: await prepareContainer(pod, init, ctx, root, volumeDirs),
        sidecar: init.restartPolicy === 'Always',
      });
    }
    return { dir, inits, main: await prepareContainer(pod, main, ctx, dir, volumeDirs) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** One container's argv, environment and mounts (under `dir`), its volumes being set up in `volumeDirs`. */
async function prepareContainer(
  pod: Pod,
  container: Container,
  ctx: ResolveContext,
  dir: string,
  volumeDirs: Map<string, string>,
): Promise<PreparedPod> {
  const { namespace } = pod.metadata;
  const mapped = Object.entries(ctx.images).find(([prefix]) => container.image?.startsWith(prefix))?.[1];
  const imageConfig = mapped ? (mapped.config ?? {}) : ctx.image;
  {
    // ---- mounts: `<dir><mountPath>` links to the volume (or its subPath), parents before children
    const pathMap: Array<[string, string]> = Object.entries(mapped ? (mapped.paths ?? {}) : ctx.imagePaths);
    const mounts = [...(container.volumeMounts ?? [])].sort((a, b) => a.mountPath.length - b.mountPath.length);
    let serviceAccountDir: string | undefined;
    for (const mount of mounts) {
      const vdir = volumeDirs.get(mount.name);
      if (!vdir)
        throw new Unsupported(`volumeMount ${mount.name} names no pod volume (the API server would reject this pod)`);
      if (mount.subPathExpr !== undefined)
        throw new Unsupported(`volumeMount ${mount.name}: subPathExpr is not emulated`);
      if (!isAbsolute(mount.mountPath)) throw new Unsupported(`mountPath ${mount.mountPath} is not absolute`);
      if (mount.subPath) checkRelative(mount.subPath);
      const source = mount.subPath ? join(vdir, mount.subPath) : vdir;
      if (!(await exists(source))) await mkdir(source, { recursive: true }); // as the kubelet does for a missing subPath
      const target = join(dir, mount.mountPath);
      await mkdir(dirname(target), { recursive: true });
      await symlink(source, target);
      pathMap.push([mount.mountPath, target]);
      if (mount.mountPath.replace(/\/+$/, '') === SA_DIR) serviceAccountDir = target;
    }

    // ---- environment (kubelet makeEnvironmentVariables): envFrom, then env in order (a value may reference
    // what is defined before it, and the service variables); the service variables are added unless defined.
    const serviceEnv: Record<string, string> = {
      KUBERNETES_SERVICE_HOST: ctx.apiHost,
      KUBERNETES_SERVICE_PORT: String(ctx.apiPort),
      KUBERNETES_SERVICE_PORT_HTTPS: String(ctx.apiPort),
      KUBERNETES_PORT: `tcp://${ctx.apiHost}:${ctx.apiPort}`,
      [`KUBERNETES_PORT_${ctx.apiPort}_TCP`]: `tcp://${ctx.apiHost}:${ctx.apiPort}`,
      [`KUBERNETES_PORT_${ctx.apiPort}_TCP_PROTO`]: 'tcp',
      [`KUBERNETES_PORT_${ctx.apiPort}_TCP_PORT`]: String(ctx.apiPort),
      [`KUBERNETES_PORT_${ctx.apiPort}_TCP_ADDR`]: ctx.apiHost,
    };
    const own = new Map<string, string>();
    for (const from of container.envFrom ?? []) {
      const ref = from.secretRef ?? from.configMapRef;
      if (!ref || (from.secretRef && from.configMapRef))
        throw new Unsupported(`envFrom ${JSON.stringify(from)} is not emulated`);
      const kind = from.secretRef ? 'Secret' : 'ConfigMap';
      const name = ref.name ?? '';
      const data = await readSource(ctx, kind, namespace, name, true);
      if (!data) {
        if (ref.optional) continue;
        throw new NotReady('CreateContainerConfigError', `${kind.toLowerCase()} "${name}" not found`);
      }
      for (const [k, v] of data) own.set(`${from.prefix ?? ''}${k}`, v.toString('utf8'));
    }
    for (const envVar of container.env ?? []) {
      const from = envVar.valueFrom;
      if (!from) {
        own.set(
          envVar.name,
          expandVars(envVar.value ?? '', (name) => own.get(name) ?? serviceEnv[name]),
        );
        continue;
      }
      const ref = from.secretKeyRef ?? from.configMapKeyRef;
      if (ref) {
        const kind = from.secretKeyRef ? 'Secret' : 'ConfigMap';
        const name = ref.name ?? '';
        const data = await readSource(ctx, kind, namespace, name, true);
        if (!data) {
          if (ref.optional) continue;
          throw new NotReady('CreateContainerConfigError', `${kind.toLowerCase()} "${name}" not found`);
        }
        const bytes = data.get(ref.key);
        if (!bytes) {
          if (ref.optional) continue;
          throw new NotReady(
            'CreateContainerConfigError',
            `couldn't find key ${ref.key} in ${kind} ${namespace}/${name}`,
          );
        }
        own.set(envVar.name, bytes.toString('utf8'));
        continue;
      }
      if (from.fieldRef) {
        own.set(envVar.name, fieldValue(pod, from.fieldRef, ctx.nodeName));
        continue;
      }
      throw new Unsupported(`env ${envVar.name}: valueFrom ${Object.keys(from).join(', ')} is not emulated`);
    }
    const containerEnv: Record<string, string> = {
      ...(imageConfig.env ?? {}),
      HOSTNAME: pod.spec.hostname ?? pod.metadata.name,
      ...serviceEnv,
      ...Object.fromEntries(own),
    };

    // ---- paths the process can reach: the longest matching mount or image prefix wins
    pathMap.sort((a, b) => b[0].length - a[0].length);
    const localPath = (value: string): string => {
      for (const [from, to] of pathMap) {
        const prefix = from.replace(/\/+$/, '');
        if (value === prefix || value.startsWith(`${prefix}/`)) return to + value.slice(prefix.length);
      }
      return value;
    };
    const localArg = (arg: string): string => {
      const flag = /^(--?[^=/]+=)(\/.*)$/.exec(arg);
      return flag ? flag[1]! + localPath(flag[2]!) : localPath(arg);
    };

    // ---- argv as a container runtime builds it, then $(VAR) expansion with the final environment
    const argv = container.command?.length
      ? [...container.command, ...(container.args ?? [])]
      : [...(imageConfig.entrypoint ?? []), ...(container.args?.length ? container.args : (imageConfig.cmd ?? []))];
    if (argv.length === 0)
      throw new Unsupported(
        `container ${container.name} has no command and the image (opts.image) gives no entrypoint`,
      );
    const command = argv.map((arg) => localArg(expandVars(arg, (name) => containerEnv[name])));
    if (command[0] === 'node') command[0] = process.execPath;

    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(containerEnv)) env[k] = localPath(v);
    if (serviceAccountDir) env.KUBERNETES_SERVICE_ACCOUNT_DIR = serviceAccountDir;
    env.PATH ??= (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin')
      .split(':')
      .filter((d) => !d.includes('node_modules'))
      .join(':');
    env.HOME ??= '/';
    Object.assign(env, ctx.extraEnv);

    const workingDir = container.workingDir ?? imageConfig.workingDir;
    return {
      pod,
      container,
      command,
      env,
      cwd: workingDir ? localPath(workingDir) : dir,
      dir,
      ...(serviceAccountDir && { serviceAccountDir }),
    };
  }
}

async function writeVolumeFile(vdir: string, path: string, bytes: Buffer, mode: number): Promise<void> {
  const file = join(vdir, path);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, bytes);
  await chmod(file, mode);
}

// ---------------------------------------------------------------------------------------------------------------
// One pod's life on this node

interface KubeletInternals {
  core: CoreV1Api;
  ctx: ResolveContext;
  nodeName: string;
  nodeLabels: Record<string, string>;
  stopped: () => boolean;
  problem: (message: string) => void;
  attemptFor: (pod: Pod) => number;
  launch: (prepared: PreparedPod) => Launched | Promise<Launched>;
  retryIntervalMs: number;
  record: (run: PodRun) => void;
}

type Condition = {
  type: string;
  status: 'True' | 'False';
  reason?: string;
  message?: string;
  lastTransitionTime: string;
  lastProbeTime: null;
};

class PodWorker {
  pod: Pod;
  run: PodRun;
  private gone = false;
  private wake: (() => void) | undefined;
  private poked = false;
  private launched: Launched | undefined;
  private prepared: PreparedPod | undefined;
  /** Init containers' processes while they run, sidecars until the main container ended. */
  private readonly side = new Map<string, { child: Launched; run: InitContainerRun; stopping: boolean }>();
  private sideStopping = false;
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private terminalWritten = false;
  private deleteSent = false;
  private termSentAt: number | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private lastWaiting = '';
  private unschedulableWritten = false;
  private bindSentAt: number | undefined;
  private recorded = false;
  private readonly since = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  readonly done: Promise<void>;

  constructor(
    pod: Pod,
    private readonly k: KubeletInternals,
  ) {
    this.pod = pod;
    this.run = {
      namespace: pod.metadata.namespace,
      name: pod.metadata.name,
      uid: pod.metadata.uid,
      ...(pod.metadata.labels?.[JOB_NAME_LABEL] && { job: pod.metadata.labels[JOB_NAME_LABEL] }),
      attempt: 0,
      state: 'Unbound',
      configErrors: [],
      signalsSent: [],
      stdout: '',
      stderr: '',
      initContainers: [],
      deleted: false,
    };
    this.done = this.loop();
  }

  update(pod: Pod): void {
    this.pod = pod;
    this.poke();
  }

  markGone(): void {
    this.gone = true;
    this.run.deleted = true;
    this.poke();
  }

  poke(): void {
    if (this.wake) this.wake();
    else this.poked = true;
  }

  /** Running, or waiting to start on (or be bound to) this node. */
  busy(): boolean {
    if (this.launched && !this.exit) return true;
    if (this.gone || this.run.state === 'Terminated' || this.run.state === 'Unsupported') return false;
    const phase = this.pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') return false;
    const node = this.pod.spec.nodeName;
    return (node === undefined || node === this.k.nodeName) && !this.pod.metadata.deletionTimestamp;
  }

  signal(signal: NodeJS.Signals): boolean {
    if (!this.launched || this.exit) return false;
    this.run.signalsSent.push(signal);
    (this.launched.kill ?? ((s: NodeJS.Signals) => this.launched!.child.kill(s)))(signal);
    return true;
  }

  /** For stop(): SIGTERM, SIGKILL after graceMs; resolves once the process has gone. */
  async kill(graceMs: number): Promise<void> {
    await this.stopSide(graceMs);
    if (!this.launched || this.exit) return;
    const child = this.launched.child;
    const closed = new Promise<void>((r) =>
      child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r()),
    );
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await closed;
    clearTimeout(timer);
  }

  async cleanup(): Promise<void> {
    clearTimeout(this.killTimer);
    if (this.prepared) {
      const dir = this.prepared.dir;
      this.prepared = undefined;
      await rm(dir, { recursive: true, force: true });
    }
  }

  private nap(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.poked) {
        this.poked = false;
        resolve();
        return;
      }
      const timer = ms === undefined ? undefined : setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
    });
  }

  private async loop(): Promise<void> {
    while (!this.k.stopped()) {
      let wait: number | undefined;
      try {
        const next = await this.step();
        if (next === 'finished') break;
        wait = next;
      } catch (err) {
        if (this.k.stopped()) break;
        this.k.problem(`pod ${this.run.namespace}/${this.run.name}: ${errorMessage(err)}`);
        wait = this.k.retryIntervalMs;
      }
      await this.nap(wait);
    }
    await this.cleanup();
  }

  private recordOnce(): void {
    if (this.recorded) return;
    this.recorded = true;
    this.run.attempt = this.k.attemptFor(this.pod);
    this.k.record(this.run);
  }

  /** One look at the pod; returns how long to wait before the next (undefined: until something changes). */
  private async step(): Promise<number | undefined | 'finished'> {
    const pod = this.pod;
    const { name, namespace, uid } = pod.metadata;
    if (this.gone) {
      // Deleted from the API (force, or after our grace-0 delete): a process still there goes at once.
      if (this.launched && !this.exit) {
        this.signal('SIGKILL');
        return undefined;
      }
      return 'finished';
    }
    const node = pod.spec.nodeName;
    if (node === undefined || node === '') return this.schedule();
    if (node !== this.k.nodeName) return 'finished';
    this.recordOnce();

    // The container is running.
    if (this.launched && !this.exit) {
      if (pod.metadata.deletionTimestamp) {
        const grace = pod.metadata.deletionGracePeriodSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30;
        if (this.termSentAt === undefined) {
          this.termSentAt = Date.now();
          this.signal('SIGTERM');
        }
        clearTimeout(this.killTimer);
        const left = Math.max(0, this.termSentAt + grace * 1000 - Date.now());
        this.killTimer = setTimeout(() => this.signal('SIGKILL'), left);
      }
      return undefined;
    }

    // The container stopped: terminal status, then (once deleted) the final delete.
    if (this.exit && !this.terminalWritten) {
      const grace = pod.metadata.deletionGracePeriodSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30;
      await this.stopSide(grace * 1000);
      await this.writeTerminal();
      await this.cleanup();
      return 0;
    }
    const phase = pod.status?.phase;
    if (this.terminalWritten || phase === 'Succeeded' || phase === 'Failed') {
      if (this.run.state !== 'Terminated' && !this.terminalWritten) this.run.state = 'Terminated';
      if (pod.metadata.deletionTimestamp && !this.deleteSent) {
        this.deleteSent = true;
        await this.k.core
          .deleteNamespacedPod({
            namespace,
            name,
            gracePeriodSeconds: 0,
            body: { gracePeriodSeconds: 0, preconditions: { uid } },
          })
          .catch((err) => {
            if (errorCode(err) !== 404 && errorCode(err) !== 409) throw err;
          });
      }
      return undefined;
    }

    // Not started: deleted before it could start → terminal status (never ran), then the delete.
    if (pod.metadata.deletionTimestamp) {
      await this.writeNeverStarted();
      return 0;
    }
    if (this.run.state === 'Unsupported') return undefined;

    let prepared: PreparedPlan;
    try {
      prepared = await preparePod(pod, this.k.ctx);
    } catch (err) {
      if (err instanceof Unsupported) {
        this.run.state = 'Unsupported';
        this.run.configErrors = [err.message];
        this.k.problem(`pod ${namespace}/${name}: the test kubelet cannot run it: ${err.message}`);
        await this.writeWaiting('TestKubeletUnsupported', err.message);
        return undefined;
      }
      if (err instanceof NotReady) {
        this.run.state = 'Waiting';
        this.run.configErrors = [err.message];
        this.run.waitingReason = err.reason;
        await this.writeWaiting(err.reason, err.message);
        return this.k.retryIntervalMs;
      }
      throw err;
    }
    if (this.k.stopped() || this.pod.metadata.deletionTimestamp || this.gone) {
      await rm(prepared.dir, { recursive: true, force: true });
      return 0;
    }
    await this.start(prepared);
    return undefined;
  }

  /** The scheduler's part: bind to this node if it fits. */
  private async schedule(): Promise<number | undefined> {
    const pod = this.pod;
    if (pod.metadata.deletionTimestamp) return undefined; // the API server deletes an unbound pod itself
    if (pod.spec.schedulingGates?.length) return undefined;
    if (pod.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution !== undefined) {
      this.run.state = 'Unsupported';
      this.k.problem(
        `pod ${pod.metadata.namespace}/${pod.metadata.name}: the test kubelet cannot schedule it: required node affinity is not emulated`,
      );
      return undefined;
    }
    const mismatch = Object.entries(pod.spec.nodeSelector ?? {}).filter(([k, v]) => this.k.nodeLabels[k] !== v);
    if (mismatch.length > 0) {
      this.run.configErrors = [`0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.`];
      this.run.waitingReason = 'Unschedulable';
      if (!this.unschedulableWritten) {
        this.unschedulableWritten = true;
        await this.patchStatus({
          conditions: [this.condition('PodScheduled', 'False', 'Unschedulable', this.run.configErrors[0])],
        });
      }
      return undefined;
    }
    // The watch brings the bound pod; bind again if it never came.
    if (this.bindSentAt !== undefined && Date.now() - this.bindSentAt < 5_000) return 5_000;
    this.bindSentAt = Date.now();
    try {
      await this.k.core.createNamespacedPodBinding({
        namespace: pod.metadata.namespace,
        name: pod.metadata.name,
        body: {
          apiVersion: 'v1',
          kind: 'Binding',
          metadata: { name: pod.metadata.name, namespace: pod.metadata.namespace, uid: pod.metadata.uid },
          target: { apiVersion: 'v1', kind: 'Node', name: this.k.nodeName },
        },
      });
    } catch (err) {
      const code = errorCode(err);
      if (code === 404 || code === 409) return undefined; // gone, or bound by someone else meanwhile
      this.bindSentAt = undefined;
      throw err;
    }
    return undefined;
  }

  /** Starts an init container's (or sidecar's) process; `exited` resolves with its exit code. */
  private async launchSide(prepared: PreparedPod, run: InitContainerRun): Promise<{ exited: Promise<number> }> {
    const launched = await this.k.launch(prepared);
    const child = launched.child;
    trackChild(child);
    const capture = (field: 'stdout' | 'stderr') => (chunk: Buffer) => {
      if (run[field].length < OUTPUT_LIMIT) run[field] += chunk.toString('utf8');
    };
    child.stdout?.on('data', capture('stdout'));
    child.stderr?.on('data', capture('stderr'));
    const entry = { child: launched, run, stopping: false };
    this.side.set(run.name, entry);
    const exited = new Promise<number>((resolve) => {
      child.once('close', (code, signal) => {
        const signo = signal ? (osConstants.signals as Record<string, number>)[signal] : undefined;
        resolve(code ?? (signo !== undefined ? 128 + signo : 137));
      });
      child.once('error', (err) => {
        run.stderr += `test kubelet: cannot start ${prepared.command[0]}: ${err.message}\n`;
        resolve(128);
      });
    });
    void exited.then((code) => {
      run.exitCode = code;
      if (this.side.get(run.name) === entry) this.side.delete(run.name);
    });
    return { exited };
  }

  /** A sidecar: started, and started again 1 s after it stops until the pod's main container ended. */
  private async startSidecar(prepared: PreparedPod, run: InitContainerRun): Promise<void> {
    const { exited } = await this.launchSide(prepared, run);
    void exited.then(async () => {
      await new Promise((r) => setTimeout(r, 1_000));
      if (this.sideStopping || this.exit || this.gone || this.k.stopped() || this.pod.metadata.deletionTimestamp)
        return;
      run.restarts += 1;
      await this.startSidecar(prepared, run).catch((err) =>
        this.k.problem(`sidecar ${run.name}: ${errorMessage(err)}`),
      );
    });
  }

  /** SIGTERM to every init container and sidecar still running, SIGKILL after graceMs; resolves once all stopped. */
  private async stopSide(graceMs: number): Promise<void> {
    this.sideStopping = true;
    await Promise.all(
      [...this.side.values()].map(async (entry) => {
        const child = entry.child.child;
        if (child.exitCode !== null || child.signalCode !== null) return;
        const closed = new Promise<void>((r) => child.once('close', () => r()));
        const send = entry.child.kill ?? ((s: NodeJS.Signals) => child.kill(s));
        send('SIGTERM');
        const timer = setTimeout(() => send('SIGKILL'), graceMs);
        await closed;
        clearTimeout(timer);
      }),
    );
  }

  private sideStatuses(): Record<string, unknown>[] {
    return (this.pod.spec.initContainers ?? []).map((c) => {
      const run = this.run.initContainers.find((r) => r.name === c.name);
      const live = this.side.has(c.name);
      const base = { name: c.name, image: c.image ?? '', imageID: '', restartCount: run?.restarts ?? 0 };
      if (!run) return { ...base, ready: false, started: false, state: { waiting: { reason: 'PodInitializing' } } };
      if (live) return { ...base, ready: true, started: true, state: { running: { startedAt: this.since } } };
      const exitCode = run.exitCode ?? 0;
      return {
        ...base,
        ready: false,
        started: false,
        state: {
          terminated: {
            exitCode,
            reason: exitCode === 0 ? 'Completed' : 'Error',
            startedAt: this.since,
            finishedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
          },
        },
      };
    });
  }

  /** Runs the init containers in order; false when one failed (the pod's terminal status is written) or the pod went. */
  private async runInits(plan: PreparedPlan): Promise<boolean> {
    for (const { prepared, sidecar } of plan.inits) {
      const run: InitContainerRun = {
        name: prepared.container.name,
        sidecar,
        command: prepared.command,
        restarts: 0,
        stdout: '',
        stderr: '',
      };
      this.run.initContainers.push(run);
      if (sidecar) {
        await this.startSidecar(prepared, run);
        continue;
      }
      const { exited } = await this.launchSide(prepared, run);
      let code: number | undefined;
      void exited.then((c) => {
        code = c;
        this.poke();
      });
      while (code === undefined) {
        if (this.gone || this.k.stopped() || this.pod.metadata.deletionTimestamp) {
          await this.stopSide(1_000);
          await this.writeNeverStarted();
          return false;
        }
        await this.nap(200);
      }
      if (code !== 0) {
        await this.stopSide(1_000);
        this.run.exitCode = code;
        this.run.finishedAt = new Date();
        await this.patchStatus({
          phase: 'Failed',
          startTime: this.since,
          ...this.ips(),
          conditions: [
            this.condition('PodReadyToStartContainers', 'False'),
            this.condition(
              'Initialized',
              'False',
              'ContainersNotInitialized',
              `containers with incomplete status: [${run.name}]`,
            ),
            this.condition('Ready', 'False', 'PodFailed'),
            this.condition('ContainersReady', 'False', 'PodFailed'),
            this.condition('PodScheduled', 'True'),
          ],
          initContainerStatuses: this.sideStatuses(),
          containerStatuses: [
            {
              ...this.containerBase(),
              ready: false,
              started: false,
              state: { waiting: { reason: 'PodInitializing' } },
            },
          ],
        });
        this.terminalWritten = true;
        this.run.state = 'Terminated';
        await this.cleanup();
        return false;
      }
    }
    return true;
  }

  private async start(plan: PreparedPlan): Promise<void> {
    const prepared = plan.main;
    this.prepared = prepared;
    if (plan.inits.length > 0) {
      this.run.state = 'Running';
      this.run.dir = plan.dir;
      if (!(await this.runInits(plan))) return;
    }
    this.run.command = prepared.command;
    this.run.env = prepared.env;
    this.run.dir = prepared.dir;
    if (prepared.serviceAccountDir) this.run.serviceAccountDir = prepared.serviceAccountDir;
    this.run.configErrors = [];
    delete this.run.waitingReason;
    const launched = await this.k.launch(prepared);
    this.launched = launched;
    const child = launched.child;
    trackChild(child);
    const capture = (field: 'stdout' | 'stderr') => (chunk: Buffer) => {
      if (this.run[field].length < OUTPUT_LIMIT) this.run[field] += chunk.toString('utf8');
    };
    child.stdout?.on('data', capture('stdout'));
    child.stderr?.on('data', capture('stderr'));
    const finished = (code: number | null, signal: NodeJS.Signals | null) => {
      if (this.exit) return;
      this.exit = { code, signal };
      this.run.finishedAt = new Date();
      clearTimeout(this.killTimer);
      this.poke();
    };
    child.once('close', finished); // after the output streams ended: stdout/stderr are complete
    child.once('error', (err) => {
      this.run.stderr += `test kubelet: cannot start ${prepared.command[0]}: ${err.message}\n`;
      finished(128, null);
    });
    this.run.pid = child.pid ?? -1;
    this.run.startedAt = new Date();
    this.run.state = 'Running';
    const startedAt = this.run.startedAt.toISOString();
    await this.patchStatus({
      phase: 'Running',
      startTime: this.since,
      ...this.ips(),
      conditions: [
        this.condition('PodReadyToStartContainers', 'True'),
        this.condition('Initialized', 'True'),
        this.condition('Ready', 'True'),
        this.condition('ContainersReady', 'True'),
        this.condition('PodScheduled', 'True'),
      ],
      ...(this.pod.spec.initContainers?.length && { initContainerStatuses: this.sideStatuses() }),
      containerStatuses: [{ ...this.containerBase(), ready: true, started: true, state: { running: { startedAt } } }],
    });
  }

  private async writeTerminal(): Promise<void> {
    const { code, signal } = this.exit!;
    const signo = signal ? (osConstants.signals as Record<string, number>)[signal] : undefined;
    const exitCode = code ?? (signo !== undefined ? 128 + signo : 137);
    this.run.exitCode = exitCode;
    if (signal) this.run.signal = signal;
    const phase = exitCode === 0 ? 'Succeeded' : 'Failed';
    await this.patchStatus({
      phase,
      startTime: this.since,
      ...this.ips(),
      conditions: this.terminalConditions(),
      ...(this.pod.spec.initContainers?.length && { initContainerStatuses: this.sideStatuses() }),
      containerStatuses: [
        {
          ...this.containerBase(),
          ready: false,
          started: false,
          state: {
            terminated: {
              exitCode,
              reason: exitCode === 0 ? 'Completed' : 'Error',
              ...(signo !== undefined && { signal: signo }),
              startedAt: this.run.startedAt!.toISOString(),
              finishedAt: this.run.finishedAt!.toISOString(),
              containerID: this.containerId(),
            },
          },
        },
      ],
    });
    this.terminalWritten = true;
    this.run.state = 'Terminated';
  }

  private async writeNeverStarted(): Promise<void> {
    this.run.exitCode = 137;
    this.run.finishedAt = new Date();
    await this.patchStatus({
      phase: 'Failed',
      startTime: this.since,
      ...this.ips(),
      conditions: this.terminalConditions(),
      containerStatuses: [
        {
          ...this.containerBase(),
          ready: false,
          started: false,
          state: {
            terminated: {
              exitCode: 137,
              reason: 'ContainerStatusUnknown',
              message: 'The container could not be located when the pod was terminated',
              startedAt: null,
              finishedAt: this.run.finishedAt.toISOString(),
            },
          },
        },
      ],
    });
    this.terminalWritten = true;
    this.run.state = 'Terminated';
  }

  private async writeWaiting(reason: string, message: string): Promise<void> {
    const key = `${reason}\n${message}`;
    if (key === this.lastWaiting) return;
    this.lastWaiting = key;
    const unready = `containers with unready status: [${this.pod.spec.containers.map((c) => c.name).join(' ')}]`;
    await this.patchStatus({
      phase: 'Pending',
      startTime: this.since,
      ...this.ips(),
      conditions: [
        this.condition('PodReadyToStartContainers', reason === 'ContainerCreating' ? 'False' : 'True'),
        this.condition('Initialized', 'True'),
        this.condition('Ready', 'False', 'ContainersNotReady', unready),
        this.condition('ContainersReady', 'False', 'ContainersNotReady', unready),
        this.condition('PodScheduled', 'True'),
      ],
      containerStatuses: [
        {
          ...this.containerBase(),
          ready: false,
          started: false,
          state: { waiting: { reason, ...(reason !== 'ContainerCreating' && { message }) } },
        },
      ],
    });
  }

  private terminalConditions(): Condition[] {
    return [
      this.condition('PodReadyToStartContainers', 'False'),
      this.condition('Initialized', 'True'),
      this.condition('Ready', 'False', 'PodCompleted'),
      this.condition('ContainersReady', 'False', 'PodCompleted'),
      this.condition('PodScheduled', 'True'),
    ];
  }

  private containerBase() {
    const c = this.pod.spec.containers[0]!;
    return {
      name: c.name,
      image: c.image ?? '',
      imageID: '',
      restartCount: 0,
      ...(this.launched && { containerID: this.containerId() }),
    };
  }

  private containerId(): string {
    return `test-kubelet://${this.pod.metadata.uid}`;
  }

  private ips() {
    return { hostIP: POD_IP, hostIPs: [{ ip: POD_IP }], podIP: POD_IP, podIPs: [{ ip: POD_IP }] };
  }

  private condition(type: string, status: 'True' | 'False', reason?: string, message?: string): Condition {
    return {
      type,
      status,
      ...(reason && { reason }),
      ...(message && { message }),
      lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      lastProbeTime: null,
    };
  }

  private async patchStatus(status: Record<string, unknown>): Promise<void> {
    if (this.k.stopped()) return;
    try {
      await this.k.core.patchNamespacedPodStatus(
        { namespace: this.pod.metadata.namespace, name: this.pod.metadata.name, body: { status } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (err) {
      if (errorCode(err) === 404) return; // gone meanwhile
      throw new Error(`writing pods/status was refused (${errorCode(err) ?? 'no answer'}): ${errorMessage(err)}`, {
        cause: err,
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------

function defaultLaunch(prepared: PreparedPod): Launched {
  const [file, ...args] = prepared.command;
  return { child: spawn(file!, args, { cwd: prepared.cwd, env: prepared.env, stdio: ['ignore', 'pipe', 'pipe'] }) };
}

const matches = (run: PodRun, m: PodMatch) =>
  (m.namespace === undefined || run.namespace === m.namespace) &&
  (m.name === undefined || run.name === m.name) &&
  (m.job === undefined || run.job === m.job) &&
  (m.attempt === undefined || run.attempt === m.attempt);

export async function startKubelet(opts: KubeletOptions): Promise<Kubelet> {
  const kc = opts.kubeConfig ?? (await opts.controlPlane?.kubeConfig());
  const url = opts.url ?? opts.controlPlane?.url;
  if (!kc || !url) throw new Error('startKubelet: give controlPlane, or kubeConfig and url');
  const api = new URL(url);
  const core = kc.makeApiClient(CoreV1Api);
  const nodeName = opts.nodeName ?? 'test-node';
  const goArch = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[arch()] ?? arch();
  const root = await mkdtemp(join(tmpdir(), `test-kubelet-${nodeName}-`));
  await chmod(root, 0o711);
  const ownedRoot = ownDir(root);
  const nodeLabels = {
    'kubernetes.io/hostname': nodeName,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': goArch,
    'beta.kubernetes.io/os': 'linux',
    'beta.kubernetes.io/arch': goArch,
  };

  let stopped = false;
  let stopping: Promise<void> | undefined;
  const problems: string[] = [];
  const workers = new Map<string, PodWorker>();
  const runs: PodRun[] = [];
  const attempts = new Map<string, number>();
  let watchAbort: AbortController | undefined;

  const internals: KubeletInternals = {
    core,
    nodeName,
    nodeLabels,
    stopped: () => stopped,
    problem: (message) => {
      problems.push(message);
      process.stderr.write(`test kubelet ${nodeName}: ${message}\n`);
    },
    attemptFor: (pod) => {
      const job = pod.metadata.labels?.[JOB_UID_LABEL] ?? pod.metadata.labels?.[JOB_NAME_LABEL];
      if (!job) return 0;
      const key = `${pod.metadata.namespace}/${job}`;
      const n = (attempts.get(key) ?? 0) + 1;
      attempts.set(key, n);
      return n;
    },
    launch: opts.launch ?? defaultLaunch,
    retryIntervalMs: opts.retryIntervalMs ?? 1000,
    record: (run) => runs.push(run),
    ctx: {
      core,
      root,
      nodeName,
      apiHost: api.hostname.replace(/^\[(.*)\]$/, '$1'),
      apiPort: Number(api.port || 443),
      imagePaths: opts.imagePaths ?? {},
      image: opts.image ?? {},
      images: opts.images ?? {},
      extraEnv: opts.extraEnv ?? {},
    },
  };

  // ---- the Node
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const nodeStatus = {
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'KubeletReady',
        message: 'test kubelet is posting ready status',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      },
      ...['MemoryPressure', 'DiskPressure', 'PIDPressure'].map((type) => ({
        type,
        status: 'False',
        reason: `KubeletHasNo${type}`,
        message: 'test kubelet',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      })),
    ],
    addresses: [
      { type: 'InternalIP', address: POD_IP },
      { type: 'Hostname', address: nodeName },
    ],
    capacity: { cpu: '2', memory: '4Gi', pods: '110' },
    allocatable: { cpu: '2', memory: '4Gi', pods: '110' },
    nodeInfo: {
      architecture: goArch,
      operatingSystem: 'linux',
      kubeletVersion: 'test-kubelet',
      kubeProxyVersion: '',
      containerRuntimeVersion: 'test-kubelet://local-processes',
      kernelVersion: '',
      osImage: 'test',
      machineID: '',
      systemUUID: '',
      bootID: '',
    },
  };
  try {
    await core.createNode({
      body: { apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName, labels: nodeLabels }, spec: {} },
    });
  } catch (err) {
    if (errorCode(err) !== 409)
      throw new Error(`test kubelet: cannot register Node ${nodeName}: ${errorMessage(err)}`, { cause: err });
  }
  await core.patchNodeStatus(
    { name: nodeName, body: { status: nodeStatus } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );

  // ---- list + watch every pod
  const seen = (pod: Pod): void => {
    if (stopped) return;
    const existing = workers.get(pod.metadata.uid);
    if (existing) {
      existing.update(pod);
      return;
    }
    // Not ours to run, and never will be: bound elsewhere.
    if (pod.spec.nodeName && pod.spec.nodeName !== nodeName) return;
    const worker = new PodWorker(pod, internals);
    workers.set(pod.metadata.uid, worker);
    void worker.done.then(() => {
      if (workers.get(pod.metadata.uid) === worker) workers.delete(pod.metadata.uid);
    });
  };
  const removed = (uid: string): void => workers.get(uid)?.markGone();

  let resourceVersion = '';
  const list = async (): Promise<void> => {
    const answer = await core.listPodForAllNamespaces({});
    const pods = (JSON.parse(JSON.stringify(answer.items)) as Pod[]).filter((p) => p.metadata?.uid);
    const uids = new Set(pods.map((p) => p.metadata.uid));
    for (const uid of [...workers.keys()]) if (!uids.has(uid)) removed(uid);
    for (const pod of pods) seen(pod);
    resourceVersion = answer.metadata?.resourceVersion ?? '';
  };
  const watcher = new Watch(kc);
  const watchLoop = async (): Promise<void> => {
    let needList = false;
    while (!stopped) {
      try {
        if (needList) {
          await list();
          needList = false;
        }
        const ended = await new Promise<unknown>((resolve) => {
          watcher
            .watch(
              '/api/v1/pods',
              { resourceVersion, allowWatchBookmarks: true, timeoutSeconds: opts.watchTimeoutSeconds ?? 120 },
              (type: string, object: unknown) => {
                if (type === 'ERROR') {
                  const status = object as { code?: number; message?: string };
                  if (status.code === 410)
                    needList = true; // too old: relist
                  else internals.problem(`pod watch error: ${status.message ?? JSON.stringify(object)}`);
                  watchAbort?.abort();
                  return;
                }
                const pod = object as Pod;
                if (pod.metadata?.resourceVersion) resourceVersion = pod.metadata.resourceVersion;
                if (type === 'BOOKMARK') return;
                if (type === 'DELETED') removed(pod.metadata.uid);
                else seen(pod);
              },
              (err: unknown) => resolve(err),
            )
            .then((abort) => {
              watchAbort = abort;
              if (stopped) abort.abort();
            }, resolve);
        });
        if (stopped) break;
        if (errorCode(ended) === 410) needList = true;
        else if (ended && !(ended instanceof Error && ended.name === 'AbortError')) await sleep(200);
      } catch {
        if (stopped) break;
        needList = true;
        await sleep(500);
      }
    }
  };
  await list();
  const watching = watchLoop();

  const waitFor = async <T>(
    what: string,
    check: () => T | undefined | false | Promise<T | undefined | false>,
    timeoutMs = 60_000,
  ): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      if (problems.length > 0)
        throw new Error(`while waiting for ${what}, the test kubelet reported: ${problems.join('; ')}`);
      if (stopped) throw new Error(`while waiting for ${what}: the test kubelet was stopped`);
      if (Date.now() > deadline)
        throw new Error(`${what}: not within ${timeoutMs / 1000} s; the kubelet's pods: ${describe()}`);
      await sleep(50);
    }
  };
  const describe = (): string =>
    runs
      .map(
        (r) =>
          `${r.namespace}/${r.name} ${r.state}${r.configErrors.length ? ` (${r.waitingReason}: ${r.configErrors.join('; ')})` : ''}${r.exitCode !== undefined ? ` exit ${r.exitCode}` : ''}`,
      )
      .join(', ') || 'none';
  const newest = (m: PodMatch) => runs.filter((r) => matches(r, m)).at(-1);

  return {
    nodeName,
    pods: () => [...runs],
    running: () => runs.filter((r) => r.state === 'Running'),
    pod: newest,
    waitFor,
    waitForPod: (m, state, timeoutMs = 60_000) =>
      waitFor(
        `pod ${JSON.stringify(m)} ${state}`,
        () =>
          runs.find(
            (r) =>
              matches(r, m) &&
              (state === 'Waiting'
                ? r.state === 'Waiting'
                : state === 'Running'
                  ? r.startedAt !== undefined
                  : r.state === 'Terminated'),
          ),
        timeoutMs,
      ),
    async idle(timeoutMs = 60_000) {
      await waitFor(
        'the kubelet to be idle (no pod running or waiting to start)',
        () => ![...workers.values()].some((w) => w.busy()),
        timeoutMs,
      );
    },
    kill(namespace, podName, signal = 'SIGKILL') {
      const worker = [...workers.values()].find((w) => w.run.namespace === namespace && w.run.name === podName);
      if (!worker?.signal(signal))
        throw new Error(`kill: pod ${namespace}/${podName} has no running process on ${nodeName}`);
    },
    problems: () => [...problems],
    stop() {
      stopping ??= (async () => {
        stopped = true;
        watchAbort?.abort();
        const all = [...workers.values()];
        for (const w of all) w.poke();
        await Promise.all(all.map((w) => w.kill(2_000)));
        await Promise.all(all.map((w) => w.cleanup()));
        await Promise.all(all.map((w) => w.done));
        await watching;
        await rm(root, { recursive: true, force: true });
        ownedRoot.release();
      })();
      return stopping;
    },
  };
}
