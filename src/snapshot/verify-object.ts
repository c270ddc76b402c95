// Reads a stored snapshot back from S3 and checks it, streaming: size, the sha256 recorded in its metadata,
// and etcd's own trailer.

import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { describeS3Error } from '../s3/errors.js';
import { EtcdSnapshotVerifier, IntegrityError, type VerifiedSnapshot } from './etcd-trailer.js';

export class VerificationError extends Error {
  override name = 'VerificationError';
  constructor(detail: string, options?: { cause?: unknown }) {
    super(`Snapshot verification failed: ${detail}`, options);
  }
}

export interface VerifiedObject extends VerifiedSnapshot {
  bucket: string;
  key: string;
}

/** Downloads `key` and verifies it; throws a VerificationError saying what does not match. */
export async function verifyObject(client: S3Client, bucket: string, key: string): Promise<VerifiedObject> {
  let object;
  try {
    object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (error) {
    throw new VerificationError(`cannot read s3://${bucket}/${key}: ${describeS3Error(error)}`, { cause: error });
  }
  const recorded = object.Metadata ?? {};
  if (!recorded.sha256 || !recorded['etcd-sha256']) {
    throw new VerificationError(`s3://${bucket}/${key} has no sha256 metadata: it was not written by talos-etcd-backup, or its upload did not finish`);
  }
  const verifier = new EtcdSnapshotVerifier();
  try {
    for await (const chunk of object.Body as Readable) verifier.push(chunk as Buffer);
  } catch (error) {
    throw new VerificationError(`reading s3://${bucket}/${key} failed: ${describeS3Error(error)}`, { cause: error });
  }
  let result: VerifiedSnapshot;
  try {
    result = verifier.finish().result;
  } catch (error) {
    if (error instanceof IntegrityError) throw new VerificationError(error.message.replace(/^Snapshot integrity check failed: /, 'etcd trailer: '), { cause: error });
    throw error;
  }
  if (object.ContentLength !== undefined && object.ContentLength !== result.size) {
    throw new VerificationError(`read ${result.size} bytes but the object is ${object.ContentLength} bytes`);
  }
  if (result.sha256 !== recorded.sha256) throw new VerificationError(`sha256 of the object is ${result.sha256}, its metadata records ${recorded.sha256}`);
  if (result.etcdSha256 !== recorded['etcd-sha256']) throw new VerificationError(`the etcd trailer is ${result.etcdSha256}, the metadata records ${recorded['etcd-sha256']}`);
  return { bucket, key, ...result };
}
