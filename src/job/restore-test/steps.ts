// The restore test's two steps in this image, around etcd's own two containers (src/server/backup/restore-test-job.ts):
//   fetch (init container): the backup, downloaded, decrypted, decompressed and verified against what its status
//     records, into <dir>/snapshot.db, and the snapshot's database checked against the recorded revision and keys;
//     the cluster secrets stored beside it decrypted and checked in memory (never written);
//   [etcdutl snapshot restore, then etcd serving on the unix socket <dir>/etcd.sock: the etcd image]
//   check (main container): that etcd answers, serves the recorded revision, a consistent read of every key at it,
//     and the most recently changed keys with their values.
// Each step throws a JobError ('restoreTest') that says which check failed; its outcome is the caller's to report.

import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { RestoreTestFigures } from '../../api/types.js';
import type { EtcdClient } from '../etcd/client.js';
import { JobError } from '../errors.js';
import { readClusterSecrets } from '../pipeline/cluster-secrets.js';
import { restoreBackup } from '../pipeline/restore.js';
import type { ExpectedObject } from '../pipeline/verify.js';

export const SNAPSHOT_FILE = 'snapshot.db';
/** What fetch tells check (the emptyDir is their only channel): when the test started. */
const FETCHED_FILE = 'fetched.json';
/** etcd listens here, relative to the directory (unix socket paths are short: 108 bytes); etcd wants host:port. */
export const ETCD_SOCKET = 'etcd.sock:2379';
/** How many of the most recently changed keys the check reads back with their values. */
const NEWEST_KEYS_READ = 10;

export interface Recorded extends ExpectedObject {
  revision?: number | undefined;
  keys?: number | undefined;
}

export interface FetchInput {
  client: S3Client;
  bucket: string;
  key: string;
  /** The cluster secrets stored beside the snapshot: decrypted and checked too, in memory. */
  secrets?: { key: string; sha256?: string | undefined } | undefined;
  identities: string[];
  dir: string;
  recorded: Recorded;
  startedAt: string;
  signal?: AbortSignal;
}

const fail = (detail: string, permanent = true) => new JobError('restoreTest', detail, { permanent });

/** The records a database must match: a backup whose status says otherwise does not describe this snapshot. */
export function compareWithRecord(found: { revision: number; keys: number }, recorded: Recorded): string | undefined {
  const mismatches = [
    recorded.keys !== undefined && found.keys !== recorded.keys
      ? `holds ${found.keys} keys (revisions), the backup recorded ${recorded.keys}`
      : '',
    recorded.revision !== undefined && found.revision !== recorded.revision
      ? `is at revision ${found.revision}, the backup recorded ${recorded.revision}`
      : '',
  ].filter(Boolean);
  return mismatches.length > 0 ? `the snapshot ${mismatches.join(' and ')}` : undefined;
}

/** Step 1: the verified plain snapshot at <dir>/snapshot.db, matching the backup's record. */
export async function fetchStep(
  input: FetchInput,
): Promise<{ revision: number; keys: number; size: number; secretsKeys?: number }> {
  const output = join(input.dir, SNAPSHOT_FILE);
  // A retried pod finds the emptyDir of the failed one only if it is the same pod.
  await rm(output, { force: true });
  // The cluster secrets are decrypted and checked in memory and never written: they are not part of etcd's data,
  // and the node's disk must not hold them.
  const secrets =
    input.secrets &&
    (await readClusterSecrets(input.client, input.bucket, input.secrets.key, {
      identities: input.identities,
      expected: { sha256: input.secrets.sha256 },
      signal: input.signal,
    }));
  if (secrets && !secrets.keys)
    throw fail(`the cluster secrets at ${input.secrets!.key} can only be checked with an age identity`);
  const result = await restoreBackup({
    client: input.client,
    bucket: input.bucket,
    key: input.key,
    identities: input.identities,
    output,
    expected: input.recorded,
    ...(input.signal && { signal: input.signal }),
  });
  if (!result.database) throw fail('the snapshot inside the backup could not be read (no age identity)');
  const mismatch = compareWithRecord(result.database, input.recorded);
  if (mismatch) {
    await rm(output, { force: true });
    throw fail(`${mismatch}: the record does not describe this snapshot`);
  }
  await writeFile(join(input.dir, FETCHED_FILE), JSON.stringify({ startedAt: input.startedAt }), { mode: 0o600 });
  return {
    revision: result.database.revision,
    keys: result.database.keys,
    size: result.snapshotSize ?? result.size,
    ...(secrets?.keys && { secretsKeys: secrets.keys.length }),
  };
}

/** What fetch left for check. */
export async function readFetched(dir: string): Promise<{ startedAt?: string }> {
  try {
    return JSON.parse(await readFile(join(dir, FETCHED_FILE), 'utf8')) as { startedAt?: string };
  } catch {
    return {};
  }
}

export interface CheckInput {
  etcd: EtcdClient;
  recorded: Recorded;
  startTimeoutMs: number;
  /** Per request. */
  requestTimeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const ALL_KEYS = { key: Buffer.from([0]), range_end: Buffer.from([0]) };

/** Step 2: the restored etcd serves the backup. */
export async function checkStep(input: CheckInput): Promise<RestoreTestFigures> {
  const { etcd, recorded } = input;
  const timeout = input.requestTimeoutMs ?? 30_000;
  const sleep = input.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  const until = Date.now() + input.startTimeoutMs;
  let status: { version: string; revision: number } | undefined;
  let lastError = '';
  while (!status) {
    try {
      status = await etcd.status(Math.min(timeout, Math.max(1_000, until - Date.now())));
    } catch (error) {
      lastError = (error as Error).message;
      if (Date.now() >= until) {
        throw fail(
          `the restored etcd did not answer on ${ETCD_SOCKET} within ${Math.round(input.startTimeoutMs / 1000)}s ` +
            `(${lastError}): see the etcd container's log (kubectl logs <pod> -c etcd)`,
        );
      }
      await sleep(500);
    }
  }
  const revision = recorded.revision ?? status.revision;
  // Leases that expire after the restore (the API server's own have a TTL of 15 s) may add revisions: never fewer.
  if (status.revision < revision) {
    throw fail(`the restored etcd serves revision ${status.revision}, the backup recorded ${revision}`);
  }
  const figures: RestoreTestFigures = { etcdVersion: status.version, revision: status.revision };
  const read = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (error) {
      throw fail(`the restored etcd (${status.version}) could not ${what}: ${(error as Error).message}`);
    }
  };
  // A consistent read of every key at the backup's revision.
  const all = await read(`count the keys at revision ${revision}`, () =>
    etcd.range({ ...ALL_KEYS, revision, count_only: true }, timeout),
  );
  figures.servedKeys = all.count;
  if (recorded.keys !== undefined && recorded.keys > 0 && all.count === 0) {
    throw fail(
      `the restored etcd serves no key at revision ${revision}, the backup recorded ${recorded.keys} keys (revisions)`,
    );
  }
  // The most recently changed keys, then each one's value at its revision.
  const newest = await read('list the newest keys', () =>
    etcd.range(
      { ...ALL_KEYS, revision, sort_order: 'DESCEND', sort_target: 'MOD', limit: NEWEST_KEYS_READ, keys_only: true },
      timeout,
    ),
  );
  for (const kv of newest.kvs) {
    const modRevision = Number(kv.mod_revision);
    if (modRevision > revision) {
      throw fail(`the restored etcd lists a key changed at revision ${modRevision}, after the backup's ${revision}`);
    }
    const got = await read(`read a key changed at revision ${modRevision}`, () =>
      etcd.range({ key: kv.key, revision: modRevision }, timeout),
    );
    if (got.kvs.length !== 1 || Number(got.kvs[0]!.mod_revision) !== modRevision) {
      throw fail(`the restored etcd does not serve the key changed at revision ${modRevision} at that revision`);
    }
  }
  if (recorded.keys !== undefined) figures.keys = recorded.keys;
  return figures;
}
