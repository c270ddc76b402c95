// Spec fields that the CRD already declares but this release does not carry out yet. Asking for one must fail
// loudly (InvalidSpec) instead of producing a backup that silently lacks the protection the user asked for.

import type { BackupSpec } from './types.js';

/** One message per requested-but-unsupported feature, each naming the field and what to set instead. */
export function unsupportedFeatures(spec: BackupSpec, root = 'spec'): string[] {
  const s3 = spec.backupStorage.s3;
  const problems: string[] = [];
  if (spec.compression !== 'none') problems.push(`${root}.compression: ${spec.compression} is not supported by this release yet; use none`);
  if (spec.encryption) problems.push(`${root}.encryption: client-side encryption is not supported by this release yet; remove the field`);
  if (s3.serverSideEncryption) problems.push(`${root}.backupStorage.s3.serverSideEncryption: not supported by this release yet; remove the field`);
  if (s3.objectLock) problems.push(`${root}.backupStorage.s3.objectLock: not supported by this release yet; remove the field`);
  if (spec.verify) problems.push(`${root}.verify: read-back verification is not supported by this release yet; set it to false`);
  return problems;
}
