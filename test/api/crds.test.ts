// The CRDs are the contract with the API server: shape, printer columns, documentation, and that every
// status field the hooks write is declared (an undeclared one is pruned, and Metacontroller rewrites it forever).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BACKUP_KIND, BACKUP_PLURAL, GROUP, SCHEDULE_KIND, SCHEDULE_PLURAL, VERSION } from '../../src/api/constants.js';
import { crdSchema, loadCrd, type JsonSchema } from '../../src/api/crds.js';
import { COMPRESSIONS, OBJECT_LOCK_MODES, SSE_ALGORITHMS } from '../../src/api/types.js';
import { validateBackupSpec, validateSchedule } from '../../src/api/validation.js';
import { syncSchedule } from '../../src/server/schedule/sync.js';
import { at, backup, backupTemplateSpec, schedule, syncRequest } from '../helpers/builders.js';

const crds = { schedule: loadCrd(SCHEDULE_PLURAL), backup: loadCrd(BACKUP_PLURAL) };

type Node = JsonSchema & { properties?: Record<string, Node>; items?: Node; additionalProperties?: Node | boolean };

/** Every schema node under `properties`, `items` and `additionalProperties`, with its path. */
function* walk(node: Node, path: string): Generator<[string, Node]> {
  yield [path, node];
  for (const [key, child] of Object.entries(node.properties ?? {})) yield* walk(child, `${path}.${key}`);
  if (node.items) yield* walk(node.items, `${path}[]`);
  if (node.additionalProperties && typeof node.additionalProperties === 'object')
    yield* walk(node.additionalProperties, `${path}{}`);
}

/** Paths of fields in `value` that `schema` does not declare (what the API server would prune). */
function undeclared(value: unknown, schema: Node, path = 'status'): string[] {
  if (Array.isArray(value))
    return value.flatMap((v, i) => (schema.items ? undeclared(v, schema.items, `${path}[${i}]`) : [`${path}[${i}]`]));
  if (value === null || typeof value !== 'object') return [];
  if (schema['x-kubernetes-preserve-unknown-fields']) return [];
  return Object.entries(value).flatMap(([key, v]) => {
    const child =
      schema.properties?.[key] ??
      (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
    return child ? undeclared(v, child, `${path}.${key}`) : [`${path}.${key}`];
  });
}

describe('CRDs', () => {
  const cases = [
    {
      name: 'TalosEtcdBackupSchedule',
      crd: crds.schedule,
      kind: SCHEDULE_KIND,
      plural: SCHEDULE_PLURAL,
      shortName: 'tebs',
      columns: ['Schedule', 'Retention', 'Paused', 'Last Backup', 'Next', 'Age'],
    },
    {
      name: 'TalosEtcdBackup',
      crd: crds.backup,
      kind: BACKUP_KIND,
      plural: BACKUP_PLURAL,
      shortName: 'teb',
      columns: ['Phase', 'Cluster', 'Size', 'Age'],
    },
  ];
  for (const c of cases) {
    describe(c.name, () => {
      const version = c.crd.spec.versions[0]!;
      it('is a namespaced v1alpha1 resource of our group with the status subresource', () => {
        assert.equal(c.crd.apiVersion, 'apiextensions.k8s.io/v1');
        assert.equal(c.crd.metadata.name, `${c.plural}.${GROUP}`);
        assert.equal(c.crd.spec.group, GROUP);
        assert.equal(c.crd.spec.scope, 'Namespaced');
        assert.equal(c.crd.spec.names.kind, c.kind);
        assert.deepEqual(c.crd.spec.names.shortNames, [c.shortName]);
        assert.deepEqual(c.crd.spec.names.categories, ['talos-etcd-backup']);
        assert.equal(c.crd.spec.versions.length, 1);
        assert.equal(version.name, VERSION);
        assert.equal(version.served, true);
        assert.equal(version.storage, true);
        assert.deepEqual(version.subresources, { status: {} });
      });

      it('prints the columns users look for, each pointing at a declared field', () => {
        const columns = version.additionalPrinterColumns as { name: string; jsonPath: string; priority?: number }[];
        assert.deepEqual(
          columns.filter((col) => !col.priority).map((col) => col.name),
          c.columns,
        );
        const schema = crdSchema(c.crd) as Node;
        for (const column of columns) {
          if (column.jsonPath === '.metadata.creationTimestamp') continue;
          const node = column.jsonPath
            .split('.')
            .slice(1)
            .reduce<Node | undefined>((n, key) => n?.properties?.[key], schema);
          assert.ok(node, `column ${column.name}: ${column.jsonPath} is not declared`);
        }
      });

      it('describes every field and types every node (a structural schema)', () => {
        for (const [path, node] of walk(crdSchema(c.crd) as Node, '')) {
          // The root `metadata` may carry nothing but its type (the API server refuses even a description).
          if (path !== '' && path !== '.metadata' && !path.endsWith('[]') && !path.endsWith('{}'))
            assert.ok(
              typeof node.description === 'string' && node.description.length > 10,
              `${path} has no description`,
            );
          assert.ok(
            node.type !== undefined || node['x-kubernetes-int-or-string'] === true,
            `${path || '<root>'} has no type`,
          );
        }
      });
    });
  }

  // That the schedule's backupTemplate.spec is the TalosEtcdBackup spec schema: test/api/generated.test.ts.

  it('declares every status field the schedule hook writes, in every state', () => {
    const statusSchema = (crdSchema(crds.schedule) as Node).properties!.status!;
    const children = [backup('2026-01-15T00:00:00Z', 'succeeded'), backup('2026-01-15T06:00:00Z', 'active')];
    const states = [
      schedule({ spec: { concurrencyPolicy: 'Allow' } }),
      schedule({ spec: { paused: true } }),
      schedule({ spec: { schedule: 'nonsense' } }),
      schedule({ spec: { retention: -1 } }),
      schedule({ deletionTimestamp: '2026-01-15T12:00:00Z' }),
    ];
    const tested = {
      ...children[0]!,
      status: {
        ...(children[0]!.status as object),
        restoreTest: {
          requestedAt: '2026-01-15T04:00:00Z',
          result: 'Succeeded',
          completionTime: '2026-01-15T04:03:00Z',
        },
      },
    };
    states.push(schedule({ spec: { restoreTest: { schedule: '0 4 * * *' } } }));
    states.push(schedule({ spec: { restoreTest: { schedule: 'never' } } }));
    children.push(tested);
    for (const parent of states) {
      const { status } = syncSchedule(syncRequest(parent, children), at('2026-01-15T12:00:01Z')).response;
      assert.deepEqual(undeclared(status, statusSchema), [], JSON.stringify(status));
      assert.ok(Object.keys(status).length >= 3);
    }
  });
});

describe('restoreTest settings', () => {
  it("are the same on a backup and on a schedule (but for the backup's requestedAt and the schedule's cron)", () => {
    const backupTest = (crdSchema(crds.backup) as Node).properties!.spec!.properties!.restoreTest!;
    const scheduleTest = (crdSchema(crds.schedule) as Node).properties!.spec!.properties!.restoreTest!;
    const { requestedAt, ...backupSettings } = backupTest.properties!;
    const { schedule: cron, ...scheduleSettings } = scheduleTest.properties!;
    assert.ok(requestedAt && cron);
    assert.deepEqual(scheduleSettings, backupSettings);
    assert.deepEqual(Object.keys(backupSettings).sort(), [
      'activeDeadlineSeconds',
      'etcdImage',
      'identitySecretRef',
      'resources',
      'volumeSizeLimit',
    ]);
  });

  it('default to the etcd image the tests restore into (the etcd 3.6 the harness builds)', async () => {
    const { etcdVersion } = await import('../harness/binaries.js');
    const image = (crdSchema(crds.backup) as Node).properties!.spec!.properties!.restoreTest!.properties!.etcdImage!;
    assert.equal(image.default, `gcr.io/etcd-development/etcd:${etcdVersion('3.6')}`);
  });
});

describe('validation against the CRD schemas', () => {
  it('applies the CRD defaults to a minimal backup spec', () => {
    const result = validateBackupSpec({
      talosConfigSecretRef: { name: 'tc' },
      backupStorage: { s3: { bucket: 'etcd-backups', region: 'us-east-1' } },
    });
    assert.ok(result.ok);
    assert.deepEqual(result.value, {
      talosConfigSecretRef: { name: 'tc', key: 'config' },
      backupStorage: {
        s3: {
          bucket: 'etcd-backups',
          region: 'us-east-1',
          insecureSkipTLSVerify: false,
          prefix: 'talos-operator-etcd-backups',
        },
      },
      compression: 'none',
      deletionPolicy: 'Retain',
      verify: false,
      job: { activeDeadlineSeconds: 3600, backoffLimit: 2 },
    });
  });

  it('applies the CRD defaults to a minimal schedule, without touching the input', () => {
    const input = {
      metadata: { name: 'nightly' },
      spec: { schedule: '@daily', backupTemplate: { spec: backupTemplateSpec() } },
    };
    const before = structuredClone(input);
    const result = validateSchedule(input);
    assert.ok(result.ok);
    assert.equal(result.value.retention, 5);
    assert.equal(result.value.paused, false);
    assert.equal(result.value.concurrencyPolicy, 'Forbid');
    assert.equal(result.value.failedBackupsHistoryLimit, 3);
    assert.deepEqual(input, before);
  });

  const s3 = { bucket: 'etcd-backups', region: 'us-east-1' };
  const invalid: { name: string; spec: unknown; message: RegExp }[] = [
    {
      name: 'neither talos reference',
      spec: { backupStorage: { s3 } },
      message: /spec: exactly one of talosControlPlaneRef and talosConfigSecretRef must be set/,
    },
    {
      name: 'both talos references',
      spec: { talosControlPlaneRef: { name: 'a' }, talosConfigSecretRef: { name: 'b' }, backupStorage: { s3 } },
      message: /exactly one of/,
    },
    {
      name: 'a secret key without an access key',
      spec: {
        talosControlPlaneRef: { name: 'a' },
        backupStorage: { s3: { ...s3, secretAccessKey: { name: 's', key: 'k' } } },
      },
      message: /spec\.backupStorage\.s3: accessKeyID and secretAccessKey must be set together/,
    },
    {
      name: 'a KMS key with AES256',
      spec: {
        talosControlPlaneRef: { name: 'a' },
        backupStorage: { s3: { ...s3, serverSideEncryption: { algorithm: 'AES256', kmsKeyID: 'k' } } },
      },
      message: /kmsKeyID may only be set with algorithm aws:kms/,
    },
    {
      name: 'no backupStorage',
      spec: { talosControlPlaneRef: { name: 'a' } },
      message: /spec\.backupStorage: is required/,
    },
    {
      name: 'an unknown deletionPolicy',
      spec: { talosControlPlaneRef: { name: 'a' }, backupStorage: { s3 }, deletionPolicy: 'Shred' },
      message: /spec\.deletionPolicy: must be one of Retain, Delete/,
    },
    {
      name: 'a prefix with a leading slash',
      spec: { talosControlPlaneRef: { name: 'a' }, backupStorage: { s3: { ...s3, prefix: '/backups' } } },
      message: /spec\.backupStorage\.s3\.prefix: must match pattern/,
    },
    {
      name: 'a negative backoffLimit',
      spec: { talosControlPlaneRef: { name: 'a' }, backupStorage: { s3 }, job: { backoffLimit: -1 } },
      message: /spec\.job\.backoffLimit: must be >= 0/,
    },
    { name: 'not an object', spec: 'backup please', message: /spec: must be object/ },
  ];
  for (const c of invalid) {
    it(`rejects ${c.name} with a message naming the field`, () => {
      const result = validateBackupSpec(c.spec);
      assert.equal(result.ok, false);
      if (!result.ok) assert.match(result.problems.join('\n'), c.message);
    });
  }
});

describe('retentionPolicy in the schedule CRD', () => {
  const spec = (retentionPolicy: unknown, retention = 5) => ({
    metadata: { name: 'nightly' },
    spec: { schedule: '@hourly', retention, retentionPolicy, backupTemplate: { spec: backupTemplateSpec() } },
  });
  it('accepts counts that add up to 1000 with retention, and keepWithin durations', () => {
    for (const policy of [
      { keepHourly: 24, keepDaily: 7, keepWeekly: 4, keepMonthly: 12, keepYearly: 3 },
      { keepLast: 995 },
      { keepWithin: '1y6m' },
      { keepWithin: '2w3d12h' },
    ])
      assert.ok(validateSchedule(spec(policy)).ok, JSON.stringify(policy));
  });
  const refused: [string, unknown, number, RegExp][] = [
    ['counts adding up to more than 1000', { keepHourly: 500, keepDaily: 500 }, 1, /add up to more than 1000/],
    ['an empty policy', {}, 5, /retentionPolicy: must NOT have fewer than 1 properties/],
    ['a count of 0', { keepDaily: 0 }, 5, /keepDaily: must be >= 1/],
    ['keepWithin with units out of order', { keepWithin: '1d1y' }, 5, /keepWithin: must match pattern/],
    [
      'keepWithin with no unit',
      { keepWithin: '7' },
      5,
      /keepWithin: must (match pattern|NOT have fewer than 2 characters)/,
    ],
  ];
  for (const [name, policy, retention, message] of refused)
    it(`refuses ${name}, saying why`, () => {
      const result = validateSchedule(spec(policy, retention));
      assert.equal(result.ok, false);
      if (!result.ok) assert.match(result.problems.join('\n'), message);
    });
});

describe('the enums the code lists (src/api/types.ts) are the CRDs’ own', () => {
  const enumsAt = (suffix: string): [string, unknown][] =>
    Object.entries(crds).flatMap(([name, crd]) =>
      [...walk(crdSchema(crd) as Node, name)]
        .filter(([path, node]) => path.endsWith(suffix) && Array.isArray(node.enum))
        .map(([path, node]) => [path, node.enum] as [string, unknown]),
    );
  const cases: [string, readonly string[]][] = [
    ['.spec.compression', COMPRESSIONS],
    ['.spec.backupTemplate.spec.compression', COMPRESSIONS],
    ['.s3.serverSideEncryption.algorithm', SSE_ALGORITHMS],
    ['.s3.objectLock.mode', OBJECT_LOCK_MODES],
  ];
  for (const [suffix, values] of cases)
    it(`${suffix}: ${values.join(', ')}`, () => {
      const found = enumsAt(suffix);
      assert.ok(found.length > 0, `no enum at ${suffix}`);
      for (const [path, enumeration] of found) assert.deepEqual(enumeration, [...values], path);
    });
});
