// What an observed Job says about its run (src/server/backup/job-state.ts), as a table of Job statuses the Job
// controller writes (and some it never does, which must not crash the hook).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { failureText, readJobState, type JobState } from '../../../src/server/backup/job-state.js';
import {
  JOB_STARTED,
  JOB_STATUSES_NOT_WRITTEN_BY_THE_JOB_CONTROLLER,
  jobActive,
  jobComplete,
  jobFailed,
  jobFailureTargetOnly,
} from './fixtures.js';

const job = (status: unknown) => ({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'b-snapshot' }, status });
const condition = (type: string, status = 'True', extra: Record<string, string> = {}) => ({ type, status, ...extra });

const cases: { name: string; status: unknown; expected: JobState }[] = [
  { name: 'no status yet: nothing running, nothing failed', status: undefined, expected: { active: 0, failedPods: 0 } },
  { name: 'an active pod', status: jobActive, expected: { active: 1, failedPods: 0, startTime: JOB_STARTED } },
  {
    name: 'Failed: its reason, message and time; the failed pods counted',
    status: jobFailed('BackoffLimitExceeded', 'Job has reached the specified backoff limit'),
    expected: {
      active: 0,
      failedPods: 3,
      startTime: JOB_STARTED,
      failed: {
        reason: 'BackoffLimitExceeded',
        message: 'Job has reached the specified backoff limit',
        time: '2026-01-15T12:04:01Z',
      },
    },
  },
  {
    name: 'only FailureTarget (Kubernetes 1.31+, its pods still stopping) counts as failed',
    status: jobFailureTargetOnly('PodFailurePolicy'),
    expected: {
      active: 0,
      failedPods: 1,
      startTime: JOB_STARTED,
      failed: {
        reason: 'PodFailurePolicy',
        message: 'Container backup for pod talos-backup/x failed with exit code 2 matching FailJob rule at index 0',
        time: '2026-01-15T12:02:00Z',
      },
    },
  },
  {
    name: 'Complete: the completion time',
    status: jobComplete,
    expected: { active: 0, failedPods: 0, startTime: JOB_STARTED, complete: { time: '2026-01-15T12:03:10Z' } },
  },
  {
    name: 'only SuccessCriteriaMet, no completionTime: complete at the condition time',
    status: { conditions: [condition('SuccessCriteriaMet', 'True', { lastTransitionTime: '2026-01-15T12:03:09Z' })] },
    expected: { active: 0, failedPods: 0, complete: { time: '2026-01-15T12:03:09Z' } },
  },
  {
    name: 'Complete without any time',
    status: { conditions: [condition('Complete')] },
    expected: { active: 0, failedPods: 0, complete: {} },
  },
  {
    name: 'Failed without reason or message: reason Failed, empty message, no time',
    status: { conditions: [condition('Failed')] },
    expected: { active: 0, failedPods: 0, failed: { reason: 'Failed', message: '' } },
  },
  {
    name: 'Failed and Complete both True: failed wins',
    status: { conditions: [condition('Complete'), condition('Failed', 'True', { reason: 'DeadlineExceeded' })] },
    expected: { active: 0, failedPods: 0, failed: { reason: 'DeadlineExceeded', message: '' } },
  },
  {
    name: 'conditions that are not True count for nothing',
    status: { conditions: [condition('Failed', 'False'), condition('Complete', 'Unknown')] },
    expected: { active: 0, failedPods: 0 },
  },
  {
    name: 'malformed entries are skipped, well-formed ones still read',
    status: { conditions: [null, 1, condition('Failed', 'True', { reason: 'BackoffLimitExceeded' })] },
    expected: { active: 0, failedPods: 0, failed: { reason: 'BackoffLimitExceeded', message: '' } },
  },
  {
    name: 'counts and start time of the wrong type are ignored',
    status: { active: 'one', failed: null, startTime: 42 },
    expected: { active: 0, failedPods: 0 },
  },
];

describe('readJobState', () => {
  for (const c of cases) it(c.name, () => assert.deepEqual(readJobState(job(c.status)), c.expected));

  it('any status the Job controller never writes reads without throwing', () => {
    for (const status of JOB_STATUSES_NOT_WRITTEN_BY_THE_JOB_CONTROLLER) {
      assert.doesNotThrow(() => readJobState(job(status)), JSON.stringify(status));
    }
  });
});

describe('failureText', () => {
  const texts = [
    {
      name: 'reason and message',
      failed: { reason: 'BackoffLimitExceeded', message: 'limit reached' },
      expected: 'BackoffLimitExceeded: limit reached',
    },
    {
      name: 'reason only, when the message is empty',
      failed: { reason: 'DeadlineExceeded', message: '' },
      expected: 'DeadlineExceeded',
    },
  ];
  for (const t of texts) it(t.name, () => assert.equal(failureText(t.failed), t.expected));
});
