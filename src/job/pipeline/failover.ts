// Tries Talos endpoints in order until one delivers a verified snapshot. A failed attempt is abandoned whole
// (its partial data is never committed: the caller's sink aborts on error) and the next endpoint starts over.

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
function worthAnotherEndpoint(error: unknown): boolean {
  return (error instanceof TalosError && error.failover) || error instanceof IntegrityError;
}

/**
 * Runs `attempt` for each endpoint in order until one succeeds. Errors that every endpoint would repeat
 * (permissions, S3, configuration) are thrown at once; when every endpoint fails, the last error is thrown
 * with the earlier ones summarised in its message.
 */
export async function withFailover<T>(endpoints: readonly string[], attempt: (endpoint: string) => Promise<T>): Promise<FailoverResult<T>> {
  if (endpoints.length === 0) throw new Error('no Talos API endpoint to try: set endpoints in the talosconfig or the backup spec');
  const failures: FailedAttempt[] = [];
  for (const endpoint of endpoints) {
    try {
      return { value: await attempt(endpoint), endpoint, failures };
    } catch (error) {
      if (!worthAnotherEndpoint(error)) throw error;
      failures.push({ endpoint, message: (error as Error).message });
      if (failures.length === endpoints.length) {
        if (failures.length > 1) {
          (error as Error).message += ` (all ${failures.length} endpoints failed: ${failures.map((f) => `${f.endpoint}: ${f.message}`).join('; ')})`;
        }
        throw error;
      }
    }
  }
  throw new Error('unreachable');
}
