// Kubernetes-style status conditions whose lastTransitionTime only moves when the status does:
// Metacontroller re-syncs on every status write, so a timestamp that changed on each call would loop forever.

/** A Kubernetes status condition (metav1.Condition). */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** RFC 3339 at second precision, as the API server stores metav1.Time (finer digits would differ on every read-back). */
export function formatTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Parses an RFC 3339 time; `undefined` for anything else. */
export function parseTime(value: unknown): Date | undefined {
  if (typeof value !== 'string') return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  // Tolerates malformed entries (null, non-objects): observed statuses are not always what we wrote.
  return Array.isArray(conditions)
    ? conditions.find((c) => typeof c === 'object' && c !== null && c.type === type)
    : undefined;
}

/**
 * A condition for the desired status: `lastTransitionTime` is carried over from the observed condition of the
 * same type when its `status` is unchanged, and is `now` otherwise.
 */
export function nextCondition(
  observed: readonly Condition[] | undefined,
  desired: Omit<Condition, 'lastTransitionTime'>,
  now: Date,
): Condition {
  const previous = findCondition(observed, desired.type);
  const lastTransitionTime =
    previous && previous.status === desired.status ? previous.lastTransitionTime : formatTime(now);
  return { ...desired, lastTransitionTime };
}

/** The latest of some times (undefined when none is given). */
export function latestTime(...dates: (Date | undefined)[]): Date | undefined {
  return dates.reduce<Date | undefined>((a, b) => (b && (!a || b > a) ? b : a), undefined);
}
