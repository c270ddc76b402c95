// Builds the S3 client for AWS or any S3-compatible store (MinIO, Ceph RGW, ...).

import { Agent } from 'node:https';
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';

export interface S3Settings {
  region: string;
  /** A custom endpoint, e.g. https://minio.example:9000; unset means AWS. */
  endpoint?: string | undefined;
  /** Default: true with a custom endpoint (most S3-compatible stores want it), false for AWS. */
  forcePathStyle?: boolean | undefined;
  insecureSkipTLSVerify?: boolean | undefined;
  /** PEM CA bundle the endpoint's certificate must chain to (better than skipping verification). */
  caBundlePem?: string | undefined;
  /** Static keys; unset means the SDK's default chain (env, IRSA web identity, instance profile, ...). */
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
}

/** The name of the middleware that sends bulk uploads unsigned over HTTPS (the benchmark removes it to compare). */
export const UNSIGNED_PAYLOAD_MIDDLEWARE = 'unsignedPayloadOverTls';

/** The commands whose body is a snapshot's bytes (a part, or a small object in one request). */
const BULK_COMMANDS = new Set(['UploadPartCommand', 'PutObjectCommand']);

/**
 * Over HTTPS, the bulk uploads are sent with `x-amz-content-sha256: UNSIGNED-PAYLOAD` (allowed by SigV4 there):
 * otherwise the signer hashes every part once more, although TLS already protects the bytes and the pipeline's own
 * sha256 of the stored bytes is recorded and read back (verify). Over plain HTTP the payload stays signed: there the
 * signature is the only thing that ties the bytes to the request. Measured: BENCH_SECTIONS=cpu npm run bench.
 */
function signPayloadOnlyWithoutTls(client: S3Client, settings: S3Settings): void {
  if (settings.endpoint && !settings.endpoint.startsWith('https://')) return;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (BULK_COMMANDS.has(context.commandName ?? '') && request.headers)
        request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      return next(args);
    },
    { step: 'build', name: UNSIGNED_PAYLOAD_MIDDLEWARE },
  );
}

export function createS3Client(settings: S3Settings): S3Client {
  const client = new S3Client({
    region: settings.region,
    ...(settings.endpoint && { endpoint: settings.endpoint }),
    forcePathStyle: settings.forcePathStyle ?? Boolean(settings.endpoint),
    ...(settings.credentials && { credentials: settings.credentials }),
    // Since SDK v3.729 every request carries CRC32 checksum headers, which Cloudflare R2, Backblaze B2 and
    // several other S3-compatible stores reject or mishandle. Send checksums only where S3 requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: new NodeHttpHandler({
      httpsAgent: new Agent({
        keepAlive: true,
        ...(settings.caBundlePem && { ca: settings.caBundlePem }),
        rejectUnauthorized: !settings.insecureSkipTLSVerify,
      }),
      connectionTimeout: 10_000,
      // A part upload that makes no progress for this long is dead; the SDK retries it.
      socketTimeout: 120_000,
    }),
  });
  signPayloadOnlyWithoutTls(client, settings);
  return client;
}
