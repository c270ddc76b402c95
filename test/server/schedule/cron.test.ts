import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseSchedule, timeZoneProblem } from '../../../src/server/schedule/cron.js';
import { README_EXAMPLES } from '../../fixtures/cron-examples.js';

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

function parsed(expression: string, timeZone?: string) {
  const result = parseSchedule(expression, timeZone);
  assert.ok(result.ok, `expected ${expression} to parse: ${JSON.stringify(result)}`);
  return result.schedule;
}

function nextRuns(expression: string, from: string, count: number, timeZone?: string): string[] {
  const schedule = parsed(expression, timeZone);
  const runs: string[] = [];
  let cursor = new Date(from);
  for (let i = 0; i < count; i += 1) {
    const next = schedule.nextSlot(cursor);
    assert.ok(next);
    runs.push(next.toISOString());
    cursor = next;
  }
  return runs;
}

describe('parseSchedule: slots of valid schedules', () => {
  for (const example of README_EXAMPLES) {
    it(`${example.expression} (${example.meaning})`, () => {
      assert.deepEqual(nextRuns(example.expression, example.from, example.next.length), example.next);
    });
  }

  const cases: { name: string; expression: string; timeZone?: string; from: string; next: string[] }[] = [
    {
      name: 'month ends: day 31 skips the months without one',
      expression: '0 0 31 * *',
      from: '2026-01-31T12:00:00Z',
      next: ['2026-03-31T00:00:00.000Z', '2026-05-31T00:00:00.000Z'],
    },
    {
      name: 'month ends: day 30 skips February',
      expression: '0 0 30 * *',
      from: '2026-01-30T12:00:00Z',
      next: ['2026-03-30T00:00:00.000Z', '2026-04-30T00:00:00.000Z'],
    },
    {
      name: 'L is the last day of each month',
      expression: '0 0 L * *',
      from: '2026-01-15T00:00:00Z',
      next: ['2026-01-31T00:00:00.000Z', '2026-02-28T00:00:00.000Z', '2026-03-31T00:00:00.000Z'],
    },
    {
      name: 'W is the nearest weekday to a day (15 August 2026 is a Saturday)',
      expression: '0 0 15W 8 *',
      from: '2026-08-01T00:00:00Z',
      next: ['2026-08-14T00:00:00.000Z'],
    },
    {
      name: '# is the nth weekday of the month (second Tuesday)',
      expression: '0 4 * * 2#2',
      from: '2026-01-01T00:00:00Z',
      next: ['2026-01-13T04:00:00.000Z', '2026-02-10T04:00:00.000Z'],
    },
    {
      name: '29 February fires only in leap years',
      expression: '0 0 29 2 *',
      from: '2026-01-01T00:00:00Z',
      next: ['2028-02-29T00:00:00.000Z', '2032-02-29T00:00:00.000Z'],
    },
    {
      name: 'day of month and day of week together mean either (Vixie cron)',
      expression: '0 0 13 * 5',
      from: '2026-02-01T00:00:00Z',
      next: ['2026-02-06T00:00:00.000Z', '2026-02-13T00:00:00.000Z', '2026-02-20T00:00:00.000Z'],
    },
    {
      name: 'extra spaces between fields are ignored',
      expression: '  0   2 * *  * ',
      from: '2026-01-15T10:20:00Z',
      next: ['2026-01-16T02:00:00.000Z'],
    },
    {
      name: '@midnight is @daily',
      expression: '@midnight',
      from: '2026-01-15T10:20:00Z',
      next: ['2026-01-16T00:00:00.000Z'],
    },
    {
      name: '@annually is @yearly',
      expression: '@annually',
      from: '2026-01-15T10:20:00Z',
      next: ['2027-01-01T00:00:00.000Z'],
    },
    {
      name: 'a time zone shifts the slots',
      expression: '0 2 * * *',
      timeZone: 'America/New_York',
      from: '2026-01-15T10:20:00Z',
      next: ['2026-01-16T07:00:00.000Z'],
    },
    // Europe/Berlin: clocks jump 02:00 → 03:00 on 2026-03-29 and fall back 03:00 → 02:00 on 2026-10-25.
    {
      name: 'DST spring forward: a fixed time in the gap runs at the first valid time after it',
      expression: '30 2 * * *',
      timeZone: 'Europe/Berlin',
      from: '2026-03-28T00:00:00Z',
      next: ['2026-03-28T01:30:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z'],
    },
    {
      name: 'DST fall back: a fixed time in the repeated hour runs once',
      expression: '30 2 * * *',
      timeZone: 'Europe/Berlin',
      from: '2026-10-24T00:00:00Z',
      next: ['2026-10-24T00:30:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z'],
    },
    {
      name: 'DST fall back: an hourly schedule runs in both copies of the repeated hour',
      expression: '0 * * * *',
      timeZone: 'Europe/Berlin',
      from: '2026-10-24T23:30:00Z',
      next: ['2026-10-25T00:00:00.000Z', '2026-10-25T01:00:00.000Z', '2026-10-25T02:00:00.000Z'],
    },
    {
      name: 'DST: daily at midnight Berlin stays at local midnight across the change',
      expression: '0 0 * * *',
      timeZone: 'Europe/Berlin',
      from: '2026-03-28T12:00:00Z',
      next: ['2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(nextRuns(c.expression, c.from, c.next.length, c.timeZone), c.next));
  }
});

describe('parseSchedule: the most recent slot', () => {
  const cases: { name: string; expression: string; now: string; expected: string | null }[] = [
    {
      name: 'exactly at a slot, the slot itself',
      expression: '0 */6 * * *',
      now: '2026-01-15T12:00:00Z',
      expected: '2026-01-15T12:00:00.000Z',
    },
    {
      name: 'one millisecond before a slot, the previous one',
      expression: '0 */6 * * *',
      now: '2026-01-15T11:59:59.999Z',
      expected: '2026-01-15T06:00:00.000Z',
    },
    {
      name: 'almost due (4m59s before), the previous one',
      expression: '0 * * * *',
      now: '2026-01-15T11:55:01Z',
      expected: '2026-01-15T11:00:00.000Z',
    },
    {
      name: 'a yearly schedule looks back across the year',
      expression: '@yearly',
      now: '2026-12-31T23:59:59Z',
      expected: '2026-01-01T00:00:00.000Z',
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.equal(iso(parsed(c.expression).mostRecentSlot(new Date(c.now))), c.expected));
  }
});

describe('parseSchedule: rejected schedules say why', () => {
  const cases: { name: string; expression: string; timeZone?: string; reason: string; message: RegExp }[] = [
    { name: 'empty', expression: '', reason: 'InvalidSchedule', message: /empty/ },
    { name: '31 February never fires', expression: '0 0 31 2 *', reason: 'InvalidSchedule', message: /never fires/ },
    {
      name: "59 23 31 2 * (Kubernetes' impossible example) never fires",
      expression: '59 23 31 2 *',
      reason: 'InvalidSchedule',
      message: /never fires/,
    },
    { name: '30 February never fires', expression: '0 0 30 2 *', reason: 'InvalidSchedule', message: /never fires/ },
    {
      name: 'six fields (seconds)',
      expression: '0 0 2 * * *',
      reason: 'InvalidSchedule',
      message: /6 fields.*seconds and years are not supported/,
    },
    { name: 'seven fields (years)', expression: '0 0 2 * * * 2027', reason: 'InvalidSchedule', message: /7 fields/ },
    { name: 'four fields', expression: '0 2 * *', reason: 'InvalidSchedule', message: /4 field\(s\)/ },
    { name: '@reboot', expression: '@reboot', reason: 'InvalidSchedule', message: /@reboot" is not supported/ },
    { name: '@every', expression: '@every 1h', reason: 'InvalidSchedule', message: /not supported.*0 \*\/6 \* \* \*/ },
    { name: 'an unknown nickname', expression: '@fortnightly', reason: 'InvalidSchedule', message: /unknown schedule/ },
    {
      name: 'minute out of range',
      expression: '61 * * * *',
      reason: 'InvalidSchedule',
      message: /Invalid value for minute: 61/,
    },
    { name: 'garbage', expression: 'every day please', reason: 'InvalidSchedule', message: /3 field/ },
    {
      name: 'a TZ= prefix',
      expression: 'TZ=Europe/Berlin 0 2 * * *',
      reason: 'InvalidSchedule',
      message: /set spec.timeZone instead/,
    },
    {
      name: 'a CRON_TZ= prefix',
      expression: 'CRON_TZ=UTC 0 2 * * *',
      reason: 'InvalidSchedule',
      message: /set spec.timeZone instead/,
    },
    {
      name: 'an unknown time zone',
      expression: '0 2 * * *',
      timeZone: 'Mars/Olympus',
      reason: 'InvalidTimeZone',
      message: /unknown timeZone "Mars\/Olympus"/,
    },
    {
      name: 'the server-dependent Local zone',
      expression: '0 2 * * *',
      timeZone: 'Local',
      reason: 'InvalidTimeZone',
      message: /Local/,
    },
    {
      name: 'a UTC offset instead of a zone',
      expression: '0 2 * * *',
      timeZone: '+05:00',
      reason: 'InvalidTimeZone',
      message: /IANA/,
    },
    {
      name: 'a path',
      expression: '0 2 * * *',
      timeZone: '../../etc/passwd',
      reason: 'InvalidTimeZone',
      message: /unknown timeZone/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const result = parseSchedule(c.expression, c.timeZone);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.equal(result.reason, c.reason);
      assert.match(result.message, c.message);
    });
  }
});

describe('timeZoneProblem', () => {
  for (const zone of [
    'UTC',
    'Europe/Berlin',
    'America/Argentina/Buenos_Aires',
    'Etc/GMT+5',
    'Asia/Kolkata',
    'US/Eastern',
    'Etc/UTC',
    'Europe/Kyiv',
  ]) {
    it(`accepts ${zone}`, () => assert.equal(timeZoneProblem(zone), undefined));
  }

  // Zone names are case-sensitive, as for a Kubernetes CronJob (Go's time.LoadLocation reads a file of that name).
  const miscased: [string, RegExp][] = [
    [
      'aFrIca/ABidjAN',
      /timeZone "aFrIca\/ABidjAN" is not spelled as in the IANA time zone database \(names are case-sensitive\): write "Africa\/Abidjan"/,
    ],
    ['europe/berlin', /write "Europe\/Berlin"/],
    ['utc', /write "UTC"/],
    ['etc/gmt+5', /write "Etc\/GMT\+5"/],
    ['asia/kolkata', /not spelled as in the IANA time zone database.*"Asia\/Calcutta" names the same zone/],
  ];
  for (const [zone, message] of miscased) {
    it(`refuses the spelling ${zone}, naming the right one`, () => {
      assert.match(timeZoneProblem(zone) ?? '', message);
      const parsedZone = parseSchedule('0 2 * * *', zone);
      assert.equal(parsedZone.ok ? undefined : parsedZone.reason, 'InvalidTimeZone');
    });
  }

  it('an alias computes in its zone (Asia/Kolkata is UTC+5:30)', () => {
    assert.deepEqual(nextRuns('0 2 * * *', '2026-01-15T00:00:00Z', 1, 'Asia/Kolkata'), ['2026-01-15T20:30:00.000Z']);
  });

  it('10,000 spellings of real zones grow the memory by a bounded amount (issue: 89 to 377 MiB, all accepted)', () => {
    const child = spawnSync(
      process.execPath,
      ['--expose-gc', fileURLToPath(new URL('./cron-zone-child.js', import.meta.url)), '10000'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(child.status, 0, child.stderr);
    const result = JSON.parse(child.stdout) as { spellings: number; accepted: number; growthMiB: number };
    assert.equal(result.spellings, 10_000);
    assert.ok(
      result.accepted < 200,
      `${result.accepted} spellings accepted (only exact names and capitalised aliases are)`,
    );
    assert.ok(result.growthMiB < 32, `RSS grew by ${result.growthMiB.toFixed(1)} MiB`);
  });
});
