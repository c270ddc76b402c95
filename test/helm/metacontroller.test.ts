// The chart's CompositeController and DecoratorController: valid against Metacontroller's own CRDs (the v4.17.2
// copy in test/fixtures), equal to metacontroller/*.yaml apart from labels and the release's Service, and calling
// that Service on routes the server really registers (the probes and the ServiceMonitor too).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Ajv, type ValidateFunction } from 'ajv';
import formats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';
import { parse, parseAllDocuments } from 'yaml';
import { packageRoot } from '../../src/api/crds.js';
import { STRUCTURAL_KEYWORDS } from '../../src/api/validation.js';
import { buildApp } from '../../src/app.js';
import { BACKUP_CUSTOMIZE_PATH, BACKUP_FINALIZE_PATH, BACKUP_SYNC_PATH } from '../../src/http/backup-hooks.js';
import { SCHEDULE_SYNC_PATH } from '../../src/http/schedule-sync.js';
import { ALL_FEATURES, ALL_FEATURES_RELEASE, renderChart, type KubeObject } from '../support/helm.js';

type J = any;

const root = packageRoot();

// ---------------------------------------------------------------------------------------------------------------
// Validation against Metacontroller's CRDs as the API server does it: the minimal part of
// test/metacontroller/manifests.test.ts (which tests that validation itself against broken manifests).

const GO_DURATION = /^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$/;

const metacontrollerCrds = (() => {
  const docs = parseAllDocuments(readFileSync(join(root, 'test', 'fixtures', 'metacontroller-crds-v1.yaml'), 'utf8'));
  return (Array.isArray(docs) ? docs : []).map((d) => d.toJS() as J).filter(Boolean);
})();

function collectFormats(schema: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(schema)) for (const s of schema) collectFormats(s, into);
  else if (schema && typeof schema === 'object') {
    for (const [key, value] of Object.entries(schema)) {
      if (key === 'format' && typeof value === 'string') into.add(value);
      else collectFormats(value, into);
    }
  }
  return into;
}

/** Objects with declared properties reject undeclared ones: a misspelt field must fail, not be pruned. */
function closeObjects(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closeObjects);
  if (!schema || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    out[key] = key === 'properties' ? Object.fromEntries(Object.entries(value as J).map(([k, v]) => [k, closeObjects(v)])) : closeObjects(value);
  }
  if (out.type === 'object' && out.properties !== undefined && out.additionalProperties === undefined && out['x-kubernetes-preserve-unknown-fields'] !== true) {
    out.additionalProperties = false;
  }
  return out;
}

const validators = new Map<string, ValidateFunction>();
function validatorFor(object: KubeObject): ValidateFunction | undefined {
  const key = `${object.apiVersion} ${object.kind}`;
  if (!validators.has(key)) {
    const crd = metacontrollerCrds.find((c) => c.spec.names.kind === object.kind && c.spec.versions.some((v: J) => object.apiVersion === `${c.spec.group}/${v.name}`));
    if (!crd) return undefined;
    const schema = crd.spec.versions.find((v: J) => object.apiVersion === `${crd.spec.group}/${v.name}`).schema.openAPIV3Schema;
    const ajv = new Ajv({ strict: true, allErrors: true });
    formats.default(ajv);
    ajv.addVocabulary([...STRUCTURAL_KEYWORDS, 'x-kubernetes-validations']);
    ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
    ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isInteger(n) });
    ajv.addFormat('duration', { type: 'string', validate: (s: string) => GO_DURATION.test(s) });
    for (const format of collectFormats(schema)) if (!(format in ajv.formats)) ajv.addFormat(format, true);
    validators.set(key, ajv.compile(closeObjects(schema) as object));
  }
  return validators.get(key);
}

function crdProblems(object: KubeObject): string[] {
  const validate = validatorFor(object);
  if (!validate) return [`${object.apiVersion} ${object.kind} is not a Metacontroller kind`];
  if (validate(structuredClone(object))) return [];
  return (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
}

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
      assert.deepEqual(crdProblems(object), []);
      assert.equal(object.metadata.namespace, undefined);
    });
  }

  it('the validation is real: a misspelt field and a string resync period are rejected', () => {
    const broken = structuredClone(one(objects, 'CompositeController'));
    broken.spec.hooks.sync.webhook.timeOut = '10s';
    broken.spec.resyncPeriodSeconds = '300';
    const problems = crdProblems(broken).join('\n');
    assert.match(problems, /"additionalProperty":"timeOut"/);
    assert.match(problems, /resyncPeriodSeconds must be integer/);
  });

  it('equal metacontroller/schedule-controller.yaml and backup-controller.yaml apart from labels', () => {
    assert.deepEqual(withoutLabels(one(objects, 'CompositeController')), withoutLabels(staticManifest('schedule-controller.yaml')));
    assert.deepEqual(withoutLabels(one(objects, 'DecoratorController')), withoutLabels(staticManifest('backup-controller.yaml')));
  });

  it('keep the labels of the static manifests (name and component) among the standard ones', () => {
    for (const [kind, file] of [['CompositeController', 'schedule-controller.yaml'], ['DecoratorController', 'backup-controller.yaml']] as const) {
      const labels = one(objects, kind).metadata.labels ?? {};
      for (const [key, value] of Object.entries(staticManifest(file).metadata.labels ?? {})) assert.equal(labels[key], value, `${kind} ${key}`);
    }
  });

  it('metacontroller.enabled=false renders neither controller', async () => {
    const kinds = (await renderChart({ metacontroller: { enabled: false } })).map((o) => o.kind);
    assert.ok(!kinds.includes('CompositeController') && !kinds.includes('DecoratorController'), kinds.join());
    assert.ok(kinds.includes('Deployment'));
  });
});

describe('the chart Metacontroller controllers call this release\'s Service on the routes the server registers', () => {
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
    assert.deepEqual(withoutLabels(one(objects, 'CompositeController')), retarget(staticManifest('schedule-controller.yaml'), 'backups-talos-etcd-backup-schedule', service, tuned));
    assert.deepEqual(withoutLabels(one(objects, 'DecoratorController')), retarget(staticManifest('backup-controller.yaml'), 'backups-talos-etcd-backup', service, tuned));
    for (const kind of ['CompositeController', 'DecoratorController']) assert.deepEqual(crdProblems(one(objects, kind)), []);
  });

  it('every hook targets the rendered Service: its name, namespace and port, which forwards to the server port', () => {
    const service = one(objects, 'Service');
    const container = one(objects, 'Deployment').spec.template.spec.containers[0];
    const servicePort = service.spec.ports.find((p: J) => p.name === 'http');
    const containerPort = container.ports.find((p: J) => p.name === servicePort.targetPort);
    assert.ok(containerPort, `the Service targets port ${servicePort.targetPort}, which the container names`);
    assert.equal(String(containerPort.containerPort), container.env.find((e: J) => e.name === 'PORT').value, 'the server listens where the Service forwards');
    for (const kind of ['CompositeController', 'DecoratorController'] as const) {
      for (const [name, hook] of Object.entries(one(objects, kind).spec.hooks) as [string, J][]) {
        assert.deepEqual(hook.webhook.service, { name: service.metadata.name, namespace: service.metadata.namespace, port: servicePort.port, protocol: 'http' }, `${kind} ${name}`);
        assert.equal(hook.webhook.url, undefined, 'url would override service and path');
      }
    }
  });

  it('the hook paths are exactly the server routes, which accept POST', () => {
    for (const kind of ['CompositeController', 'DecoratorController'] as const) {
      const hooks = one(objects, kind).spec.hooks as Record<string, J>;
      assert.deepEqual(Object.fromEntries(Object.entries(hooks).map(([name, hook]) => [name, hook.webhook.path])), HOOK_PATHS[kind]);
      for (const hook of Object.values(hooks)) assert.ok(app.hasRoute({ method: 'POST', url: hook.webhook.path }), `POST ${hook.webhook.path}`);
    }
  });

  it('the probes and the ServiceMonitor use GET routes the server registers, on the http port', () => {
    const container = one(objects, 'Deployment').spec.template.spec.containers[0];
    const gets = [container.readinessProbe.httpGet, container.livenessProbe.httpGet, ...one(objects, 'ServiceMonitor').spec.endpoints];
    assert.deepEqual(gets.map((g: J) => g.path), ['/readyz', '/healthz', '/metrics']);
    for (const g of gets) {
      assert.equal(g.port, 'http');
      assert.ok(app.hasRoute({ method: 'GET', url: g.path }), `GET ${g.path}`);
    }
    assert.ok(!app.hasRoute({ method: 'GET', url: '/nonexistent' }), 'hasRoute is a real check');
  });
});
