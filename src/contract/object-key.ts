// The S3 object key of a backup (the README's TalosEtcdBackup section): <prefix>/<cluster>/etcd-snapshot-<YYYY-MM-DDTHH-MM-SSZ>.db[.gz|.zst][.age]

import type { Compression } from '../api/types.js';

export interface ObjectKeyParts {
  prefix: string;
  cluster: string;
  /** The backup's scheduled time, else its creation time. */
  time: Date;
  compression?: Compression;
  encrypted?: boolean;
}

/** The default first segment of object keys (talos-operator's, so existing buckets keep their layout). */
export const DEFAULT_PREFIX = 'talos-operator-etcd-backups';

const SUFFIX = { none: '', gzip: '.gz', zstd: '.zst' } as const;

/** Second precision, UTC, with dashes instead of colons (colons are awkward in keys and on some filesystems). */
export function keyTimestamp(time: Date): string {
  return time
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/:/g, '-');
}

export function objectKey(parts: ObjectKeyParts): string {
  const prefix = parts.prefix.replace(/^\/+|\/+$/g, '');
  const name = `etcd-snapshot-${keyTimestamp(parts.time)}.db${SUFFIX[parts.compression ?? 'none']}${parts.encrypted ? '.age' : ''}`;
  return [prefix, parts.cluster, name].filter(Boolean).join('/');
}

/** The end of the key of the cluster secrets stored beside a snapshot (always age-encrypted). */
export const SECRETS_KEY_SUFFIX = '.secrets.yaml.age';

/**
 * The key of the cluster secrets stored beside the snapshot at `snapshotKey`: the same key with its format suffix
 * (`.db`, `.db.zst.age`, ...) replaced, so each snapshot has its own, and listing a cluster's snapshots (`.db…`)
 * never finds one.
 */
export function secretsKeyOf(snapshotKey: string): string {
  return `${snapshotKey.replace(/\.db(\.gz|\.zst)?(\.age)?$/, '')}${SECRETS_KEY_SUFFIX}`;
}

/** What a key's suffixes say about the stored bytes: `.age` last when encrypted, before it `.gz`/`.zst`. */
export function storedFormatOf(key: string): { compression: Compression; encrypted: boolean } {
  const encrypted = key.endsWith('.age');
  const rest = encrypted ? key.slice(0, -'.age'.length) : key;
  const compression = rest.endsWith('.gz') ? 'gzip' : rest.endsWith('.zst') ? 'zstd' : 'none';
  return { compression, encrypted };
}
