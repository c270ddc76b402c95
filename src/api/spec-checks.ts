// Checks of a backup spec that the CRD's schema cannot express, run by the hooks before anything is created, so
// a spec that could never work fails at once with the field named, instead of in a Job later.

import { copyName } from '../contract/copies.js';
import { AgeError, parseRecipients } from './age-keys.js';
import type { BackupSpec, S3Storage } from './types.js';

/** One message per problem, each naming the field. */
export function specProblems(spec: BackupSpec, root = 'spec'): string[] {
  return [...recipientProblems(spec, root), ...destinationProblems(spec, root)];
}

function recipientProblems(spec: BackupSpec, root: string): string[] {
  const recipients = spec.encryption?.age.recipients;
  if (!recipients) return [];
  try {
    parseRecipients(recipients);
    return [];
  } catch (error) {
    if (error instanceof AgeError) return [`${root}.encryption.age.recipients: ${error.message}`];
    throw error;
  }
}

/** Where a destination writes: the same endpoint, bucket and prefix is the same place (no endpoint: AWS). */
function place(s3: S3Storage): string {
  return JSON.stringify([s3.endpoint?.replace(/\/+$/, '').toLowerCase() ?? 'aws', s3.bucket, s3.prefix]);
}

/**
 * A copy writing where the primary or another copy writes is no copy (one bucket lost loses both), and its
 * `If-None-Match` write would fail on the first one's object; two copies with one name cannot be told apart.
 */
function destinationProblems(spec: BackupSpec, root: string): string[] {
  const copies = spec.backupStorage.copies ?? [];
  const problems: string[] = [];
  const places = new Map([[place(spec.backupStorage.s3), `${root}.backupStorage.s3`]]);
  const names = new Map<string, number>();
  copies.forEach((copy, i) => {
    const field = `${root}.backupStorage.copies[${i}]`;
    const same = places.get(place(copy));
    if (same)
      problems.push(
        `${field}: writes to the same endpoint, bucket (${copy.bucket}) and prefix (${copy.prefix}) as ${same}; a copy must be another store (another bucket, or at least another prefix)`,
      );
    else places.set(place(copy), field);
    const name = copyName(copy, i + 1);
    const first = names.get(name);
    if (first !== undefined)
      problems.push(`${field}.name: ${name} is also the name of copies[${first}]; each copy needs its own name`);
    else names.set(name, i);
  });
  return problems;
}
