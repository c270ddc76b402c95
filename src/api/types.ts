// TypeScript views of the two CRDs (crds/*.yaml is the source of truth; these describe defaulted, valid objects).

import type { Condition } from '../metacontroller/types.js';

export interface SecretKeyRef {
  name: string;
  key: string;
}

export interface BackupSpec {
  talosControlPlaneRef?: { name: string };
  talosConfigSecretRef?: { name: string; key: string };
  clusterName?: string;
  endpoints?: string[];
  node?: string;
  backupStorage: {
    s3: {
      bucket: string;
      region: string;
      accessKeyID?: SecretKeyRef;
      secretAccessKey?: SecretKeyRef;
      endpoint?: string;
      insecureSkipTLSVerify: boolean;
      forcePathStyle?: boolean;
      caBundle?: { kind: 'Secret' | 'ConfigMap'; name: string; key: string };
      prefix: string;
      serverSideEncryption?: { algorithm: 'AES256' | 'aws:kms'; kmsKeyID?: string };
      objectLock?: { mode: 'GOVERNANCE' | 'COMPLIANCE'; retainDays: number };
    };
  };
  compression: 'none' | 'gzip' | 'zstd';
  encryption?: { age: { recipients: string[]; identitySecretRef?: SecretKeyRef } };
  deletionPolicy: 'Retain' | 'Delete';
  verify: boolean;
  job: {
    activeDeadlineSeconds: number;
    backoffLimit: number;
    resources?: { limits?: Record<string, string | number>; requests?: Record<string, string | number> };
    nodeSelector?: Record<string, string>;
    tolerations?: Record<string, unknown>[];
    priorityClassName?: string;
  };
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
}

export interface BackupStatus {
  conditions?: Condition[];
  phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  startTime?: string;
  completionTime?: string;
  message?: string;
  [key: string]: unknown;
}
