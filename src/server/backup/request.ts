// What the backup hooks read from Metacontroller's request: the backup's identity, its checked spec, its Jobs.

import { JOB_KEY } from '../../api/constants.js';
import { specProblems } from '../../api/spec-checks.js';
import type { BackupSpec } from '../../api/types.js';
import { validateBackupSpec } from '../../api/validation.js';
import { BACKUP_MESSAGE } from '../conditions.js';
import type { DecoratorSyncRequest, KubernetesObject } from '../metacontroller/types.js';
import type { BackupRef } from './job.js';
import { relatedObject } from './talos-source.js';

export function backupRef(object: KubernetesObject): BackupRef {
  const { name, namespace, uid, creationTimestamp, annotations } = object.metadata;
  return { name, namespace: namespace ?? '', uid: uid ?? '', creationTimestamp, annotations };
}

export type SpecCheck = { ok: true; spec: BackupSpec } | { ok: false; message: string };

/** The spec as the CRD's schema and its rules check it (the API server may not have: an upgraded CRD, a replay). */
export function checkSpec(object: KubernetesObject): SpecCheck {
  const validated = validateBackupSpec(object.spec);
  if (!validated.ok) return { ok: false, message: `${BACKUP_MESSAGE.invalidSpec}${validated.problems.join('; ')}` };
  const problems = specProblems(validated.value);
  if (problems.length > 0) return { ok: false, message: `${BACKUP_MESSAGE.invalidSpec}${problems.join('; ')}` };
  return { ok: true, spec: validated.value };
}

/** An attached Job by name, keyed by name (hook v1) or namespace/name (hook v2). */
export function observedJob(request: DecoratorSyncRequest, name: string): KubernetesObject | undefined {
  return (
    relatedObject(request.attachments, JOB_KEY, name) ??
    relatedObject(request.attachments, JOB_KEY, `${request.object.metadata.namespace ?? ''}/${name}`)
  );
}
