// The pipeline benchmark's synthetic etcd snapshot: a database of N × 4096 bytes followed by its SHA-256 (32 bytes),
// so size % 512 == 32 and the trailer verifies, like a real one. The database is the AES-128-CTR keystream of a fixed
// key: the same bytes in every process (the Talos double's and the S3-only upload's), not compressible at all, and
// generated at GB/s, so making the bytes never costs more than a small fraction of moving them.

import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';

export const MIB = 1024 * 1024;
export const TRAILER_BYTES = 32;

const KEY = Buffer.from('talos-etcd-bench', 'latin1'); // 16 bytes: AES-128
const IV = Buffer.alloc(16);

export interface SnapshotFacts {
  /** Bytes of the whole snapshot, trailer included. */
  size: number;
  /** SHA-256 of the whole snapshot (what the stored object hashes to). */
  sha256: string;
  /** SHA-256 of the database: the trailer. */
  etcdSha256: string;
}

function checkDatabaseBytes(dbBytes: number): void {
  if (!Number.isSafeInteger(dbBytes) || dbBytes <= 0 || dbBytes % 4096 !== 0) {
    throw new RangeError(`the synthetic database must be a positive multiple of 4096 bytes, got ${dbBytes}`);
  }
}

/** The database's bytes in chunks of `chunkBytes` (the last may be shorter); each chunk is a fresh Buffer. */
export function* databaseChunks(dbBytes: number, chunkBytes = MIB): Generator<Buffer> {
  checkDatabaseBytes(dbBytes);
  const cipher = createCipheriv('aes-128-ctr', KEY, IV);
  const zeros = Buffer.alloc(chunkBytes);
  for (let at = 0; at < dbBytes; at += chunkBytes) yield cipher.update(zeros.subarray(0, Math.min(chunkBytes, dbBytes - at)));
}

/** The whole snapshot in one Buffer (for the Talos double), with its hashes. */
export function buildSnapshot(dbBytes: number): { buffer: Buffer; facts: SnapshotFacts } {
  const buffer = Buffer.allocUnsafe(dbBytes + TRAILER_BYTES);
  const database = createHash('sha256');
  let at = 0;
  for (const chunk of databaseChunks(dbBytes)) {
    chunk.copy(buffer, at);
    database.update(chunk);
    at += chunk.length;
  }
  const trailer = database.digest();
  trailer.copy(buffer, dbBytes);
  const sha256 = createHash('sha256').update(buffer).digest('hex');
  return { buffer, facts: { size: buffer.length, sha256, etcdSha256: trailer.toString('hex') } };
}

/**
 * The same snapshot as a stream, generated on the fly (no disk, no whole copy in memory), in chunks of `chunkBytes`
 * like a file stream's. The trailer is given (the double reports it) so this does not hash.
 */
export function snapshotStream(dbBytes: number, etcdSha256: string, chunkBytes = 64 * 1024): Readable {
  const trailer = Buffer.from(etcdSha256, 'hex');
  if (trailer.length !== TRAILER_BYTES) throw new Error(`etcdSha256 must be 32 bytes of hex, got ${JSON.stringify(etcdSha256)}`);
  return Readable.from(
    (function* () {
      yield* databaseChunks(dbBytes, chunkBytes);
      yield trailer;
    })(),
    { objectMode: false },
  );
}
