// One backup: Talos API → verified stream → [compress] → [encrypt] → S3, over the endpoints in turn until one
// delivers. The integrity check comes first, on the bytes etcd wrote; compression and encryption follow it, and
// the stored bytes are hashed last, as they leave for S3.

import { createHash } from 'node:crypto';
import { pipeline, Transform, type Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { createEncryptor } from '../codec/age.js';
import { createCompressor, type Compression } from '../codec/compression.js';
import { uploadSnapshot, type BackupIdentity, type ObjectProtection } from '../s3/upload.js';
import { openEtcdSnapshot } from '../talos/client.js';
import type { TalosContext } from '../talos/talosconfig.js';
import { verifyingStream, type VerifiedSnapshot } from '../etcd/trailer.js';
import type { Verification } from './verify.js';
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
  s3: { client: S3Client; bucket: string; key: string; partSize: number; queueSize: number; protection?: ObjectProtection };
  format?: StoredFormat;
  identity: BackupIdentity;
  /** Told the bytes uploaded so far (of the current attempt). */
  onProgress?: (bytesUploaded: number) => void;
  /** Stops the backup; the upload in progress is aborted. */
  signal?: AbortSignal;
}

export interface SnapshotResult {
  bucket: string;
  key: string;
  /** Bytes stored (after compression and encryption). */
  size: number;
  /** SHA-256 of the stored bytes. */
  sha256: string;
  /** SHA-256 of the etcd database: the snapshot's own trailer. */
  etcdSha256: string;
  compression: Compression;
  encrypted: boolean;
  /** With Object Lock: when the stored version's retention ends (RFC 3339). */
  retainUntil?: string;
  /** The node that served the snapshot: the pinned node, else the endpoint's host. */
  node: string;
  endpoint: string;
  durationMs: number;
  /** true when a retried Job found this backup's object already complete. */
  alreadyUploaded: boolean;
  /** Endpoints that failed before one served, and why. */
  failedEndpoints: FailedAttempt[];
}

/** A stored snapshot, and what reading it back proved (VERIFY=true). */
export interface SnapshotOutcome extends SnapshotResult {
  verified: boolean;
  verifiedAt?: string;
  verification?: Verification;
  /** From the verified database: etcd's revision and the number of keys (revisions) it holds. */
  revision?: number;
  keys?: number;
}

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

/**
 * The body of one attempt: the Talos stream through the integrity check and the format's transforms. A failure
 * anywhere destroys the whole chain, so the upload consuming the returned stream aborts instead of completing.
 */
async function snapshotBody(openSource: () => Readable, format: StoredFormat, onVerified: (result: VerifiedSnapshot) => void): Promise<Readable> {
  // The transforms first: if one cannot be built, no Talos call has started that nobody would read.
  const transforms = [
    ...(format.compression !== 'none' ? [await createCompressor(format.compression)] : []),
    ...(format.recipients.length > 0 ? [createEncryptor(format.recipients)] : []),
  ];
  const source = openSource();
  if (transforms.length === 0) {
    // Stored as etcd wrote it: the verifier's own hash of every byte is the stored bytes' hash.
    const verifying = verifyingStream(onVerified);
    pipeline(source, verifying, () => undefined);
    return verifying;
  }
  let etcdSha256: string | undefined;
  const verifying = verifyingStream((result) => (etcdSha256 = result.etcdSha256));
  const counter = storedBytesCounter((size, sha256) => etcdSha256 && onVerified({ size, sha256, etcdSha256 }));
  pipeline([source, verifying, ...transforms, counter], () => undefined);
  return counter;
}

/** Takes one etcd snapshot and stores it in S3; throws with API.md's wording when it cannot. */
export async function takeSnapshot(settings: SnapshotSettings, clock: () => number = Date.now): Promise<SnapshotResult> {
  const started = clock();
  const { talos, s3 } = settings;
  const format = settings.format ?? { compression: 'none', recipients: [] };
  const { value, endpoint, failures } = await withFailover(talos.endpoints, async (endpoint) => {
    let verified: VerifiedSnapshot | undefined;
    return uploadSnapshot({
      client: s3.client,
      bucket: s3.bucket,
      key: s3.key,
      identity: settings.identity,
      partSize: s3.partSize,
      queueSize: s3.queueSize,
      ...(s3.protection && { protection: s3.protection }),
      ...(settings.onProgress && { onProgress: settings.onProgress }),
      ...(settings.signal && { signal: settings.signal }),
      openBody: () =>
        snapshotBody(
          () => openEtcdSnapshot(talos.context, endpoint, { node: talos.node, connectTimeoutMs: talos.connectTimeoutMs, idleTimeoutMs: talos.idleTimeoutMs }),
          format,
          (result) => (verified = result),
        ),
      verified: () => verified,
    });
  });
  return {
    bucket: s3.bucket,
    key: s3.key,
    size: value.size,
    sha256: value.hashes.sha256,
    etcdSha256: value.hashes.etcdSha256,
    compression: format.compression,
    encrypted: format.recipients.length > 0,
    ...(value.retainUntil && { retainUntil: value.retainUntil.toISOString() }),
    node: talos.node ?? hostOf(endpoint),
    endpoint,
    durationMs: clock() - started,
    alreadyUploaded: value.alreadyUploaded,
    failedEndpoints: failures,
  };
}
