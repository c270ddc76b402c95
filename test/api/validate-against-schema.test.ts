// validateAgainstSchema (src/api/validation.ts): any CRD schema, checked as the API server checks a write —
// structure, CEL rules, defaults applied to a copy, and the fields the API server would prune reported as problems.
// (Moved here from the in-memory Metacontroller stand-in's tests; the stand-in on the real API server no longer
// needs it, the hook code does.)

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { API_VERSION, BACKUP_KIND, BACKUP_PLURAL } from '../../src/api/constants.js';
import { crdSchema, loadCrd } from '../../src/api/crds.js';
import { validateAgainstSchema } from '../../src/api/validation.js';
import type { KubernetesObject } from '../../src/server/metacontroller/types.js';
import { backupTemplateSpec } from '../helpers/builders.js';

type J = any;

function backupObject(name: string, spec: Record<string, unknown> = {}): KubernetesObject {
  return {
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: { name, namespace: 'backups' },
    spec: { ...backupTemplateSpec(), ...spec },
  };
}

describe('validateAgainstSchema (any CRD schema, as the API server checks a write)', () => {
  const schema = crdSchema(loadCrd(BACKUP_PLURAL));
  const object = backupObject('b1');

  it('applies the defaults to a copy and leaves metadata to ObjectMeta rules', () => {
    const input = { ...object, metadata: { ...object.metadata, whatever: 1 } };
    const checked = validateAgainstSchema(schema, input);
    assert.ok(checked.ok, JSON.stringify(checked));
    const spec = (checked.value as J).spec;
    assert.equal(spec.deletionPolicy, 'Retain');
    assert.equal(spec.talosConfigSecretRef.key, 'config');
    assert.equal((input as J).spec.deletionPolicy, undefined, 'the input is not modified');
  });

  it('reports CEL rules, structure and fields the API server would prune, with their paths', () => {
    const both = validateAgainstSchema(schema, {
      ...object,
      spec: { ...(object.spec as J), talosControlPlaneRef: { name: 'tcp' } },
    });
    assert.ok(!both.ok);
    assert.match(
      both.problems.join('\n'),
      /^spec: exactly one of talosControlPlaneRef and talosConfigSecretRef must be set$/m,
    );
    const unknown = validateAgainstSchema(schema, {
      ...object,
      extra: true,
      spec: { ...(object.spec as J), backupStorage: { s3: { bucket: 'b', typo: 1 } } },
    });
    assert.ok(!unknown.ok);
    assert.deepEqual(unknown.problems.filter((p) => p.includes('prune')).sort(), [
      'extra: unknown field (the API server would prune it)',
      'spec.backupStorage.s3.typo: unknown field (the API server would prune it)',
    ]);
    const status = validateAgainstSchema((schema.properties as J).status, { phase: 'Done', colour: 'red' }, 'status');
    assert.ok(!status.ok);
    assert.deepEqual(status.problems, [
      'status.phase: must be one of Pending, Running, Succeeded, Failed',
      'status.colour: unknown field (the API server would prune it)',
    ]);
  });
});
