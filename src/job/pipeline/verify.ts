// Reads a stored snapshot back from S3 and proves it restorable, streaming, with bounded memory: the stored
// bytes' size and sha256; then, when the plain snapshot can be seen (not encrypted, or an age identity is at
// hand), decryption, decompression, etcd's sha256 trailer, and the bolt database's structure. `restore` runs the
// same checks while it writes the plain snapshot to a file.

import { createHash } from 'node:crypto';
import { pipeline, Transform, Writable, type Duplex, type Readable } from 'node:stream';
import { GetObjectCommand, S3ServiceException, type S3Client } from '@aws-sdk/client-s3';
import { createDecryptor } from '../codec/age.js';
import type { Compression } from '../../api/types.js';
import { createDecompressor } from '../codec/compression.js';
import { BoltChecker, BoltStructureError, type BoltSummary } from '../etcd/bolt-check.js';
import { JobError } from '../errors.js';
import { describeS3Error, isPermanentS3Error } from '../s3/errors.js';
import { storedFormatOf } from '../../contract/object-key.js';
import { readRecordedHashes } from '../s3/recorded-hashes.js';
import { EtcdSnapshotVerifier, IntegrityError } from '../etcd/trailer.js';

/** FAILURE_PREFIX.verification; permanent when the object itself is wrong (a retry reads the same bytes). */
export class VerificationError extends JobError {
  override name = 'VerificationError';
  constructor(detail: string, options: { cause?: unknown; permanent: boolean }) {
    super('verification', detail, options);
  }
}

/** What the object should be; every field known is checked. */
export interface ExpectedObject {
  size?: number | undefined;
  sha256?: string | undefined;
  etcdSha256?: string | undefined;
}

/**
 * Full: the plain snapshot was read (trailer and database structure checked). StoredBytes: the object is
 * encrypted and no identity was given, so only its size and sha256 were checked.
 */
export type Verification = 'Full' | 'StoredBytes';

export interface ReadBackResult {
  /** Bytes stored. */
  size: number;
  /** SHA-256 of the stored bytes. */
  sha256: string;
  verification: Verification;
  /** Full only: etcd's trailer, the plain snapshot's size and what the database holds. */
  etcdSha256?: string;
  snapshotSize?: number;
  database?: BoltSummary;
}

export interface ReadBackOptions {
  compression: Compression;
  encrypted: boolean;
  /** age identities (AGE-SECRET-KEY-1...): needed to see inside an encrypted object. */
  identities?: string[] | undefined;
  expected?: ExpectedObject | undefined;
  /** Receives the plain snapshot (database and trailer) as it is checked: restore's output file. */
  sink?: Writable | undefined;
  /** Told the stored bytes read so far. */
  onProgress?: ((bytesRead: number) => void) | undefined;
}

/** The sink (restore's output file) failed: not the backup's fault. */
export class SinkError extends Error {
  override name = 'SinkError';
}

/**
 * A Transform that checks the plain snapshot as it passes: etcd's trailer over the database, and the database's
 * structure. Its output is the snapshot unchanged, for a sink.
 */
function snapshotChecker(): {
  stream: Transform;
  result: () => { etcdSha256: string; snapshotSize: number; database: BoltSummary };
} {
  const trailer = new EtcdSnapshotVerifier('store');
  const bolt = new BoltChecker();
  let outcome: { etcdSha256: string; snapshotSize: number; database: BoltSummary } | undefined;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      try {
        for (const piece of trailer.push(chunk)) bolt.push(piece);
        callback(null, chunk);
      } catch (error) {
        callback(error as Error);
      }
    },
    flush(callback) {
      try {
        const { result } = trailer.finish();
        outcome = { etcdSha256: result.etcdSha256, snapshotSize: result.size, database: bolt.finish() };
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
  return { stream, result: () => outcome! };
}

/** Resolves once `stream` can take more, or can never again (it failed or closed): no listener outlives the wait. */
function writable(stream: Writable): Promise<void> {
  if (stream.destroyed || stream.writableNeedDrain === false) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done).off('close', done).off('error', done);
      resolve();
    };
    stream.on('drain', done).on('close', done).on('error', done);
  });
}

/** One-line wording of a failure while decoding or checking the plain snapshot (age, gzip/zstd, etcd, bolt). */
function describeContentError(error: unknown): string {
  if (error instanceof IntegrityError) return `etcd trailer: ${error.detail}`;
  if (error instanceof BoltStructureError) return `database structure: ${error.message}`;
  return (error as Error).message;
}

/**
 * Reads a stored object's bytes and checks them against `expected`; throws a VerificationError naming the first
 * thing that does not match. A damaged object is read to its end even after decoding failed, so that a changed
 * sha256 — the root cause — is what gets reported.
 */
export async function readBack(body: Readable, where: string, opts: ReadBackOptions): Promise<ReadBackResult> {
  const hash = createHash('sha256');
  let size = 0;
  const full = !opts.encrypted || (opts.identities?.length ?? 0) > 0;
  let contentError: unknown;
  let entry: Writable | undefined;
  let decoded: Promise<void> = Promise.resolve();
  let checker: ReturnType<typeof snapshotChecker> | undefined;
  let sinkError: Error | undefined;
  if (full) {
    checker = snapshotChecker();
    const sink = opts.sink ?? new Writable({ write: (_chunk, _encoding, callback) => callback() });
    const stages: (Duplex | Writable)[] = [
      ...(opts.encrypted ? [createDecryptor(opts.identities ?? [])] : []),
      ...(opts.compression !== 'none' ? [await createDecompressor(opts.compression)] : []),
      checker.stream,
      sink,
    ];
    // pipeline hands the first failure to every stage: the one that failed first is where it came from.
    let first: Duplex | Writable | undefined;
    for (const stage of stages) stage.once('error', (error) => (first ??= stage) === sink && (sinkError = error));
    entry = stages[0]!;
    decoded = new Promise((resolve) =>
      pipeline(
        stages as [Duplex, ...Duplex[], Writable],
        (error) => ((contentError ??= error ?? undefined), resolve()),
      ),
    );
  }
  try {
    for await (const chunk of body) {
      const bytes = chunk as Buffer;
      hash.update(bytes);
      size += bytes.length;
      opts.onProgress?.(size);
      // Once decoding failed, the rest is only hashed: the stored sha256 is the first thing to report.
      if (entry && !entry.destroyed && contentError === undefined && !entry.write(bytes)) await writable(entry);
    }
  } catch (error) {
    entry?.destroy();
    await decoded;
    throw new VerificationError(`reading ${where} failed: ${describeS3Error(error)}`, {
      cause: error,
      permanent: false,
    });
  }
  if (entry && !entry.destroyed && contentError === undefined) entry.end();
  await decoded;
  if (sinkError) throw new SinkError(sinkError.message, { cause: sinkError });

  const sha256 = hash.digest('hex');
  const expected = opts.expected ?? {};
  const contentNote = contentError === undefined ? '' : `; reading it: ${describeContentError(contentError)}`;
  if (expected.sha256 && sha256 !== expected.sha256) {
    const sizeNote =
      expected.size !== undefined && expected.size !== size ? ` instead of ${expected.size} bytes` : ` (${size} bytes)`;
    throw new VerificationError(
      `${where} has sha256 ${sha256}${sizeNote}, but ${expected.sha256} was recorded when it was stored: its bytes changed since (damaged, truncated or replaced)${contentNote}`,
      { permanent: true },
    );
  }
  if (expected.size !== undefined && size !== expected.size) {
    throw new VerificationError(`read ${size} bytes from ${where} but ${expected.size} were stored${contentNote}`, {
      permanent: true,
    });
  }
  if (contentError !== undefined)
    throw new VerificationError(describeContentError(contentError), { cause: contentError, permanent: true });
  if (!checker) return { size, sha256, verification: 'StoredBytes' };
  const plain = checker.result();
  if (expected.etcdSha256 && plain.etcdSha256 !== expected.etcdSha256) {
    throw new VerificationError(
      `the snapshot's etcd trailer is ${plain.etcdSha256}, but ${expected.etcdSha256} was recorded when it was taken`,
      { permanent: true },
    );
  }
  return { size, sha256, verification: 'Full', ...plain };
}

export interface VerifiedObject extends ReadBackResult {
  bucket: string;
  key: string;
  compression: Compression;
  encrypted: boolean;
}

export interface VerifyObjectOptions {
  identities?: string[] | undefined;
  /** What the object must be (the Job knows what it uploaded); else the hashes recorded on the object. */
  expected?: ExpectedObject | undefined;
  sink?: Writable | undefined;
  onProgress?: ((bytesRead: number, total: number | undefined) => void) | undefined;
  /** Stops the read (Ctrl-C): the download is abandoned and the read fails. */
  signal?: AbortSignal | undefined;
}

/** Downloads `key` and verifies it; its format (compression, encryption) comes from the key's suffixes. */
export async function verifyObject(
  client: S3Client,
  bucket: string,
  key: string,
  opts: VerifyObjectOptions = {},
): Promise<VerifiedObject> {
  const where = `s3://${bucket}/${key}`;
  let object;
  try {
    object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), {
      ...(opts.signal && { abortSignal: opts.signal }),
    });
  } catch (error) {
    // A wrong key, bucket or permission stays wrong; a network failure may pass.
    const permanent = isPermanentS3Error(error) || (error instanceof S3ServiceException && error.name === 'NoSuchKey');
    throw new VerificationError(`cannot read ${where}: ${describeS3Error(error)}`, { cause: error, permanent });
  }
  const body = object.Body as Readable;
  const stop = () => body.destroy(new Error(`stopped (${String(opts.signal?.reason ?? 'aborted')})`));
  opts.signal?.addEventListener('abort', stop, { once: true });
  try {
    let expected = opts.expected;
    if (!expected) {
      let recorded;
      try {
        recorded = await readRecordedHashes(client, bucket, key, object.Metadata ?? {}, object.VersionId);
      } catch (error) {
        throw new VerificationError(`cannot read the hashes recorded with ${where}: ${describeS3Error(error)}`, {
          cause: error,
          permanent: isPermanentS3Error(error),
        });
      }
      if (!recorded) {
        throw new VerificationError(
          `${where} has no recorded sha256 (metadata or tags): it was not written by talos-etcd-backup, or its upload did not finish`,
          { permanent: true },
        );
      }
      expected = recorded;
    }
    const format = storedFormatOf(key);
    const total = object.ContentLength;
    const result = await readBack(body, where, {
      ...format,
      identities: opts.identities,
      expected,
      sink: opts.sink,
      onProgress: opts.onProgress && ((bytes) => opts.onProgress!(bytes, total)),
    });
    return { bucket, key, ...format, ...result };
  } finally {
    opts.signal?.removeEventListener('abort', stop);
    body.destroy();
  }
}
