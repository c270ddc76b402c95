// How the Job's commands end (snapshot, verify, delete, restore). The snapshot and delete Jobs' podFailurePolicy
// fails the Job at once on PERMANENT, instead of spending its retries on an error that every retry would repeat.

export const EXIT_CODE = {
  /** Done. */
  ok: 0,
  /** Failed; a retry may succeed (a network fault, a store briefly unavailable). */
  retryable: 1,
  /** Failed; no retry can help (bad settings, a missing Secret, a refused object, denied access, a damaged backup). */
  permanent: 2,
} as const;
