// What the workstation commands decide, as pure functions of the objects the cluster returns: the `list` table, the
// on-demand backup made from a schedule's template, and where `restore --backup` finds what it restores.
// src/workstation/commands.ts does the I/O.

import {
  API_VERSION,
  BACKUP_KIND,
  FROM_SCHEDULE_LABEL,
  SCHEDULE_KIND,
  SCHEDULED_TIME_ANNOTATION,
} from '../api/constants.js';
import { formatTime, parseTime } from '../api/conditions.js';
import { owningSchedule } from '../api/ownership.js';
import type { BackupSpec, BackupStatus, ScheduleSpec, SecretKeyRef } from '../api/types.js';
import { s3SettingsOf, type RawSettings } from '../contract/settings.js';
import { JobError } from '../job/errors.js';

/** A Kubernetes object as the API server returns it (only what is read here). */
export interface ClusterObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: unknown[];
  };
  spec?: unknown;
  status?: unknown;
}

export interface BackupRow {
  namespace: string;
  name: string;
  /** The schedule that made it, or that it was made from (`backup --from-schedule`); '' for one made by hand. */
  schedule: string;
  phase: string;
  /** Its slot, else its creation time (what the object key's time is). */
  time: string;
  size: number | undefined;
  /** `gzip`, `zstd+age`, `none`, ... from the stored object; '' before it is stored. */
  format: string;
  verified: boolean | undefined;
  key: string | undefined;
  /** The latest restore test: `Succeeded 2026-01-18T04:03:00Z`, `Running`, ...; '' when none ran. */
  restoreTest: string;
}

/** The schedule that made it, else the one it was made from (`backup --from-schedule`). */
const scheduleOf = (object: ClusterObject): string =>
  owningSchedule(object) || (object.metadata.labels?.[FROM_SCHEDULE_LABEL] ?? '');

export function backupRow(object: ClusterObject): BackupRow {
  const status = (object.status ?? {}) as BackupStatus;
  const snapshot = status.snapshot;
  const time =
    parseTime(object.metadata.annotations?.[SCHEDULED_TIME_ANNOTATION]) ?? parseTime(object.metadata.creationTimestamp);
  return {
    namespace: object.metadata.namespace ?? '',
    name: object.metadata.name,
    schedule: scheduleOf(object),
    phase: status.phase ?? 'Pending',
    time: time ? formatTime(time) : '',
    size: snapshot?.size,
    format: snapshot
      ? [snapshot.compression ?? 'none', ...(snapshot.encrypted ? ['age'] : [])].join('+').replace(/^none\+/, '')
      : '',
    verified: snapshot ? snapshot.verified === true : undefined,
    key: snapshot?.key,
    restoreTest: status.restoreTest?.result
      ? [status.restoreTest.result, status.restoreTest.completionTime].filter(Boolean).join(' ')
      : '',
  };
}

/** A schedule's backups (or all), newest first as `velero backup get` lists them: by time, then namespace and name. */
export function selectBackups(objects: readonly ClusterObject[], schedule?: string): ClusterObject[] {
  return objects
    .map((object) => ({ object, row: backupRow(object) }))
    .filter(({ row }) => schedule === undefined || row.schedule === schedule)
    .sort(
      (a, b) =>
        (a.row.time === b.row.time ? 0 : a.row.time < b.row.time ? 1 : -1) ||
        a.row.namespace.localeCompare(b.row.namespace) ||
        a.row.name.localeCompare(b.row.name),
    )
    .map(({ object }) => object);
}

/** Bytes as kubectl-style quantities people read: 512, 1.5Ki, 73Mi, 2.1Gi. */
export function humanBytes(bytes: number): string {
  const units = ['', 'Ki', 'Mi', 'Gi', 'Ti'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = unit === 0 || value >= 100 ? String(Math.round(value)) : value.toFixed(1).replace(/\.0$/, '');
  return `${text}${units[unit]}`;
}

/**
 * The rows as a table with kubectl's layout: upper-case headers, columns three spaces apart, `<none>` for blanks;
 * a NAMESPACE column first when they come from all namespaces.
 */
export function backupTable(rows: readonly BackupRow[], withNamespace = false): string {
  const header = [
    ...(withNamespace ? ['NAMESPACE'] : []),
    'NAME',
    'SCHEDULE',
    'PHASE',
    'TIME',
    'SIZE',
    'FORMAT',
    'VERIFIED',
    'RESTORE TEST',
  ];
  const cells = rows.map((r) => [
    ...(withNamespace ? [r.namespace] : []),
    r.name,
    r.schedule || '<none>',
    r.phase,
    r.time || '<none>',
    r.size === undefined ? '<none>' : humanBytes(r.size),
    r.format || '<none>',
    r.verified === undefined ? '<none>' : String(r.verified),
    r.restoreTest || '<none>',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return [header, ...cells]
    .map((line) =>
      line
        .map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('   ')
        .trimEnd(),
    )
    .join('\n');
}

/**
 * An on-demand TalosEtcdBackup from a schedule's template, as `kubectl create job --from=cronjob/…` makes a Job:
 * the template's labels, annotations and spec, and `talos.alperen.cloud/from-schedule: <schedule>`. Neither the
 * schedule's ownerReference nor its `controller-uid` label: the schedule (Metacontroller selects its children by
 * that label) never adopts it, so its retention neither counts it nor deletes it.
 */
export function backupFromSchedule(schedule: ClusterObject, now: Date, name?: string): ClusterObject {
  const spec = schedule.spec as Partial<ScheduleSpec> | undefined;
  const template = spec?.backupTemplate;
  if (!template?.spec) throw new Error(`schedule ${schedule.metadata.name} has no spec.backupTemplate.spec`);
  return {
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: {
      name: name ?? `${schedule.metadata.name}-manual-${Math.floor(now.getTime() / 1000)}`,
      ...(schedule.metadata.namespace !== undefined && { namespace: schedule.metadata.namespace }),
      labels: { ...template.metadata?.labels, [FROM_SCHEDULE_LABEL]: schedule.metadata.name },
      ...(template.metadata?.annotations && { annotations: { ...template.metadata.annotations } }),
    },
    spec: structuredClone(template.spec),
  };
}

/** What `restore --backup` reads from the cluster besides the backup: the Secrets and ConfigMaps its spec names. */
export interface RestoreInputs {
  /** The S3 settings from the backup, under what the user set on the workstation (flags and environment win). */
  raw: RawSettings;
  /** What the object must be: the hashes and size the backup's status recorded when it was stored. */
  expected: { size: number; sha256: string; etcdSha256: string };
  /** The S3 key Secrets of the spec (read only with --s3-credentials-from-cluster). */
  credentials: { accessKeyID: SecretKeyRef; secretAccessKey: SecretKeyRef } | undefined;
  /** The spec's CA bundle (a public certificate), read from the cluster unless a local one is given. */
  caBundle: { kind: 'Secret' | 'ConfigMap'; name: string; key: string } | undefined;
  /** The cluster secrets the status records beside the snapshot, and what they must be; false: none recorded. */
  secrets: { key: string; expected: { size?: number | undefined; sha256?: string | undefined } } | false;
}

/** The settings that say how to reach one S3 store: the user's apply to the destination tried first only. */
const REACH_SETTINGS = ['region', 'endpoint', 'forcePathStyle', 'insecureSkipTLSVerify', 'caBundle'] as const;

/** `local` without how to reach a store (for a copy: another store), keeping the rest (output file, identity…). */
export function withoutReach(local: RawSettings): RawSettings {
  const rest = { ...local };
  for (const name of REACH_SETTINGS) delete rest[name];
  return rest;
}

/** The destinations a backup's objects can be restored from: 0 the primary, then each copy stored (1-based). */
export function storedDestinations(backup: ClusterObject): number[] {
  const copies = ((backup.status ?? {}) as BackupStatus).snapshot?.copies ?? [];
  return [0, ...copies.flatMap((copy, i) => (copy.key && !copy.error ? [i + 1] : []))];
}

/**
 * Where a backup's object is and what it must be, from its spec and status; `local` is what the user set. Throws a
 * permanent JobError for a backup with nothing stored, or a copy (`destination` N, from 1) that was not stored.
 */
export function restoreInputs(backup: ClusterObject, local: RawSettings, destination = 0): RestoreInputs {
  const name = `${backup.metadata.namespace ?? ''}/${backup.metadata.name}`;
  const status = (backup.status ?? {}) as BackupStatus;
  const snapshot = status.snapshot;
  if (status.phase !== 'Succeeded' || !snapshot?.key || !snapshot.sha256 || !snapshot.etcdSha256)
    throw new JobError(
      undefined,
      `backup ${name} has no stored snapshot to restore (phase ${status.phase ?? 'Pending'}${status.message ? `: ${status.message}` : ''}); \`talos-etcd-backup list\` shows the ones that have`,
      { permanent: true },
    );
  const storage = (backup.spec as Partial<BackupSpec> | undefined)?.backupStorage;
  const stored = destination === 0 ? undefined : snapshot.copies?.[destination - 1];
  if (destination > 0 && (!stored?.key || stored.error))
    throw new JobError(
      undefined,
      `backup ${name} has no stored copy ${destination}${stored?.error ? ` (${stored.name}: ${stored.error})` : ''}: its status lists ${snapshot.copies?.length ?? 0} cop${snapshot.copies?.length === 1 ? 'y' : 'ies'}`,
      { permanent: true },
    );
  const s3 = destination === 0 ? storage?.s3 : storage?.copies?.[destination - 1];
  const where = stored ?? snapshot;
  // Where the Job was told to write, but the bucket and key it recorded having written.
  const fromSpec: RawSettings = { ...(s3 && s3SettingsOf(s3)), bucket: where.bucket, key: where.key };
  // The object is the backup's: the user may say how to reach it (an endpoint the workstation can reach, its own
  // CA bundle), never which object it is; nor which copy (that is `destination`).
  const {
    bucket: _bucket,
    key: _key,
    cluster: _cluster,
    prefix: _prefix,
    copy: _copy,
    copies: _copies,
    ...reach
  } = local;
  const secretsKey = destination === 0 ? snapshot.secrets?.key : stored?.secretsKey;
  return {
    raw: { ...fromSpec, ...reach },
    // The same stored bytes at every destination.
    expected: {
      size: where.size ?? snapshot.size,
      sha256: where.sha256 ?? snapshot.sha256,
      etcdSha256: snapshot.etcdSha256,
    },
    credentials:
      s3?.accessKeyID && s3.secretAccessKey
        ? { accessKeyID: s3.accessKeyID, secretAccessKey: s3.secretAccessKey }
        : undefined,
    caBundle: s3?.caBundle && !local.caBundle ? s3.caBundle : undefined,
    secrets: secretsKey
      ? { key: secretsKey, expected: { size: snapshot.secrets?.size, sha256: snapshot.secrets?.sha256 } }
      : false,
  };
}
