// Copies (spec.backupStorage.copies) on the hook server's side: the CRD's copy schema is the s3 schema plus name
// and required; the snapshot Job gets S3_COPIES, each copy's keys from its own Secret and its CA bundle as a file,
// required copies' Secrets in REQUIRED_SECRETS and optional ones' not; the Ready message lists the copies and
// warns of a missing optional one; the delete Job deletes every recorded copy with its own keys.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { packageRoot } from '../../../src/api/crds.js';
import type { BackupSpec, SnapshotInfo } from '../../../src/api/types.js';
import { parseRequiredInputs } from '../../../src/contract/required-inputs.js';
import { copiesParser } from '../../../src/contract/copies.js';
import { deleteJob, snapshotJob } from '../../../src/server/backup/job.js';
import { storedMessage } from '../../../src/server/backup/status.js';
import { baseSpec, IMAGE, type J } from './fixtures.js';

const ref = { name: 'b', namespace: 'talos-backup', uid: 'u-1', creationTimestamp: '2026-02-03T04:05:06Z' };
const source = { cluster: 'prod', talosconfig: { name: 'talosconfig', key: 'config' } };
const specWithCopies = (): BackupSpec => {
  const spec = baseSpec() as unknown as BackupSpec;
  return {
    ...spec,
    job: { activeDeadlineSeconds: 3600, backoffLimit: 2 },
    backupStorage: {
      ...spec.backupStorage,
      copies: [
        {
          name: 'offsite',
          required: true,
          bucket: 'offsite-bucket',
          region: 'eu-west-1',
          prefix: 'offsite',
          insecureSkipTLSVerify: false,
          accessKeyID: { name: 'offsite-s3', key: 'id' },
          secretAccessKey: { name: 'offsite-s3', key: 'secret' },
          caBundle: { kind: 'ConfigMap', name: 'offsite-ca', key: 'ca.crt' },
          objectLock: { mode: 'COMPLIANCE', retainDays: 30 },
        },
        {
          required: false,
          bucket: 'third-bucket',
          region: 'us-east-1',
          prefix: 'talos-operator-etcd-backups',
          insecureSkipTLSVerify: false,
          accessKeyID: { name: 'third-s3', key: 'id' },
          secretAccessKey: { name: 'third-s3', key: 'secret' },
        },
      ],
    },
  };
};
const envOf = (job: J): Record<string, J> =>
  Object.fromEntries((job.spec.template.spec.containers[0].env as J[]).map((e) => [e.name, e]));

describe('copies: the CRD', () => {
  it("a copy's schema is the s3 schema (all but its description) plus name and required", () => {
    const crd = parse(readFileSync(join(packageRoot(), 'crds/talosetcdbackups.talos.alperen.cloud.yaml'), 'utf8')) as J;
    const storage = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.backupStorage.properties;
    const { description: _d, ...s3 } = storage.s3;
    const { name, required, ...rest } = storage.copies.items.properties;
    assert.deepEqual({ ...storage.copies.items, properties: rest }, s3);
    assert.equal(name.type, 'string');
    assert.equal(required.default, true);
  });
});

describe('copies: the snapshot and delete Jobs', () => {
  it("gives the Job every copy's settings, its keys from its own Secret, and requires only the required copies' Secrets", () => {
    const job = snapshotJob(ref, specWithCopies(), source, IMAGE) as J;
    const env = envOf(job);
    const copies = copiesParser(env.S3_COPIES.value);
    assert.ok('value' in copies, JSON.stringify(copies));
    assert.deepEqual(copies.value[0], {
      name: 'offsite',
      required: true,
      bucket: 'offsite-bucket',
      region: 'eu-west-1',
      insecureSkipTLSVerify: false,
      prefix: 'offsite',
      objectLockMode: 'COMPLIANCE',
      objectLockRetainDays: 30,
      keysFromEnv: true,
      caBundle: '/var/run/secrets/s3-ca-copy-1/ca.crt',
    });
    assert.equal(copies.value[1]!.name, 'copy-2');
    assert.equal(copies.value[1]!.required, false);
    assert.deepEqual(env.S3_COPY_1_ACCESS_KEY_ID.valueFrom, {
      secretKeyRef: { name: 'offsite-s3', key: 'id', optional: true },
    });
    assert.deepEqual(env.S3_COPY_2_SECRET_ACCESS_KEY.valueFrom, {
      secretKeyRef: { name: 'third-s3', key: 'secret', optional: true },
    });
    const required = parseRequiredInputs(env.REQUIRED_SECRETS.value).map((r) => `${r.name}/${r.key ?? ''}`);
    assert.ok(required.includes('offsite-s3/id') && required.includes('offsite-s3/secret'));
    assert.ok(!required.some((r) => r.startsWith('third-s3/')), 'an optional copy never fails the backup at start');
    const volumes = job.spec.template.spec.volumes as J[];
    assert.deepEqual(volumes.find((v) => v.name === 's3-ca-copy-1').configMap, {
      name: 'offsite-ca',
      items: [{ key: 'ca.crt', path: 'ca.crt' }],
      optional: true,
    });
    assert.ok(!JSON.stringify(job).includes('AKIA'), 'no key value in the Job');
  });

  it('deletes each copy that has a key, with its own keys, renumbered in order', () => {
    const job = deleteJob(ref, specWithCopies(), 'p/prod/etcd-snapshot-x.db', IMAGE, {
      copyKeys: (n) => (n === 2 ? { key: 'talos-operator-etcd-backups/prod/etcd-snapshot-x.db' } : undefined),
    }) as J;
    const env = envOf(job);
    const copies = copiesParser(env.S3_COPIES.value);
    assert.ok('value' in copies);
    assert.equal(copies.value.length, 1);
    assert.equal(copies.value[0]!.name, 'copy-2');
    assert.equal(copies.value[0]!.key, 'talos-operator-etcd-backups/prod/etcd-snapshot-x.db');
    assert.equal(env.S3_COPY_1_ACCESS_KEY_ID.valueFrom.secretKeyRef.name, 'third-s3');
  });
});

describe('copies: the Ready message', () => {
  const snapshot: SnapshotInfo = {
    bucket: 'primary',
    key: 'p/prod/etcd-snapshot-x.db',
    size: 10,
    sha256: 'aa',
    etcdSha256: 'bb',
    node: 'cp-1',
    compression: 'none',
    encrypted: false,
    verified: false,
  };
  it('names every stored copy and warns of an optional copy that is missing', () => {
    const message = storedMessage({
      ...snapshot,
      copies: [
        {
          name: 'offsite',
          bucket: 'o',
          key: 'o/prod/etcd-snapshot-x.db',
          retainUntil: '2026-03-01T00:00:00Z',
          verified: true,
        },
        {
          name: 'copy-2',
          bucket: 't',
          key: 't/prod/etcd-snapshot-x.db',
          error: 'copy copy-2 (s3://t/…): AccessDenied (HTTP 403)',
        },
      ],
    });
    assert.match(
      message,
      /; copies: offsite at s3:\/\/o\/o\/prod\/etcd-snapshot-x\.db \(locked until 2026-03-01T00:00:00Z, verified\); warning: 1 optional copy was not stored: copy copy-2 \(s3:\/\/t\/…\): AccessDenied \(HTTP 403\)$/,
    );
  });
});
