// How S3 failures are told: one line without request details, and whether repeating the request can help.

import { S3ServiceException } from '@aws-sdk/client-s3';
import { JobError } from '../errors.js';

// S3 errors that repeat however often the request is retried: a wrong bucket, key or permission.
const PERMANENT_S3_ERRORS = new Set([
  'NoSuchBucket',
  'InvalidBucketName',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AccessDenied',
]);

/** Whether a retry would fail again: an error that says so, or an S3 answer by its code. Network errors would not. */
export function isPermanentS3Error(error: unknown): boolean {
  if (error instanceof JobError) return error.permanent;
  return error instanceof S3ServiceException && PERMANENT_S3_ERRORS.has(error.name);
}

/**
 * A one-line description of an SDK or network error (code and message; never request details). `note` follows
 * the store's message: what the request needed, which S3's answer does not say.
 */
export function describeS3Error(error: unknown, note?: string): string {
  if (error instanceof S3ServiceException) {
    const status = error.$metadata?.httpStatusCode;
    const text = note ? `${error.message} ${note}` : error.message;
    // Some stores send no <Message>; the SDK then says "UnknownError", which tells nobody anything.
    const message = text && text !== 'UnknownError' && text !== error.name ? `: ${text}` : '';
    return `${error.name}${status ? ` (HTTP ${status})` : ''}${message}`.replace(/\s+/g, ' ');
  }
  const e = error as { code?: string; message?: string };
  return `${e.code ? `${e.code}: ` : ''}${e.message ?? String(error)}`.replace(/\s+/g, ' ');
}
