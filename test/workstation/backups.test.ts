import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  backupFromSchedule,
  backupRow,
  backupTable,
  humanBytes,
  restoreInputs,
  selectBackups,
  type ClusterObject,
} from '../../src/workstation/backups.js';
import { JobError } from '../../src/job/errors.js';
import { backup, NAMESPACE, schedule, SCHEDULE_NAME } from '../helpers/builders.js';

const stored = (object: ClusterObject, snapshot: Record<string, unknown>): ClusterObject => ({
  ...object,
  status: {
    ...(object.status as object),
    snapshot: {
      bucket: 'etcd-backups',
      key: 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-15T06-00-00Z.db.zst.age',
      size: 73_400_320,
      sha256: 'a'.repeat(64),
      etcdSha256: 'b'.repeat(64),
      node: '10.0.0.2',
      ...snapshot,
    },
  },
});

describe('list', () => {
  const older = stored(backup('2026-01-15T00:00:00Z', 'succeeded'), { compression: 'gzip', verified: false });
  const newer = stored(backup('2026-01-15T06:00:00Z', 'succeeded'), {
    compression: 'zstd',
    encrypted: true,
    verified: true,
  });
  const failed = backup('2026-01-15T03:00:00Z', 'failed');
  const byHand: ClusterObject = {
    metadata: { name: 'before-upgrade', namespace: NAMESPACE, creationTimestamp: '2026-01-15T04:30:00Z' },
    status: { phase: 'Running' },
  };

  it('one row per backup: its schedule, phase, slot (or creation) time, size, format and verification', () => {
    assert.deepEqual(backupRow(newer), {
      namespace: NAMESPACE,
      name: newer.metadata.name,
      schedule: SCHEDULE_NAME,
      phase: 'Succeeded',
      time: '2026-01-15T06:00:00Z',
      size: 73_400_320,
      format: 'zstd+age',
      verified: true,
      key: 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-15T06-00-00Z.db.zst.age',
      restoreTest: '',
    });
    assert.equal(backupRow(older).format, 'gzip');
    assert.equal(backupRow(stored(byHand, { encrypted: true })).format, 'age');
    assert.equal(backupRow(stored(byHand, {})).format, 'none');
    const pending = backupRow(byHand);
    assert.deepEqual(
      [pending.schedule, pending.time, pending.format, pending.verified],
      ['', '2026-01-15T04:30:00Z', '', undefined],
    );
    assert.equal(
      backupRow({ metadata: { name: 'x', labels: { 'talos.alperen.cloud/from-schedule': 'nightly' } } }).schedule,
      'nightly',
    );
  });

  it('newest first, filtered by schedule', () => {
    const names = (objects: ClusterObject[]) => objects.map((o) => o.metadata.name);
    assert.deepEqual(names(selectBackups([older, byHand, newer, failed])), [
      newer.metadata.name,
      'before-upgrade',
      failed.metadata.name,
      older.metadata.name,
    ]);
    assert.deepEqual(names(selectBackups([older, byHand, newer], SCHEDULE_NAME)), [
      newer.metadata.name,
      older.metadata.name,
    ]);
    assert.deepEqual(names(selectBackups([older, byHand], '')), ['before-upgrade']);
  });

  it("a table in kubectl's layout, sizes as people read them", () => {
    const tested = {
      ...newer,
      status: {
        ...(newer.status as object),
        restoreTest: { result: 'Succeeded', completionTime: '2026-01-18T04:03:00Z' },
      },
    };
    const table = backupTable([tested, byHand].map(backupRow));
    assert.equal(
      table,
      [
        'NAME                               SCHEDULE                PHASE       TIME                   SIZE     FORMAT     VERIFIED   RESTORE TEST',
        'daily-backup-schedule-1768456800   daily-backup-schedule   Succeeded   2026-01-15T06:00:00Z   70Mi     zstd+age   true       Succeeded 2026-01-18T04:03:00Z',
        'before-upgrade                     <none>                  Running     2026-01-15T04:30:00Z   <none>   <none>     <none>     <none>',
      ].join('\n'),
    );
    assert.match(backupTable([backupRow(newer)], true), /^NAMESPACE {6}NAME/);
    assert.deepEqual([0, 512, 1536, 73_400_320, 2.5 * 1024 ** 3, 150 * 1024 ** 2].map(humanBytes), [
      '0',
      '512',
      '1.5Ki',
      '70Mi',
      '2.5Gi',
      '150Mi',
    ]);
  });
});

describe('backup --from-schedule', () => {
  it("copies the template's spec, labels and annotations and marks where it came from, but no owner or controller-uid", () => {
    const parent = schedule({
      spec: {
        backupTemplate: {
          metadata: { labels: { team: 'platform' }, annotations: { note: 'n' } },
          spec: { clusterName: 'prod', backupStorage: { s3: { bucket: 'b', region: 'r' } } },
        },
      },
    });
    const made = backupFromSchedule(parent, new Date('2026-01-15T12:34:56Z'));
    assert.deepEqual(made, {
      apiVersion: 'talos.alperen.cloud/v1alpha1',
      kind: 'TalosEtcdBackup',
      metadata: {
        name: `${SCHEDULE_NAME}-manual-1768480496`,
        namespace: NAMESPACE,
        labels: { team: 'platform', 'talos.alperen.cloud/from-schedule': SCHEDULE_NAME },
        annotations: { note: 'n' },
      },
      spec: { clusterName: 'prod', backupStorage: { s3: { bucket: 'b', region: 'r' } } },
    });
    assert.equal(backupFromSchedule(parent, new Date(), 'before-upgrade').metadata.name, 'before-upgrade');
    (made.spec as { clusterName: string }).clusterName = 'changed';
    assert.equal((parent.spec as any).backupTemplate.spec.clusterName, 'prod', 'a copy, not the template itself');
    assert.throws(
      () => backupFromSchedule({ metadata: { name: 'x' }, spec: {} }, new Date()),
      /no spec\.backupTemplate\.spec/,
    );
  });
});

describe('restore --backup', () => {
  const spec = {
    backupStorage: {
      s3: {
        bucket: 'etcd-backups',
        region: 'eu-central-1',
        endpoint: 'http://rgw.storage.svc:8080',
        forcePathStyle: true,
        insecureSkipTLSVerify: false,
        caBundle: { kind: 'ConfigMap', name: 'ca', key: 'ca.crt' },
        accessKeyID: { name: 's3', key: 'id' },
        secretAccessKey: { name: 's3', key: 'secret' },
      },
    },
  };
  const good = stored({ ...backup('2026-01-15T06:00:00Z', 'succeeded'), spec }, { bucket: 'recorded-bucket' });

  it("the object and its hashes from the status, how to reach it from the spec, the user's reach over it", () => {
    const inputs = restoreInputs(good, {});
    assert.deepEqual(inputs.raw, {
      bucket: 'recorded-bucket',
      key: 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-15T06-00-00Z.db.zst.age',
      region: 'eu-central-1',
      endpoint: 'http://rgw.storage.svc:8080',
      forcePathStyle: 'true',
      insecureSkipTLSVerify: 'false',
    });
    assert.deepEqual(inputs.expected, { size: 73_400_320, sha256: 'a'.repeat(64), etcdSha256: 'b'.repeat(64) });
    assert.deepEqual(inputs.credentials, {
      accessKeyID: { name: 's3', key: 'id' },
      secretAccessKey: { name: 's3', key: 'secret' },
    });
    assert.deepEqual(inputs.caBundle, { kind: 'ConfigMap', name: 'ca', key: 'ca.crt' });
    const mine = restoreInputs(good, {
      endpoint: 'https://s3.example.org',
      caBundle: '/etc/ssl/mine.pem',
      ageIdentity: '/home/me/age.txt',
      output: 'here.db',
      bucket: 'other',
      key: 'other',
    });
    assert.equal(mine.raw.endpoint, 'https://s3.example.org');
    assert.equal(mine.raw.caBundle, '/etc/ssl/mine.pem');
    assert.equal(mine.caBundle, undefined, 'a local CA bundle: none is read from the cluster');
    assert.equal(mine.raw.ageIdentity, '/home/me/age.txt');
    assert.equal(mine.raw.output, 'here.db');
    assert.equal(mine.raw.bucket, 'recorded-bucket', 'never another object than the backup’s');
    assert.equal(mine.raw.key, good.status && (good.status as any).snapshot.key);
  });

  it('the cluster secrets the status records: their key and hash, or none (never guessed from the key)', () => {
    const secrets = {
      source: 'clusterSecretsRef',
      secretName: 'prod-talos-secrets',
      key: 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-15T06-00-00Z.secrets.yaml.age',
      size: 2345,
      sha256: 'c'.repeat(64),
    };
    assert.deepEqual(restoreInputs(stored(good, { bucket: 'recorded-bucket', secrets }), {}).secrets, {
      key: secrets.key,
      expected: { size: 2345, sha256: 'c'.repeat(64) },
    });
    assert.equal(restoreInputs(good, {}).secrets, false);
    const notStored = { source: 'talosOperatorState', secretName: 'prod-state', notStored: 'not found' };
    assert.equal(restoreInputs(stored(good, { secrets: notStored }), {}).secrets, false);
  });

  it('a backup with nothing stored says so, with its phase and message', () => {
    assert.throws(
      () => restoreInputs(backup('2026-01-15T06:00:00Z', 'failed'), {}),
      (error: Error) =>
        error instanceof JobError &&
        error.permanent &&
        /has no stored snapshot to restore \(phase Failed: Failed to upload snapshot to S3: NoSuchBucket\)/.test(
          error.message,
        ),
    );
    assert.throws(
      () => restoreInputs({ metadata: { name: 'new', namespace: 'ns' } }, {}),
      /backup ns\/new has no stored snapshot to restore \(phase Pending\)/,
    );
  });
});
