// Where a backup's snapshot comes from (src/server/backup/talos-source.ts), as a table: the talosconfig Secret, the
// endpoints and the cluster name, from a talosconfig Secret or a related TalosControlPlane, or why not (yet).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RELATED_CONTROL_PLANE_KEY } from '../../../src/api/constants.js';
import type { BackupSpec } from '../../../src/api/types.js';
import type { KubernetesObject, ObjectMap } from '../../../src/server/metacontroller/types.js';
import { relatedObject, resolveTalosSource, type SourceResolution } from '../../../src/server/backup/talos-source.js';
import { controlPlane, NS } from './fixtures.js';

const s3 = { bucket: 'etcd-backups' };
const bySecret = (patch: Partial<BackupSpec> = {}): BackupSpec =>
  ({ talosConfigSecretRef: { name: 'etcd-backup', key: 'config' }, backupStorage: { s3 }, ...patch }) as BackupSpec;
const byControlPlane = (patch: Partial<BackupSpec> = {}, name = 'my-cluster'): BackupSpec =>
  ({ talosControlPlaneRef: { name }, backupStorage: { s3 }, ...patch }) as BackupSpec;
const related = (...objects: KubernetesObject[]): ObjectMap => ({
  [RELATED_CONTROL_PLANE_KEY]: Object.fromEntries(objects.map((o) => [o.metadata.name, o])),
});
const metal = (endpoints: string[], opts: { owner?: string } = {}) =>
  controlPlane('my-cluster', { bundleConfig: { clientEndpoint: endpoints }, ...opts });
const NOT_FOUND = `Failed to get TalosControlPlane ${NS}/my-cluster: not found in the backup's namespace`;
const NO_ENDPOINTS =
  `Failed to get TalosControlPlane ${NS}/my-cluster: it lists no Talos API endpoints yet ` +
  '(status.bundleConfig.clientEndpoint is empty; is it provisioned?); set spec.endpoints to give them';
const source = (cluster: string, secret: string, key: string, endpoints?: string[]): SourceResolution => ({
  ok: true,
  source: { cluster, talosconfig: { name: secret, key }, ...(endpoints && { endpoints }) },
});

interface Case {
  name: string;
  spec: BackupSpec;
  related?: ObjectMap;
  expected: SourceResolution;
}

const cases: Case[] = [
  {
    name: "a talosconfig Secret: that Secret, the cluster named after it, the talosconfig's own endpoints",
    spec: bySecret(),
    expected: source('etcd-backup', 'etcd-backup', 'config'),
  },
  {
    name: 'a talosconfig Secret with spec.clusterName and spec.endpoints: both used as they are',
    spec: bySecret({ clusterName: 'prod', endpoints: ['10.0.0.1'] }),
    expected: source('prod', 'etcd-backup', 'config', ['10.0.0.1']),
  },
  {
    name: 'a metal TalosControlPlane: its client endpoints, the Secret and cluster named after it',
    spec: byControlPlane(),
    related: related(metal(['10.0.0.1', '10.0.0.2'])),
    expected: source('my-cluster', 'my-cluster-talosconfig', 'my-cluster.talosconfig', ['10.0.0.1', '10.0.0.2']),
  },
  {
    name: 'a TalosControlPlane owned by a TalosCluster: the Secret is named after the TalosCluster',
    spec: byControlPlane(),
    related: related(metal(['10.0.0.1'], { owner: 'prod' })),
    expected: source('my-cluster', 'prod-talosconfig', 'my-cluster.talosconfig', ['10.0.0.1']),
  },
  {
    name: 'a container-mode TalosControlPlane without client endpoints: dialled at its Service, named after it',
    spec: byControlPlane(),
    related: related(controlPlane('my-cluster', { mode: 'container' })),
    expected: source('my-cluster', 'my-cluster-talosconfig', 'my-cluster.talosconfig', ['my-cluster']),
  },
  {
    name: 'a bundleConfig that is not JSON lists no endpoints',
    spec: byControlPlane(),
    related: related(controlPlane('my-cluster', { mode: 'container', bundleConfig: 'not json{' })),
    expected: source('my-cluster', 'my-cluster-talosconfig', 'my-cluster.talosconfig', ['my-cluster']),
  },
  {
    name: 'client endpoints that are not non-empty strings are left out',
    spec: byControlPlane(),
    related: related(controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['', 7, '10.0.0.3', null] } })),
    expected: source('my-cluster', 'my-cluster-talosconfig', 'my-cluster.talosconfig', ['10.0.0.3']),
  },
  {
    name: 'spec.endpoints and spec.clusterName override the TalosControlPlane',
    spec: byControlPlane({ endpoints: ['cp.example.internal:50000'], clusterName: 'prod-eu' }),
    related: related(metal(['10.0.0.1'])),
    expected: source('prod-eu', 'my-cluster-talosconfig', 'my-cluster.talosconfig', ['cp.example.internal:50000']),
  },
  {
    name: 'spec.endpoints lets a metal TalosControlPlane without endpoints go ahead',
    spec: byControlPlane({ endpoints: ['10.9.9.9'] }),
    related: related(controlPlane('my-cluster')),
    expected: source('my-cluster', 'my-cluster-talosconfig', 'my-cluster.talosconfig', ['10.9.9.9']),
  },
  {
    name: 'a TalosControlPlane keyed namespace/name (hook v2) is found too',
    spec: byControlPlane(),
    related: { [RELATED_CONTROL_PLANE_KEY]: { [`${NS}/my-cluster`]: metal(['10.0.0.7']) } },
    expected: source('my-cluster', 'my-cluster-talosconfig', 'my-cluster.talosconfig', ['10.0.0.7']),
  },
  {
    name: 'no related objects at all: not found, and it may appear (transient)',
    spec: byControlPlane(),
    expected: { ok: false, transient: true, message: NOT_FOUND },
  },
  {
    name: 'only a TalosControlPlane of another name: not found',
    spec: byControlPlane(),
    related: related(controlPlane('other-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.1'] } })),
    expected: { ok: false, transient: true, message: NOT_FOUND },
  },
  {
    name: 'a metal TalosControlPlane that lists no endpoints yet: transient, suggesting spec.endpoints',
    spec: byControlPlane(),
    related: related(metal([])),
    expected: { ok: false, transient: true, message: NO_ENDPOINTS },
  },
  {
    name: 'a TalosControlPlane named like an Object.prototype key is looked up as an own key only',
    spec: byControlPlane({}, 'constructor'),
    related: related(),
    expected: {
      ok: false,
      transient: true,
      message: `Failed to get TalosControlPlane ${NS}/constructor: not found in the backup's namespace`,
    },
  },
];

describe('resolveTalosSource', () => {
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(resolveTalosSource(c.spec, NS, c.related), c.expected));
  }
});

describe('relatedObject', () => {
  const tcp = metal(['10.0.0.1']);
  const map = related(tcp);
  const CP = RELATED_CONTROL_PLANE_KEY;
  const lookups: { name: string; group: string; key: string; expected: KubernetesObject | undefined }[] = [
    { name: 'an object by its group and key', group: RELATED_CONTROL_PLANE_KEY, key: 'my-cluster', expected: tcp },
    { name: 'another key: not there', group: RELATED_CONTROL_PLANE_KEY, key: 'other', expected: undefined },
    { name: 'another group: not there', group: 'Secret.v1', key: 'my-cluster', expected: undefined },
    { name: "Object.prototype's keys are no objects", group: CP, key: 'constructor', expected: undefined },
    { name: 'nor are they groups', group: '__proto__', key: 'my-cluster', expected: undefined },
  ];
  for (const l of lookups) it(l.name, () => assert.equal(relatedObject(map, l.group, l.key), l.expected));

  it('no map at all: not there', () => {
    assert.equal(relatedObject(undefined, RELATED_CONTROL_PLANE_KEY, 'my-cluster'), undefined);
  });
});
