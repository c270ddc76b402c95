// TypeScript views of the two CRDs (crds/*.yaml is the source of truth; these describe defaulted, valid objects).
// The enums the code also needs as values are listed here once; test/api/crds.test.ts checks them against the CRDs.

import type { Condition } from './conditions.js';

export const COMPRESSIONS = ['none', 'gzip', 'zstd'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
export const SSE_ALGORITHMS = ['AES256', 'aws:kms'] as const;
export type SseAlgorithm = (typeof SSE_ALGORITHMS)[number];
export const OBJECT_LOCK_MODES = ['GOVERNANCE', 'COMPLIANCE'] as const;
export type ObjectLockMode = (typeof OBJECT_LOCK_MODES)[number];
/** What the Secret stored beside a snapshot is: spec.clusterSecretsRef's, or talos-operator's `<tcp>-state`. */
export const CLUSTER_SECRETS_SOURCES = ['clusterSecretsRef', 'talosOperatorState'] as const;
export type ClusterSecretsSource = (typeof CLUSTER_SECRETS_SOURCES)[number];

export interface SecretKeyRef {
  name: string;
  key: string;
}

type Resources = { limits?: Record<string, string | number>; requests?: Record<string, string | number> };

/** How a restore test runs, on a backup (spec.restoreTest) or a schedule (spec.restoreTest, with its cron). */
export interface RestoreTestSettings {
  etcdImage: string;
  identitySecretRef?: SecretKeyRef;
  activeDeadlineSeconds: number;
  resources?: Resources;
  volumeSizeLimit?: string | number;
}

/** An S3 destination: spec.backupStorage.s3, and each of spec.backupStorage.copies (with `name` and `required`). */
export interface S3Storage {
  bucket: string;
  region: string;
  accessKeyID?: SecretKeyRef;
  secretAccessKey?: SecretKeyRef;
  endpoint?: string;
  insecureSkipTLSVerify: boolean;
  forcePathStyle?: boolean;
  caBundle?: { kind: 'Secret' | 'ConfigMap'; name: string; key: string };
  prefix: string;
  serverSideEncryption?: { algorithm: SseAlgorithm; kmsKeyID?: string };
  objectLock?: { mode: ObjectLockMode; retainDays: number };
}

/** A further destination written in the same pass as the primary (spec.backupStorage.copies[]). */
export interface CopyStorage extends S3Storage {
  name?: string;
  /** false: the backup is Ready without this copy, with a warning. */
  required: boolean;
}

export interface BackupSpec {
  talosControlPlaneRef?: { name: string };
  talosConfigSecretRef?: { name: string; key: string };
  /** A Secret whose keys are all stored beside the snapshot, age-encrypted (the CRD requires encryption.age). */
  clusterSecretsRef?: { name: string };
  clusterName?: string;
  endpoints?: string[];
  node?: string;
  backupStorage: {
    s3: S3Storage;
    copies?: CopyStorage[];
  };
  compression: Compression;
  encryption?: { age: { recipients: string[]; identitySecretRef?: SecretKeyRef } };
  deletionPolicy: 'Retain' | 'Delete';
  verify: boolean;
  job: {
    activeDeadlineSeconds: number;
    backoffLimit: number;
    resources?: Resources;
    nodeSelector?: Record<string, string>;
    tolerations?: Record<string, unknown>[];
    priorityClassName?: string;
  };
  restoreTest?: RestoreTestSettings & { requestedAt?: string };
}

export type ConcurrencyPolicy = 'Forbid' | 'Allow' | 'Replace';

export interface ScheduleSpec {
  schedule: string;
  timeZone?: string;
  retention: number;
  paused: boolean;
  startingDeadlineSeconds?: number;
  concurrencyPolicy: ConcurrencyPolicy;
  failedBackupsHistoryLimit?: number;
  restoreTest?: RestoreTestSettings & { schedule: string };
  /** Tiered retention beside `retention` (restic's forget rules; src/server/schedule/retention-policy.ts). */
  retentionPolicy?: {
    keepLast?: number;
    keepHourly?: number;
    keepDaily?: number;
    keepWeekly?: number;
    keepMonthly?: number;
    keepYearly?: number;
    keepWithin?: string;
  };
  backupTemplate: {
    metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
    spec: BackupSpec;
  };
}

export interface ScheduleStatus {
  lastScheduleTime?: string;
  lastSuccessfulBackupTime?: string;
  nextScheduleTime?: string;
  activeBackups?: string[];
  conditions?: Condition[];
  observedGeneration?: number;
  lastRestoreTestTime?: string;
  lastSuccessfulRestoreTestTime?: string;
  nextRestoreTestTime?: string;
  restoreTestRequest?: { backup?: string; requestedAt?: string };
  /** Successful backups kept, and how many each retention rule keeps. */
  retained?: { backups: number; byRule: Record<string, number> };
}

/**
 * The cluster's secrets stored beside a snapshot (a Secret manifest, age-encrypted): where and with what hash,
 * or, with `notStored`, why nothing was stored. Never a value of the Secret.
 */
export interface StoredSecrets {
  source: ClusterSecretsSource;
  /** The Secret, in the backup's namespace. */
  secretName: string;
  key?: string;
  size?: number;
  /** Hex SHA-256 of the stored (encrypted) bytes. */
  sha256?: string;
  /** Set when nothing was stored: why. */
  notStored?: string;
}

export interface SnapshotInfo {
  bucket: string;
  key: string;
  size: number;
  sha256: string;
  etcdSha256: string;
  node: string;
  compression?: string;
  encrypted?: boolean;
  /** With Object Lock: when the stored version's retention ends. */
  retainUntil?: string;
  verified?: boolean;
  verifiedAt?: string;
  /** Full: the plain snapshot was read back (trailer, database structure); StoredBytes: only the encrypted bytes. */
  verification?: 'Full' | 'StoredBytes';
  /** From the verified database: etcd's revision and the number of keys (revisions) it holds. */
  revision?: number;
  keys?: number;
  /** The cluster's secrets stored beside the snapshot (verified with it when `verified`). */
  secrets?: StoredSecrets;
  /** Each of spec.backupStorage.copies, in order: the same stored bytes at another destination, or why not. */
  copies?: StoredCopy[];
}

/** One copy of the stored bytes (status.snapshot.copies[]): where, and what was proved; `error` when it is missing. */
export interface StoredCopy {
  name: string;
  bucket: string;
  key: string;
  size?: number;
  sha256?: string;
  retainUntil?: string;
  verified?: boolean;
  verification?: 'Full' | 'StoredBytes';
  /** The cluster secrets stored beside this copy. */
  secretsKey?: string;
  /** A copy with required false that was not stored: why. */
  error?: string;
}

/**
 * What the snapshot Job writes into `status.report` (a merge patch on the status subresource): its only way
 * to tell the controller what happened. The controller derives every other status field from it and the Job.
 */
export interface BackupReport {
  /** Running while streaming; Succeeded once the object is complete in S3; Failed when this attempt failed. */
  state: 'Running' | 'Succeeded' | 'Failed';
  /** The pod that wrote the report (one per attempt). */
  pod?: string;
  startedAt?: string;
  updatedAt?: string;
  bytesUploaded?: number;
  /** Succeeded: the stored object (and what verifying it proved). */
  snapshot?: SnapshotInfo;
  /** Failed: the one-line cause, worded by the Job (src/job/errors.ts). */
  message?: string;
  /** Failed: whether another attempt could succeed (false: bad configuration, missing Secret, refused object, ...). */
  retryable?: boolean;
}

export interface BackupStatus {
  conditions?: Condition[];
  phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  cluster?: string;
  startTime?: string;
  completionTime?: string;
  snapshot?: SnapshotInfo;
  progress?: { bytesUploaded?: number };
  message?: string;
  observedGeneration?: number;
  report?: BackupReport;
  deletion?: { message?: string; startedAt?: string };
  restoreTest?: RestoreTestStatus;
  restoreTestReport?: RestoreTestReport;
}

/** What the restore test proved about the restored etcd (the Job's check step). */
export interface RestoreTestFigures {
  etcdVersion?: string;
  revision?: number;
  keys?: number;
  servedKeys?: number;
}

/** What the restore-test Job writes into `status.restoreTestReport` (a merge patch on the status subresource). */
export interface RestoreTestReport extends RestoreTestFigures {
  state: 'Running' | 'Succeeded' | 'Failed';
  /** The request it answers: the schedule's slot or spec.restoreTest.requestedAt (the backup's creation if unset). */
  requestedAt?: string;
  /** fetch (download, decrypt, decompress, verify) or check (the restored etcd). */
  step?: 'fetch' | 'check';
  pod?: string;
  startedAt?: string;
  updatedAt?: string;
  message?: string;
}

/** The latest restore test of a backup, as the controller records it. */
export interface RestoreTestStatus extends RestoreTestFigures {
  requestedAt?: string;
  result?: 'Running' | 'Succeeded' | 'Failed';
  startTime?: string;
  completionTime?: string;
  durationSeconds?: number;
  etcdImage?: string;
  message?: string;
}
