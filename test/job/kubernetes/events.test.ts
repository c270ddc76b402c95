import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backupEvent, backupEvents, microTime, notes } from '../../../src/job/kubernetes/events.js';
import type { SnapshotOutcome } from '../../../src/job/pipeline/snapshot.js';

const backup = { namespace: 'talos-backup', name: 'nightly-29000000', uid: '0b5c1f4e-7d7a-4a55-9d0e-1f2e3d4c5b6a' };
const time = new Date('2026-11-21T10:00:03.042Z');
const outcome: SnapshotOutcome = {
  bucket: 'etcd-backups',
  key: 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-11-21T10-00-00Z.db.zst',
  size: 12_345_678,
  sha256: 'a'.repeat(64),
  etcdSha256: 'b'.repeat(64),
  node: '10.0.0.1',
  compression: 'zstd',
  verified: true,
  verification: 'Full',
  endpoint: '10.0.0.1:50000',
  durationMs: 4_250,
  alreadyUploaded: false,
  failedEndpoints: [],
};

describe('the snapshot Job’s Events on its backup', () => {
  it('BackupStarted is a Normal events.k8s.io/v1 Event regarding the backup, from the project’s controller and the pod', () => {
    assert.deepEqual(
      backupEvent({
        backup,
        reason: 'BackupStarted',
        note: notes.started(),
        instance: 'nightly-29000000-snapshot-x7k2p',
        time,
        suffix: '00ff00ff00ff00ff',
      }),
      {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name: 'nightly-29000000.00ff00ff00ff00ff', namespace: 'talos-backup' },
        eventTime: '2026-11-21T10:00:03.042000Z',
        reportingController: 'talos.alperen.cloud/talos-etcd-backup',
        reportingInstance: 'nightly-29000000-snapshot-x7k2p',
        action: 'Backup',
        reason: 'BackupStarted',
        type: 'Normal',
        note: 'Streaming the etcd snapshot from the Talos API into S3',
        regarding: {
          apiVersion: 'talos.alperen.cloud/v1alpha1',
          kind: 'TalosEtcdBackup',
          name: 'nightly-29000000',
          namespace: 'talos-backup',
          uid: '0b5c1f4e-7d7a-4a55-9d0e-1f2e3d4c5b6a',
        },
      },
    );
  });

  it('BackupSucceeded tells the key, the size, the duration and whether the object was verified', () => {
    assert.equal(
      notes.succeeded(outcome),
      'Stored s3://etcd-backups/talos-operator-etcd-backups/prod/etcd-snapshot-2026-11-21T10-00-00Z.db.zst: 12345678 bytes in 4.3s, verified (Full)',
    );
    assert.match(
      notes.succeeded({
        ...outcome,
        verified: false,
        verification: undefined,
        alreadyUploaded: true,
      } as SnapshotOutcome),
      /bytes in 4\.3s, found complete from an earlier attempt, not verified$/,
    );
    assert.match(
      notes.succeeded({
        ...outcome,
        copies: [
          { name: 'offsite', bucket: 'offsite-backups', key: 'offsite/prod/etcd-snapshot-2026-11-21T10-00-00Z.db.zst' },
          { name: 'spare', bucket: 'spare', key: 'k', error: 'Failed to upload snapshot to S3: NoSuchBucket' },
        ],
      } as SnapshotOutcome),
      /, verified \(Full\); copies: offsite s3:\/\/offsite-backups\/offsite\/prod\/etcd-snapshot-2026-11-21T10-00-00Z\.db\.zst, spare NOT stored \(Failed to upload snapshot to S3: NoSuchBucket\)$/,
    );
    const event = backupEvent({ backup, reason: 'BackupSucceeded', note: 'x', instance: 'p', time, suffix: '1' });
    assert.equal(event.type, 'Normal');
  });

  it('BackupFailed is a Warning whose note is the failure’s one line as given (already redacted)', () => {
    const message = 'Failed to upload snapshot to S3: AccessDenied';
    const event = backupEvent({
      backup,
      reason: 'BackupFailed',
      note: notes.failed(message),
      instance: 'p',
      time,
      suffix: '1',
    });
    assert.deepEqual([event.type, event.reason, event.note], ['Warning', 'BackupFailed', message]);
  });

  it('a note longer than events.k8s.io allows (1024 bytes) is cut at a character boundary, and stays one line', () => {
    const event = backupEvent({
      backup,
      reason: 'BackupFailed',
      note: `first line\nsecond ${'é'.repeat(2000)}`,
      instance: 'p',
      time,
      suffix: '1',
    });
    const note = event.note as string;
    assert.ok(Buffer.byteLength(note) <= 1024, `${Buffer.byteLength(note)} bytes`);
    assert.ok(note.startsWith('first line second éé'));
    assert.ok(note.endsWith('é...'));
  });

  it('eventTime has microseconds (MicroTime), as events.k8s.io requires', () => {
    assert.equal(microTime(new Date('2026-01-02T03:04:05.006Z')), '2026-01-02T03:04:05.006000Z');
  });

  it('without a uid the regarding reference goes without one; a long backup name still gives a valid name', () => {
    const long = 'b'.repeat(253);
    const event = backupEvent({
      backup: { namespace: 'ns', name: long },
      reason: 'BackupStarted',
      note: 'n',
      instance: 'p'.repeat(200),
      time,
      suffix: '0123456789abcdef',
    }) as { metadata: { name: string }; regarding: Record<string, string>; reportingInstance: string };
    assert.equal(event.regarding.uid, undefined);
    assert.ok(!('uid' in event.regarding));
    assert.equal(event.regarding.name, long);
    assert.ok(event.metadata.name.length <= 253);
    assert.match(event.metadata.name, /^b+\.0123456789abcdef$/);
    assert.equal(event.reportingInstance.length, 128, 'reportingInstance is at most 128 characters');
  });

  it('writes each Event with a create into the backup’s namespace, under a fresh name each', async () => {
    const created: { path: string; body: any }[] = [];
    let n = 0;
    const events = backupEvents({
      api: { create: async (path, body) => void created.push({ path, body }) },
      backup,
      instance: 'pod-1',
      warn: () => assert.fail('no warning expected'),
      clock: () => time,
      suffix: () => `s${(n += 1)}`,
    });
    await events.started();
    await events.succeeded(outcome);
    await events.failed('Failed to take etcd snapshot: boom');
    assert.deepEqual(
      created.map((c) => [c.path, c.body.metadata.name, c.body.reason, c.body.type]),
      [
        ['/apis/events.k8s.io/v1/namespaces/talos-backup/events', 'nightly-29000000.s1', 'BackupStarted', 'Normal'],
        ['/apis/events.k8s.io/v1/namespaces/talos-backup/events', 'nightly-29000000.s2', 'BackupSucceeded', 'Normal'],
        ['/apis/events.k8s.io/v1/namespaces/talos-backup/events', 'nightly-29000000.s3', 'BackupFailed', 'Warning'],
      ],
    );
  });

  it('an Event that cannot be written is one warning line, never a rejection (the backup goes on)', async () => {
    const warnings: string[] = [];
    const events = backupEvents({
      api: {
        create: async () => {
          throw new Error('the Kubernetes API answered 403: events.events.k8s.io is forbidden');
        },
      },
      backup,
      instance: 'pod-1',
      warn: (message) => warnings.push(message),
    });
    await events.started();
    await events.succeeded(outcome);
    await events.failed('Failed to take etcd snapshot: boom');
    assert.deepEqual(warnings, [
      'could not record the Event BackupStarted (the backup is not affected): the Kubernetes API answered 403: events.events.k8s.io is forbidden',
      'could not record the Event BackupSucceeded (the backup is not affected): the Kubernetes API answered 403: events.events.k8s.io is forbidden',
      'could not record the Event BackupFailed (the backup is not affected): the Kubernetes API answered 403: events.events.k8s.io is forbidden',
    ]);
  });
});
