// etcd's snapshot integrity check, while streaming: a snapshot is the bbolt database followed by a 32-byte
// SHA-256 of that database. The last 32 bytes seen are held back; everything before them is hashed and passed
// on. At the end the total must be 512k + 32 bytes (bbolt pages are multiples of 512) and the hash must equal
// the held-back trailer. Talos can end a broken stream with status OK, so this check is what tells a backup
// from a fragment.

import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { JobError } from '../errors.js';

export const TRAILER_BYTES = 32;

/** A snapshot that is not whole. Not permanent: the next attempt (or endpoint) streams it anew. */
export class IntegrityError extends JobError {
  override name = 'IntegrityError';
  constructor(detail: string, options: { cause?: unknown } = {}) {
    super('integrity', detail, { permanent: false, cause: options.cause });
  }
}

export interface VerifiedSnapshot {
  /** Bytes in the whole snapshot, trailer included. */
  size: number;
  /** Hex SHA-256 of the database (the trailer's value). */
  etcdSha256: string;
  /** Hex SHA-256 of every byte, trailer included: what the stored object hashes to when stored as is. */
  sha256: string;
}

/**
 * Verifies a snapshot fed chunk by chunk. `push` returns the pieces that are safe to pass on now (they are
 * views, not copies, except the small held-back tail); `finish` checks the whole and returns the trailer.
 * `source` says where the bytes come from, for the wording of a mismatch: a stream from Talos ('transit'), or an
 * object read back from the store ('store').
 */
export class EtcdSnapshotVerifier {
  // One pass of SHA-256: the whole snapshot's hash continues the database's (a copy of its state, plus the tail).
  private readonly database: Hash = createHash('sha256');
  private tail: Buffer = Buffer.alloc(0);
  private size = 0;

  constructor(private readonly source: 'transit' | 'store' = 'transit') {}

  push(chunk: Buffer): Buffer[] {
    this.size += chunk.length;
    if (chunk.length >= TRAILER_BYTES) {
      const released = [this.tail, chunk.subarray(0, chunk.length - TRAILER_BYTES)].filter((b) => b.length > 0);
      for (const piece of released) this.database.update(piece);
      this.tail = Buffer.from(chunk.subarray(chunk.length - TRAILER_BYTES)); // a copy: the caller may reuse chunk
      return released;
    }
    const joined = Buffer.concat([this.tail, chunk]);
    const cut = Math.max(0, joined.length - TRAILER_BYTES);
    const released = joined.subarray(0, cut);
    if (released.length > 0) this.database.update(released);
    this.tail = joined.subarray(cut);
    return released.length > 0 ? [released] : [];
  }

  /** Checks the snapshot; returns the held-back trailer and the figures, or throws an IntegrityError. */
  finish(): { trailer: Buffer; result: VerifiedSnapshot } {
    if (this.size === 0) throw new IntegrityError('the stream was empty');
    if (this.size % 512 !== TRAILER_BYTES) {
      throw new IntegrityError(
        `the stream ended after ${this.size} bytes, which is not a whole etcd snapshot (size % 512 = ${this.size % 512}, expected ${TRAILER_BYTES}): truncated, or not an etcd snapshot`,
      );
    }
    const sha256 = this.database.copy().update(this.tail).digest('hex');
    const computed = this.database.digest('hex');
    const trailer = this.tail.toString('hex');
    if (computed !== trailer) {
      const where = this.source === 'transit' ? ': corrupted in transit' : '';
      throw new IntegrityError(
        `the database's sha256 ${computed} does not match the snapshot's trailer ${trailer}${where}`,
      );
    }
    return { trailer: this.tail, result: { size: this.size, etcdSha256: trailer, sha256 } };
  }
}

/**
 * A Transform that passes a snapshot through unchanged but only releases its last 32 bytes once the whole has
 * been verified: a consumer that completes only on 'end' (an S3 upload) can never complete a broken snapshot.
 * `onVerified` receives the figures just before the end.
 */
export function verifyingStream(onVerified: (result: VerifiedSnapshot) => void): Transform {
  const verifier = new EtcdSnapshotVerifier();
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      for (const piece of verifier.push(chunk)) this.push(piece);
      callback();
    },
    flush(callback: TransformCallback) {
      try {
        const { trailer, result } = verifier.finish();
        this.push(trailer);
        onVerified(result);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}
