// Parsing and checking age keys (recipients, identity files) by their encoding alone, as age-encryption does when
// it is given them (bech32, prefix, key length): the hook server checks a spec's recipients with this, without
// loading age's crypto. Secret keys never appear in an error message: identities are described by their line only.

import { bech32 } from '@scure/base';

export class AgeError extends Error {
  override name = 'AgeError';
}

/** Key bytes: X25519 keys are 32; a hybrid recipient is an ML-KEM-768 key (1184) plus an X25519 key. */
const X25519_BYTES = 32;
const HYBRID_RECIPIENT_BYTES = 1216;

/** Whether `value` is bech32 (no length limit: hybrid keys are ~1,960 characters) with `prefix` and `bytes` bytes. */
function decodesTo(value: string, prefix: string, bytes: number): boolean {
  try {
    const { prefix: found, words } = bech32.decode(value as `${string}1${string}`, false);
    return found.toLowerCase() === prefix && bech32.fromWords(words).length === bytes;
  } catch {
    return false;
  }
}

function isValidRecipient(recipient: string): boolean {
  return recipient.startsWith('age1pq1')
    ? decodesTo(recipient, 'age1pq', HYBRID_RECIPIENT_BYTES)
    : decodesTo(recipient, 'age', X25519_BYTES);
}

/** The first characters of a public value, for messages (hybrid recipients are ~1,960 characters long). */
function shown(value: string): string {
  return JSON.stringify(value.length > 24 ? `${value.slice(0, 20)}...` : value);
}

const SECRET_KEY = /^AGE-SECRET-KEY-/i;

/**
 * Validates recipients (age1... X25519, age1pq1... hybrid post-quantum): returns them trimmed, or throws an AgeError
 * naming the bad entry's index and what is wrong. Recipients are public, so the message shows them; an identity
 * pasted by mistake is not shown. An empty list is valid (no encryption).
 */
export function parseRecipients(recipients: string[]): string[] {
  const parsed = recipients.map((entry, index) => {
    if (typeof entry !== 'string' || entry.trim() === '') throw new AgeError(`recipient ${index} is empty`);
    const recipient = entry.trim();
    if (SECRET_KEY.test(recipient)) {
      throw new AgeError(
        `recipient ${index} is an age identity (a secret key), not a recipient: give its public key (age-keygen -y) instead, and keep the secret out of this setting`,
      );
    }
    const bad = (what: string): AgeError => new AgeError(`recipient ${index} (${shown(recipient)}) ${what}`);
    if (/^age1tag(pq)?1/.test(recipient))
      throw bad(
        'is a tag recipient, which is not supported: use an X25519 (age1...) or hybrid post-quantum (age1pq1...) recipient',
      );
    if (/^ssh-|^ecdsa-/.test(recipient))
      throw bad(
        'is an SSH key, which is not supported: use an X25519 (age1...) or hybrid post-quantum (age1pq1...) recipient',
      );
    if (/^age1[a-z0-9]+1/.test(recipient) && !recipient.startsWith('age1pq1'))
      throw bad(
        'is an age plugin recipient, which is not supported: use an X25519 (age1...) or hybrid post-quantum (age1pq1...) recipient',
      );
    if (!recipient.startsWith('age1'))
      throw bad('is not an age recipient: expected age1... (X25519) or age1pq1... (hybrid post-quantum)');
    if (!isValidRecipient(recipient)) {
      throw bad(
        `is not a valid ${recipient.startsWith('age1pq1') ? 'hybrid post-quantum' : 'X25519'} recipient: its bech32 checksum or length is wrong (copied incompletely?)`,
      );
    }
    return recipient;
  });
  const postQuantum = parsed.findIndex((r) => r.startsWith('age1pq1'));
  const classic = parsed.findIndex((r) => !r.startsWith('age1pq1'));
  if (postQuantum >= 0 && classic >= 0) {
    // age 1.3 refuses such a file: a classic recipient would let a quantum attacker in after all.
    throw new AgeError(
      `recipient ${postQuantum} is post-quantum (age1pq1...) and recipient ${classic} is not: age does not mix post-quantum and classic recipients in one file`,
    );
  }
  return parsed;
}

/** Whether `identity` decodes as an X25519 or hybrid identity: bech32 with its prefix and a 32-byte key. */
export function isValidIdentity(identity: string): boolean {
  const pq = identity.startsWith('AGE-SECRET-KEY-PQ-1');
  return decodesTo(identity, pq ? 'age-secret-key-pq-' : 'age-secret-key-', 32);
}

export const IDENTITY_LINE = /^AGE-SECRET-KEY-(PQ-)?1/;

/**
 * Parses an age identity file's text (as age-keygen writes it: '#' comment lines, blank lines, AGE-SECRET-KEY-1...
 * or AGE-SECRET-KEY-PQ-1... lines). Throws an AgeError naming the line, never its content.
 */
export function parseIdentities(text: string): string[] {
  const identities: string[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    const number = index + 1;
    if (line === '' || line.startsWith('#')) return;
    if (line.startsWith('age-encryption.org/') || line.startsWith('-----BEGIN AGE ENCRYPTED FILE-----')) {
      throw new AgeError(
        `line ${number} begins an age-encrypted file: the identity file is passphrase-protected; decrypt it first (age -d)`,
      );
    }
    if (line.startsWith('AGE-PLUGIN-'))
      throw new AgeError(
        `line ${number} is an age plugin identity, which is not supported (only AGE-SECRET-KEY-1... and AGE-SECRET-KEY-PQ-1...)`,
      );
    if (!IDENTITY_LINE.test(line)) throw new AgeError(`line ${number} is not an age identity`);
    if (!isValidIdentity(line))
      throw new AgeError(
        `line ${number} is not a valid age identity: its bech32 checksum or length is wrong (copied incompletely?)`,
      );
    identities.push(line);
  });
  if (identities.length === 0)
    throw new AgeError('the identity file has no age identity (no AGE-SECRET-KEY-1... line)');
  return identities;
}
