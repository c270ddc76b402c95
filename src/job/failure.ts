// Which failures another attempt cannot fix. The Job's CLI exits with code 2 for them, which the Job's
// podFailurePolicy turns into an immediate failure instead of spending its retries on the same error.

import { KubernetesApiError } from './kubernetes/in-cluster.js';
import { S3DeleteError } from './s3/delete.js';
import { S3UploadError } from './s3/upload.js';
import { TalosError } from './talos/client.js';
import { TalosconfigError } from './talos/talosconfig.js';
import { SettingsError } from '../contract/settings.js';
import { MissingInputError } from './required-inputs.js';
import { RestoreError } from './pipeline/restore.js';
import { VerificationError } from './pipeline/verify.js';
import { AgeError } from '../api/age-keys.js';

export function isPermanentFailure(error: unknown): boolean {
  if (error instanceof SettingsError || error instanceof MissingInputError || error instanceof TalosconfigError) return true;
  // Permission denied, bad certificate, bad request: every endpoint and every retry would answer the same.
  if (error instanceof TalosError) return !error.failover;
  if (error instanceof S3UploadError || error instanceof S3DeleteError || error instanceof VerificationError || error instanceof RestoreError) return error.permanent;
  // A recipient or identity that is not an age key stays one.
  if (error instanceof AgeError) return true;
  // The Job's identity may not write its backup's status: a broken Role, not a passing fault.
  if (error instanceof KubernetesApiError) return error.status === 401 || error.status === 403 || error.status === 404;
  return false;
}
