// Checks of a backup spec that the CRD's schema cannot express, run by the hooks before anything is created, so
// a spec that could never work fails at once with the field named, instead of in a Job later.

import { AgeError, parseRecipients } from './age-keys.js';
import type { BackupSpec } from './types.js';

/** One message per problem, each naming the field. */
export function specProblems(spec: BackupSpec, root = 'spec'): string[] {
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
