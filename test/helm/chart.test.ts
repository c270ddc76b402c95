// The Helm chart in helm/talos-etcd-backup: lint, render with default values and with every optional feature,
// validate every object against the published Kubernetes schemas (kubernetes-models, and the prometheus-operator
// models for the ServiceMonitor), and check what the schemas cannot: that the server gets a configuration it
// accepts, runs restricted, and that the CRDs, the values schema and the chart version have one source of truth.
// The Metacontroller objects are checked in metacontroller.test.ts.

import assert from 'node:assert/strict';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { isMap, parse, parseAllDocuments, parseDocument } from 'yaml';
import { packageRoot } from '../../src/api/crds.js';
import { packageVersion } from '../../src/api/crds.js';
import { DEFAULTS, parseServerConfig } from '../../src/server/config.js';
import { SNAPSHOT_RUNTIME_ENV } from '../../src/contract/runtime.js';
import { POD_MEMORY_LIMIT_MIB } from '../../bench/serve-process.js';
import {
  ALL_FEATURES,
  ALL_FEATURES_RELEASE,
  CHART_DIR,
  helm,
  helmOk,
  renderChart,
  templateArgs,
  type KubeObject,
} from '../harness/helm.js';

type J = any;

const root = packageRoot();
const version = packageVersion();

// ---------------------------------------------------------------------------------------------------------------
// What the API server checks beyond the OpenAPI schemas (k8s.io/apimachinery/pkg/util/validation).

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function labelProblems(labels: Record<string, unknown> | undefined, where: string): string[] {
  const problems: string[] = [];
  for (const [key, value] of Object.entries(labels ?? {})) {
    const slash = key.lastIndexOf('/');
    const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
    const name = key.slice(slash + 1);
    if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)))
      problems.push(`${where}: label key prefix ${prefix}`);
    if (name.length > 63 || !QUALIFIED_NAME.test(name)) problems.push(`${where}: label key ${key}`);
    if (typeof value !== 'string' || value.length > 63 || !LABEL_VALUE.test(value))
      problems.push(`${where}: label ${key}=${String(value)}`);
  }
  return problems;
}

const MODELS: Record<string, (data: J) => { validate(): void }> = {
  'apps/v1 Deployment': (d) => new Deployment(d),
  'v1 Service': (d) => new Service(d),
  'v1 ConfigMap': (d) => new ConfigMap(d),
  'v1 ServiceAccount': (d) => new ServiceAccount(d),
  'policy/v1 PodDisruptionBudget': (d) => new PodDisruptionBudget(d),
  'networking.k8s.io/v1 NetworkPolicy': (d) => new NetworkPolicy(d),
  'monitoring.coreos.com/v1 ServiceMonitor': (d) => new ServiceMonitor(d),
  'monitoring.coreos.com/v1 PrometheusRule': (d) => new PrometheusRule(d),
};
const CLUSTER_SCOPED = new Set([
  'metacontroller.k8s.io/v1alpha1 CompositeController',
  'metacontroller.k8s.io/v1alpha1 DecoratorController',
]);

/** Everything the API server would refuse in a namespaced object of the chart (Metacontroller kinds: see metacontroller.test.ts). */
function problemsOf(object: KubeObject, namespace: string): string[] {
  const type = `${object.apiVersion} ${object.kind}`;
  const where = `${object.kind} ${object.metadata.name}`;
  const problems: string[] = [];
  const model = MODELS[type];
  if (model) {
    try {
      model(object).validate();
    } catch (error) {
      problems.push(`${where}: ${(error as Error).message}`);
    }
  } else if (!CLUSTER_SCOPED.has(type)) problems.push(`${where}: no schema for ${type}`);
  const { name } = object.metadata;
  if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) problems.push(`${where}: name`);
  if (object.kind === 'Service' && (name.length > 63 || !DNS1035_LABEL.test(name)))
    problems.push(`${where}: a Service name is a DNS-1035 label`);
  if (CLUSTER_SCOPED.has(type) ? object.metadata.namespace !== undefined : object.metadata.namespace !== namespace)
    problems.push(`${where}: namespace ${String(object.metadata.namespace)}`);
  problems.push(...labelProblems(object.metadata.labels, where));
  if (object.kind === 'Deployment')
    problems.push(...labelProblems(object.spec.template.metadata.labels, `${where} pod template`));
  return problems;
}

function byKind(objects: KubeObject[], kind: string): KubeObject {
  const found = objects.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind} expected, got ${found.length}`);
  return found[0]!;
}

/** Whether a matchLabels selector selects objects with these labels. */
function selects(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** The server's configuration from the Deployment's env, as `talos-etcd-backup serve` would read it. */
function serverEnv(deployment: KubeObject): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of deployment.spec.template.spec.containers[0].env as J[]) {
    assert.equal(env[e.name], undefined, `env ${e.name} set twice`);
    env[e.name] = e.value;
  }
  return env;
}

// ---------------------------------------------------------------------------------------------------------------

describe('helm/talos-etcd-backup: Chart.yaml and lint', () => {
  it('is an apiVersion v2 application chart whose version and appVersion equal package.json', () => {
    const chart = parse(readFileSync(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as J;
    assert.equal(chart.apiVersion, 'v2');
    assert.equal(chart.name, 'talos-etcd-backup');
    assert.equal(chart.type, 'application');
    assert.equal(chart.version, version);
    assert.equal(chart.appVersion, version);
  });

  for (const [name, values] of [
    ['default values', {}],
    ['every optional feature on', ALL_FEATURES],
  ] as const) {
    it(`helm lint --strict passes with ${name}`, async () => {
      const { status, stdout, stderr } = await helm(['lint', '--strict', CHART_DIR, ...templateArgs(values).slice(-2)]);
      assert.equal(status, 0, `${stdout}${stderr}`);
      assert.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      assert.doesNotMatch(stdout, /\[(WARNING|ERROR)\]/);
    });
  }
});

describe('helm template with default values', () => {
  let objects: KubeObject[];
  before(async () => {
    objects = await renderChart();
  });

  it('renders the server, its Service, ServiceAccount and PodDisruptionBudget, and both Metacontroller controllers', () => {
    assert.deepEqual(objects.map((o) => `${o.apiVersion} ${o.kind} ${o.metadata.name}`).sort(), [
      'apps/v1 Deployment talos-etcd-backup',
      'metacontroller.k8s.io/v1alpha1 CompositeController talos-etcd-backup-schedule',
      'metacontroller.k8s.io/v1alpha1 DecoratorController talos-etcd-backup',
      'policy/v1 PodDisruptionBudget talos-etcd-backup',
      'v1 Service talos-etcd-backup',
      'v1 ServiceAccount talos-etcd-backup',
    ]);
  });

  it('every object validates against the Kubernetes schemas and API server rules', () => {
    assert.deepEqual(
      objects.flatMap((o) => problemsOf(o, 'talos-etcd-backup')),
      [],
    );
  });

  it('every object carries the standard labels', () => {
    for (const o of objects) {
      const labels = o.metadata.labels ?? {};
      assert.deepEqual(
        {
          name: labels['app.kubernetes.io/name'],
          instance: labels['app.kubernetes.io/instance'],
          version: labels['app.kubernetes.io/version'],
          partOf: labels['app.kubernetes.io/part-of'],
          managedBy: labels['app.kubernetes.io/managed-by'],
          chart: labels['helm.sh/chart'],
        },
        {
          name: 'talos-etcd-backup',
          instance: 'talos-etcd-backup',
          version,
          partOf: 'talos-etcd-backup',
          managedBy: 'Helm',
          chart: `talos-etcd-backup-${version}`,
        },
        `${o.kind} labels`,
      );
      assert.match(
        labels['app.kubernetes.io/component'] ?? '',
        /^(hook-server|schedule-controller|backup-controller)$/,
      );
    }
  });

  it('the Deployment runs 2 replicas of the appVersion image, spread over nodes and zones without blocking scheduling', () => {
    const d = byKind(objects, 'Deployment');
    assert.equal(d.spec.replicas, 2);
    const pod = d.spec.template.spec;
    assert.equal(pod.containers.length, 1);
    assert.equal(pod.containers[0].image, `talos-etcd-backup:${version}`);
    assert.deepEqual(pod.containers[0].args, ['serve']);
    assert.deepEqual(d.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    const spread = pod.topologySpreadConstraints as J[];
    assert.deepEqual(spread.map((c) => c.topologyKey).sort(), [
      'kubernetes.io/hostname',
      'topology.kubernetes.io/zone',
    ]);
    for (const c of spread) {
      assert.equal(c.whenUnsatisfiable, 'ScheduleAnyway');
      assert.deepEqual(c.labelSelector.matchLabels, d.spec.selector.matchLabels);
    }
    assert.ok(selects(d.spec.selector.matchLabels, d.spec.template.metadata.labels));
    const { requests, limits } = pod.containers[0].resources;
    assert.ok(requests.cpu && requests.memory && limits.memory, 'requests and a memory limit by default');
  });

  it('the server is restricted: non-root 65532, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp, no API token', () => {
    const d = byKind(objects, 'Deployment');
    const pod = d.spec.template.spec;
    const container = pod.containers[0];
    assert.deepEqual(pod.securityContext, {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    assert.deepEqual(container.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(byKind(objects, 'ServiceAccount').automountServiceAccountToken, false);
    assert.equal(pod.serviceAccountName, byKind(objects, 'ServiceAccount').metadata.name);
    // The server drains for at most 10 s on SIGTERM (src/server/serve.ts): Kubernetes must wait longer.
    assert.ok(pod.terminationGracePeriodSeconds > 10);
    for (const field of ['hostNetwork', 'hostPID', 'hostIPC', 'volumes']) assert.equal(pod[field], undefined, field);
  });

  it('the Service is a ClusterIP on port 8080 named http, selecting exactly the Deployment pods', () => {
    const s = byKind(objects, 'Service');
    const d = byKind(objects, 'Deployment');
    assert.equal(s.spec.type, 'ClusterIP');
    assert.deepEqual(s.spec.ports, [{ name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }]);
    assert.deepEqual(s.spec.selector, d.spec.selector.matchLabels);
  });

  it('the PodDisruptionBudget keeps 1 of the 2 replicas', () => {
    const pdb = byKind(objects, 'PodDisruptionBudget');
    assert.equal(pdb.spec.minAvailable, 1);
    assert.deepEqual(pdb.spec.selector.matchLabels, byKind(objects, 'Deployment').spec.selector.matchLabels);
  });

  it('the server configuration is what `serve` accepts: port 8080, and the Jobs run the server image', () => {
    const d = byKind(objects, 'Deployment');
    const env = serverEnv(d);
    const config = parseServerConfig(env);
    const container = d.spec.template.spec.containers[0];
    assert.deepEqual(container.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    assert.equal(config.port, 8080);
    assert.equal(config.host, '0.0.0.0');
    assert.deepEqual(config.jobImage, {
      image: container.image,
      pullPolicy: container.imagePullPolicy,
      pullSecrets: [],
    });
  });

  it("the server's limits and timeouts are its defaults: the body limit, a request timeout below the hook timeout, a drain the grace period covers", () => {
    const d = byKind(objects, 'Deployment');
    const config = parseServerConfig(serverEnv(d));
    assert.equal(config.bodyLimit, DEFAULTS.bodyLimit);
    assert.equal(config.requestTimeoutMs, DEFAULTS.requestTimeoutMs);
    assert.equal(config.shutdownDelayMs, DEFAULTS.shutdownDelayMs);
    const hookTimeoutSeconds = Number(
      /^(\d+)s$/.exec(parse(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')).metacontroller.hookTimeout)![1],
    );
    assert.ok(
      config.requestTimeoutMs / 1000 < hookTimeoutSeconds,
      'a request is cut before Metacontroller gives up on it',
    );
    // SIGTERM: the delay, then at most 10 s of draining (src/server/serve.ts), before Kubernetes' SIGKILL.
    assert.ok(d.spec.template.spec.terminationGracePeriodSeconds > config.shutdownDelayMs / 1000 + 10);
    // The pod's memory figures (npm run bench, "worst bodies") are measured with the Job's malloc settings.
    const env = serverEnv(d);
    for (const [name, value] of Object.entries(SNAPSHOT_RUNTIME_ENV)) assert.equal(env[name], value, name);
    assert.equal(d.spec.template.spec.containers[0].resources.limits.memory, `${POD_MEMORY_LIMIT_MIB}Mi`);
  });

  it('the validation is real: broken copies are rejected for the intended reason', () => {
    const broken = (kind: string, change: (o: J) => void): KubeObject => {
      const copy = structuredClone(byKind(objects, kind));
      change(copy);
      return copy;
    };
    const cases: [KubeObject, RegExp][] = [
      [
        broken('Deployment', (d) => (d.spec.template.spec.containers[0].ports[0].containerPort = '8080')),
        /containerPort must be integer/,
      ],
      [broken('Deployment', (d) => delete d.spec.selector), /must have required property selector/],
      [broken('Deployment', (d) => (d.spec.template.metadata.labels.tier = 'a b')), /pod template: label tier=a b/],
      [broken('Service', (s) => (s.metadata.name = '9-hooks')), /DNS-1035/],
      [broken('Service', (s) => (s.spec.ports[0].port = 'http')), /port must be integer/],
      [broken('ServiceAccount', (s) => (s.metadata.namespace = 'elsewhere')), /namespace elsewhere/],
      [broken('PodDisruptionBudget', (p) => (p.spec.selector.matchLabels = 'all')), /matchLabels must be object/],
      [
        {
          apiVersion: 'monitoring.coreos.com/v1',
          kind: 'ServiceMonitor',
          metadata: { name: 'm', namespace: 'talos-etcd-backup' },
          spec: { selector: {}, endpoints: [{ port: 'http', interval: '1 minute' }] },
        },
        /interval must match pattern/,
      ],
      [
        {
          apiVersion: 'networking.k8s.io/v1',
          kind: 'NetworkPolicy',
          metadata: { name: 'n', namespace: 'talos-etcd-backup' },
          spec: { ingress: [] },
        },
        /must have required property podSelector/,
      ],
    ];
    for (const [object, expect] of cases) assert.match(problemsOf(object, 'talos-etcd-backup').join('\n'), expect);
  });

  it('NOTES.txt renders (helm install --dry-run=client, offline) with the Service and the RBAC Metacontroller needs', async () => {
    const out = await helmOk(['install', ...templateArgs({}).slice(1), '--dry-run=client']);
    const notes = out.slice(out.indexOf('NOTES:'));
    assert.match(notes, /Service talos-etcd-backup, port 8080/);
    assert.match(notes, /patch on talosetcdbackups\/status/);
    assert.match(notes, /finalizer\nmetacontroller\.io\/decoratorcontroller-talos-etcd-backup/);
  });

  it('no ServiceMonitor or NetworkPolicy unless enabled', () => {
    assert.ok(!objects.some((o) => ['ServiceMonitor', 'NetworkPolicy'].includes(o.kind)));
  });
});

describe('helm template with every optional feature on', () => {
  let objects: KubeObject[];
  before(async () => {
    objects = await renderChart(ALL_FEATURES, ALL_FEATURES_RELEASE);
  });

  it('renders the ServiceMonitor, PrometheusRule, dashboard and NetworkPolicy too, named after the release', () => {
    assert.deepEqual(objects.map((o) => `${o.kind} ${o.metadata.name}`).sort(), [
      'CompositeController backups-talos-etcd-backup-schedule',
      'ConfigMap backups-talos-etcd-backup-dashboard',
      'DecoratorController backups-talos-etcd-backup',
      'Deployment backups-talos-etcd-backup',
      'NetworkPolicy backups-talos-etcd-backup',
      'PodDisruptionBudget backups-talos-etcd-backup',
      'PrometheusRule backups-talos-etcd-backup',
      'Service backups-talos-etcd-backup',
      'ServiceAccount backups-talos-etcd-backup',
      'ServiceMonitor backups-talos-etcd-backup',
    ]);
  });

  it('every object validates against the Kubernetes and prometheus-operator schemas and API server rules', () => {
    assert.deepEqual(
      objects.flatMap((o) => problemsOf(o, 'ops')),
      [],
    );
  });

  it('commonLabels reach every object and the pods; podLabels and podAnnotations the pods', () => {
    for (const o of objects) assert.equal(o.metadata.labels?.['example.com/team'], 'platform', o.kind);
    const template = byKind(objects, 'Deployment').spec.template;
    assert.equal(template.metadata.labels['example.com/team'], 'platform');
    assert.equal(template.metadata.labels['example.com/tier'], 'control');
    assert.deepEqual(template.metadata.annotations, { 'example.com/note': 'hooks' });
  });

  it('JOB_IMAGE is the server image by digest, with its pull policy and pull Secrets', () => {
    const d = byKind(objects, 'Deployment');
    const pod = d.spec.template.spec;
    const container = pod.containers[0];
    assert.equal(
      container.image,
      `registry.example.com:5000/mirror/talos-etcd-backup:0.1.0-rc.1@sha256:${'ab'.repeat(32)}`,
    );
    assert.equal(container.imagePullPolicy, 'Always');
    assert.deepEqual(pod.imagePullSecrets, [{ name: 'regcred' }, { name: 'mirror-cred' }]);
    const config = parseServerConfig(serverEnv(d));
    assert.deepEqual(config.jobImage, {
      image: container.image,
      pullPolicy: 'Always',
      pullSecrets: ['regcred', 'mirror-cred'],
    });
    assert.deepEqual(
      {
        host: config.host,
        logLevel: config.logLevel,
        bodyLimit: config.bodyLimit,
        keepAliveTimeoutMs: config.keepAliveTimeoutMs,
      },
      { host: '::', logLevel: 'debug', bodyLimit: 67108864, keepAliveTimeoutMs: 95_000 },
    );
    assert.equal(serverEnv(d).NODE_OPTIONS, '--max-old-space-size=192');
  });

  it('scheduling values reach the pods', () => {
    const pod = byKind(objects, 'Deployment').spec.template.spec;
    assert.equal(pod.priorityClassName, 'system-cluster-critical');
    assert.deepEqual(pod.nodeSelector, ALL_FEATURES.nodeSelector);
    assert.deepEqual(pod.tolerations, ALL_FEATURES.tolerations);
    assert.deepEqual(pod.affinity, ALL_FEATURES.affinity);
    assert.equal(pod.terminationGracePeriodSeconds, 45);
    assert.deepEqual(pod.containers[0].resources, ALL_FEATURES.resources);
  });

  it('the Service listens on service.port and forwards to the container port 8080', () => {
    const s = byKind(objects, 'Service');
    assert.deepEqual(s.spec.ports, [{ name: 'http', port: 9090, targetPort: 'http', protocol: 'TCP' }]);
    assert.deepEqual(s.metadata.annotations, { 'example.com/owner': 'platform' });
    assert.deepEqual(byKind(objects, 'ServiceAccount').metadata.annotations, { 'example.com/owner': 'platform' });
    assert.equal(byKind(objects, 'PodDisruptionBudget').spec.minAvailable, '50%');
  });

  it("the ServiceMonitor scrapes /metrics on the Service http port, in the release namespace, with its labels, keeping the series' own namespace label", () => {
    const sm = byKind(objects, 'ServiceMonitor');
    const s = byKind(objects, 'Service');
    assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(sm.metadata.labels?.release, 'kube-prometheus-stack');
    assert.ok(selects(sm.spec.selector.matchLabels, s.metadata.labels), 'selects the Service');
    assert.deepEqual(sm.spec.namespaceSelector, { matchNames: ['ops'] });
    assert.deepEqual(sm.spec.endpoints, [
      { port: 'http', path: '/metrics', honorLabels: true, interval: '1m', scrapeTimeout: '20s' },
    ]);
    assert.ok(s.spec.ports.some((p: J) => p.name === 'http'));
  });

  it('the NetworkPolicy admits to port 8080 only Metacontroller pods in its namespace, Prometheus, and the extra rules', () => {
    const np = byKind(objects, 'NetworkPolicy');
    const d = byKind(objects, 'Deployment');
    assert.deepEqual(np.spec.podSelector.matchLabels, d.spec.selector.matchLabels);
    assert.deepEqual(np.spec.policyTypes, ['Ingress']);
    const port = [{ port: d.spec.template.spec.containers[0].ports[0].containerPort, protocol: 'TCP' }];
    assert.deepEqual(np.spec.ingress, [
      // Namespace and pod selector in ONE peer: both must match (two peers would admit either).
      {
        from: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'metacontroller' } },
            podSelector: { matchLabels: { 'app.kubernetes.io/name': 'metacontroller-helm' } },
          },
        ],
        ports: port,
      },
      {
        from: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
            podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } },
          },
        ],
        ports: port,
      },
      ...ALL_FEATURES.networkPolicy.extraIngress,
    ]);
  });

  it('without the ServiceMonitor the NetworkPolicy admits Metacontroller alone', async () => {
    const np = byKind(await renderChart({ networkPolicy: { enabled: true } }), 'NetworkPolicy');
    assert.equal(np.spec.ingress.length, 1);
    assert.equal(np.spec.ingress[0].from[0].podSelector.matchLabels['app.kubernetes.io/name'], 'metacontroller-helm');
  });
});

describe('values that change what is rendered', () => {
  it('one replica gets no PodDisruptionBudget (it would block node drains)', async () => {
    const objects = await renderChart({ replicas: 1 });
    assert.equal(byKind(objects, 'Deployment').spec.replicas, 1);
    assert.ok(!objects.some((o) => o.kind === 'PodDisruptionBudget'));
  });

  it('topologySpreadConstraints: [] removes the spread; an explicit labelSelector is kept', async () => {
    const none = byKind(await renderChart({ topologySpreadConstraints: [] }), 'Deployment');
    assert.equal(none.spec.template.spec.topologySpreadConstraints, undefined);
    const own = {
      maxSkew: 2,
      topologyKey: 'kubernetes.io/hostname',
      whenUnsatisfiable: 'DoNotSchedule',
      labelSelector: { matchLabels: { team: 'x' } },
    };
    const d = byKind(await renderChart({ topologySpreadConstraints: [own] }), 'Deployment');
    assert.deepEqual(d.spec.template.spec.topologySpreadConstraints, [own]);
  });

  it('talosOperator.enabled: auto is whether the cluster serves TalosControlPlane; true and false are given; the deadline reaches the server', async () => {
    const talosOperator = async (values: object, extra: string[] = []) => {
      const out = await helmOk([...templateArgs(values), ...extra]);
      return /name: TALOS_OPERATOR\n\s+value: "(\w+)"/.exec(out)?.[1];
    };
    assert.equal(await talosOperator({}), 'false', 'helm template without a cluster knows no such kind');
    assert.equal(await talosOperator({}, ['--api-versions', 'talos.alperen.cloud/v1alpha1/TalosControlPlane']), 'true');
    assert.equal(await talosOperator({ talosOperator: { enabled: true } }), 'true');
    assert.equal(
      await talosOperator({ talosOperator: { enabled: false } }, [
        '--api-versions',
        'talos.alperen.cloud/v1alpha1/TalosControlPlane',
      ]),
      'false',
    );
    const env = serverEnv(byKind(await renderChart({ server: { attachmentDeadlineSeconds: 120 } }), 'Deployment'));
    assert.equal(env.ATTACHMENT_DEADLINE_SECONDS, '120');
    assert.deepEqual(parseServerConfig(env).backupHooks, { attachmentDeadlineSeconds: 120, talosOperator: false });
  });

  it("the metrics' expiry is three of Metacontroller's resync periods, at least 900 s, and reaches the server", async () => {
    const expiry = async (values: object) => serverEnv(byKind(await renderChart(values), 'Deployment'));
    const byDefault = await expiry({});
    assert.equal(byDefault.METRICS_EXPIRY_SECONDS, '900');
    assert.equal(parseServerConfig(byDefault).metricsExpirySeconds, 900);
    const slow = await expiry({ metacontroller: { resyncPeriodSeconds: 600 } });
    assert.equal(slow.METRICS_EXPIRY_SECONDS, '1800');
    assert.equal(parseServerConfig(slow).metricsExpirySeconds, 1800);
    assert.equal((await expiry({ metacontroller: { resyncPeriodSeconds: 60 } })).METRICS_EXPIRY_SECONDS, '900');
  });

  it('serviceAccount.create=false uses the named ServiceAccount and renders none', async () => {
    const objects = await renderChart({ serviceAccount: { create: false, name: 'existing' } });
    assert.ok(!objects.some((o) => o.kind === 'ServiceAccount'));
    assert.equal(byKind(objects, 'Deployment').spec.template.spec.serviceAccountName, 'existing');
  });
});

describe('values.yaml and values.schema.json', () => {
  const valuesText = readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8');
  const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8')) as J;

  it('every value in values.yaml is commented (itself or the block it is in)', () => {
    const undocumented: string[] = [];
    const visit = (map: unknown, path: string, documented: boolean): void => {
      if (!isMap(map)) return;
      map.items.forEach((pair, index) => {
        const key = String((pair.key as { value?: unknown }).value);
        // yaml attaches the comment above a block's first key to the block itself.
        const own =
          Boolean((pair.key as { commentBefore?: string }).commentBefore) ||
          (index === 0 && Boolean(map.commentBefore));
        if (isMap(pair.value) && pair.value.items.length > 0) visit(pair.value, `${path}${key}.`, documented || own);
        else if (!documented && !own) undocumented.push(`${path}${key}`);
      });
    };
    const doc = parseDocument(valuesText);
    visit(doc.contents, '', false);
    assert.deepEqual(undocumented, []);
  });

  it('the schema describes exactly the top-level values, and strictly (no unknown keys)', () => {
    const values = parse(valuesText) as Record<string, unknown>;
    assert.equal(schema.additionalProperties, false);
    assert.deepEqual(
      Object.keys(schema.properties)
        .filter((k) => k !== 'global')
        .sort(),
      Object.keys(values).sort(),
    );
  });
});

describe('values.schema.json rejects bad values (helm template fails, naming the value)', () => {
  const bad: { name: string; values: object; expect: RegExp }[] = [
    { name: 'replicas: "two"', values: { replicas: 'two' }, expect: /\/replicas.*want integer/ },
    { name: 'replicas: 0', values: { replicas: 0 }, expect: /\/replicas/ },
    {
      name: 'an unknown top-level key (replica)',
      values: { replica: 2 },
      expect: /additional properties 'replica' not allowed/,
    },
    {
      name: 'an unknown nested key (image.pullpolicy)',
      values: { image: { pullpolicy: 'Always' } },
      expect: /\/image.*'pullpolicy'/,
    },
    { name: 'an unknown pull policy', values: { image: { pullPolicy: 'Sometimes' } }, expect: /\/image\/pullPolicy/ },
    {
      name: 'a pull Secret that is not an object name',
      values: { image: { pullSecrets: ['Reg Cred'] } },
      expect: /\/image\/pullSecrets\/0/,
    },
    { name: 'an unknown log level', values: { server: { logLevel: 'verbose' } }, expect: /\/server\/logLevel/ },
    {
      name: 'a grace period not above the 10 s drain',
      values: { terminationGracePeriodSeconds: 10 },
      expect: /\/terminationGracePeriodSeconds/,
    },
    {
      name: 'a request timeout of 0',
      values: { server: { requestTimeoutSeconds: 0 } },
      expect: /\/server\/requestTimeoutSeconds/,
    },
    {
      name: 'a negative shutdown delay',
      values: { server: { shutdownDelaySeconds: -1 } },
      expect: /\/server\/shutdownDelaySeconds/,
    },
    {
      name: 'a hook timeout that is not a Go duration',
      values: { metacontroller: { hookTimeout: '10 seconds' } },
      expect: /\/metacontroller\/hookTimeout/,
    },
    { name: 'a service port out of range', values: { service: { port: 70000 } }, expect: /\/service\/port/ },
    {
      name: 'a label value with a space',
      values: { commonLabels: { team: 'platform team' } },
      expect: /\/commonLabels\/team/,
    },
    { name: 'enabled: "yes"', values: { serviceMonitor: { enabled: 'yes' } }, expect: /\/serviceMonitor\/enabled/ },
  ];
  for (const b of bad) {
    it(`rejects ${b.name}`, async () => {
      const { status, stderr } = await helm(templateArgs(b.values));
      assert.notEqual(status, 0);
      assert.match(stderr, /values don't meet the specifications of the schema/);
      assert.match(stderr, b.expect);
    });
  }

  it('a grace period that does not cover the drain delay plus 10 s fails with a clear message', async () => {
    const { status, stderr } = await helm(
      templateArgs({ terminationGracePeriodSeconds: 20, server: { shutdownDelaySeconds: 15 } }),
    );
    assert.notEqual(status, 0);
    assert.match(
      stderr,
      /terminationGracePeriodSeconds \(20\) must be larger than server\.shutdownDelaySeconds \(15\) \+ 10 s/,
    );
    assert.equal(
      (await helm(templateArgs({ terminationGracePeriodSeconds: 26, server: { shutdownDelaySeconds: 15 } }))).status,
      0,
    );
  });

  it('a release name too long for the DecoratorController finalizer fails with a clear message', async () => {
    const { status, stderr } = await helm(templateArgs({}, { release: 'a-release-name-of-twenty-six' }));
    assert.notEqual(status, 0);
    assert.match(stderr, /longer than 43 characters, too long for the finalizer/);
  });
});

describe('CRDs: crds/ is the one source of truth', () => {
  const crdFiles = readdirSync(join(root, 'crds'))
    .filter((f) => f.endsWith('.yaml'))
    .sort();
  const chartCrds = join(CHART_DIR, 'crds');

  it('the chart crds/ holds only symlinks to ../../../crds/<same file>, one per file in crds/', () => {
    assert.deepEqual(readdirSync(chartCrds).sort(), crdFiles);
    for (const f of crdFiles) {
      assert.ok(lstatSync(join(chartCrds, f)).isSymbolicLink(), `${f} must be a symlink, not a copy`);
      assert.equal(readlinkSync(join(chartCrds, f)), `../../../crds/${f}`);
    }
  });

  it('helm reads them through the links, from the chart directory and from the packaged chart', async () => {
    const dest = mkdtempSync(join(tmpdir(), 'talos-etcd-backup-package-'));
    try {
      await helmOk(['package', CHART_DIR, '--destination', dest]);
      const packaged = join(dest, `talos-etcd-backup-${version}.tgz`);
      for (const source of [CHART_DIR, packaged]) {
        const shown = await helmOk(['show', 'crds', source]);
        const docs = parseAllDocuments(shown);
        assert.ok(Array.isArray(docs));
        const expected = crdFiles.map((f) => parse(readFileSync(join(root, 'crds', f), 'utf8')) as unknown);
        assert.deepEqual(
          docs.map((d) => d.toJS() as unknown),
          expected,
          source,
        );
        for (const f of crdFiles)
          assert.ok(shown.includes(readFileSync(join(root, 'crds', f), 'utf8')), `${source}: ${f} verbatim`);
      }
    } finally {
      rmSync(dest, { recursive: true, force: true });
    }
  });

  it('helm template does not render the CRDs as templates (Helm installs crds/ itself, once)', async () => {
    assert.ok(!(await renderChart()).some((o) => o.kind === 'CustomResourceDefinition'));
  });
});
