// The Metacontroller manifests in metacontroller/: valid against Metacontroller's own CRDs (v4.17.2, a verbatim
// copy in test/fixtures), and consistent with the routes the server registers and with our CRDs in crds/.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import formats from 'ajv-formats';
import {
  API_VERSION,
  BACKUP_CHILDREN_KEY,
  BACKUP_KIND,
  BACKUP_PLURAL,
  JOB_KEY,
  ROLE_BINDING_KEY,
  ROLE_KEY,
  SCHEDULE_KIND,
  SCHEDULE_PLURAL,
  SERVICE_ACCOUNT_KEY,
} from '../../src/api/constants.js';
import { BACKUP_CUSTOMIZE_PATH, BACKUP_FINALIZE_PATH, BACKUP_SYNC_PATH } from '../../src/server/http/backup-hooks.js';
import { packageRoot } from '../../src/api/crds.js';
import { SCHEDULE_SYNC_PATH } from '../../src/server/http/schedule-sync.js';
import {
  metacontrollerCrdFor,
  metacontrollerCrds,
  metacontrollerProblems,
  readYamlDocuments,
  type Crd,
} from '../helpers/metacontroller-crds.js';

type Json = Record<string, unknown>;

interface Manifest {
  file: string;
  index: number;
  object: Json;
}

const root = packageRoot();

function yamlFiles(dir: string): string[] {
  return readdirSync(join(root, dir))
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort()
    .map((f) => join(root, dir, f));
}

const ourCrds = yamlFiles('crds').flatMap((f) => readYamlDocuments(f)) as Crd[];

const manifests: Manifest[] = yamlFiles('metacontroller').flatMap((file) =>
  readYamlDocuments(file).map((object, index) => {
    assert.ok(typeof object === 'object' && !Array.isArray(object), `${file} document ${index} is not a mapping`);
    return { file, index, object: object as Json };
  }),
);

const label = (m: Manifest): string =>
  `${m.file.slice(root.length + 1)}#${m.index} (${String(m.object.kind)} ${String((m.object.metadata as Json | undefined)?.name)})`;

/** A deep copy of an object with one value replaced (or deleted with `undefined`) at a path. */
function withValue(object: Json, path: (string | number)[], value: unknown): Json {
  const copy = structuredClone(object);
  let node: unknown = copy;
  for (const key of path.slice(0, -1)) node = (node as Record<string | number, unknown>)[key];
  const last = path[path.length - 1]!;
  if (value === undefined) delete (node as Record<string | number, unknown>)[last];
  else (node as Record<string | number, unknown>)[last] = value;
  return copy;
}

describe('metacontroller/*.yaml against Metacontroller v4.17.2 CRDs', () => {
  it('the fixture holds the three Metacontroller CRDs', () => {
    assert.deepEqual(metacontrollerCrds.map((c) => c.spec.names.kind).sort(), [
      'CompositeController',
      'ControllerRevision',
      'DecoratorController',
    ]);
    for (const crd of metacontrollerCrds) assert.equal(crd.spec.group, 'metacontroller.k8s.io');
  });

  it('there is at least one manifest, and a CompositeController for the schedules', () => {
    assert.ok(manifests.length > 0, 'metacontroller/ holds no manifests');
    assert.ok(manifests.some((m) => m.object.kind === 'CompositeController'));
  });

  for (const m of manifests) {
    it(`${label(m)} is a known Metacontroller kind that validates against its CRD`, () => {
      assert.ok(
        metacontrollerCrdFor(m.object),
        `${String(m.object.apiVersion)} ${String(m.object.kind)} is not a Metacontroller kind`,
      );
      assert.deepEqual(metacontrollerProblems(m.object), []);
    });
  }

  describe('the validation is real: broken copies of the schedule controller are rejected', () => {
    const cc = () => {
      const found = manifests.find((m) => m.object.kind === 'CompositeController');
      assert.ok(found);
      return found.object;
    };
    // Each broken copy must fail for the intended reason, not just somehow.
    const broken: { name: string; path: (string | number)[]; value: unknown; expect: RegExp }[] = [
      {
        name: 'generateSelector: "yes"',
        path: ['spec', 'generateSelector'],
        value: 'yes',
        expect: /^\/spec\/generateSelector must be boolean/,
      },
      {
        name: 'an unknown updateStrategy method',
        path: ['spec', 'childResources', 0, 'updateStrategy', 'method'],
        value: 'Sometimes',
        expect: /updateStrategy\/method must be equal to one of the allowed values/,
      },
      {
        name: 'hook version v3',
        path: ['spec', 'hooks', 'sync', 'version'],
        value: 'v3',
        expect: /hooks\/sync\/version must be equal to one of the allowed values/,
      },
      {
        name: 'a timeout that is not a Go duration',
        path: ['spec', 'hooks', 'sync', 'webhook', 'timeout'],
        value: '10 seconds',
        expect: /timeout must match format "duration"/,
      },
      {
        name: 'a port that is not an int32',
        path: ['spec', 'hooks', 'sync', 'webhook', 'service', 'port'],
        value: 2 ** 31,
        expect: /port must match format "int32"/,
      },
      {
        name: 'a fractional resyncPeriodSeconds',
        path: ['spec', 'resyncPeriodSeconds'],
        value: 1.5,
        expect: /resyncPeriodSeconds must be integer/,
      },
      {
        name: 'a misspelt field (ignoreStatusChange)',
        path: ['spec', 'parentResource', 'ignoreStatusChange'],
        value: true,
        expect: /"additionalProperty":"ignoreStatusChange"/,
      },
      {
        name: 'a field Metacontroller does not have',
        path: ['spec', 'hooks', 'sync', 'webhook', 'retries'],
        value: 3,
        expect: /"additionalProperty":"retries"/,
      },
      {
        name: 'no parentResource',
        path: ['spec', 'parentResource'],
        value: undefined,
        expect: /required property 'parentResource'/,
      },
      {
        name: 'a child without resource',
        path: ['spec', 'childResources', 0, 'resource'],
        value: undefined,
        expect: /required property 'resource'/,
      },
      {
        name: 'a service without namespace',
        path: ['spec', 'hooks', 'sync', 'webhook', 'service', 'namespace'],
        value: undefined,
        expect: /service must have required property 'namespace'/,
      },
      {
        name: 'an invalid name',
        path: ['metadata', 'name'],
        value: 'Talos_Backup',
        expect: /^\/metadata\/name must be a DNS subdomain/,
      },
      {
        name: 'a namespace on a cluster-scoped object',
        path: ['metadata', 'namespace'],
        value: 'default',
        expect: /^\/metadata\/namespace must not be set/,
      },
    ];
    for (const b of broken) {
      it(`rejects ${b.name}`, () => {
        const found = metacontrollerProblems(withValue(cc(), b.path, b.value));
        assert.ok(
          found.some((p) => b.expect.test(p)),
          `expected a problem matching ${String(b.expect)}, got ${JSON.stringify(found)}`,
        );
      });
    }

    it('accepts unknown-to-ajv formats (int32) and Go durations on a valid copy', () => {
      const copy = withValue(
        withValue(cc(), ['spec', 'hooks', 'sync', 'webhook', 'timeout'], '1m30s'),
        ['spec', 'resyncPeriodSeconds'],
        60,
      );
      assert.deepEqual(metacontrollerProblems(copy), []);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Consistency with the server and with crds/.

/** The CRD in crds/ that serves `<group>/<version>` `resource`. */
function ourCrd(apiVersion: string, resource: string): { crd: Crd; version: Crd['spec']['versions'][number] } {
  const matches = ourCrds.flatMap((crd) =>
    crd.spec.names.plural === resource
      ? crd.spec.versions
          .filter((v) => `${crd.spec.group}/${v.name}` === apiVersion)
          .map((version) => ({ crd, version }))
      : [],
  );
  assert.equal(matches.length, 1, `exactly one CRD in crds/ must serve ${apiVersion} ${resource}`);
  return matches[0]!;
}

/** Metacontroller's children-map key: Go's GroupVersionKind text form, `Kind.group/version` (`Kind.version` for core). */
function childrenKey(kind: string, group: string, version: string): string {
  return group === '' ? `${kind}.${version}` : `${kind}.${group}/${version}`;
}

describe('the schedule CompositeController matches the server and crds/', () => {
  const found = manifests.find(
    (m) => m.object.kind === 'CompositeController' && (m.object.metadata as Json).name === 'talos-etcd-backup-schedule',
  );
  const spec = (found?.object.spec ?? {}) as {
    generateSelector?: unknown;
    resyncPeriodSeconds?: unknown;
    parentResource: { apiVersion: string; resource: string; ignoreStatusChanges?: unknown };
    childResources: { apiVersion: string; resource: string; updateStrategy?: { method?: string } }[];
    hooks: { sync: { version?: string; webhook: { url?: string; path?: string; timeout?: string; service?: Json } } };
    [key: string]: unknown;
  };

  it('exists as talos-etcd-backup-schedule', () => {
    assert.ok(found, 'metacontroller/ has no CompositeController named talos-etcd-backup-schedule');
  });

  it('the sync hook path is the route the server registers', () => {
    assert.equal(spec.hooks.sync.webhook.path, SCHEDULE_SYNC_PATH);
    assert.equal(spec.hooks.sync.webhook.url, undefined, 'url would override service + path');
  });

  it('calls the talos-etcd-backup Service over plain HTTP on port 8080 with hook version v1 and a 10s timeout', () => {
    assert.deepEqual(spec.hooks.sync.webhook.service, {
      name: 'talos-etcd-backup',
      namespace: 'talos-etcd-backup',
      port: 8080,
      protocol: 'http',
    });
    assert.equal(spec.hooks.sync.version, 'v1');
    assert.equal(spec.hooks.sync.webhook.timeout, '10s');
  });

  it('the parent is our TalosEtcdBackupSchedule CRD, which has the status subresource Metacontroller requires', () => {
    assert.equal(spec.parentResource.apiVersion, API_VERSION);
    assert.equal(spec.parentResource.resource, SCHEDULE_PLURAL);
    const { crd, version } = ourCrd(spec.parentResource.apiVersion, spec.parentResource.resource);
    assert.equal(crd.spec.names.kind, SCHEDULE_KIND);
    assert.equal(version.served, true);
    assert.ok(
      version.subresources?.status !== undefined,
      `${crd.metadata.name} ${version.name} lacks subresources.status`,
    );
  });

  it('the only child is our TalosEtcdBackup CRD', () => {
    assert.equal(spec.childResources.length, 1);
    const child = spec.childResources[0]!;
    assert.equal(child.apiVersion, API_VERSION);
    assert.equal(child.resource, BACKUP_PLURAL);
    const { crd, version } = ourCrd(child.apiVersion, child.resource);
    assert.equal(crd.spec.names.kind, BACKUP_KIND);
    assert.equal(version.served, true);
    // A namespaced parent can only own children in its own namespace.
    assert.equal(crd.spec.scope, 'Namespaced');
    assert.equal(ourCrd(spec.parentResource.apiVersion, spec.parentResource.resource).crd.spec.scope, 'Namespaced');
  });

  it('the children key Metacontroller will send equals BACKUP_CHILDREN_KEY', () => {
    const child = spec.childResources[0]!;
    const { crd, version } = ourCrd(child.apiVersion, child.resource);
    assert.equal(childrenKey(crd.spec.names.kind, crd.spec.group, version.name), BACKUP_CHILDREN_KEY);
    assert.equal(childrenKey('Pod', '', 'v1'), 'Pod.v1');
  });

  it('backups are never updated in place (OnDelete) and children are selected by a generated selector', () => {
    assert.equal(spec.childResources[0]!.updateStrategy?.method, 'OnDelete');
    assert.equal(spec.generateSelector, true);
  });

  it('resyncs every 300s as a safety net, without ignoreStatusChanges (it disabled resync before v4.17.2)', () => {
    assert.equal(spec.resyncPeriodSeconds, 300);
    assert.equal(spec.parentResource.ignoreStatusChanges, undefined);
  });

  it('uses no Metacontroller v4.15+ feature', () => {
    assert.equal(spec.endpointConfigs, undefined);
    for (const [name, hook] of Object.entries(spec.hooks as Record<string, { version?: string; webhook?: Json }>)) {
      assert.notEqual(hook.version, 'v2', `hooks.${name}.version v2 needs v4.15`);
      for (const field of ['caBundle', 'authorization', 'basicAuth', 'clientTLS'])
        assert.equal(hook.webhook?.[field], undefined, `hooks.${name}.webhook.${field} needs v4.16`);
    }
  });
});

describe('the backup DecoratorController matches the server and crds/', () => {
  const found = manifests.find(
    (m) => m.object.kind === 'DecoratorController' && (m.object.metadata as Json).name === 'talos-etcd-backup',
  );
  const spec = (found?.object.spec ?? {}) as {
    resources: { apiVersion: string; resource: string; labelSelector?: unknown }[];
    attachments: { apiVersion: string; resource: string; updateStrategy?: { method?: string } }[];
    hooks: Record<
      string,
      { version?: string; webhook: { url?: string; path?: string; timeout?: string; service?: Json } }
    >;
    [key: string]: unknown;
  };

  it('exists as talos-etcd-backup (which names its finalizer metacontroller.io/decoratorcontroller-talos-etcd-backup)', () => {
    assert.ok(found, 'metacontroller/ has no DecoratorController named talos-etcd-backup');
  });

  it('decorates our TalosEtcdBackup CRD, all of them', () => {
    assert.equal(spec.resources.length, 1);
    const target = spec.resources[0]!;
    assert.equal(target.apiVersion, API_VERSION);
    assert.equal(target.resource, BACKUP_PLURAL);
    assert.equal(target.labelSelector, undefined, 'a backup that stops matching a selector would be finalized');
    assert.equal(ourCrd(target.apiVersion, target.resource).crd.spec.names.kind, BACKUP_KIND);
  });

  it('the customize, sync and finalize hooks are the routes the server registers, v1, 10s, on the Service', () => {
    const paths = { customize: BACKUP_CUSTOMIZE_PATH, sync: BACKUP_SYNC_PATH, finalize: BACKUP_FINALIZE_PATH };
    assert.deepEqual(Object.keys(spec.hooks).sort(), Object.keys(paths).sort());
    for (const [name, path] of Object.entries(paths)) {
      const hook = spec.hooks[name]!;
      assert.equal(hook.webhook.path, path);
      assert.equal(hook.webhook.url, undefined);
      assert.equal(hook.version, 'v1');
      assert.equal(hook.webhook.timeout, '10s');
      assert.deepEqual(hook.webhook.service, {
        name: 'talos-etcd-backup',
        namespace: 'talos-etcd-backup',
        port: 8080,
        protocol: 'http',
      });
    }
  });

  it('attaches exactly the kinds the hook emits, never updated in place (OnDelete)', () => {
    const keys = spec.attachments.map((a) => {
      const [group, version] = a.apiVersion.includes('/') ? a.apiVersion.split('/') : ['', a.apiVersion];
      const kind = { jobs: 'Job', serviceaccounts: 'ServiceAccount', roles: 'Role', rolebindings: 'RoleBinding' }[
        a.resource
      ];
      assert.ok(kind, `unexpected attachment ${a.resource}`);
      return childrenKey(kind, group!, version!);
    });
    assert.deepEqual(keys.sort(), [JOB_KEY, ROLE_KEY, ROLE_BINDING_KEY, SERVICE_ACCOUNT_KEY].sort());
    for (const a of spec.attachments) assert.equal(a.updateStrategy?.method, 'OnDelete', a.resource);
  });
});
