// A schedule whose every backup fails, every 5 minutes for 30 days (8,640 slots), failedBackupsHistoryLimit unset.
// Metacontroller sends every child in every sync request; if failed backups were kept forever the request would
// grow by one failed backup per slot until the hook's body limit answered 413 and the schedule stopped for good.
// With the default history limit the request stays the same size and every slot still gets its backup. The schedule
// hook is pure, so the month is driven through syncSchedule itself: each answer's children come back in the next
// request as the API server would hand them over (the previous ones finished as failed), with the answer's status.
// Then the same over HTTP for a schedule upgraded from the old behaviour with 1,000 failed backups.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CompositeSyncRequest, KubernetesObject } from '../../src/server/metacontroller/types.js';
import { SCHEDULE_SYNC_PATH } from '../../src/server/http/schedule-sync.js';
import { DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT } from '../../src/server/schedule/retention.js';
import { backupName, syncSchedule } from '../../src/server/schedule/sync.js';
import { backup, childNames, iso, SCHEDULE_NAME, schedule, syncRequest } from '../helpers/builders.js';
import { postJson, startServer, type RunningServer } from '../helpers/server.js';

const SLOT_MS = 5 * 60_000;
const SLOTS = 30 * 24 * 12;
const FIRST_SLOT = Date.parse('2026-01-01T00:05:00Z');
const slotOf = (name: string): Date => new Date(Number(name.slice(SCHEDULE_NAME.length + 1)) * 1000);

describe('a schedule that fails every 5 minutes for 30 days', () => {
  it('creates a backup for every slot while its request stays the same size (the newest 3 failed backups)', () => {
    let status: Record<string, unknown> | undefined;
    let desired: KubernetesObject[] = [];
    let largestRequest = 0;
    let firstRequest = 0;
    const created: string[] = [];
    for (let k = 0; k < SLOTS; k += 1) {
      const slot = new Date(FIRST_SLOT + k * SLOT_MS);
      // What the API server holds now: every backup the last answer kept, finished and failed.
      const observed = desired.map((c) => backup(slotOf(c.metadata.name), 'failed'));
      const request: CompositeSyncRequest = syncRequest(
        schedule({
          created: '2026-01-01T00:00:00Z',
          spec: { schedule: '*/5 * * * *', retention: 5 },
          ...(status && { status }),
        }),
        observed,
      );
      const size = Buffer.byteLength(JSON.stringify(request));
      largestRequest = Math.max(largestRequest, size);
      if (k === DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT + 1) firstRequest = size;
      const result = syncSchedule(request, new Date(slot.getTime() + 1_000));
      assert.equal(result.outcome, 'created', `slot ${k} (${iso(slot)}): ${JSON.stringify(result.response.status)}`);
      assert.equal(result.created, backupName(SCHEDULE_NAME, slot));
      created.push(result.created!);
      assert.ok(
        observed.length <= DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT + 1,
        `slot ${k}: ${observed.length} backups in the request`,
      );
      // The newest 3 failed ones stay (and the new one); the oldest failed one goes.
      const newestFailed = observed
        .map((o) => o.metadata.name)
        .sort()
        .slice(-DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT);
      assert.deepEqual(childNames(result.response), [...newestFailed, result.created!].sort(), `slot ${k}`);
      desired = result.response.children;
      status = result.response.status;
    }
    assert.equal(new Set(created).size, SLOTS, 'one backup per slot');
    // From the moment the history is full, every request is the same size: 3 failed backups and nothing more.
    assert.ok(largestRequest <= firstRequest, `the request grew from ${firstRequest} to ${largestRequest} bytes`);
  });
});

describe('a schedule upgraded from "failed backups are kept forever", over HTTP', () => {
  const due = new Date(FIRST_SLOT + 1_000 * SLOT_MS);
  let server: RunningServer;
  before(async () => {
    server = await startServer({ clock: () => new Date(due.getTime() + 2_000) });
  });
  after(() => server?.close());

  it('1,000 failed backups in one request: 200, the newest 3 kept, the rest deleted, the due backup created', async () => {
    const failed = Array.from({ length: 1_000 }, (_, i) => backup(new Date(FIRST_SLOT + i * SLOT_MS), 'failed'));
    const request = syncRequest(
      schedule({
        created: '2026-01-01T00:00:00Z',
        spec: { schedule: '*/5 * * * *' },
        status: { lastScheduleTime: iso(new Date(due.getTime() - SLOT_MS)) },
      }),
      failed,
    );
    const answer = await postJson(`${server.url}${SCHEDULE_SYNC_PATH}`, request);
    assert.equal(answer.status, 200, JSON.stringify(answer.body).slice(0, 500));
    const names = (answer.body.children as KubernetesObject[]).map((c) => c.metadata.name).sort();
    assert.deepEqual(names, [...failed.slice(-3).map((b) => b.metadata.name), backupName(SCHEDULE_NAME, due)].sort());
  });
});
