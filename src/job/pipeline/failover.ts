// Tries Talos endpoints in order until one delivers a verified snapshot. A failed attempt is abandoned whole
// (its partial data is never committed: the caller's sink aborts on error) and the next endpoint starts over.

import type { JobError } from '../errors.js';
import { TalosError } from '../talos/client.js';
import { IntegrityError } from '../etcd/trailer.js';

export interface FailedAttempt {
  endpoint: string;
  message: string;
}

export interface FailoverResult<T> {
  value: T;
  /** The endpoint that served the snapshot. */
  endpoint: string;
  /** Endpoints tried before it, with why they failed. */
  failures: FailedAttempt[];
}

/** Whether another endpoint might succeed where this one failed. */
function worthAnotherEndpoint(error: unknown): error is TalosError | IntegrityError {
  return (error instanceof TalosError && error.failover) || error instanceof IntegrityError;
}

/**
 * The snapshot's failure, once no endpoint is left to try: the last endpoint's, caused by it, and when several
 * were tried and all failed, what each one said.
 */
function snapshotFailure(last: TalosError | IntegrityError, failures: FailedAttempt[], endpoints: number): JobError {
  const listed = failures.map((f) => `${f.endpoint}: ${f.message}`).join('; ');
  const every = failures.length === endpoints && endpoints > 1 ? ` (all ${endpoints} endpoints failed: ${listed})` : '';
  if (last instanceof TalosError) {
    return new TalosError(`${last.detail}${every}`, last.endpoint, last.failover, { failure: 'snapshot', cause: last });
  }
  return every ? new IntegrityError(`${last.detail}${every}`, { cause: last }) : last;
}

/**
 * Runs `attempt` for each endpoint in order until one succeeds. Errors that every endpoint would repeat
 * (permissions, S3, configuration) are thrown at once; when every endpoint fails, the last error is the cause of
 * the one thrown, which lists them all.
 */
export async function withFailover<T>(
  endpoints: readonly string[],
  attempt: (endpoint: string) => Promise<T>,
): Promise<FailoverResult<T>> {
  if (endpoints.length === 0)
    throw new Error('no Talos API endpoint to try: set endpoints in the talosconfig or the backup spec');
  const failures: FailedAttempt[] = [];
  for (const endpoint of endpoints) {
    try {
      return { value: await attempt(endpoint), endpoint, failures };
    } catch (error) {
      if (!worthAnotherEndpoint(error)) {
        throw error instanceof TalosError ? snapshotFailure(error, failures, endpoints.length) : error;
      }
      failures.push({ endpoint, message: error.message });
      if (failures.length === endpoints.length) throw snapshotFailure(error, failures, endpoints.length);
    }
  }
  throw new Error('unreachable');
}
