// What an observed Job says about its run, read from its status as the Job controller writes it.

import type { KubernetesObject } from '../metacontroller/types.js';

export interface JobState {
  /** Pods running now. */
  active: number;
  /** Failed pods so far (each one an attempt). */
  failedPods: number;
  startTime?: string;
  /** The Job gave up: condition Failed (or, from Kubernetes 1.31, FailureTarget, set while its pods stop). */
  failed?: { reason: string; message: string; time?: string };
  /** The Job succeeded: condition Complete (or SuccessCriteriaMet). */
  complete?: { time?: string };
}

interface JobCondition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

interface JobStatus {
  active?: number;
  failed?: number;
  startTime?: string;
  completionTime?: string;
  conditions?: JobCondition[];
}

/** A failed Job's reason and message, as the backup's messages quote them. */
export function failureText(failed: NonNullable<JobState['failed']>): string {
  return `${failed.reason}${failed.message ? `: ${failed.message}` : ''}`;
}

export function readJobState(job: KubernetesObject): JobState {
  const status = (job.status ?? {}) as JobStatus;
  // Only well-formed entries count: a hand-written or foreign status must not crash the hook.
  const conditions = (Array.isArray(status.conditions) ? status.conditions : []).filter(
    (c): c is JobCondition => typeof c === 'object' && c !== null,
  );
  const isTrue = (type: string) => conditions.find((c) => c.status === 'True' && c.type === type);
  // Failed is final; FailureTarget (Kubernetes 1.31+) comes first, while the pods stop.
  const failed = isTrue('Failed') ?? isTrue('FailureTarget');
  const complete = isTrue('Complete') ?? isTrue('SuccessCriteriaMet');
  return {
    active: typeof status.active === 'number' ? status.active : 0,
    failedPods: typeof status.failed === 'number' ? status.failed : 0,
    ...(typeof status.startTime === 'string' && { startTime: status.startTime }),
    ...(failed && {
      failed: {
        reason: failed.reason || 'Failed',
        message: failed.message ?? '',
        ...(failed.lastTransitionTime && { time: failed.lastTransitionTime }),
      },
    }),
    ...(!failed &&
      complete && {
        complete: {
          ...((status.completionTime ?? complete.lastTransitionTime) && {
            time: status.completionTime ?? complete.lastTransitionTime,
          }),
        },
      }),
  };
}
