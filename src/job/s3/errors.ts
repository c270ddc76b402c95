// How S3 failures are told: one line without request details, and whether repeating the request can help.

import { S3ServiceException } from '@aws-sdk/client-s3';

// S3 errors that repeat however often the request is retried: a wrong bucket, key or permission.
const PERMANENT_S3_ERRORS = new Set(['NoSuchBucket', 'InvalidBucketName', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied']);

/** Whether `error` is an S3 answer that a retry would get again. Network errors are not. */
export function isPermanentS3Error(error: unknown): boolean {
  return error instanceof S3ServiceException && PERMANENT_S3_ERRORS.has(error.name);
}

/** A one-line description of an SDK or network error (code and message; never request details). */
export function describeS3Error(error: unknown): string {
  if (error instanceof S3ServiceException) {
    const status = error.$metadata?.httpStatusCode;
    // Some stores send no <Message>; the SDK then says "UnknownError", which tells nobody anything.
    const message = error.message && error.message !== 'UnknownError' && error.message !== error.name ? `: ${error.message}` : '';
    return `${error.name}${status ? ` (HTTP ${status})` : ''}${message}`.replace(/\s+/g, ' ');
  }
  const e = error as { code?: string; message?: string };
  return `${e.code ? `${e.code}: ` : ''}${e.message ?? String(error)}`.replace(/\s+/g, ' ');
}
