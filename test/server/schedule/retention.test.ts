// Retention (src/server/schedule/retention.ts) as a table: which of a schedule's backups stay and which go.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BackupOutcome, ObservedBackup } from '../../../src/server/schedule/backups.js';
import {
  DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT,
  selectForRetention,
  type RetentionPolicy,
} from '../../../src/server/schedule/retention.js';

/** A backup of slot `n` (larger is newer), with an outcome: `s3` is the third slot's backup, succeeded. */
function observed(name: string): ObservedBackup {
  const outcomes: Record<string, BackupOutcome> = { s: 'succeeded', f: 'failed', a: 'active', u: 'unreadable' };
  const slot = Number(name.slice(1));
  const scheduledTime = new Date(Date.UTC(2026, 0, 1) + slot * 3_600_000);
  return {
    object: { apiVersion: 'talos.alperen.cloud/v1alpha1', kind: 'TalosEtcdBackup', metadata: { name } },
    name,
    scheduledTime,
    sortTime: scheduledTime.getTime(),
    outcome: outcomes[name[0]!]!,
    succeededAt: undefined,
    deleting: false,
  };
}

interface Case {
  name: string;
  backups: string[];
  policy: RetentionPolicy;
  kept: string[];
  pruned: string[];
}

const cases: Case[] = [
  { name: 'no backups: nothing kept, nothing pruned', backups: [], policy: { retention: 3 }, kept: [], pruned: [] },
  {
    name: 'successful backups beyond retention go, oldest first',
    backups: ['s1', 's2', 's3', 's4'],
    policy: { retention: 2 },
    kept: ['s4', 's3'],
    pruned: ['s2', 's1'],
  },
  {
    name: 'retention 1 keeps the newest successful backup',
    backups: ['s2', 's1', 's3'],
    policy: { retention: 1 },
    kept: ['s3'],
    pruned: ['s2', 's1'],
  },
  {
    name: 'failed backups do not count toward retention',
    backups: ['s1', 'f2', 'f3', 's4'],
    policy: { retention: 2 },
    kept: ['s4', 'f3', 'f2', 's1'],
    pruned: [],
  },
  {
    name: `failed backups beyond failedBackupsHistoryLimit go; unset, it is ${DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT}`,
    backups: ['f1', 'f2', 'f3', 'f4', 'f5'],
    policy: { retention: 1 },
    kept: ['f5', 'f4', 'f3'],
    pruned: ['f2', 'f1'],
  },
  {
    name: 'failedBackupsHistoryLimit 0 keeps no failed backup',
    backups: ['f1', 's2', 'f3'],
    policy: { retention: 5, failedBackupsHistoryLimit: 0 },
    kept: ['s2'],
    pruned: ['f3', 'f1'],
  },
  {
    name: 'an explicit failedBackupsHistoryLimit replaces the default',
    backups: ['f1', 'f2', 'f3', 'f4', 'f5'],
    policy: { retention: 1, failedBackupsHistoryLimit: 1 },
    kept: ['f5'],
    pruned: ['f4', 'f3', 'f2', 'f1'],
  },
  {
    name: 'active backups are always kept and never counted, however old',
    backups: ['a1', 's2', 's3', 'a4'],
    policy: { retention: 1 },
    kept: ['a4', 's3', 'a1'],
    pruned: ['s2'],
  },
  {
    name: 'unreadable backups are always kept and never counted',
    backups: ['u1', 's2', 'u3', 's4'],
    policy: { retention: 1, failedBackupsHistoryLimit: 0 },
    kept: ['s4', 'u3', 'u1'],
    pruned: ['s2'],
  },
  {
    name: 'both limits at once, in any input order: each outcome is counted on its own',
    backups: ['f6', 's1', 'a7', 'f2', 's5', 'u3', 's4'],
    policy: { retention: 2, failedBackupsHistoryLimit: 1 },
    kept: ['a7', 'f6', 's5', 's4', 'u3'],
    pruned: ['f2', 's1'],
  },
];

describe('selectForRetention', () => {
  for (const c of cases) {
    it(c.name, () => {
      const { kept, pruned } = selectForRetention(c.backups.map(observed), c.policy);
      assert.deepEqual(
        kept.map((b) => b.name),
        c.kept,
        'kept, newest first',
      );
      assert.deepEqual(
        pruned.map((b) => b.name),
        c.pruned,
        'pruned, newest first',
      );
    });
  }

  it('every backup is either kept or pruned, once', () => {
    for (const c of cases) {
      const { kept, pruned } = selectForRetention(c.backups.map(observed), c.policy);
      assert.deepEqual([...kept, ...pruned].map((b) => b.name).sort(), [...c.backups].sort(), c.name);
    }
  });
});
