// One backup: Talos API → verified stream → S3, over the endpoints in turn until one delivers.

import { pipeline } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { uploadSnapshot, type BackupIdentity } from '../s3/upload.js';
import { openEtcdSnapshot } from '../talos/client.js';
import type { TalosContext } from '../talos/talosconfig.js';
import { verifyingStream, type VerifiedSnapshot } from './etcd-trailer.js';
import { withFailover, type FailedAttempt } from './failover.js';

export interface SnapshotSettings {
  talos: {
    context: TalosContext;
    /** `host:port` endpoints to try in order (the talosconfig's, unless overridden). */
    endpoints: string[];
    node?: string | undefined;
    connectTimeoutMs: number;
    idleTimeoutMs: number;
  };
  s3: { client: S3Client; bucket: string; key: string; partSize: number; queueSize: number };
  identity: BackupIdentity;
  /** Told the bytes uploaded so far (of the current attempt). */
  onProgress?: (bytesUploaded: number) => void;
  /** Stops the backup; the upload in progress is aborted. */
  signal?: AbortSignal;
}

export interface SnapshotResult {
  bucket: string;
  key: string;
  /** Bytes stored: the whole etcd snapshot, trailer included. */
  size: number;
  /** SHA-256 of the stored bytes. */
  sha256: string;
  /** SHA-256 of the etcd database: the snapshot's own trailer. */
  etcdSha256: string;
  /** The node that served the snapshot: the pinned node, else the endpoint's host. */
  node: string;
  endpoint: string;
  durationMs: number;
  /** true when a retried Job found this backup's object already complete. */
  alreadyUploaded: boolean;
  /** Endpoints that failed before one served, and why. */
  failedEndpoints: FailedAttempt[];
}

function hostOf(endpoint: string): string {
  return endpoint.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
}

/** Takes one etcd snapshot and stores it in S3; throws with API.md's wording when it cannot. */
export async function takeSnapshot(settings: SnapshotSettings, clock: () => number = Date.now): Promise<SnapshotResult> {
  const started = clock();
  const { talos, s3 } = settings;
  const { value, endpoint, failures } = await withFailover(talos.endpoints, async (endpoint) => {
    let verified: VerifiedSnapshot | undefined;
    return uploadSnapshot({
      client: s3.client,
      bucket: s3.bucket,
      key: s3.key,
      identity: settings.identity,
      partSize: s3.partSize,
      queueSize: s3.queueSize,
      ...(settings.onProgress && { onProgress: settings.onProgress }),
      ...(settings.signal && { signal: settings.signal }),
      openBody: () => {
        const source = openEtcdSnapshot(talos.context, endpoint, { node: talos.node, connectTimeoutMs: talos.connectTimeoutMs, idleTimeoutMs: talos.idleTimeoutMs });
        const verifying = verifyingStream((result) => (verified = result));
        // A source failure destroys the verifying stream with the same error, which aborts the upload.
        pipeline(source, verifying, () => undefined);
        return verifying;
      },
      verified: () => verified,
    });
  });
  return {
    bucket: s3.bucket,
    key: s3.key,
    size: value.size,
    sha256: value.hashes.sha256,
    etcdSha256: value.hashes.etcdSha256,
    node: talos.node ?? hostOf(endpoint),
    endpoint,
    durationMs: clock() - started,
    alreadyUploaded: value.alreadyUploaded,
    failedEndpoints: failures,
  };
}
