// The checks the CRD schema cannot express (src/api/spec-checks.ts), on specs defaulted as the hooks see them.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { specProblems } from '../../src/api/spec-checks.js';
import { validateBackupSpec } from '../../src/api/validation.js';
import { backupTemplateSpec } from '../helpers/builders.js';

function problemsOf(copies: Record<string, unknown>[]): string[] {
  const spec = backupTemplateSpec() as { backupStorage: Record<string, unknown> };
  spec.backupStorage.copies = copies;
  const validated = validateBackupSpec(spec);
  assert.ok(validated.ok, JSON.stringify(validated));
  return specProblems(validated.value);
}

describe('spec checks: copies', () => {
  const offsite = { name: 'offsite', bucket: 'offsite-backups', region: 'eu-west-1' };

  it('copies in other buckets, or the same bucket under another prefix or endpoint, are fine', () => {
    assert.deepEqual(
      problemsOf([
        offsite,
        {
          name: 'same-bucket-other-prefix',
          bucket: 'etcd-backups',
          region: 'us-east-1',
          endpoint: 'https://s3.example.internal',
          prefix: 'second',
        },
        { name: 'same-bucket-on-aws', bucket: 'etcd-backups', region: 'us-east-1' },
      ]),
      [],
    );
  });

  it("a copy writing where the primary writes is refused, naming both (the endpoint's case and trailing / aside)", () => {
    assert.deepEqual(
      problemsOf([{ bucket: 'etcd-backups', region: 'us-east-1', endpoint: 'https://S3.example.internal/' }]),
      [
        'spec.backupStorage.copies[0]: writes to the same endpoint, bucket (etcd-backups) and prefix (talos-operator-etcd-backups) as spec.backupStorage.s3; a copy must be another store (another bucket, or at least another prefix)',
      ],
    );
  });

  it('two copies writing to one place, or sharing a name (given or defaulted), are refused', () => {
    assert.deepEqual(problemsOf([offsite, { ...offsite, name: 'second' }]), [
      'spec.backupStorage.copies[1]: writes to the same endpoint, bucket (offsite-backups) and prefix (talos-operator-etcd-backups) as spec.backupStorage.copies[0]; a copy must be another store (another bucket, or at least another prefix)',
    ]);
    assert.deepEqual(
      problemsOf([
        { ...offsite, name: 'copy-2' },
        { bucket: 'other', region: 'eu-west-1' },
      ]),
      ['spec.backupStorage.copies[1].name: copy-2 is also the name of copies[0]; each copy needs its own name'],
    );
  });
});
