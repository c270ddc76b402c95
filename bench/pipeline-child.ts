// Benchmark-only entry: one stage of the snapshot pipeline alone, or the two-step baseline, in a process of its own
// (started by bench/pipeline.ts under bench/measure-preload.js, which records its peak RSS and CPU time).
// Settings come as JSON in $BENCH_PIPELINE_CHILD; the outcome is one JSON line on stdout (ChildReport).
//
//   read      gRPC read + verify to nowhere: openEtcdSnapshot → verifyingStream → a discarding Writable.
//   upload    S3 upload alone: the same bytes, generated here (no disk, no Talos), through uploadSnapshot with the
//             pipeline's part size and queue size (so it includes the existence probe and the metadata copy).
//   two-step  What a user would script otherwise: `talosctl etcd snapshot file` (stream to file.part, fsync, rename;
//             talosctl does not check the trailer) then `aws s3 cp file s3://…` (a lib-storage Upload of the file).

import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { open, rename, stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { verifyingStream, type VerifiedSnapshot } from '../src/job/etcd/trailer.js';
import { openEtcdSnapshot } from '../src/job/talos/client.js';
import { parseTalosconfig } from '../src/job/talos/talosconfig.js';
import { snapshotStream, type SnapshotFacts } from './snapshot-bytes.js';

export type ChildMode = 'read' | 'upload' | 'two-step';

export interface ChildConfig {
  mode: ChildMode;
  /** Path of the talosconfig (read, two-step). */
  talosconfig: string;
  /** The snapshot the double serves. */
  dbBytes: number;
  facts: SnapshotFacts;
  s3: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string; bucket: string; key: string };
  partSize: number;
  queueSize: number;
  /** two-step: where to save the snapshot. */
  file?: string;
}

export interface ChildReport {
  mode: ChildMode;
  /** Bytes that went through (read: received and verified; upload/two-step: stored). */
  bytes: number;
  sha256?: string;
  etcdSha256?: string;
  /** Phase durations, ms (measured inside the process, after module loading). */
  phases: Record<string, number>;
}

const TIMEOUTS = { connectTimeoutMs: 30_000, idleTimeoutMs: 60_000 };

function config(): ChildConfig {
  const raw = process.env.BENCH_PIPELINE_CHILD;
  if (!raw) throw new Error('BENCH_PIPELINE_CHILD is not set: this is started by bench/pipeline.js');
  return JSON.parse(raw) as ChildConfig;
}

function talos(cfg: ChildConfig) {
  const context = parseTalosconfig(readFileSync(cfg.talosconfig, 'utf8'));
  const endpoint = context.endpoints[0];
  if (!endpoint) throw new Error('the talosconfig has no endpoint');
  return { context, endpoint };
}

// The S3 modules are loaded only by the modes that upload, so stage A's peak RSS is that of a gRPC reader alone.
async function s3Client(cfg: ChildConfig) {
  const { createS3Client } = await import('../src/job/s3/client.js');
  return createS3Client({
    region: cfg.s3.region,
    endpoint: cfg.s3.endpoint,
    credentials: { accessKeyId: cfg.s3.accessKeyId, secretAccessKey: cfg.s3.secretAccessKey },
  });
}

async function readAndVerify(cfg: ChildConfig): Promise<ChildReport> {
  const { context, endpoint } = talos(cfg);
  const started = performance.now();
  let verified: VerifiedSnapshot | undefined;
  let bytes = 0;
  const nowhere = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      callback();
    },
    writev(chunks, callback) {
      for (const { chunk } of chunks) bytes += (chunk as Buffer).length;
      callback();
    },
  });
  await pipeline(openEtcdSnapshot(context, endpoint, TIMEOUTS), verifyingStream((result) => (verified = result)), nowhere);
  if (!verified) throw new Error('the stream ended without a verified snapshot');
  return { mode: 'read', bytes, sha256: verified.sha256, etcdSha256: verified.etcdSha256, phases: { total: performance.now() - started } };
}

async function uploadAlone(cfg: ChildConfig): Promise<ChildReport> {
  const { uploadSnapshot } = await import('../src/job/s3/upload.js');
  const client = await s3Client(cfg);
  try {
    const started = performance.now();
    const outcome = await uploadSnapshot({
      client,
      bucket: cfg.s3.bucket,
      key: cfg.s3.key,
      identity: { namespace: 'bench', name: 'upload-alone', uid: randomUUID() },
      partSize: cfg.partSize,
      queueSize: cfg.queueSize,
      openBody: () => snapshotStream(cfg.dbBytes, cfg.facts.etcdSha256),
      verified: () => cfg.facts,
    });
    if (outcome.alreadyUploaded) throw new Error(`s3://${cfg.s3.bucket}/${cfg.s3.key} was already there: nothing was uploaded`);
    return { mode: 'upload', bytes: outcome.size, sha256: outcome.hashes.sha256, etcdSha256: outcome.hashes.etcdSha256, phases: { total: performance.now() - started } };
  } finally {
    client.destroy();
  }
}

async function twoStep(cfg: ChildConfig): Promise<ChildReport> {
  if (!cfg.file) throw new Error('two-step needs a file');
  const { context, endpoint } = talos(cfg);
  const file = cfg.file;
  const part = `${file}.part`;
  const { Upload } = await import('@aws-sdk/lib-storage');
  const client = await s3Client(cfg);
  try {
    // Step 1, as `talosctl etcd snapshot <file>`: write <file>.part, fsync, rename.
    const started = performance.now();
    await pipeline(openEtcdSnapshot(context, endpoint, TIMEOUTS), createWriteStream(part, { mode: 0o600 }));
    const handle = await open(part, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(part, file);
    const saved = performance.now();
    const { size } = await stat(file);
    if (size !== cfg.facts.size) throw new Error(`saved ${size} bytes, expected ${cfg.facts.size}`);

    // Step 2, as `aws s3 cp <file> s3://bucket/key`: a multipart upload of the file, same part and queue size.
    const upload = new Upload({
      client,
      params: { Bucket: cfg.s3.bucket, Key: cfg.s3.key, Body: createReadStream(file), ContentType: 'application/octet-stream' },
      partSize: cfg.partSize,
      queueSize: cfg.queueSize,
      leavePartsOnError: false,
    });
    await upload.done();
    const uploaded = performance.now();
    return { mode: 'two-step', bytes: size, phases: { total: uploaded - started, save: saved - started, upload: uploaded - saved } };
  } finally {
    client.destroy(); // the files are the parent's to remove, after the measured run
  }
}

async function main(): Promise<void> {
  const cfg = config();
  const report = cfg.mode === 'read' ? await readAndVerify(cfg) : cfg.mode === 'upload' ? await uploadAlone(cfg) : await twoStep(cfg);
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
