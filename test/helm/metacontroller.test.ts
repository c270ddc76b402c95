// The chart's CompositeController and DecoratorController: valid against Metacontroller's own CRDs (the v4.17.2
// copy in test/fixtures), equal to metacontroller/*.yaml apart from labels and the release's Service, and calling
// that Service on routes the server really registers (the probes and the ServiceMonitor too).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { parse } from 'yaml';
import { packageRoot } from '../../src/api/crds.js';
import { buildApp } from '../../src/server/app.js';
import { BACKUP_CUSTOMIZE_PATH, BACKUP_FINALIZE_PATH, BACKUP_SYNC_PATH } from '../../src/server/http/backup-hooks.js';
import { SCHEDULE_SYNC_PATH } from '../../src/server/http/schedule-sync.js';
import { ALL_FEATURES, ALL_FEATURES_RELEASE, renderChart, type KubeObject } from '../harness/helm.js';
import { metacontrollerProblems } from '../helpers/metacontroller-crds.js';

type J = any;

const root = packageRoot();

// ---------------------------------------------------------------------------------------------------------------

function staticManifest(file: string): KubeObject {
  return parse(readFileSync(join(root, 'metacontroller', file), 'utf8')) as KubeObject;
}

function withoutLabels(object: KubeObject): KubeObject {
  const copy = structuredClone(object);
  delete copy.metadata.labels;
  return copy;
}

/** The static manifest as the chart should render it for another release: name and hook Service replaced. */
function retarget(object: KubeObject, name: string, service: object, patch: (spec: J) => void = () => {}): KubeObject {
  const copy = withoutLabels(object);
  copy.metadata.name = name;
  for (const hook of Object.values(copy.spec.hooks) as J[]) hook.webhook.service = service;
  patch(copy.spec);
  return copy;
}

function one(objects: KubeObject[], kind: string): KubeObject {
  const found = objects.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, kind);
  return found[0]!;
}

const HOOK_PATHS = {
  CompositeController: { sync: SCHEDULE_SYNC_PATH },
  DecoratorController: { customize: BACKUP_CUSTOMIZE_PATH, sync: BACKUP_SYNC_PATH, finalize: BACKUP_FINALIZE_PATH },
} as const;

describe('the chart Metacontroller controllers, default release (talos-etcd-backup in talos-etcd-backup)', () => {
  let objects: KubeObject[];
  before(async () => {
    objects = await renderChart();
  });

  for (const kind of ['CompositeController', 'DecoratorController']) {
    it(`the ${kind} validates against Metacontroller's CRD, cluster-scoped`, () => {
      const object = one(objects, kind);
      assert.deepEqual(metacontrollerProblems(object), []);
      assert.equal(object.metadata.namespace, undefined);
    });
  }

  it('the validation is real: a misspelt field and a string resync period are rejected', () => {
    const broken = structuredClone(one(objects, 'CompositeController'));
    broken.spec.hooks.sync.webhook.timeOut = '10s';
    broken.spec.resyncPeriodSeconds = '300';
    const problems = metacontrollerProblems(broken).join('\n');
    assert.match(problems, /"additionalProperty":"timeOut"/);
    assert.match(problems, /resyncPeriodSeconds must be integer/);
  });

  it('equal metacontroller/schedule-controller.yaml and backup-controller.yaml apart from labels', () => {
    assert.deepEqual(
      withoutLabels(one(objects, 'CompositeController')),
      withoutLabels(staticManifest('schedule-controller.yaml')),
    );
    assert.deepEqual(
      withoutLabels(one(objects, 'DecoratorController')),
      withoutLabels(staticManifest('backup-controller.yaml')),
    );
  });

  it('keep the labels of the static manifests (name and component) among the standard ones', () => {
    for (const [kind, file] of [
      ['CompositeController', 'schedule-controller.yaml'],
      ['DecoratorController', 'backup-controller.yaml'],
    ] as const) {
      const labels = one(objects, kind).metadata.labels ?? {};
      for (const [key, value] of Object.entries(staticManifest(file).metadata.labels ?? {}))
        assert.equal(labels[key], value, `${kind} ${key}`);
    }
  });

  it('metacontroller.enabled=false renders neither controller', async () => {
    const kinds = (await renderChart({ metacontroller: { enabled: false } })).map((o) => o.kind);
    assert.ok(!kinds.includes('CompositeController') && !kinds.includes('DecoratorController'), kinds.join());
    assert.ok(kinds.includes('Deployment'));
  });
});

describe("the chart Metacontroller controllers call this release's Service on the routes the server registers", () => {
  let objects: KubeObject[];
  let app: FastifyInstance;
  before(async () => {
    objects = await renderChart(ALL_FEATURES, ALL_FEATURES_RELEASE);
    app = await buildApp();
  });
  after(() => app.close());

  it('equal the static manifests with the release name, Service, resync period and hook timeout substituted', () => {
    const service = { name: 'backups-talos-etcd-backup', namespace: 'ops', port: 9090, protocol: 'http' };
    const tuned = (spec: J) => {
      spec.resyncPeriodSeconds = 600;
      for (const hook of Object.values(spec.hooks) as J[]) hook.webhook.timeout = '15s';
    };
    assert.deepEqual(
      withoutLabels(one(objects, 'CompositeController')),
      retarget(staticManifest('schedule-controller.yaml'), 'backups-talos-etcd-backup-schedule', service, tuned),
    );
    assert.deepEqual(
      withoutLabels(one(objects, 'DecoratorController')),
      retarget(staticManifest('backup-controller.yaml'), 'backups-talos-etcd-backup', service, tuned),
    );
    for (const kind of ['CompositeController', 'DecoratorController'])
      assert.deepEqual(metacontrollerProblems(one(objects, kind)), []);
  });

  it('every hook targets the rendered Service: its name, namespace and port, which forwards to the server port', () => {
    const service = one(objects, 'Service');
    const container = one(objects, 'Deployment').spec.template.spec.containers[0];
    const servicePort = service.spec.ports.find((p: J) => p.name === 'http');
    const containerPort = container.ports.find((p: J) => p.name === servicePort.targetPort);
    assert.ok(containerPort, `the Service targets port ${servicePort.targetPort}, which the container names`);
    assert.equal(
      String(containerPort.containerPort),
      container.env.find((e: J) => e.name === 'PORT').value,
      'the server listens where the Service forwards',
    );
    for (const kind of ['CompositeController', 'DecoratorController'] as const) {
      for (const [name, hook] of Object.entries(one(objects, kind).spec.hooks) as [string, J][]) {
        assert.deepEqual(
          hook.webhook.service,
          {
            name: service.metadata.name,
            namespace: service.metadata.namespace,
            port: servicePort.port,
            protocol: 'http',
          },
          `${kind} ${name}`,
        );
        assert.equal(hook.webhook.url, undefined, 'url would override service and path');
      }
    }
  });

  it('the hook paths are exactly the server routes, which accept POST', () => {
    for (const kind of ['CompositeController', 'DecoratorController'] as const) {
      const hooks = one(objects, kind).spec.hooks as Record<string, J>;
      assert.deepEqual(
        Object.fromEntries(Object.entries(hooks).map(([name, hook]) => [name, hook.webhook.path])),
        HOOK_PATHS[kind],
      );
      for (const hook of Object.values(hooks))
        assert.ok(app.hasRoute({ method: 'POST', url: hook.webhook.path }), `POST ${hook.webhook.path}`);
    }
  });

  it('the probes and the ServiceMonitor use GET routes the server registers, on the http port', () => {
    const container = one(objects, 'Deployment').spec.template.spec.containers[0];
    const gets = [
      container.readinessProbe.httpGet,
      container.livenessProbe.httpGet,
      ...one(objects, 'ServiceMonitor').spec.endpoints,
    ];
    assert.deepEqual(
      gets.map((g: J) => g.path),
      ['/readyz', '/healthz', '/metrics'],
    );
    for (const g of gets) {
      assert.equal(g.port, 'http');
      assert.ok(app.hasRoute({ method: 'GET', url: g.path }), `GET ${g.path}`);
    }
    assert.ok(!app.hasRoute({ method: 'GET', url: '/nonexistent' }), 'hasRoute is a real check');
  });
});
