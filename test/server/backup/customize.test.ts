// The backup decorator's customize hook (src/server/backup/customize.ts): which related objects Metacontroller
// sends with a backup, never Secrets.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { customizeBackup } from '../../../src/server/backup/customize.js';
import { backup, baseSpec, NS, tcpSpec, withS3 } from './fixtures.js';

describe('customizeBackup', () => {
  it('talosControlPlaneRef: its Namespace, and one rule for that TalosControlPlane, by name, in the backup namespace', () => {
    assert.deepEqual(customizeBackup({ parent: backup({ spec: tcpSpec() }) }).relatedResources, [
      { apiVersion: 'v1', resource: 'namespaces', names: [NS] },
      {
        apiVersion: 'talos.alperen.cloud/v1alpha1',
        resource: 'taloscontrolplanes',
        namespace: NS,
        names: ['my-cluster'],
      },
    ]);
  });

  it('talosConfigSecretRef: only its Namespace (never a rule for Secrets)', () => {
    assert.deepEqual(customizeBackup({ parent: backup() }).relatedResources, [
      { apiVersion: 'v1', resource: 'namespaces', names: [NS] },
    ]);
  });

  it('without talos-operator (TALOS_OPERATOR=false): never a rule for TalosControlPlanes, whose kind would fail every sync', () => {
    assert.deepEqual(
      customizeBackup({ parent: backup({ spec: tcpSpec() }) }, { talosOperator: false }).relatedResources,
      [{ apiVersion: 'v1', resource: 'namespaces', names: [NS] }],
    );
  });

  it('never asks for Secrets or ConfigMaps, whatever the spec', () => {
    const specs = [
      baseSpec(),
      tcpSpec(),
      withS3({ caBundle: { kind: 'ConfigMap', name: 'ca' } }),
      {},
      { talosControlPlaneRef: {} },
      { talosControlPlaneRef: { name: 42 } },
    ];
    for (const spec of specs) {
      for (const rule of customizeBackup({ parent: backup({ spec }) }).relatedResources) {
        assert.ok(!['secrets', 'configmaps'].includes(rule.resource), JSON.stringify(spec));
        assert.ok(rule.names && rule.names.length === 1, 'by name only: never a whole resource type');
      }
    }
  });
});
