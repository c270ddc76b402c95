// Benchmark-only entry: one stage of the snapshot pipeline alone, or the two-step baseline, in a process of its own
// (started by bench/pipeline.ts under bench/measure-preload.js, which records its peak RSS and CPU time).
// Settings come as JSON in $BENCH_PIPELINE_CHILD; the outcome is one JSON line on stdout (ChildReport).
//
//   read      gRPC read + verify to nowhere: openEtcdSnapshot → verifyingStream → a discarding Writable.
//   upload    S3 upload alone: the same bytes, generated here (no disk, no Talos), through prepareWrite and
//             storeStream with the pipeline's part size and queue size (so it includes the existence probe and the
//             metadata copy).
//   two-step  What a user would script otherwise: `talosctl etcd snapshot file` (stream to file.part, fsync, rename;
//             talosctl does not check the trailer) then `aws s3 cp file s3://…` (a lib-storage Upload of the file).
// The floors (issue 18): what each kind of work costs at the least, to compare the CLI with.
//   http2-read        the same gRPC stream read with node:http2 alone: frames and protobuf decoded by hand, the
//                     payload counted (no grpc-js, no hash).
//   http2-sha256      the same, hashing the payload (sha256): reading and the one hash the product must do.
//   upload-memory     a lib-storage Upload of bytes already in memory (one 8 MiB buffer repeated, in 256 KiB chunks
//                     like the CLI's): no source cost.
//   upload-memory-unsigned  the same with UNSIGNED-PAYLOAD (no SigV4 hash of each part).
//   minimal           a minimal careful pipeline: grpc-js (the hand decoder) → sha256 → lib-storage, ~40 lines.
//   codecs            the product's zstd compressor and age encryptor alone, on bytes from memory (one random 8 MiB
//                     buffer repeated: beyond zstd's window at level 3), to a discarding sink: what the codecs cost.

import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { open, rename, stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { verifyingStream, type VerifiedSnapshot } from '../src/job/etcd/trailer.js';
import { openEtcdSnapshot } from '../src/job/talos/client.js';
import { decodeDataMessage, type DataMessage } from '../src/job/talos/data-message.js';
import { parseTalosconfig } from '../src/job/talos/talosconfig.js';
import { snapshotStream, type SnapshotFacts } from './snapshot-bytes.js';

export type ChildMode =
  | 'read'
  | 'upload'
  | 'two-step'
  | 'http2-read'
  | 'http2-sha256'
  | 'upload-memory'
  | 'upload-memory-unsigned'
  | 'minimal'
  | 'codecs';

export interface ChildConfig {
  mode: ChildMode;
  /** Path of the talosconfig (read, two-step). */
  talosconfig: string;
  /** The snapshot the double serves. */
  dbBytes: number;
  facts: SnapshotFacts;
  s3: {
    endpoint: string;
    region: string;
    accessKeyId: string;
    secretAccessKey: string;
    bucket: string;
    key: string;
    /** The CA of an HTTPS endpoint. */
    caPem?: string;
  };
  partSize: number;
  queueSize: number;
  /** two-step: where to save the snapshot. */
  file?: string;
  /** codecs: the age recipient to encrypt to. */
  ageRecipient?: string;
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
    caBundlePem: cfg.s3.caPem,
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
  await pipeline(
    openEtcdSnapshot(context, endpoint, TIMEOUTS),
    verifyingStream((result) => (verified = result)),
    nowhere,
  );
  if (!verified) throw new Error('the stream ended without a verified snapshot');
  return {
    mode: 'read',
    bytes,
    sha256: verified.sha256,
    etcdSha256: verified.etcdSha256,
    phases: { total: performance.now() - started },
  };
}

async function uploadAlone(cfg: ChildConfig): Promise<ChildReport> {
  const { prepareWrite, storeStream } = await import('../src/job/s3/upload.js');
  const client = await s3Client(cfg);
  try {
    const started = performance.now();
    const write = await prepareWrite({
      client,
      bucket: cfg.s3.bucket,
      key: cfg.s3.key,
      identity: { namespace: 'bench', name: 'upload-alone', uid: randomUUID() },
      partSize: cfg.partSize,
      queueSize: cfg.queueSize,
    });
    if (write.action === 'accept')
      throw new Error(`s3://${cfg.s3.bucket}/${cfg.s3.key} was already there: nothing was uploaded`);
    // The generated bytes are known in advance: their figures are the snapshot's facts.
    const outcome = await storeStream(write, {
      body: snapshotStream(cfg.dbBytes, cfg.facts.etcdSha256),
      figures: Promise.resolve(cfg.facts),
    });
    return {
      mode: 'upload',
      bytes: outcome.size,
      sha256: outcome.hashes.sha256,
      etcdSha256: outcome.hashes.etcdSha256,
      phases: { total: performance.now() - started },
    };
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
      params: {
        Bucket: cfg.s3.bucket,
        Key: cfg.s3.key,
        Body: createReadStream(file),
        ContentType: 'application/octet-stream',
      },
      partSize: cfg.partSize,
      queueSize: cfg.queueSize,
      leavePartsOnError: false,
    });
    await upload.done();
    const uploaded = performance.now();
    return {
      mode: 'two-step',
      bytes: size,
      phases: { total: uploaded - started, save: saved - started, upload: uploaded - saved },
    };
  } finally {
    client.destroy(); // the files are the parent's to remove, after the measured run
  }
}

/** The EtcdSnapshot stream read with node:http2 alone (gRPC framing and common.Data decoded here), optionally hashed. */
async function http2Read(cfg: ChildConfig, hash: boolean): Promise<ChildReport> {
  const { connect, constants } = await import('node:http2');
  const { context, endpoint } = talos(cfg);
  const started = performance.now();
  const window = 4 * 1024 * 1024; // as the product's grpc-js channel
  const session = connect(`https://${endpoint}`, {
    ca: context.caPem,
    cert: context.certPem,
    key: context.keyPem,
    settings: { initialWindowSize: window },
  });
  session.on('connect', () => session.setLocalWindowSize(window));
  const digest = hash ? createHash('sha256') : undefined;
  let bytes = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      session.once('error', reject);
      const stream = session.request({
        [constants.HTTP2_HEADER_METHOD]: 'POST',
        [constants.HTTP2_HEADER_PATH]: '/machine.MachineService/EtcdSnapshot',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.end(Buffer.alloc(5)); // one uncompressed, empty EtcdSnapshotRequest
      // gRPC messages: 1 byte flag, 4 bytes length, the message; a message may span DATA frames.
      // Only a message split between chunks is copied (into `split`); the rest is read in place.
      let split: Buffer | undefined;
      let header = Buffer.alloc(0);
      let need = 0;
      let have = 0;
      const take = (message: Buffer) => {
        const data: DataMessage = decodeDataMessage(message);
        bytes += data.bytes.length;
        digest?.update(data.bytes);
      };
      stream.on('data', (chunk: Buffer) => {
        let at = 0;
        if (split) {
          const n = Math.min(need - have, chunk.length);
          chunk.copy(split, have, 0, n);
          have += n;
          at = n;
          if (have < need) return;
          take(split);
          split = undefined;
        }
        if (header.length > 0) {
          const n = 5 - header.length;
          header = Buffer.concat([header, chunk.subarray(0, n)]);
          at += n;
          if (header.length < 5) return;
          need = header.readUInt32BE(1);
          header = Buffer.alloc(0);
          if (chunk.length - at >= need) {
            take(chunk.subarray(at, at + need));
            at += need;
          } else {
            split = Buffer.allocUnsafe(need);
            have = chunk.copy(split, 0, at);
            return;
          }
        }
        while (chunk.length - at >= 5) {
          const length = chunk.readUInt32BE(at + 1);
          if (chunk.length - at - 5 < length) {
            need = length;
            split = Buffer.allocUnsafe(length);
            have = chunk.copy(split, 0, at + 5);
            return;
          }
          take(chunk.subarray(at + 5, at + 5 + length));
          at += 5 + length;
        }
        if (at < chunk.length) header = Buffer.from(chunk.subarray(at));
      });
      stream.on('trailers', (trailers) => {
        if (trailers['grpc-status'] !== '0') reject(new Error(`grpc-status ${String(trailers['grpc-status'])}`));
      });
      stream.on('error', reject);
      stream.on('end', () =>
        split || header.length > 0 ? reject(new Error('a partial message at the end')) : resolve(),
      );
    });
  } finally {
    session.close();
  }
  return {
    mode: hash ? 'http2-sha256' : 'http2-read',
    bytes,
    ...(digest && { sha256: digest.digest('hex') }),
    phases: { total: performance.now() - started },
  };
}

/**
 * `total` bytes of `block`, repeated, in chunks of the size the CLI hands downstream (its 256 KiB batches of gRPC
 * messages), so that lib-storage assembles parts as it does in the CLI (8 MiB chunks would make it hold 16 MiB per
 * part: a chunk is kept until the next one pushes the buffer over the part size).
 */
function fromMemory(block: Buffer, total: number): Readable {
  const chunkBytes = 256 * 1024;
  return Readable.from(
    (function* () {
      for (let sent = 0; sent < total; sent += chunkBytes) {
        const at = sent % block.length;
        yield block.subarray(at, at + Math.min(chunkBytes, total - sent));
      }
    })(),
    { objectMode: false },
  );
}

/** A lib-storage Upload of bytes from memory (one random 8 MiB buffer, repeated), signed or with UNSIGNED-PAYLOAD. */
async function uploadFromMemory(cfg: ChildConfig, unsigned: boolean): Promise<ChildReport> {
  const { Upload } = await import('@aws-sdk/lib-storage');
  const client = await s3Client(cfg);
  // Signed means signed: over HTTPS the product's client would otherwise send these parts unsigned already.
  const { UNSIGNED_PAYLOAD_MIDDLEWARE } = await import('../src/job/s3/client.js');
  if (!unsigned) client.middlewareStack.remove(UNSIGNED_PAYLOAD_MIDDLEWARE);
  if (unsigned)
    client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { headers?: Record<string, string> };
        if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      },
      { step: 'build', name: 'benchUnsignedPayload' },
    );
  const block = randomBytes(8 * 1024 * 1024);
  const total = cfg.facts.size;
  try {
    const started = performance.now();
    const body = fromMemory(block, total);
    const upload = new Upload({
      client,
      params: { Bucket: cfg.s3.bucket, Key: cfg.s3.key, Body: body, ContentType: 'application/octet-stream' },
      partSize: cfg.partSize,
      queueSize: cfg.queueSize,
      leavePartsOnError: false,
    });
    await upload.done();
    return {
      mode: unsigned ? 'upload-memory-unsigned' : 'upload-memory',
      bytes: total,
      phases: { total: performance.now() - started },
    };
  } finally {
    client.destroy();
  }
}

/** The pipeline a careful engineer would write in 40 lines: grpc-js (hand decoder) → sha256 → lib-storage Upload. */
async function minimalPipeline(cfg: ChildConfig): Promise<ChildReport> {
  const grpc = await import('@grpc/grpc-js');
  const { loadMachineService } = await import('../src/job/talos/protos.js');
  const { Upload } = await import('@aws-sdk/lib-storage');
  const { context, endpoint } = talos(cfg);
  const Service = loadMachineService();
  const credentials = grpc.credentials.createSsl(
    Buffer.from(context.caPem),
    Buffer.from(context.keyPem),
    Buffer.from(context.certPem),
    { checkServerIdentity: () => undefined }, // the chain to the CA is still checked
  );
  const talosClient = new Service(endpoint, credentials, { 'grpc-node.flow_control_window': 4 * 1024 * 1024 });
  const client = await s3Client(cfg);
  const digest = createHash('sha256');
  let bytes = 0;
  try {
    const started = performance.now();
    const method = Service.service.EtcdSnapshot!;
    const call = talosClient.makeServerStreamRequest(method.path, method.requestSerialize, decodeDataMessage, {});
    const toBytes = new Transform({
      writableObjectMode: true,
      transform(message: DataMessage, _encoding, callback) {
        digest.update(message.bytes);
        bytes += message.bytes.length;
        callback(null, message.bytes);
      },
    });
    call.on('error', (error) => toBytes.destroy(error));
    const upload = new Upload({
      client,
      params: {
        Bucket: cfg.s3.bucket,
        Key: cfg.s3.key,
        Body: call.pipe(toBytes),
        ContentType: 'application/octet-stream',
      },
      partSize: cfg.partSize,
      queueSize: cfg.queueSize,
      leavePartsOnError: false,
    });
    await upload.done();
    return { mode: 'minimal', bytes, sha256: digest.digest('hex'), phases: { total: performance.now() - started } };
  } finally {
    talosClient.close();
    client.destroy();
  }
}

/** zstd then age, the snapshot's stored format, on bytes from memory: the codecs' own cost, without Talos or S3. */
async function codecsAlone(cfg: ChildConfig): Promise<ChildReport> {
  const { createCompressor } = await import('../src/job/codec/compression.js');
  const { createEncryptor } = await import('../src/job/codec/age.js');
  if (!cfg.ageRecipient) throw new Error('codecs: no age recipient');
  const block = randomBytes(8 * 1024 * 1024);
  const total = cfg.facts.size;
  const started = performance.now();
  let stored = 0;
  await pipeline(
    fromMemory(block, total),
    await createCompressor('zstd'),
    createEncryptor([cfg.ageRecipient]),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        stored += chunk.length;
        callback();
      },
    }),
  );
  if (stored < total) throw new Error(`codecs: ${stored} bytes out of ${total} in: random bytes cannot shrink`);
  return { mode: 'codecs', bytes: total, phases: { total: performance.now() - started } };
}

async function main(): Promise<void> {
  const cfg = config();
  const modes: Record<ChildMode, () => Promise<ChildReport>> = {
    read: () => readAndVerify(cfg),
    upload: () => uploadAlone(cfg),
    'two-step': () => twoStep(cfg),
    'http2-read': () => http2Read(cfg, false),
    'http2-sha256': () => http2Read(cfg, true),
    'upload-memory': () => uploadFromMemory(cfg, false),
    'upload-memory-unsigned': () => uploadFromMemory(cfg, true),
    minimal: () => minimalPipeline(cfg),
    codecs: () => codecsAlone(cfg),
  };
  const report = await modes[cfg.mode]();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
