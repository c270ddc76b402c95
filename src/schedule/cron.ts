// Parses a schedule's cron expression and time zone and finds its slots. Pure: callers pass the time.

import { Cron } from 'croner';

export type ScheduleProblemReason = 'InvalidSchedule' | 'InvalidTimeZone';

export interface CronSchedule {
  expression: string;
  timeZone: string;
  /** The newest slot at or before `at`, or `null` when the schedule has never fired before `at`. */
  mostRecentSlot(at: Date): Date | null;
  /** The first slot strictly after `after`, or `null` when there is none. */
  nextSlot(after: Date): Date | null;
}

export type ParsedSchedule = { ok: true; schedule: CronSchedule } | { ok: false; reason: ScheduleProblemReason; message: string };

export const NICKNAMES = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'];

// Kubernetes' CronJob rule for each `/`-separated part of a zone name; it keeps out paths, offsets and junk.
const ZONE_PART = /^[A-Za-z._\-0-9+]{1,14}$/;
// A fixed reference for "does this pattern ever fire": any pattern that fires at all fires within 28 years of it.
const NEVER_FIRES_PROBE = new Date(Date.UTC(2000, 0, 1));

// Zones already found valid. Building an Intl.DateTimeFormat costs more than the rest of a sync; only valid
// names are kept, and there are a few hundred of those, so garbage input cannot grow the set.
const validZones = new Set<string>();

/** Checks an IANA time zone name; returns a message a user can act on, or `undefined` when it is valid. */
export function timeZoneProblem(timeZone: string): string | undefined {
  if (validZones.has(timeZone)) return undefined;
  const hint = 'use an IANA time zone name such as "UTC" or "Europe/Berlin"';
  if (timeZone.toLowerCase() === 'local') return `timeZone "Local" depends on the server's clock settings: ${hint}`;
  const parts = timeZone.split('/');
  if (parts.some((p) => !ZONE_PART.test(p) || p === '.' || p === '..' || p.startsWith('-'))) {
    return `unknown timeZone ${JSON.stringify(timeZone)}: ${hint}`;
  }
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    return `unknown timeZone ${JSON.stringify(timeZone)}: ${hint}`;
  }
  validZones.add(timeZone);
  return undefined;
}

function expressionProblem(expression: string): string | undefined {
  const fields = expression.split(' ');
  if (expression === '') return 'schedule is empty: write a 5-field cron expression such as "0 3 * * *"';
  if (/^(CRON_)?TZ=/.test(expression)) return 'TZ= and CRON_TZ= are not supported in schedule: set spec.timeZone instead';
  if (expression.startsWith('@')) {
    if (expression.startsWith('@every')) {
      return `${JSON.stringify(expression)} is not supported: write the interval as a cron expression, e.g. "0 */6 * * *" for every 6 hours`;
    }
    if (expression === '@reboot') return '"@reboot" is not supported: a backup schedule needs times of day; use e.g. "@daily" or "0 3 * * *"';
    if (!NICKNAMES.includes(expression)) return `unknown schedule ${JSON.stringify(expression)}: allowed nicknames are ${NICKNAMES.join(', ')}`;
    return undefined;
  }
  if (fields.length === 6 || fields.length === 7) {
    return `schedule ${JSON.stringify(expression)} has ${fields.length} fields: use the standard 5 fields (minute hour day-of-month month day-of-week); seconds and years are not supported`;
  }
  if (fields.length !== 5) {
    return `schedule ${JSON.stringify(expression)} has ${fields.length} field(s): use 5 fields (minute hour day-of-month month day-of-week) or a nickname such as @daily`;
  }
  return undefined;
}

/**
 * Parses a 5-field cron expression or nickname in an IANA time zone (default UTC).
 * Returns the schedule, or the reason (`InvalidSchedule`, `InvalidTimeZone`) and a message a user can act on.
 * A pattern that can never fire (e.g. 31 February) is an `InvalidSchedule`, not a schedule that waits forever.
 */
export function parseSchedule(rawExpression: string, timeZone = 'UTC'): ParsedSchedule {
  const expression = rawExpression.trim().split(/\s+/).join(' ');
  const zoneProblem = timeZoneProblem(timeZone);
  if (zoneProblem) return { ok: false, reason: 'InvalidTimeZone', message: zoneProblem };
  const problem = expressionProblem(expression);
  if (problem) return { ok: false, reason: 'InvalidSchedule', message: problem };

  let cron: Cron;
  try {
    // Without a function croner starts no timer: it is a pure evaluator. `timezone` is always set, so the
    // server's own zone never leaks in.
    cron = new Cron(expression, { mode: '5-part', timezone: timeZone });
  } catch (error) {
    const detail = (error as Error).message.replace(/^CronPattern: /, '');
    return { ok: false, reason: 'InvalidSchedule', message: `invalid schedule ${JSON.stringify(expression)}: ${detail}` };
  }
  if (cron.nextRun(NEVER_FIRES_PROBE) === null) {
    return { ok: false, reason: 'InvalidSchedule', message: `schedule ${JSON.stringify(expression)} never fires: no date matches it (e.g. 31 February)` };
  }
  return {
    ok: true,
    schedule: {
      expression,
      timeZone,
      // croner's previousRuns is strictly before its reference; one millisecond more makes it "at or before".
      mostRecentSlot: (at) => cron.previousRuns(1, new Date(at.getTime() + 1))[0] ?? null,
      nextSlot: (after) => cron.nextRun(after),
    },
  };
}
