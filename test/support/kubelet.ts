// A "kubelet emulator": runs a pod's container as a local process, resolving what a real kubelet would hand it, so
// the Job our hook emits runs here as it would in a cluster, against the fake API server (kube-api.ts):
//   - env: value with $(VAR) expansion, secretKeyRef / configMapKeyRef / fieldRef; the kubernetes service variables
//     (KUBERNETES_SERVICE_HOST/PORT); $(VAR) in command and args,
//   - volumes: secret, configMap, emptyDir (subPath supported); service-account token automount
//     (token, ca.crt, namespace),
//   - configErrors: why a real kubelet would not start the container (CreateContainerConfigError, failed
//     MountVolume.SetUp, unknown service account), with the kubelet's messages; runContainer() then refuses.
//
// A process cannot see /var/run/...: volumes live under a temporary directory (`dir`), and any argv element or env
// value equal to a mount path or under one (`<mountPath>/...`, also `--flag=<path>` in argv) is rewritten to
// `<dir><mountPath>...`; image paths (opts.imagePaths, e.g. /app → the checkout) likewise, and `node` is this Node.
// The one deviation the application sees: KUBERNETES_SERVICE_ACCOUNT_DIR names the mounted service-account directory
// (a real pod has it at /var/run/secrets/kubernetes.io/serviceaccount); the application reads it from there when set.
// Not emulated: securityContext (user, read-only root filesystem), resources, probes, init containers, readOnly
// mounts. Anything else that would change what the container sees (envFrom, other volume types, other fieldRefs)
// throws rather than being skipped silently.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import type { FakeKubeApi, KubeObject } from './kube-api.js';

interface KeyRef {
  name?: string;
  key: string;
  optional?: boolean;
}

export interface EnvVarLike {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: KeyRef; configMapKeyRef?: KeyRef; fieldRef?: { fieldPath: string }; resourceFieldRef?: unknown };
}

interface KeyToPath {
  key: string;
  path: string;
  mode?: number;
}

export interface VolumeLike {
  name: string;
  secret?: { secretName?: string; items?: KeyToPath[]; optional?: boolean; defaultMode?: number };
  configMap?: { name?: string; items?: KeyToPath[]; optional?: boolean; defaultMode?: number };
  emptyDir?: object;
}

export interface ContainerLike {
  name: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: EnvVarLike[];
  envFrom?: unknown[];
  volumeMounts?: Array<{ name: string; mountPath: string; subPath?: string; readOnly?: boolean }>;
}

export interface PodTemplateSpecLike {
  metadata?: { name?: string; generateName?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: {
    containers: ContainerLike[];
    volumes?: VolumeLike[];
    serviceAccountName?: string;
    automountServiceAccountToken?: boolean;
    nodeName?: string;
  };
}

export interface PreparedContainer {
  /** resolved argv: container.command + container.args, with image paths mapped to the local checkout */
  command: string[];
  /** resolved environment (only what the container would see, plus PATH/HOME from the test process) */
  env: Record<string, string>;
  /** Why a real kubelet would refuse to start this container (CreateContainerConfigError), e.g. 'secret "x" not found' — empty when it would start */
  configErrors: string[];
  /** root of the temporary directory holding the mounted volumes */
  dir: string;
  /** the working directory: workingDir (container's, else the image's) mapped like a path, else `dir` */
  cwd: string;
  /** what fieldRef metadata.name (and HOSTNAME) resolve to */
  podName: string;
  /** Removes `dir`. Idempotent. */
  cleanup(): Promise<void>;
}

export interface PrepareOptions {
  /** Secrets/ConfigMaps/ServiceAccounts are looked up in api's store (namespace = the pod's) */
  api: FakeKubeApi;
  namespace: string;
  /** image path prefix → local directory, e.g. { '/app': <repo root> } */
  imagePaths: Record<string, string>;
  /** default: the first container */
  containerName?: string;
  /** The image's ENTRYPOINT/CMD/WORKDIR, used as a runtime does when the container sets no command (or args). */
  image?: { entrypoint?: string[]; cmd?: string[]; workingDir?: string };
}

export interface ContainerResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** killed (SIGKILL) because timeoutMs passed */
  timedOut: boolean;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

// Last resort, as in etcd.ts: a crashed test must not leave processes or temporary directories behind.
const live = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
    for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** Kubernetes' $(VAR) expansion (third_party/forked/golang/expansion): `$$` → `$`, unknown or unclosed references stay. */
export function expandVars(input: string, lookup: (name: string) => string | undefined): string {
  return input.replace(/\$(\$|\(([^)]*)\))/g, (whole, inner: string, name: string | undefined) => {
    if (inner === '$') return '$';
    return lookup(name!) ?? whole;
  });
}

/** `data` (base64) of a Secret, `data` + `binaryData` of a ConfigMap, as bytes. */
function contents(object: KubeObject, kind: 'Secret' | 'ConfigMap', forEnv: boolean): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const data = (object.data ?? {}) as Record<string, string>;
  for (const [k, v] of Object.entries(data)) out.set(k, kind === 'Secret' ? Buffer.from(v, 'base64') : Buffer.from(v, 'utf8'));
  // env from a ConfigMap reads `data` only; a volume also gets `binaryData`
  if (kind === 'ConfigMap' && !forEnv) for (const [k, v] of Object.entries((object.binaryData ?? {}) as Record<string, string>)) out.set(k, Buffer.from(v, 'base64'));
  return out;
}

function checkRelative(path: string): void {
  if (isAbsolute(path) || path.split('/').includes('..')) throw new Error(`kubelet emulator: invalid relative path ${JSON.stringify(path)} (the API server would reject this pod)`);
}

export async function prepareContainer(podTemplateSpec: PodTemplateSpecLike, opts: PrepareOptions): Promise<PreparedContainer> {
  const { api, namespace } = opts;
  const spec = podTemplateSpec.spec;
  const meta = podTemplateSpec.metadata ?? {};
  const container = opts.containerName === undefined ? spec.containers[0] : spec.containers.find((c) => c.name === opts.containerName);
  if (!container) throw new Error(`kubelet emulator: no container ${opts.containerName ?? '(first)'} in the pod spec`);
  if (container.envFrom?.length) throw new Error('kubelet emulator: envFrom is not emulated');

  installExitHook();
  const dir = await mkdtemp(join(tmpdir(), 'kubelet-'));
  ownedDirs.add(dir);
  const cleanup = async (): Promise<void> => {
    await rm(dir, { recursive: true, force: true });
    ownedDirs.delete(dir);
  };

  try {
    const configErrors: string[] = [];
    const serviceAccount = spec.serviceAccountName || 'default';
    const generateName = meta.generateName;
    const podName = generateName ? `${generateName}${generateName.endsWith('-') ? '' : '-'}local` : 'pod-local';
    const podUid = randomUUID();
    const lookup = (kind: 'Secret' | 'ConfigMap', name: string): KubeObject | undefined => api.get('v1', kind, namespace, name);

    // The ServiceAccount admission plugin: an unknown service account means no pod at all; its
    // automountServiceAccountToken applies when the pod does not say.
    const saObject = api.get('v1', 'ServiceAccount', namespace, serviceAccount);
    if (!saObject && serviceAccount !== 'default') {
      configErrors.push(`pods "${podName}" is forbidden: error looking up service account ${namespace}/${serviceAccount}: serviceaccount "${serviceAccount}" not found`);
    }

    // Volumes: every pod volume is set up (the kubelet waits for all before starting any container).
    const volumeDirs = new Map<string, string>();
    for (const volume of spec.volumes ?? []) {
      const sources = Object.keys(volume).filter((k) => k !== 'name');
      const vdir = join(dir, '.volumes', volume.name);
      await mkdir(vdir, { recursive: true });
      volumeDirs.set(volume.name, vdir);
      const source = volume.secret ?? volume.configMap;
      if (volume.emptyDir && sources.length === 1) continue;
      if (!source || sources.length !== 1) throw new Error(`kubelet emulator: volume ${volume.name} (${sources.join(', ')}) is not emulated; only secret, configMap and emptyDir are`);
      const kind = volume.secret ? 'Secret' : 'ConfigMap';
      const objectName = (volume.secret ? volume.secret.secretName : volume.configMap!.name) ?? '';
      const failed = (why: string): void => {
        configErrors.push(`MountVolume.SetUp failed for volume "${volume.name}" : ${why}`);
      };
      const object = lookup(kind, objectName);
      if (!object) {
        if (!source.optional) failed(`${kind.toLowerCase()} "${objectName}" not found`);
        continue;
      }
      const data = contents(object, kind, false);
      const files = source.items ?? [...data.keys()].map((key) => ({ key, path: key }) as KeyToPath);
      for (const item of files) {
        checkRelative(item.path);
        const bytes = data.get(item.key);
        if (!bytes) {
          if (!source.optional) failed(kind === 'Secret' ? `references non-existent secret key: ${item.key}` : `configmap references non-existent config key: ${item.key}`);
          continue;
        }
        const file = join(vdir, item.path);
        await mkdir(dirname(file), { recursive: true });
        await writeFile(file, bytes);
        await chmod(file, item.mode ?? source.defaultMode ?? 0o644);
      }
    }

    // Mounts: `<dir><mountPath>` is a symlink to the volume (or its subPath), parents before children.
    const mounts = [...(container.volumeMounts ?? [])].sort((a, b) => a.mountPath.length - b.mountPath.length);
    const pathMap: Array<[string, string]> = Object.entries(opts.imagePaths);
    for (const mount of mounts) {
      const vdir = volumeDirs.get(mount.name);
      if (!vdir) throw new Error(`kubelet emulator: volumeMount ${mount.name} names no pod volume (the API server would reject this pod)`);
      if (!isAbsolute(mount.mountPath)) throw new Error(`kubelet emulator: mountPath ${mount.mountPath} is not absolute`);
      if (mount.subPath) checkRelative(mount.subPath);
      const source = mount.subPath ? join(vdir, mount.subPath) : vdir;
      // like the kubelet, a missing subPath becomes a directory
      if (!(await exists(source))) await mkdir(source, { recursive: true });
      const target = join(dir, mount.mountPath);
      await mkdir(dirname(target), { recursive: true });
      await symlink(source, target);
      pathMap.push([mount.mountPath, target]);
    }

    // Service-account token automount (the kube-api-access projected volume), unless the pod (else its
    // ServiceAccount) disables it or the container already mounts something there.
    const automount = (spec.automountServiceAccountToken ?? saObject?.automountServiceAccountToken) !== false;
    const saDir = join(dir, SA_DIR);
    const saMounted = mounts.some((m) => m.mountPath.replace(/\/+$/, '') === SA_DIR);
    if (automount && !saMounted) {
      await mkdir(saDir, { recursive: true });
      await writeFile(join(saDir, 'token'), api.tokenFor(namespace, serviceAccount));
      await writeFile(join(saDir, 'ca.crt'), api.caPem);
      await writeFile(join(saDir, 'namespace'), namespace);
      pathMap.push([SA_DIR, saDir]);
    }

    // Environment (kubelet makeEnvironmentVariables): service variables first, the container's env overrides them;
    // a value may reference variables defined before it; valueFrom is never expanded.
    const serviceEnv: Record<string, string> = {
      KUBERNETES_SERVICE_HOST: api.host,
      KUBERNETES_SERVICE_PORT: String(api.port),
      KUBERNETES_SERVICE_PORT_HTTPS: String(api.port),
      KUBERNETES_PORT: `tcp://${api.host}:${api.port}`,
    };
    const own = new Map<string, string>();
    const resolveEnvVar = (envVar: EnvVarLike): string | undefined => {
      const from = envVar.valueFrom;
      if (!from) return expandVars(envVar.value ?? '', (name) => own.get(name) ?? serviceEnv[name]);
      const ref = from.secretKeyRef ?? from.configMapKeyRef;
      if (ref) {
        const kind = from.secretKeyRef ? 'Secret' : 'ConfigMap';
        const name = ref.name ?? '';
        const object = lookup(kind, name);
        if (!object) {
          if (!ref.optional) configErrors.push(`${kind.toLowerCase()} "${name}" not found`);
          return undefined;
        }
        const bytes = contents(object, kind, true).get(ref.key);
        if (!bytes) {
          if (!ref.optional) configErrors.push(`couldn't find key ${ref.key} in ${kind} ${namespace}/${name}`);
          return undefined;
        }
        return bytes.toString('utf8');
      }
      const fieldPath = from.fieldRef?.fieldPath ?? '';
      const field = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
      if (field) return (meta[field[1] as 'labels' | 'annotations'] ?? {})[field[2]!] ?? '';
      const fields: Record<string, string> = {
        'metadata.name': podName,
        'metadata.namespace': namespace,
        'metadata.uid': podUid,
        'spec.serviceAccountName': serviceAccount,
        'spec.nodeName': spec.nodeName ?? 'local-node',
        'status.podIP': '127.0.0.1',
        'status.hostIP': '127.0.0.1',
      };
      const value = fields[fieldPath];
      if (value === undefined) throw new Error(`kubelet emulator: env ${envVar.name}: valueFrom ${JSON.stringify(from)} is not emulated`);
      return value;
    };
    for (const envVar of container.env ?? []) {
      const value = resolveEnvVar(envVar);
      if (value !== undefined) own.set(envVar.name, value);
    }
    const containerEnv: Record<string, string> = { ...serviceEnv, HOSTNAME: podName, ...Object.fromEntries(own) };

    // Paths the process can reach: the longest matching mount or image prefix wins.
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

    // argv as a container runtime builds it, then $(VAR) expansion with the final environment.
    const argv = container.command?.length
      ? [...container.command, ...(container.args ?? [])]
      : [...(opts.image?.entrypoint ?? []), ...(container.args?.length ? container.args : (opts.image?.cmd ?? []))];
    if (argv.length === 0) throw new Error(`kubelet emulator: container ${container.name} has no command and opts.image gives no entrypoint`);
    const command = argv.map((arg) => localArg(expandVars(arg, (name) => containerEnv[name])));
    if (command[0] === 'node') command[0] = process.execPath;

    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(containerEnv)) env[k] = localPath(v);
    if (automount && !saMounted) env.KUBERNETES_SERVICE_ACCOUNT_DIR = saDir;
    for (const k of ['PATH', 'HOME'] as const) if (env[k] === undefined && process.env[k] !== undefined) env[k] = process.env[k]!;

    const workingDir = container.workingDir ?? opts.image?.workingDir;
    return { command, env, configErrors, dir, cwd: workingDir ? localPath(workingDir) : dir, podName, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Runs the prepared container (no shell, stdin ignored); SIGKILL after timeoutMs (default 120 s). */
export function runContainer(prepared: PreparedContainer, opts: { timeoutMs?: number } = {}): Promise<ContainerResult> {
  if (prepared.configErrors.length > 0) {
    return Promise.reject(new Error(`the kubelet would not start this container: ${prepared.configErrors.join('; ')}`));
  }
  installExitHook();
  const [file, ...args] = prepared.command;
  return new Promise((resolve, reject) => {
    const child = spawn(file!, args, { cwd: prepared.cwd, env: prepared.env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 120_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      live.delete(child);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), timedOut });
    });
  });
}
