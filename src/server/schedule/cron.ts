// Parses a schedule's cron expression and time zone and finds its slots. Pure: callers pass the time.

import { Cron } from 'croner';
import { SCHEDULE_REASON, type ScheduleProblemReason } from '../conditions.js';

export interface CronSchedule {
  expression: string;
  timeZone: string;
  /** The newest slot at or before `at`, or `null` when the schedule has never fired before `at`. */
  mostRecentSlot(at: Date): Date | null;
  /** The first slot strictly after `after`, or `null` when there is none. */
  nextSlot(after: Date): Date | null;
}

export type ParsedSchedule =
  { ok: true; schedule: CronSchedule } | { ok: false; reason: ScheduleProblemReason; message: string };

export const NICKNAMES = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'];

// Kubernetes' CronJob rule for each `/`-separated part of a zone name; it keeps out paths, offsets and junk.
const ZONE_PART = /^[A-Za-z._\-0-9+]{1,14}$/;
// A fixed reference for "does this pattern ever fire": any pattern that fires at all fires within 28 years of it.
const NEVER_FIRES_PROBE = new Date(Date.UTC(2000, 0, 1));

// Every valid zone, by its name in lower case, with the ID the ICU library behind Intl gives it. Intl accepts any
// case ("aFrIca/ABidjAN"), and both Intl and croner keep native state per spelling they are handed (croner caches
// one Intl.DateTimeFormat per spelling, for good): 10,000 case variants of real zones took the server from 89 to
// 377 MiB. So Intl only ever sees lower-case names, croner only ICU IDs, and this map only valid names, of which
// there are about 600: nothing here grows with what requests send.
const zoneIds = new Map<string, string>();

function icuZoneId(lowerCase: string): string | undefined {
  const known = zoneIds.get(lowerCase);
  if (known !== undefined) return known;
  let id: string;
  try {
    id = new Intl.DateTimeFormat('en-US', { timeZone: lowerCase }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
  zoneIds.set(lowerCase, id);
  return id;
}

export type ZoneCheck = { ok: true; id: string } | { ok: false; message: string };

/**
 * Checks an IANA time zone name, spelled as in the time zone database: zone names are case-sensitive, as for a
 * Kubernetes CronJob. Returns the ICU ID to compute with (the same zone; for an alias such as Asia/Kolkata, ICU's
 * name for it, Asia/Calcutta), or a message a user can act on.
 */
export function checkTimeZone(timeZone: string): ZoneCheck {
  const hint = 'use an IANA time zone name such as "UTC" or "Europe/Berlin"';
  if (timeZone.toLowerCase() === 'local')
    return { ok: false, message: `timeZone "Local" depends on the server's clock settings: ${hint}` };
  const parts = timeZone.split('/');
  if (parts.some((p) => !ZONE_PART.test(p) || p === '.' || p === '..' || p.startsWith('-'))) {
    return { ok: false, message: `unknown timeZone ${JSON.stringify(timeZone)}: ${hint}` };
  }
  const lowerCase = timeZone.toLowerCase();
  const id = icuZoneId(lowerCase);
  if (id === undefined) return { ok: false, message: `unknown timeZone ${JSON.stringify(timeZone)}: ${hint}` };
  if (id === timeZone) return { ok: true, id };
  const miscased = `timeZone ${JSON.stringify(timeZone)} is not spelled as in the IANA time zone database (names are case-sensitive)`;
  if (id.toLowerCase() === lowerCase) return { ok: false, message: `${miscased}: write ${JSON.stringify(id)}` };
  // An alias ICU files under another name (Asia/Kolkata, US/Eastern, Etc/UTC): ICU does not say how the alias itself
  // is spelled, but every IANA name part starts with a capital letter or a digit.
  if (parts.some((p) => !/^[A-Z0-9]/.test(p)))
    return { ok: false, message: `${miscased}: ${JSON.stringify(id)} names the same zone` };
  return { ok: true, id };
}

/** Checks an IANA time zone name; returns a message a user can act on, or `undefined` when it is valid. */
export function timeZoneProblem(timeZone: string): string | undefined {
  const checked = checkTimeZone(timeZone);
  return checked.ok ? undefined : checked.message;
}

function expressionProblem(expression: string): string | undefined {
  const fields = expression.split(' ');
  if (expression === '') return 'schedule is empty: write a 5-field cron expression such as "0 3 * * *"';
  if (/^(CRON_)?TZ=/.test(expression))
    return 'TZ= and CRON_TZ= are not supported in schedule: set spec.timeZone instead';
  if (expression.startsWith('@')) {
    if (expression.startsWith('@every')) {
      return `${JSON.stringify(expression)} is not supported: write the interval as a cron expression, e.g. "0 */6 * * *" for every 6 hours`;
    }
    if (expression === '@reboot')
      return '"@reboot" is not supported: a backup schedule needs times of day; use e.g. "@daily" or "0 3 * * *"';
    if (!NICKNAMES.includes(expression))
      return `unknown schedule ${JSON.stringify(expression)}: allowed nicknames are ${NICKNAMES.join(', ')}`;
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
  const zone = checkTimeZone(timeZone);
  if (!zone.ok) return { ok: false, reason: SCHEDULE_REASON.invalidTimeZone, message: zone.message };
  const problem = expressionProblem(expression);
  if (problem) return { ok: false, reason: SCHEDULE_REASON.invalidSchedule, message: problem };

  let cron: Cron;
  try {
    // Without a function croner starts no timer: it is a pure evaluator. `timezone` is always set, so the
    // server's own zone never leaks in; it is the ICU ID, so croner's cache holds one entry per zone.
    cron = new Cron(expression, { mode: '5-part', timezone: zone.id });
  } catch (error) {
    const detail = (error as Error).message.replace(/^CronPattern: /, '');
    const message = `invalid schedule ${JSON.stringify(expression)}: ${detail}`;
    return { ok: false, reason: SCHEDULE_REASON.invalidSchedule, message };
  }
  if (cron.nextRun(NEVER_FIRES_PROBE) === null) {
    const message = `schedule ${JSON.stringify(expression)} never fires: no date matches it (e.g. 31 February)`;
    return { ok: false, reason: SCHEDULE_REASON.invalidSchedule, message };
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
