// One backup: Talos API → verified stream → [compress] → [encrypt] → S3, over the endpoints in turn until one
// delivers. Each attempt runs straight through: the write is planned from what the store holds (s3/upload.ts);
// then either this backup's complete object is kept, or the stream is opened and stored. In the stream, the
// integrity check comes first, on the bytes etcd wrote; compression and encryption follow it, and the stored bytes
// are hashed last, as they leave for S3.

import { createHash } from 'node:crypto';
import { pipeline, Transform, type Duplex, type Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SnapshotInfo } from '../../api/types.js';
import { createEncryptor } from '../codec/age.js';
import type { Compression } from '../../api/types.js';
import { createCompressor } from '../codec/compression.js';
import {
  abortOpenUploads,
  keepExisting,
  prepareWrite,
  S3UploadError,
  storeStream,
  type ObjectProtection,
  type SnapshotTarget,
  type StoredFigures,
  type StoredStream,
  type UploadOutcome,
  type UploadWrite,
} from '../s3/upload.js';
import { JobError } from '../errors.js';
import { describeS3Error } from '../s3/errors.js';
import { fanOut } from './fan-out.js';
import type { BackupIdentity } from '../s3/write-plan.js';
import { openEtcdSnapshot } from '../talos/client.js';
import type { TalosContext } from '../talos/talosconfig.js';
import { verifyingStream } from '../etcd/trailer.js';
import { withFailover, type FailedAttempt } from './failover.js';

/** How the snapshot is stored: compressed and/or age-encrypted to recipients, or as etcd wrote it. */
export interface StoredFormat {
  compression: Compression;
  /** age recipients; none = not encrypted. */
  recipients: string[];
}

export interface SnapshotSettings {
  talos: {
    context: TalosContext;
    /** `host:port` endpoints to try in order (the talosconfig's, unless overridden). */
    endpoints: string[];
    node?: string | undefined;
    connectTimeoutMs: number;
    idleTimeoutMs: number;
  };
  s3: {
    client: S3Client;
    bucket: string;
    key: string;
    partSize: number;
    queueSize: number;
    protection?: ObjectProtection;
  };
  format?: StoredFormat;
  /** Further destinations written in the same pass (spec.backupStorage.copies). */
  copies?: CopyTarget[];
  identity: BackupIdentity;
  /** Told the bytes uploaded so far (of the current attempt). */
  onProgress?: (bytesUploaded: number) => void;
  /** Stops the backup; the upload in progress is aborted. */
  signal?: AbortSignal;
}

/** How the run that stored a snapshot went: printed by the snapshot command, not part of the backup's status. */
export interface SnapshotRun {
  endpoint: string;
  durationMs: number;
  /** true when a retried Job found this backup's object already complete. */
  alreadyUploaded: boolean;
  /** Endpoints that failed before one served, and why. */
  failedEndpoints: FailedAttempt[];
}

/**
 * A stored snapshot's record, as status.report.snapshot holds it (its verification fields once VERIFY=true read
 * it back), and how the run went: the snapshot command's JSON line.
 */
export type SnapshotOutcome = SnapshotInfo & SnapshotRun;

function hostOf(endpoint: string): string {
  return endpoint.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
}

/** Passes bytes through, hashing and counting them: what the stored object will hash to. */
function storedBytesCounter(onEnd: (size: number, sha256: string) => void): Transform {
  const hash = createHash('sha256');
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      onEnd(size, hash.digest('hex'));
      callback();
    },
  });
}

/** The format's transforms, compression before encryption. */
async function formatCodecs(format: StoredFormat): Promise<Duplex[]> {
  return [
    ...(format.compression !== 'none' ? [await createCompressor(format.compression)] : []),
    ...(format.recipients.length > 0 ? [createEncryptor(format.recipients)] : []),
  ];
}

/**
 * The bytes one attempt stores: `source` (etcd's snapshot) through the integrity check and `codecs`. Its figures
 * resolve just before the body ends, or reject with the first failure; a failure anywhere destroys the whole chain,
 * so the upload consuming the body aborts instead of completing.
 */
export function storedStream(source: Readable, codecs: Duplex[]): StoredStream {
  let settle!: { resolve: (figures: StoredFigures) => void; reject: (error: Error) => void };
  const figures = new Promise<StoredFigures>((resolve, reject) => (settle = { resolve, reject }));
  figures.catch(() => undefined); // awaited only once the body has ended: a failed upload never reads it
  const failed = (error: Error | null | undefined) => error && settle.reject(error);
  if (codecs.length === 0) {
    // Stored as etcd wrote it: the verifier's own hash of every byte is the stored bytes' hash.
    const body = verifyingStream(({ size, sha256, etcdSha256 }) => settle.resolve({ size, sha256, etcdSha256 }));
    pipeline(source, body, failed);
    return { body, figures };
  }
  let etcdSha256 = '';
  const verifying = verifyingStream((result) => (etcdSha256 = result.etcdSha256));
  const body = storedBytesCounter((size, sha256) => settle.resolve({ size, sha256, etcdSha256 }));
  pipeline([source, verifying, ...codecs, body], failed);
  return { body, figures };
}

/** A further destination of the same stored bytes: its own client, bucket, key and protection. */
export interface CopyTarget {
  /** From 1, in the spec's order. */
  n: number;
  name: string;
  /** false: the backup succeeds without it; its failure is reported, not thrown. */
  required: boolean;
  client: S3Client;
  bucket: string;
  key: string;
  protection?: ObjectProtection;
  /** Why it cannot be written at all (its keys did not arrive). */
  unusable?: string | undefined;
}

/** What became of a copy: stored (as the primary, without the fields the primary's record already holds), or why not. */
export interface CopyOutcome {
  n: number;
  name: string;
  required: boolean;
  bucket: string;
  key: string;
  stored?: UploadOutcome;
  /** An optional copy that was not stored: the one-line cause. */
  error?: string;
}

/** How a failure at a copy is said: its name and where, then what S3 said (the primary's failures stay as today). */
function copyFailure(copy: CopyTarget, error: unknown): Error {
  const where = `copy ${copy.name} (s3://${copy.bucket}/${copy.key})`;
  if (error instanceof JobError) {
    return new S3UploadError(`${where}: ${error.detail}`, { cause: error, permanent: error.permanent });
  }
  return new S3UploadError(`${where}: ${describeS3Error(error)}`, { cause: error });
}

interface Destination {
  target: SnapshotTarget;
  required: boolean;
  /** undefined: the primary. */
  copy?: CopyTarget;
  controller: AbortController;
}

type Settled = { stored: UploadOutcome } | { error: Error };

/**
 * One attempt against one Talos endpoint, to every destination: each write planned (a refused or unreachable
 * required destination fails the attempt before Talos is read), then the destinations that need the bytes get
 * them in one stream (fan-out.ts). A required destination's failure aborts every upload and clears what they left
 * open; an optional one's is its own outcome.
 */
async function storeEverywhere(
  destinations: Destination[],
  open: () => Promise<StoredStream>,
  stallTimeoutMs: number,
): Promise<Settled[]> {
  const named = (d: Destination, error: unknown): Error => (d.copy ? copyFailure(d.copy, error) : (error as Error));
  const prepared = await Promise.all(
    destinations.map((d) =>
      (d.copy?.unusable
        ? Promise.reject(new S3UploadError(d.copy.unusable, { permanent: true }))
        : prepareWrite(d.target)
      ).then(
        (write) => ({ write }),
        (error: unknown) => ({ error: named(d, error) }),
      ),
    ),
  );
  const refused = prepared.findIndex((p, i) => 'error' in p && destinations[i]!.required);
  if (refused >= 0) throw (prepared[refused] as { error: Error }).error;
  const settled: (Settled | undefined)[] = await Promise.all(
    prepared.map((p) =>
      'error' in p
        ? { error: p.error }
        : p.write.action === 'accept'
          ? keepExisting(p.write).then((stored) => ({ stored }))
          : undefined,
    ),
  );
  const uploading = prepared.flatMap((p, i) =>
    'write' in p && p.write.action === 'upload' ? [{ i, write: p.write as UploadWrite }] : [],
  );
  if (uploading.length === 0) return settled as Settled[];

  const stored = await open();
  let failure: Error | undefined;
  const fail = (e: Error) => {
    failure ??= e;
    fan.fail(e);
    for (const other of destinations) other.controller.abort(e.message);
  };
  const stalls = new Map<number, Error>();
  const fan = fanOut(stored.body, uploading.length, {
    stallTimeoutMs,
    onStall: (j, seconds) => {
      const d = destinations[uploading[j]!.i]!;
      const where = d.copy ? `copy ${d.copy.name} ` : '';
      const stall = new S3UploadError(
        `${where}(s3://${d.target.bucket}/${d.target.key}) took no bytes for ${seconds}s: the store or the way to it stalls` +
          (d.required ? '; every upload of this attempt was aborted' : '; its upload was aborted'),
        { permanent: false },
      );
      stalls.set(j, stall);
      if (d.required) fail(stall);
      else d.controller.abort(stall.message);
    },
  });
  const results = await Promise.all(
    uploading.map(({ i, write }, j) => {
      const d = destinations[i]!;
      const report = write.target.onProgress;
      const tracked = {
        ...write,
        target: {
          ...write.target,
          onProgress: (bytes: number) => {
            fan.progress(j);
            report?.(bytes);
          },
        },
      };
      return storeStream(tracked, { body: fan.branches[j]!, figures: stored.figures }).then(
        (outcome): Settled => {
          fan.drop(j);
          return { stored: outcome };
        },
        (error: unknown): Settled => {
          // The stream's own failure (Talos, integrity, a stall) reached every branch: it is nobody's destination.
          const e =
            stalls.get(j) ?? (error === fan.error || !(error instanceof JobError) ? (error as Error) : named(d, error));
          if (d.required) fail(e);
          else fan.drop(j);
          return { error: e };
        },
      );
    }),
  );
  stored.body.destroy();
  // lib-storage cannot abort an upload whose part is stuck: clear what this attempt left open, everywhere (on
  // success: at the optional copies that failed).
  await Promise.all(
    uploading.map(({ i }, j) =>
      failure || 'error' in results[j]! ? abortOpenUploads(destinations[i]!.target) : undefined,
    ),
  );
  if (failure) throw failure;
  uploading.forEach(({ i }, j) => (settled[i] = results[j]));
  return settled as Settled[];
}

/** Takes one etcd snapshot and stores it in S3; throws a JobError worded for the backup's status (errors.ts) when it cannot. */
export async function takeSnapshot(
  settings: SnapshotSettings,
  clock: () => number = Date.now,
): Promise<Omit<SnapshotOutcome, 'copies'> & { copies: CopyOutcome[] }> {
  const started = clock();
  const { talos, s3 } = settings;
  const format = settings.format ?? { compression: 'none', recipients: [] };
  const copies = settings.copies ?? [];
  const destinationsFor = (): Destination[] =>
    [undefined, ...copies].map((copy) => {
      const controller = new AbortController();
      const where = copy ?? s3;
      return {
        controller,
        required: copy ? copy.required : true,
        ...(copy && { copy }),
        target: {
          client: where.client,
          bucket: where.bucket,
          key: where.key,
          identity: settings.identity,
          partSize: s3.partSize,
          queueSize: s3.queueSize,
          ...(where.protection && { protection: where.protection }),
          ...(!copy && settings.onProgress && { onProgress: settings.onProgress }),
          signal: settings.signal ? AbortSignal.any([settings.signal, controller.signal]) : controller.signal,
        },
      };
    });
  const {
    value: outcomes,
    endpoint,
    failures,
  } = await withFailover(talos.endpoints, async (endpoint) =>
    storeEverywhere(
      destinationsFor(),
      async () => {
        // The codecs first: if one cannot be built, no Talos call has started that nobody would read.
        const codecs = await formatCodecs(format);
        const { node, connectTimeoutMs, idleTimeoutMs } = talos;
        const source = openEtcdSnapshot(talos.context, endpoint, { node, connectTimeoutMs, idleTimeoutMs });
        return storedStream(source, codecs);
      },
      talos.idleTimeoutMs,
    ),
  );
  const primary = outcomes[0]!;
  if ('error' in primary) throw primary.error; // never: a failed primary fails the attempt
  const stored = primary.stored;
  return {
    bucket: s3.bucket,
    key: s3.key,
    size: stored.size,
    sha256: stored.hashes.sha256,
    etcdSha256: stored.hashes.etcdSha256,
    compression: format.compression,
    encrypted: format.recipients.length > 0,
    ...(stored.retainUntil && { retainUntil: stored.retainUntil.toISOString() }),
    node: talos.node ?? hostOf(endpoint),
    endpoint,
    durationMs: clock() - started,
    alreadyUploaded: stored.alreadyUploaded,
    failedEndpoints: failures,
    copies: copies.map((copy, i) => {
      const outcome = outcomes[i + 1]!;
      const { n, name, required, bucket, key } = copy;
      return 'error' in outcome
        ? { n, name, required, bucket, key, error: outcome.error.message }
        : { n, name, required, bucket, key, stored: outcome.stored };
    }),
  };
}
