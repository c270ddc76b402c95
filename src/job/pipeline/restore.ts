// `restore`: a stored backup back to a plain etcd snapshot file on a workstation — downloaded, decrypted,
// decompressed and verified in one stream (the same checks as `verify`), then written under its final name only
// once every check passed. The file is what etcd wrote (database and sha256 trailer), which both
// `etcdctl snapshot restore` and `talosctl bootstrap --recover-from` check and accept.

import { createWriteStream, existsSync } from 'node:fs';
import { link, rename, rm, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { HeadObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { JobError } from '../errors.js';
import { describeS3Error, isPermanentS3Error } from '../s3/errors.js';
import { storedFormatOf } from '../../contract/object-key.js';
import { readRecordedHashes } from '../s3/recorded-hashes.js';
import { SinkError, verifyObject, type ExpectedObject, type VerifiedObject } from './verify.js';
import { readClusterSecrets } from './cluster-secrets.js';

/** `<prefix>/<cluster>/`, as object keys have it. */
function clusterPrefix(prefix: string, cluster: string): string {
  return `${[prefix.replace(/^\/+|\/+$/g, ''), cluster].filter(Boolean).join('/')}/`;
}

const SNAPSHOT_NAME = /\/etcd-snapshot-(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ)\.db(\.gz|\.zst)?(\.age)?$/;

/** Backups of a cluster under a prefix, newest first (by the time in their names). */
async function listBackups(client: S3Client, bucket: string, prefix: string, cluster: string): Promise<string[]> {
  const listPrefix = `${clusterPrefix(prefix, cluster)}etcd-snapshot-`;
  const keys: { key: string; time: string }[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: listPrefix, ...(token && { ContinuationToken: token }) }),
    );
    for (const object of page.Contents ?? []) {
      const time = object.Key && SNAPSHOT_NAME.exec(object.Key)?.[1];
      if (time) keys.push({ key: object.Key!, time });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : a.key < b.key ? 1 : -1)).map((k) => k.key);
}

/**
 * The newest complete backup of a cluster: the newest whose hashes were recorded (an object without them is an
 * upload that did not finish). Throws a JobError ('restore') when there is none.
 */
export async function newestBackup(
  client: S3Client,
  bucket: string,
  prefix: string,
  cluster: string,
): Promise<{ key: string; skipped: string[] }> {
  const where = `s3://${bucket}/${clusterPrefix(prefix, cluster)}`;
  const s3Failure = (what: string, error: unknown) =>
    new JobError('restore', `cannot ${what}: ${describeS3Error(error)}`, {
      cause: error,
      permanent: isPermanentS3Error(error),
    });
  let keys;
  try {
    keys = await listBackups(client, bucket, prefix, cluster);
  } catch (error) {
    throw s3Failure(`list ${where}`, error);
  }
  const skipped: string[] = [];
  for (const key of keys) {
    let recorded;
    try {
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      recorded = await readRecordedHashes(client, bucket, key, head.Metadata ?? {}, head.VersionId);
    } catch (error) {
      throw s3Failure(`read s3://${bucket}/${key}`, error);
    }
    if (recorded) return { key, skipped };
    skipped.push(key);
  }
  const none =
    keys.length === 0
      ? 'no backups'
      : `no complete backups (${keys.length} incomplete: ${keys.slice(0, 3).join(', ')}${keys.length > 3 ? ', ...' : ''})`;
  throw new JobError('restore', `${none} of cluster ${cluster} under ${where}`, { permanent: true });
}

/** The file name a key restores to by default: its name without the .gz/.zst/.age suffixes. */
export function defaultOutput(key: string): string {
  return basename(key).replace(/(\.gz|\.zst)?(\.age)?$/, '');
}

export interface RestoreOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /** age identities, for an encrypted backup. */
  identities: string[];
  /** The file to write; it must not exist. */
  output: string;
  /** What the object must be (a TalosEtcdBackup's status records it); else the hashes recorded on the object. */
  expected?: ExpectedObject;
  onProgress?: (bytesRead: number, total: number | undefined) => void;
  /** Stops the restore (Ctrl-C); nothing is left behind. */
  signal?: AbortSignal;
  /**
   * The cluster secrets stored beside the snapshot, written to `<output>.secrets.yaml`: their key, what they must be
   * (else the sha256 recorded with them), and whether none at the key is fine (a backup that may have stored none).
   */
  secrets?: { key: string; expected?: { size?: number | undefined; sha256?: string | undefined }; optional: boolean };
}

export interface RestoreResult extends VerifiedObject {
  output: string;
  /** The cluster secrets restored beside the snapshot file: their key, file and the Secret's keys. */
  secrets?: { key: string; output: string; keys: string[] };
}

/** The file the cluster secrets of a snapshot restored to `output` are written to. */
export function secretsOutputOf(output: string): string {
  return `${output}.secrets.yaml`;
}

/** Gives the finished file its name, never replacing a file that appeared there meanwhile. */
async function publish(partial: string, output: string): Promise<void> {
  try {
    await link(partial, output); // fails with EEXIST instead of replacing
  } catch (error) {
    // Filesystems without hard links: a rename after a last check.
    if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
    if (existsSync(output)) throw Object.assign(new Error(`${output} exists`), { code: 'EEXIST' });
    await rename(partial, output);
  }
}

/** Downloads, decodes and verifies one backup into `output`; nothing is left at `output` if any check fails. */
export async function restoreBackup(opts: RestoreOptions): Promise<RestoreResult> {
  const { client, bucket, key, output } = opts;
  if (storedFormatOf(key).encrypted && opts.identities.length === 0) {
    throw new JobError(
      'restore',
      `s3://${bucket}/${key} is age-encrypted: give the identity file of one of its recipients with --age-identity (AGE_IDENTITY_FILE)`,
      { permanent: true },
    );
  }
  const secretsOutput = secretsOutputOf(output);
  for (const file of opts.secrets ? [output, secretsOutput] : [output])
    if (existsSync(file))
      throw new JobError('restore', `${file} exists (restore never overwrites; remove it or choose --output)`, {
        permanent: true,
      });
  // The secrets first (a few KiB): checked and decrypted before the snapshot's long download, so that a damaged
  // secrets object fails at once; their file is given its name with the snapshot's.
  const secrets =
    opts.secrets &&
    (await readClusterSecrets(client, bucket, opts.secrets.key, {
      identities: opts.identities,
      expected: opts.secrets.expected,
      optional: opts.secrets.optional,
      signal: opts.signal,
    }));
  if (secrets && secrets.manifest === undefined)
    throw new JobError('restore', `${opts.secrets!.key} can only be read with an age identity (--age-identity)`, {
      permanent: true,
    });
  const secretsPartial = `${secretsOutput}.partial-${process.pid}`;
  // Written next to the output under a temporary name, then linked to the final name, which fails if a file
  // appeared there meanwhile: a restore never overwrites anything.
  const partial = `${output}.partial-${process.pid}`;
  // The whole of etcd, Secrets included: readable by its owner only, as etcdctl writes snapshots.
  const sink = createWriteStream(partial, { flags: 'wx', mode: 0o600, flush: true });
  try {
    await new Promise<void>((resolve, reject) => sink.once('open', () => resolve()).once('error', reject));
  } catch (error) {
    throw new JobError('restore', `cannot write ${partial}: ${(error as Error).message}`, {
      cause: error,
      permanent: true,
    });
  }
  try {
    if (secrets) await writeFile(secretsPartial, secrets.manifest!, { flag: 'wx', mode: 0o600, flush: true });
    const result = await verifyObject(client, bucket, key, {
      identities: opts.identities,
      expected: opts.expected,
      sink,
      onProgress: opts.onProgress,
      signal: opts.signal,
    });
    const published: [string, string][] = [
      [partial, output],
      ...(secrets ? [[secretsPartial, secretsOutput] as [string, string]] : []),
    ];
    const done: string[] = [];
    for (const [from, to] of published) {
      try {
        await publish(from, to);
        done.push(to);
      } catch (error) {
        // All or nothing: a snapshot without its secrets file is not what was asked for.
        await Promise.all(done.map((file) => rm(file, { force: true })));
        throw new JobError(
          'restore',
          `cannot write ${to}: ${(error as NodeJS.ErrnoException).code === 'EEXIST' ? 'the file exists (restore never overwrites; remove it or choose --output)' : (error as Error).message}`,
          { cause: error, permanent: true },
        );
      }
    }
    return {
      ...result,
      output,
      ...(secrets &&
        opts.secrets && { secrets: { key: opts.secrets.key, output: secretsOutput, keys: secrets.keys! } }),
    };
  } catch (error) {
    if (error instanceof SinkError)
      throw new JobError('restore', `cannot write ${partial}: ${error.message}`, { cause: error, permanent: false });
    throw error;
  } finally {
    sink.destroy();
    await rm(partial, { force: true }); // the output, if written, is its own link now
    await rm(secretsPartial, { force: true });
  }
}
