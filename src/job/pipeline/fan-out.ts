// One stream of stored bytes into several uploads (the primary destination and its copies), at the pace of the
// slowest: each chunk goes to every live branch, and the source pauses until every branch that refused more has
// drained. So memory stays each upload's own buffers (part size × queue size) plus one small buffer per branch,
// and Talos is read once. A branch is the bottleneck while the source waits for it to drain, and, once the source
// has ended, until its upload is done (the rest of it is in that upload's buffers). A bottleneck that makes no
// progress (no drain, no part completed: `progress(i)`) for `stallTimeoutMs` is reported (onStall) once: the caller
// fails everything (a required destination) or drops it (an optional one), so a stalled destination cannot hold
// the Job. A source that itself goes quiet (Talos stalls) makes no branch a bottleneck: that is Talos' idle timeout.

import { PassThrough, type Readable } from 'node:stream';

/** Bytes each branch holds before it refuses more: small, the uploads buffer their parts themselves. */
const BRANCH_BUFFER_BYTES = 64 * 1024;

export interface FanOut {
  /** One stream per branch, in order: each gets every byte of the source, then ends (or errors with it). */
  branches: PassThrough[];
  /** Branch i's upload is over (done, or failed and not needed): the others go on without waiting for it. */
  drop(i: number): void;
  /** Branch i made progress (its upload completed a part). */
  progress(i: number): void;
  /** Fails the source and so every branch with `error` (a required destination failed). */
  fail(error: Error): void;
  /** The error the source ended with, if any: the same object every branch errored with. */
  readonly error: Error | undefined;
}

/**
 * Feeds `source` to `count` branches. `onStall(i, seconds)`: branch i took nothing for `stallTimeoutMs` while the
 * source waited on it (told once per branch, which stops being waited on).
 */
export function fanOut(
  source: Readable,
  count: number,
  opts: { stallTimeoutMs: number; onStall: (i: number, seconds: number) => void; clock?: () => number },
): FanOut {
  const clock = opts.clock ?? Date.now;
  const branches = Array.from({ length: count }, () => new PassThrough({ highWaterMark: BRANCH_BUFFER_BYTES }));
  const live = new Set(branches.keys());
  /** Branches the source waits on. */
  const waiting = new Set<number>();
  /** Bottlenecks (waited on, or finishing after the source ended), and since their last progress. */
  const blocked = new Map<number, number>();
  let error: Error | undefined;

  const resumeIfFree = () => {
    if (waiting.size === 0 && !source.destroyed) source.resume();
  };
  const drop = (i: number) => {
    live.delete(i);
    waiting.delete(i);
    blocked.delete(i);
    if (live.size === 0) clearInterval(watchdog);
    resumeIfFree();
  };
  branches.forEach((branch, i) => {
    // A branch's own failure is its upload's business (it has its listener); this one also keeps an error
    // emitted after that upload gave up from crashing the process.
    branch.on('drain', () => {
      waiting.delete(i);
      blocked.delete(i);
      resumeIfFree();
    });
    // Not 'close': a branch closes once its upload has read it all, well before that upload is done.
    branch.on('error', () => drop(i));
  });

  const watchdog = setInterval(
    () => {
      const now = clock();
      for (const [i, since] of blocked) {
        if (now - since > opts.stallTimeoutMs) {
          drop(i);
          opts.onStall(i, Math.round(opts.stallTimeoutMs / 1000));
        }
      }
    },
    Math.max(50, Math.min(1000, opts.stallTimeoutMs / 10)),
  );
  watchdog.unref();

  source.on('data', (chunk: Buffer) => {
    for (const i of live) {
      if (!branches[i]!.write(chunk) && !waiting.has(i)) {
        waiting.add(i);
        blocked.set(i, clock());
      }
    }
    if (waiting.size > 0) source.pause();
  });
  source.once('end', () => {
    const now = clock();
    for (const i of live) {
      branches[i]!.end();
      blocked.set(i, blocked.get(i) ?? now);
    }
  });
  source.once('error', (e: Error) => {
    error = e;
    clearInterval(watchdog);
    for (const branch of branches) branch.destroy(e);
  });
  source.once('close', () => {
    // Destroyed without an error (the attempt was given up): the branches must not wait for an end that never comes.
    if (!source.readableEnded && error === undefined) {
      for (const branch of branches) branch.destroy(new Error('the stored bytes stopped before their end'));
    }
  });

  return {
    branches,
    drop,
    progress: (i) => {
      if (blocked.has(i)) blocked.set(i, clock());
    },
    fail: (e) => source.destroy(e),
    get error() {
      return error;
    },
  };
}
