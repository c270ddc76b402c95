// The cluster's secrets stored beside a snapshot: what `talosctl bootstrap --recover-from` and a rebuilt cluster
// need besides etcd's data (the secrets bundle, the machine configuration), read from a Secret volume, written as
// a Secret manifest `kubectl apply -f` re-creates, age-encrypted to the backup's recipients and stored at a key
// derived from the snapshot's (contract/object-key.ts), with its sha256 recorded like the snapshot's. Small
// (a few KiB), so held in memory; the snapshot's stream is never touched.
//
// No value of the Secret ever reaches a message: errors name keys and objects only, and a manifest that does not
// parse says so without the parser's text (which would quote it).

import { createHash } from 'node:crypto';
import { Readable, Writable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, S3ServiceException, type S3Client } from '@aws-sdk/client-s3';
import { parse, stringify } from 'yaml';
import { TALOS_OPERATOR_TYPE_LABEL } from '../../api/constants.js';
import type { ClusterSecretsSource, StoredSecrets } from '../../api/types.js';
import { AgeError } from '../../api/age-keys.js';
import { createDecryptor, createEncryptor } from '../codec/age.js';
import { describeS3Error, isPermanentS3Error } from '../s3/errors.js';
import { storeObject, type SnapshotTarget } from '../s3/upload.js';
import { readSecretVolume } from '../secret-volume.js';
import { VerificationError } from './verify.js';

/** The Secret to store: its volume's directory, and what the manifest says about it. */
export interface ClusterSecretsInput {
  dir: string;
  name: string;
  /** The backup's namespace (the Secret's); empty: none in the manifest. */
  namespace: string;
  source: ClusterSecretsSource;
}

/** Labels the re-created Secret needs: talos-operator finds its state Secret by name and this label. */
function labelsOf(source: ClusterSecretsSource): Record<string, string> | undefined {
  return source === 'talosOperatorState' ? { [TALOS_OPERATOR_TYPE_LABEL]: 'state' } : undefined;
}

/**
 * A Secret manifest of `data` (pure): apiVersion v1, kind Secret, name, namespace, labels, base64 data in key order,
 * under a comment saying what it is. Long values stay on one line, so that one key can be cut out with sed.
 */
export function secretManifest(input: {
  name: string;
  namespace: string;
  source: ClusterSecretsSource;
  data: Map<string, Buffer>;
}): string {
  const labels = labelsOf(input.source);
  const manifest = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: input.name,
      ...(input.namespace && { namespace: input.namespace }),
      ...(labels && { labels }),
    },
    data: Object.fromEntries(
      [...input.data].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, v.toString('base64')]),
    ),
  };
  const what =
    input.source === 'talosOperatorState' ? "talos-operator's state Secret" : 'the Secret of spec.clusterSecretsRef';
  return (
    `# ${what}, stored beside an etcd snapshot by talos-etcd-backup. Re-create it with kubectl apply -f <this file>.\n` +
    stringify(manifest, { lineWidth: 0 })
  );
}

/** The name, namespace and keys of a stored manifest; throws a one-line Error (never quoting it) when it is not one. */
export function readSecretManifest(text: string): { name: string; namespace?: string; keys: string[] } {
  let manifest: unknown;
  try {
    manifest = parse(text);
  } catch {
    throw new Error('the decrypted cluster secrets are not YAML');
  }
  const m = manifest as {
    apiVersion?: unknown;
    kind?: unknown;
    metadata?: { name?: unknown; namespace?: unknown };
    data?: unknown;
  };
  const data = m?.data;
  if (
    m?.apiVersion !== 'v1' ||
    m.kind !== 'Secret' ||
    typeof m.metadata?.name !== 'string' ||
    typeof data !== 'object' ||
    data === null ||
    Object.keys(data).length === 0 ||
    !Object.values(data).every((v) => typeof v === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(v))
  )
    throw new Error('the decrypted cluster secrets are not a Secret manifest with base64 data');
  return {
    name: m.metadata.name,
    ...(typeof m.metadata.namespace === 'string' && { namespace: m.metadata.namespace }),
    keys: Object.keys(data).sort(),
  };
}

async function through(codec: Duplex, bytes: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
  await pipeline(Readable.from([bytes]), codec, sink);
  return Buffer.concat(chunks);
}

const sha256Of = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * Stores the Secret in `input.dir` beside the snapshot at `target.key` (the secrets' key), encrypted to
 * `recipients`; an empty directory (an optional Secret that does not exist) is recorded as not stored.
 */
export async function storeClusterSecrets(
  target: SnapshotTarget,
  input: ClusterSecretsInput,
  recipients: string[],
): Promise<StoredSecrets> {
  const record = { source: input.source, secretName: input.name };
  // The snapshot command refuses this earlier; a second guard here, where the bytes are.
  if (recipients.length === 0) throw new AgeError('the cluster secrets are stored only age-encrypted: no recipient');
  const data = readSecretVolume(input.dir);
  if (data.size === 0) {
    const where = `${input.namespace ? `${input.namespace}/` : ''}${input.name}`;
    return { ...record, notStored: `the Secret ${where} does not exist or has no keys` };
  }
  const plain = Buffer.from(secretManifest({ ...input, data }), 'utf8');
  const encrypted = await through(createEncryptor(recipients), plain);
  const stored = await storeObject(target, encrypted, sha256Of(encrypted));
  return { ...record, key: target.key, size: stored.size, sha256: stored.sha256 };
}

export interface ReadSecretsOptions {
  identities?: string[] | undefined;
  /** What the object must be (a backup's status, or what was just stored); else the sha256 recorded with it. */
  expected?: { size?: number | undefined; sha256?: string | undefined } | undefined;
  signal?: AbortSignal | undefined;
  /** No object at the key is an answer (undefined), not a failure: a backup that may have stored none. */
  optional?: boolean | undefined;
}

export interface ReadSecrets {
  size: number;
  sha256: string;
  /** With an identity: the decrypted manifest, and its Secret's keys. */
  manifest?: string;
  keys?: string[];
}

/**
 * Reads the cluster secrets at `key` and checks them: the stored bytes' size and sha256, then, with an identity,
 * that they decrypt and are a Secret manifest. Throws a VerificationError saying which check failed.
 */
export async function readClusterSecrets(
  client: S3Client,
  bucket: string,
  key: string,
  opts: ReadSecretsOptions = {},
): Promise<ReadSecrets | undefined> {
  const where = `the cluster secrets at s3://${bucket}/${key}`;
  let bytes: Buffer;
  let recorded: string | undefined;
  try {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), {
      ...(opts.signal && { abortSignal: opts.signal }),
    });
    recorded = object.Metadata?.['sha256'];
    bytes = Buffer.from(await object.Body!.transformToByteArray());
  } catch (error) {
    const missing = error instanceof S3ServiceException && error.name === 'NoSuchKey';
    if (missing && opts.optional) return undefined;
    const permanent = isPermanentS3Error(error) || missing;
    throw new VerificationError(`cannot read ${where}: ${describeS3Error(error)}`, { cause: error, permanent });
  }
  const sha256 = sha256Of(bytes);
  const expected = opts.expected?.sha256 ?? recorded;
  if (!expected)
    throw new VerificationError(`${where} have no recorded sha256: they were not stored by talos-etcd-backup`, {
      permanent: true,
    });
  if (sha256 !== expected) {
    throw new VerificationError(
      `${where} have sha256 ${sha256} (${bytes.length} bytes), but ${expected} was recorded when they were stored: their bytes changed since (damaged, truncated or replaced)`,
      { permanent: true },
    );
  }
  if (opts.expected?.size !== undefined && bytes.length !== opts.expected.size)
    throw new VerificationError(`read ${bytes.length} bytes of ${where} but ${opts.expected.size} were stored`, {
      permanent: true,
    });
  if (!opts.identities?.length) return { size: bytes.length, sha256 };
  let manifest: string;
  try {
    manifest = (await through(createDecryptor(opts.identities), bytes)).toString('utf8');
  } catch (error) {
    throw new VerificationError(`${where}: ${(error as Error).message}`, { cause: error, permanent: true });
  }
  let keys: string[];
  try {
    keys = readSecretManifest(manifest).keys;
  } catch (error) {
    throw new VerificationError(`${where}: ${(error as Error).message}`, { permanent: true });
  }
  return { size: bytes.length, sha256, manifest, keys };
}
