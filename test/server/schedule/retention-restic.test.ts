// The tiered retention policy against restic itself (Debian's restic 0.14): the same backup times as restic
// snapshots (made with `restic backup --time`, in a local repository), `restic forget --dry-run --json` with the
// same rules, and the set restic keeps must be the set applyTieredPolicy keeps. Times are irregular, span both DST
// changes of a year, and are read in Europe/Berlin by both (restic buckets by the local time zone: TZ).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { applyTieredPolicy, wallClock, type TieredPolicy } from '../../../src/server/schedule/retention-policy.js';

const ZONE = 'Europe/Berlin';
const INSTALL_HINT = 'run ./scripts/install-test-deps.sh (Debian package restic)';
const HOUR = 3_600_000;

/** A seeded, irregular history: 32 backup times over about a year, some hours apart, some weeks. */
function history(): Date[] {
  let seed = 20261203;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const times: Date[] = [];
  let at = Date.UTC(2025, 9, 1, 1, 0, 0);
  for (let i = 0; i < 32; i += 1) {
    const step = random() < 0.4 ? 1 + Math.floor(random() * 20) : 24 * (1 + Math.floor(random() * 20));
    at += step * HOUR;
    const t = new Date(at);
    // restic reads --time as a local wall-clock time: skip the repeated hour when DST ends (ambiguous there).
    const hour = wallClock(t, ZONE).hour;
    const repeated = [-HOUR, HOUR].some((d) => wallClock(new Date(t.getTime() + d), ZONE).hour === hour);
    if (!repeated) times.push(t);
  }
  return times;
}

const local = (t: Date) => {
  const w = wallClock(t, ZONE);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${w.year}-${p(w.month)}-${p(w.day)} ${p(w.hour)}:${p(w.minute)}:${p(w.second)}`;
};

describe('tiered retention keeps what restic forget keeps', () => {
  let dir: string;
  const times = history();
  const env = () => ({
    PATH: process.env.PATH,
    HOME: dir,
    TZ: ZONE,
    RESTIC_PASSWORD: 'test',
    RESTIC_REPOSITORY: join(dir, 'repo'),
    RESTIC_CACHE_DIR: join(dir, 'cache'),
  });
  const restic = (args: string[]) => {
    const run = spawnSync('restic', args, { encoding: 'utf8', env: env(), cwd: dir, timeout: 60_000 });
    if (run.error) throw new Error(`restic is not usable (${run.error.message}); ${INSTALL_HINT}`);
    assert.equal(run.status, 0, `restic ${args.join(' ')}: ${run.stderr}`);
    return run.stdout;
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'retention-restic-'));
    mkdirSync(join(dir, 'data'));
    writeFileSync(join(dir, 'data', 'f'), 'x');
    restic(['init', '-q']);
    for (const t of times) restic(['backup', '-q', '--host', 'h', '--time', local(t), 'data']);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const policies: [string, TieredPolicy, string[]][] = [
    [
      'keepLast 3, keepDaily 5, keepWeekly 4',
      { keepLast: 3, keepDaily: 5, keepWeekly: 4 },
      ['--keep-last', '3', '--keep-daily', '5', '--keep-weekly', '4'],
    ],
    [
      'keepHourly 6, keepMonthly 6, keepYearly 2',
      { keepHourly: 6, keepMonthly: 6, keepYearly: 2 },
      ['--keep-hourly', '6', '--keep-monthly', '6', '--keep-yearly', '2'],
    ],
    ['keepWithin 1m10d12h', { keepWithin: '1m10d12h' }, ['--keep-within', '1m10d12h']],
    [
      'everything at once',
      { keepLast: 2, keepHourly: 3, keepDaily: 4, keepWeekly: 3, keepMonthly: 4, keepYearly: 3, keepWithin: '5d' },
      [
        '--keep-last',
        '2',
        '--keep-hourly',
        '3',
        '--keep-daily',
        '4',
        '--keep-weekly',
        '3',
        '--keep-monthly',
        '4',
        '--keep-yearly',
        '3',
        '--keep-within',
        '5d',
      ],
    ],
  ];
  for (const [name, policy, flags] of policies) {
    it(name, () => {
      const answer = JSON.parse(restic(['forget', '--dry-run', '--json', ...flags])) as { keep: { time: string }[] }[];
      const byRestic = answer[0]!.keep.map((s) => Date.parse(s.time)).sort((a, b) => b - a);
      const ours = applyTieredPolicy(
        times.map((t) => ({ backup: t.getTime(), time: t })),
        policy,
        ZONE,
      ).kept;
      assert.ok(byRestic.length > 0 && byRestic.length < times.length, `a case that keeps some: ${byRestic.length}`);
      assert.deepEqual(
        ours.map((t) => new Date(t).toISOString()),
        byRestic.map((t) => new Date(t).toISOString()),
      );
    });
  }
});
