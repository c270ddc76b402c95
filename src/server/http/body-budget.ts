// How many bytes of large request bodies the server holds at once. One request's memory is bounded by the body
// limits (http/json-body.ts); several at once are not: Metacontroller calls with several workers per controller,
// and four concurrent bodies at the limits took the server to 621 MiB. Large bodies therefore take turns: a
// request declaring a body of LARGE_BODY_BYTES or more waits, before its body is read (TCP holds the rest), until
// the bytes in flight leave room for it. Small requests (probes, most hook calls) never wait.

import type { FastifyInstance } from 'fastify';

// A schedule with ~10 backups, every backup hook call, every probe and scrape are below this.
export const LARGE_BODY_BYTES = 64 * 1024;

export class BodyBudget {
  private inFlight = 0;
  private readonly waiting: { bytes: number; start: () => void }[] = [];

  constructor(readonly capacity: number) {}

  /** Resolves once `bytes` (at most the capacity) fit beside what is in flight; returns the release function. */
  async acquire(bytes: number): Promise<() => void> {
    const wanted = Math.min(bytes, this.capacity);
    if (this.waiting.length > 0 || this.inFlight + wanted > this.capacity) {
      await new Promise<void>((start) => this.waiting.push({ bytes: wanted, start }));
    } else {
      this.inFlight += wanted;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= wanted;
      this.admit();
    };
  }

  /** Starts waiting requests in arrival order while they fit. */
  private admit(): void {
    while (this.waiting.length > 0 && this.inFlight + this.waiting[0]!.bytes <= this.capacity) {
      const next = this.waiting.shift()!;
      this.inFlight += next.bytes;
      next.start();
    }
  }

  get bytesInFlight(): number {
    return this.inFlight;
  }
}

/**
 * Makes every request with a large (or undeclared, chunked) body wait for its turn in `budget` before its body is
 * read, and give the turn back when its answer is sent or its connection closes (a 408, a client gone).
 */
export function registerBodyBudget(app: FastifyInstance, budget: BodyBudget, bodyLimit: number): void {
  app.addHook('onRequest', async (request, reply) => {
    const length = request.headers['content-length'];
    const chunked = length === undefined && request.headers['transfer-encoding'] !== undefined;
    const declared = chunked ? bodyLimit : Number(length ?? 0);
    // Over the byte limit: refused with 413 before anything is read, so there is nothing to wait for.
    if (!(declared >= LARGE_BODY_BYTES) || declared > bodyLimit) return;
    const release = await budget.acquire(declared);
    if (reply.raw.writableFinished || reply.raw.destroyed || request.raw.destroyed) release();
    else reply.raw.once('close', release);
  });
}
