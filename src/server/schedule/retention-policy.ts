// Tiered retention (spec.retentionPolicy) with restic's `forget` semantics, as a pure function: which successful
// backups the rules keep. Backups are walked newest first by scheduled time; each --keep-<period> rule keeps the
// newest backup of each of its next N periods that hold one (periods in the schedule's time zone: an hour, a day, an
// ISO week, a month, a year); keepLast keeps the newest N; keepWithin keeps every backup scheduled within that
// duration of the newest one. A backup is kept if any rule keeps it.

export const PERIOD_RULES = ['keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly'] as const;
export type PeriodRule = (typeof PERIOD_RULES)[number];
export const RULES = ['keepLast', ...PERIOD_RULES, 'keepWithin'] as const;
export type RuleName = (typeof RULES)[number];

export interface TieredPolicy {
  keepLast?: number | undefined;
  keepHourly?: number | undefined;
  keepDaily?: number | undefined;
  keepWeekly?: number | undefined;
  keepMonthly?: number | undefined;
  keepYearly?: number | undefined;
  /** A duration: years, months, weeks, days, hours, e.g. `1y6m`, `2w`, `36h` (restic's units, and w). */
  keepWithin?: string | undefined;
}

/** keepWithin's grammar (the CRD's pattern): each unit at most once, in this order; not empty (minLength 2). */
export const WITHIN_PATTERN = /^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?$/;

/**
 * `newest` minus a keepWithin duration: years, months, weeks and days back on the zone's calendar (a month before
 * 31 March is 3 March, as Date arithmetic and restic's AddDate normalise), then hours back in absolute time.
 */
export function withinStart(newest: Date, within: string, timeZone: string): Date | undefined {
  const match = within === '' ? null : WITHIN_PATTERN.exec(within);
  if (!match) return undefined;
  const [y, m, w, d, h] = match.slice(1).map((n) => Number(n ?? 0)) as [number, number, number, number, number];
  const wall = wallClock(newest, timeZone);
  const target = Date.UTC(wall.year - y, wall.month - 1 - m, wall.day - 7 * w - d, wall.hour, wall.minute, wall.second);
  return new Date(instantOf(target, timeZone, newest) - h * 3_600_000);
}

/** The instant whose wall clock in `timeZone` is `wallUtc` (a wall time written as UTC), near `hint`. */
function instantOf(wallUtc: number, timeZone: string, hint: Date): number {
  const wallOf = (at: Date) => {
    const w = wallClock(at, timeZone);
    return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  };
  let guess = wallUtc - (wallOf(hint) - Math.floor(hint.getTime() / 1000) * 1000);
  // One correction for a different offset at the target (DST): at most twice.
  for (let i = 0; i < 2; i += 1) guess += wallUtc - wallOf(new Date(guess));
  return guess;
}

interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The wall-clock time of an instant in an IANA time zone. */
export function wallClock(at: Date, timeZone: string): WallClock {
  let format = formatters.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(at).map((p) => [p.type, p.value]));
  return {
    year: Number(parts.year),
    month: Number(parts.month),
    day: Number(parts.day),
    hour: Number(parts.hour),
    minute: Number(parts.minute),
    second: Number(parts.second),
  };
}

/** ISO 8601 week-numbering year and week of a calendar date (weeks start on Monday; week 1 holds 4 January). */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = new Date(Date.UTC(year, month - 1, day));
  const weekday = date.getUTCDay() || 7; // Monday 1 … Sunday 7
  date.setUTCDate(date.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const weekYear = date.getUTCFullYear();
  const week = Math.ceil(((date.getTime() - Date.UTC(weekYear, 0, 1)) / 86_400_000 + 1) / 7);
  return { year: weekYear, week };
}

/** The period a time falls in, for a rule, as a comparable key. */
export function periodKey(rule: PeriodRule, at: Date, timeZone: string): string {
  const w = wallClock(at, timeZone);
  switch (rule) {
    case 'keepHourly':
      return `${w.year}-${w.month}-${w.day}T${w.hour}`;
    case 'keepDaily':
      return `${w.year}-${w.month}-${w.day}`;
    case 'keepWeekly': {
      const iso = isoWeek(w.year, w.month, w.day);
      return `${iso.year}-W${iso.week}`;
    }
    case 'keepMonthly':
      return `${w.year}-${w.month}`;
    case 'keepYearly':
      return `${w.year}`;
  }
}

export interface TieredDecision<T> {
  /** Kept by at least one rule, newest first. */
  kept: T[];
  /** How many backups each rule that is set keeps (a backup kept by two rules counts for both). */
  byRule: Partial<Record<RuleName, number>>;
}

/**
 * The backups the policy keeps, of `backups` (successful ones), each with its scheduled time. restic's algorithm
 * (internal/restic/snapshot_policy.go ApplyPolicy): walking newest first, a rule with count left keeps a backup when
 * its period differs from that of the last backup the rule saw, and then counts one down.
 */
export function applyTieredPolicy<T>(
  backups: readonly { backup: T; time: Date }[],
  policy: TieredPolicy,
  timeZone: string,
): TieredDecision<T> {
  const newestFirst = [...backups].sort((a, b) => b.time.getTime() - a.time.getTime());
  const left: Partial<Record<RuleName, number>> = {};
  const last: Partial<Record<PeriodRule, string>> = {};
  const byRule: Partial<Record<RuleName, number>> = {};
  for (const rule of RULES) if (policy[rule] !== undefined) byRule[rule] = 0;
  if (policy.keepLast !== undefined) left.keepLast = policy.keepLast;
  for (const rule of PERIOD_RULES) if (policy[rule] !== undefined) left[rule] = policy[rule];
  const start =
    policy.keepWithin !== undefined && newestFirst[0]
      ? withinStart(newestFirst[0].time, policy.keepWithin, timeZone)
      : undefined;
  const kept: T[] = [];
  for (const { backup, time } of newestFirst) {
    let keep = false;
    if ((left.keepLast ?? 0) > 0) {
      left.keepLast! -= 1;
      byRule.keepLast! += 1;
      keep = true;
    }
    for (const rule of PERIOD_RULES) {
      if ((left[rule] ?? 0) <= 0) continue;
      const key = periodKey(rule, time, timeZone);
      if (key === last[rule]) continue;
      last[rule] = key;
      left[rule]! -= 1;
      byRule[rule]! += 1;
      keep = true;
    }
    // Strictly after, as restic: keepWithin 7d of a daily schedule keeps 7 backups.
    if (start && time > start) {
      byRule.keepWithin! += 1;
      keep = true;
    }
    if (keep) kept.push(backup);
  }
  return { kept, byRule };
}
