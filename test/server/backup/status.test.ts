// A backup's status (src/server/backup/status.ts): the verdict on a report and a Job, the Ready message, the
// conditions and their lastTransitionTime; directly, as tables, and through the sync hook.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  backup,
  cond,
  failedReport,
  type J,
  JOB_STARTED,
  jobActive,
  jobComplete,
  KEY,
  observedAttachments,
  protectedSpec,
  report,
  request,
  st,
  stored,
  succeeded,
  sync,
} from './fixtures.js';

describe('syncBackup: lastTransitionTime moves only when a condition status changes', () => {
  it('Pending → Running → Succeeded', () => {
    const t1 = new Date('2026-01-15T12:00:01Z');
    const t2 = new Date('2026-01-15T12:01:00Z');
    const t3 = new Date('2026-01-15T12:03:30Z');
    const pending = sync(request(backup()), t1);
    const runningAnswer = sync(request(backup({ status: st(pending) }), { attachments: observedAttachments(backup(), jobActive) }), t2);
    for (const type of ['Progressing', 'Ready', 'Failed']) assert.equal(cond(runningAnswer, type)!.lastTransitionTime, '2026-01-15T12:00:01Z', type);
    assert.notEqual(cond(runningAnswer, 'Progressing')!.message, cond(pending, 'Progressing')!.message);

    const done = sync(request(backup({ status: { ...st(runningAnswer), report: succeeded } }), { attachments: observedAttachments(backup(), jobComplete) }), t3);
    assert.equal(cond(done, 'Progressing')!.lastTransitionTime, '2026-01-15T12:03:30Z');
    assert.equal(cond(done, 'Ready')!.lastTransitionTime, '2026-01-15T12:03:30Z');
    assert.equal(cond(done, 'Failed')!.lastTransitionTime, '2026-01-15T12:00:01Z', 'Failed stayed False');
    assert.equal(st(done).startTime, JOB_STARTED, 'the first start seen stays');
  });
});

describe('syncBackup: the status of a protected backup', () => {
  it('records what the Job reports about format, lock and verification, and says it in Ready', () => {
    const snapshot = { ...stored, key: `${KEY}.zst.age`, compression: 'zstd', encrypted: true, retainUntil: '2026-02-14T12:03:05Z', verified: true, verifiedAt: '2026-01-15T12:03:04Z', verification: 'Full' as const, revision: 4242, keys: 5000 };
    const r = sync(request(backup({ spec: protectedSpec(), status: { report: report({ state: 'Succeeded', bytesUploaded: stored.size, snapshot, updatedAt: '2026-01-15T12:03:05Z' }) } })));
    assert.equal(st(r).phase, 'Succeeded');
    assert.deepEqual(st(r).snapshot, snapshot);
    assert.match(cond(r, 'Ready')!.message, /^Snapshot stored at s3:\/\/etcd-backups\/\S+\.db\.zst\.age \(73400320 bytes, zstd, age-encrypted, locked until 2026-02-14T12:03:05Z, sha256 a{64}\); verified: read back, etcd trailer and database structure sound \(revision 4242, 5000 keys\)$/);
    const bytesOnly = sync(request(backup({ spec: protectedSpec(), status: { report: report({ state: 'Succeeded', snapshot: { ...snapshot, verification: 'StoredBytes', revision: undefined, keys: undefined } as J }) } })));
    assert.match(cond(bytesOnly, 'Ready')!.message, /; verified: the stored bytes read back match \(no age identity to check the snapshot inside\)$/);
  });

  it('a failed verification fails the backup with its message', () => {
    const message = 'Snapshot verification failed: database structure: page 57 (reached from bucket "key") has id 58 in its header';
    const r = sync(request(backup({ spec: protectedSpec(), status: { report: failedReport(message, false) } }), { attachments: observedAttachments(backup(), jobActive) }));
    assert.equal(st(r).phase, 'Failed');
    assert.equal(st(r).message, message);
  });
});
