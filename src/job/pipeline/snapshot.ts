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
  keepExisting,
  prepareWrite,
  storeStream,
  type ObjectProtection,
  type StoredFigures,
  type StoredStream,
} from '../s3/upload.js';
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

/** Takes one etcd snapshot and stores it in S3; throws a JobError worded for the backup's status (errors.ts) when it cannot. */
export async function takeSnapshot(
  settings: SnapshotSettings,
  clock: () => number = Date.now,
): Promise<SnapshotOutcome> {
  const started = clock();
  const { talos, s3 } = settings;
  const format = settings.format ?? { compression: 'none', recipients: [] };
  const target = {
    client: s3.client,
    bucket: s3.bucket,
    key: s3.key,
    identity: settings.identity,
    partSize: s3.partSize,
    queueSize: s3.queueSize,
    ...(s3.protection && { protection: s3.protection }),
    ...(settings.onProgress && { onProgress: settings.onProgress }),
    ...(settings.signal && { signal: settings.signal }),
  };
  const {
    value: stored,
    endpoint,
    failures,
  } = await withFailover(talos.endpoints, async (endpoint) => {
    const write = await prepareWrite(target);
    if (write.action === 'accept') return keepExisting(write);
    // The codecs first: if one cannot be built, no Talos call has started that nobody would read.
    const codecs = await formatCodecs(format);
    const { node, connectTimeoutMs, idleTimeoutMs } = talos;
    const source = openEtcdSnapshot(talos.context, endpoint, { node, connectTimeoutMs, idleTimeoutMs });
    return storeStream(write, storedStream(source, codecs));
  });
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
  };
}
