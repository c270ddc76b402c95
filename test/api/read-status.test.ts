// readBackupStatus / readScheduleStatus (src/api/validation.ts): an observed status is written by several hands
// (the hooks, the Job's report, a person with kubectl). A field the checks here reject must cost that field only,
// never the Job's report; the hook's answer then still carries the report (Metacontroller replaces the status).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { packageRoot } from '../../src/api/crds.js';
import {
  countValues,
  isReadableBackup,
  MAX_SPEC_VALUES,
  readBackupStatus,
  readScheduleStatus,
  validateBackupSpec,
  validateSchedule,
} from '../../src/api/validation.js';
import { buildApp } from '../../src/server/app.js';

type J = any;

const example = (file: string): J => JSON.parse(readFileSync(join(packageRoot(), 'examples', 'hooks', file), 'utf8'));
const running = (): J => example('backup-sync-running.json');

// Layouts the API server's date-time format accepts (kube-openapi strfmt: ISO 8601 local time, no seconds, a
// space) and ajv's RFC 3339 check does not.
const API_SERVER_TIMES = ['2026-01-15T12:00:09', '2026-01-15T12:00Z', '2026-01-15 12:00:09'];

describe('readBackupStatus', () => {
  it('a status that matches the CRD is returned as it is', () => {
    const status = running().object.status;
    assert.deepEqual(readBackupStatus(status), status);
    assert.deepEqual(readBackupStatus(undefined), {});
  });

  for (const time of API_SERVER_TIMES) {
    it(`a startTime of ${JSON.stringify(time)} costs startTime only: the report, conditions and the rest stay`, () => {
      const status = { ...running().object.status, startTime: time };
      const { startTime, ...rest } = status;
      assert.equal(startTime, time);
      assert.deepEqual(readBackupStatus(status), rest);
    });
  }

  it('a condition with an unreadable time keeps the rest of that condition; the report is kept whole', () => {
    const status = running().object.status;
    status.conditions[1].lastTransitionTime = '2026-01-15T12:00';
    const read = readBackupStatus(status);
    assert.deepEqual(read.report, status.report);
    const { lastTransitionTime: _dropped, ...ready } = status.conditions[1];
    assert.deepEqual(read.conditions, [status.conditions[0], ready, status.conditions[2]]);
    assert.equal(read.phase, 'Pending');
  });

  it('a condition without its required fields is left out of the list', () => {
    const status = running().object.status;
    status.conditions[1].status = 'Maybe';
    assert.deepEqual(
      readBackupStatus(status).conditions?.map((c) => c.type),
      ['Progressing', 'Failed'],
    );
  });

  it('an unreadable field inside the report costs that field; a report without a readable state is dropped', () => {
    const status = running().object.status;
    status.report.startedAt = '2026-01-15 12:00:09';
    const { startedAt: _dropped, ...report } = status.report;
    assert.deepEqual(readBackupStatus(status).report, report);
    status.report.state = 'Sleeping';
    assert.equal(readBackupStatus(status).report, undefined);
    assert.deepEqual(readBackupStatus(status).conditions, status.conditions);
  });

  it('in a status read field by field, fields the CRD does not declare are left out; a status that is not an object is {}', () => {
    assert.deepEqual(readBackupStatus({ phase: 'Running', colour: 'red', startTime: 'yesterday' }), {
      phase: 'Running',
    });
    assert.deepEqual(readBackupStatus('Running'), {});
    assert.deepEqual(readBackupStatus([{ phase: 'Running' }]), {});
  });

  it("the sync answer keeps the Job's report when another field of the status is unreadable", async () => {
    const app = await buildApp({ clock: () => new Date('2026-01-15T12:01:20Z') });
    try {
      const body = running();
      body.object.status.startTime = '2026-01-15T12:00:09'; // no zone: the API server stores it, ajv rejects it
      const response = await app.inject({ method: 'POST', url: '/hooks/backup/sync', payload: body });
      assert.equal(response.statusCode, 200);
      const answer = response.json();
      assert.deepEqual(answer.status.report, body.object.status.report);
      assert.equal(answer.status.phase, 'Running');
      assert.deepEqual(answer.status.progress, { bytesUploaded: 52428800 });
    } finally {
      await app.close();
    }
  });
});

describe('readScheduleStatus', () => {
  it('keeps the readable fields of a status with one unreadable time', () => {
    const status = {
      lastScheduleTime: '2026-01-15T02:00:00Z',
      lastSuccessfulBackupTime: '2026-01-15 02:03:00',
      activeBackups: ['a'],
    };
    assert.deepEqual(readScheduleStatus(status), { lastScheduleTime: '2026-01-15T02:00:00Z', activeBackups: ['a'] });
  });
});

describe('specs far larger than any a person writes', () => {
  const spec = (endpoints: unknown[]) => ({
    talosConfigSecretRef: { name: 'tc' },
    backupStorage: { s3: { bucket: 'etcd-backups', region: 'us-east-1' } },
    endpoints,
  });

  it(`more than ${MAX_SPEC_VALUES} values are refused before ajv, CEL and the copy, with one problem`, () => {
    const result = validateBackupSpec(spec(Array(MAX_SPEC_VALUES).fill('10.0.0.1')));
    assert.equal(result.ok, false);
    assert.deepEqual(result.ok ? [] : result.problems, [
      `spec: has more than ${MAX_SPEC_VALUES} values (fields and list items); a spec has a few dozen`,
    ]);
    const schedule = validateSchedule({
      metadata: { name: 'nightly' },
      spec: { schedule: '@daily', backupTemplate: { spec: spec(Array(MAX_SPEC_VALUES).fill('10.0.0.1')) } },
    });
    assert.equal(schedule.ok, false);
    assert.equal(isReadableBackup({ spec: spec(Array(MAX_SPEC_VALUES).fill('10.0.0.1')) }), false);
    assert.equal(validateBackupSpec(spec(['10.0.0.1'])).ok, true);
  });

  it('many invalid items list the first 20 problems and a count', () => {
    const result = validateBackupSpec(spec(Array.from({ length: 500 }, () => ({}))));
    assert.equal(result.ok, false);
    const problems = result.ok ? [] : result.problems;
    assert.equal(problems.length, 21);
    assert.equal(problems[1], 'spec.endpoints.0: must be string');
    assert.equal(problems[20], 'and 481 more problems');
  });

  it('countValues counts every value at any depth, and stops past the limit', () => {
    assert.equal(countValues({ a: [1, 2, { b: null }] }, 100), 6);
    let deep: unknown = 0;
    for (let i = 0; i < 100_000; i += 1) deep = [deep];
    assert.equal(countValues(deep, 1_000_000), 100_001);
    assert.equal(countValues(Array(1e6).fill(0), 10), 11);
  });
});
