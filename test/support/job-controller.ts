// A stand-in for Kubernetes' Job controller (batch/v1, restartPolicy Never, completions 1, parallelism 1) on top of
// the fake API (kube-api.ts) and the kubelet emulator (kubelet.ts): every Job in the store gets its pod run as a
// local process (env, Secret/ConfigMap volumes, the service-account token its Role governs), and the Job's status
// is written back as the real controller (1.31+) writes it:
//   - startTime once, active 1 while a pod exists (also a pod stuck in CreateContainerConfigError),
//   - exit 0 → succeeded 1, completionTime, conditions SuccessCriteriaMet then Complete (CompletionsReached),
//   - a failure (non-zero exit, or a signal: exit code 128+n) → podFailurePolicy onExitCodes rules in order
//     (FailJob → FailureTarget + Failed, reason PodFailurePolicy; Ignore → not counted, replaced; Count), then
//     failed > backoffLimit → BackoffLimitExceeded, else a new pod after retryDelayMs,
//   - activeDeadlineSeconds on the simulated clock (tick() and every pod event): FailureTarget at once while the
//     pod gets SIGTERM (SIGKILL after a grace), Failed once it is gone, reason DeadlineExceeded,
//   - a deleted Job's pod gets SIGTERM (SIGKILL after a grace), as the garbage collector deleting it would cause;
//     nothing is written for a Job that is gone.
// Left out: pods as API objects (and so onPodConditions such as DisruptionTarget, which never match here), the
// `ready` count, suspend, Indexed Jobs, completions/parallelism > 1, restartPolicy OnFailure, podReplacementPolicy,
// exponential backoff (retryDelayMs is fixed), terminationGracePeriodSeconds (a fixed 2 s), multi-container pods (the first container runs). Jobs using what is
// left out get a pod record with a configError instead of a run, so a test notices.

import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { FakeKubeApi, KubeObject } from './kube-api.js';
import { prepareContainer, type PodTemplateSpecLike, type PreparedContainer } from './kubelet.js';

export interface JobControllerOptions {
  api: FakeKubeApi;
  /** image path prefix → local directory, e.g. { '/app': packageRoot() } */
  imagePaths: Record<string, string>;
  /** Simulated clock: Job timestamps and activeDeadlineSeconds are measured on it. */
  clock: () => Date;
  /** Extra environment for every pod process (tests only, e.g. to shorten PROGRESS_INTERVAL_SECONDS). */
  extraEnv?: Record<string, string>;
  /** Delay before a failed pod is replaced (real ms; Kubernetes backs off 10 s, 20 s, ...). Default 200. */
  retryDelayMs?: number;
}

export interface PodRun {
  job: string;
  namespace: string;
  /** 1 for the Job's first pod; the pod is named `<job>-<attempt>-local`. */
  attempt: number;
  /** undefined when the pod never started (configErrors) */
  pid?: number;
  startedAt: Date;
  exitCode?: number | null;
  signal?: string | null;
  stdout: string;
  stderr: string;
  configErrors: string[];
}

export interface JobController {
  readonly pods: PodRun[];
  /** Pods running now. */
  running(): PodRun[];
  /** Resolves when no pod runs and no pod start is pending (bounded: rejects after timeoutMs, default 120 s). */
  idle(timeoutMs?: number): Promise<void>;
  /** Sends a signal to the running pod of a Job (fault injection: kill a snapshot mid-stream). */
  kill(namespace: string, job: string, signal?: NodeJS.Signals): boolean;
  /** Re-checks activeDeadlineSeconds against clock() (call after advancing the simulated clock). */
  tick(): void;
  /** Kills every pod (SIGKILL after a short grace), removes temp dirs. Idempotent. */
  stop(): Promise<void>;
}

/** What the real controller gives a pod between SIGTERM and SIGKILL is terminationGracePeriodSeconds (30 s); kept short. */
const GRACE_MS = 2000;
const STOP_GRACE_MS = 1000;
const OUTPUT_LIMIT = 1 << 20;

interface FailurePolicyRule {
  action?: string;
  onExitCodes?: { containerName?: string; operator?: string; values?: number[] };
}

interface JobSpecLike {
  template: PodTemplateSpecLike & { spec: { restartPolicy?: string } };
  backoffLimit?: number;
  activeDeadlineSeconds?: number;
  completions?: number;
  parallelism?: number;
  suspend?: boolean;
  completionMode?: string;
  podFailurePolicy?: { rules?: FailurePolicyRule[] };
}

interface Condition {
  type: string;
  status: 'True';
  lastProbeTime: string;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

interface Pod {
  run: PodRun;
  prepared?: PreparedContainer;
  child?: ChildProcess;
  exited?: Promise<void>;
  killTimer?: NodeJS.Timeout;
}

interface JobState {
  namespace: string;
  name: string;
  uid: string;
  spec: JobSpecLike;
  deleting: boolean;
  startTime?: string;
  completionTime?: string;
  succeeded: number;
  failed: number;
  conditions: Condition[];
  attempts: number;
  pod?: Pod;
  starting: boolean;
  retry?: NodeJS.Timeout;
  /** Set when the deadline passed while a pod still ran: FailureTarget is written, Failed follows its exit. */
  failing?: { reason: string; message: string };
  /** A terminal condition is written: nothing more happens. */
  done: boolean;
  /** The Job was deleted: nothing is written any more. */
  gone: boolean;
}

// Last resort, as in kubelet.ts: a crashed test must not leave pod processes behind.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

const timestamp = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, 'Z');
const TERMINAL = new Set(['Complete', 'Failed', 'SuccessCriteriaMet', 'FailureTarget']);

/** Why this stand-in cannot run the Job faithfully (see the header), or undefined. */
function unsupported(spec: JobSpecLike): string | undefined {
  const restartPolicy = spec.template?.spec?.restartPolicy ?? 'Always';
  if (restartPolicy !== 'Never') return `restartPolicy ${restartPolicy}`;
  if ((spec.completions ?? 1) !== 1 || (spec.parallelism ?? 1) !== 1) return 'completions or parallelism other than 1';
  if (spec.suspend) return 'suspend';
  if (spec.completionMode === 'Indexed') return 'Indexed completion mode';
  if ((spec.template.spec.containers ?? []).length !== 1) return 'more than one container';
  return undefined;
}

export function startJobController(opts: JobControllerOptions): JobController {
  const { api, clock } = opts;
  const retryDelayMs = opts.retryDelayMs ?? 200;
  const pods: PodRun[] = [];
  const states = new Map<string, JobState>(); // `${namespace}/${name}`
  const procs = new Map<PodRun, Pod>(); // pods whose process has not exited, including those of deleted Jobs
  const pending = new Set<Promise<unknown>>(); // pod starts and cleanups in flight
  let stopped = false;
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const child of live) child.kill('SIGKILL');
    });
  }

  const track = <T>(promise: Promise<T>): void => {
    const p = promise.catch(() => undefined).finally(() => pending.delete(p));
    pending.add(p);
  };

  const condition = (type: string, reason: string, message: string): Condition => {
    const now = timestamp(clock());
    return { type, status: 'True', lastProbeTime: now, lastTransitionTime: now, reason, message };
  };

  /** The status the controller derives from its pods; zero counts omitted as the API (omitempty) does. */
  const render = (s: JobState): Record<string, unknown> => {
    const active = (s.pod || s.starting) && !s.failing && !s.done ? 1 : 0;
    return {
      ...(s.conditions.length > 0 && { conditions: s.conditions }),
      ...(s.startTime && { startTime: s.startTime }),
      ...(s.completionTime && { completionTime: s.completionTime }),
      ...(active && { active }),
      ...(s.succeeded && { succeeded: s.succeeded }),
      ...(s.failed && { failed: s.failed }),
      terminating: s.failing && s.pod?.child ? 1 : 0,
      uncountedTerminatedPods: {},
    };
  };

  /** Writes the whole status onto a fresh copy of the Job (the store replaces whole objects). */
  const write = (s: JobState): void => {
    if (stopped || s.gone) return;
    const fresh = api.get('batch/v1', 'Job', s.namespace, s.name);
    if (!fresh) return;
    const status = render(s);
    if (JSON.stringify(fresh.status) === JSON.stringify(status)) return;
    delete fresh.metadata.resourceVersion; // a put keeps a given resourceVersion; a status change must bump it
    api.put({ ...fresh, status });
  };

  const pastDeadline = (s: JobState): boolean => {
    const seconds = s.spec.activeDeadlineSeconds;
    // Measured from status.startTime as stored (whole seconds), like the real controller.
    return seconds !== undefined && s.startTime !== undefined && clock().getTime() - Date.parse(s.startTime) >= seconds * 1000;
  };

  /** SIGTERM now, SIGKILL after the grace, as a pod deletion does. */
  const terminate = (pod: Pod, graceMs: number): void => {
    const child = pod.child;
    if (!child || child.exitCode !== null || child.signalCode !== null || pod.killTimer) return;
    child.kill('SIGTERM');
    pod.killTimer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  };

  /** Drops a pod that never started (configErrors): only its directory is left to remove. */
  const dropPending = (s: JobState): void => {
    const pod = s.pod;
    if (!pod || pod.child) return;
    s.pod = undefined;
    if (pod.prepared) track(pod.prepared.cleanup());
  };

  /** The Job fails: FailureTarget and Failed together, the pod already gone. */
  const fail = (s: JobState, reason: string, message: string): void => {
    clearTimeout(s.retry);
    s.retry = undefined;
    s.conditions.push(condition('FailureTarget', reason, message), condition('Failed', reason, message));
    s.done = true;
    write(s);
  };

  const checkDeadline = (s: JobState): void => {
    if (s.done || s.failing || s.gone || !pastDeadline(s)) return;
    const reason = 'DeadlineExceeded';
    const message = 'Job was active longer than specified deadline';
    if (s.pod?.child) {
      s.failing = { reason, message };
      s.conditions.push(condition('FailureTarget', reason, message));
      write(s);
      terminate(s.pod, GRACE_MS);
      return;
    }
    // A pod that never started is deleted and counts as failed, as a running one would.
    if (s.pod) s.failed += 1;
    dropPending(s);
    fail(s, reason, message);
  };

  /** The first podFailurePolicy rule matching the container's exit code. */
  const matchRule = (s: JobState, exitCode: number): { rule: FailurePolicyRule; index: number } | undefined => {
    const container = s.spec.template.spec.containers[0]?.name;
    const rules = s.spec.podFailurePolicy?.rules ?? [];
    for (const [index, rule] of rules.entries()) {
      const on = rule.onExitCodes;
      if (!on || (on.containerName !== undefined && on.containerName !== container)) continue;
      const listed = (on.values ?? []).includes(exitCode);
      if (on.operator === 'In' ? listed : on.operator === 'NotIn' && !listed) return { rule, index };
    }
    return undefined;
  };

  const onExit = (s: JobState, pod: Pod, code: number | null, signal: NodeJS.Signals | null): void => {
    clearTimeout(pod.killTimer);
    procs.delete(pod.run);
    Object.assign(pod.run, { exitCode: code, signal });
    if (pod.prepared) track(pod.prepared.cleanup());
    if (s.pod === pod) s.pod = undefined;
    if (stopped || s.gone || s.done) return;
    if (s.failing) {
      s.failed += 1;
      s.conditions.push(condition('Failed', s.failing.reason, s.failing.message));
      s.done = true;
      return write(s);
    }
    // The exit code Kubernetes reports for a container killed by a signal: 128 + its number.
    const exitCode = code ?? 128 + (signal ? constants.signals[signal] : 0);
    // The order of the real controller's syncJob: FailJob rule, backoff limit, deadline, then success or a new pod.
    if (exitCode !== 0) {
      const match = matchRule(s, exitCode);
      if (match?.rule.action !== 'Ignore') s.failed += 1;
      if (match?.rule.action === 'FailJob') {
        const container = s.spec.template.spec.containers[0]?.name ?? '';
        const podName = `${s.name}-${pod.run.attempt}-local`;
        return fail(s, 'PodFailurePolicy', `Container ${container} for pod ${s.namespace}/${podName} failed with exit code ${exitCode} matching FailJob rule at index ${match.index}`);
      }
      if (s.failed > (s.spec.backoffLimit ?? 6)) return fail(s, 'BackoffLimitExceeded', 'Job has reached the specified backoff limit');
    } else s.succeeded = 1;
    if (pastDeadline(s)) return fail(s, 'DeadlineExceeded', 'Job was active longer than specified deadline');
    if (s.succeeded) {
      s.completionTime = timestamp(clock());
      s.conditions.push(condition('SuccessCriteriaMet', 'CompletionsReached', 'Reached expected number of succeeded pods'));
      s.conditions.push(condition('Complete', 'CompletionsReached', 'Reached expected number of succeeded pods'));
      s.done = true;
      return write(s);
    }
    write(s);
    s.retry = setTimeout(() => {
      s.retry = undefined;
      sync(s);
    }, retryDelayMs);
  };

  const startPod = async (s: JobState): Promise<void> => {
    s.starting = true;
    const attempt = ++s.attempts;
    write(s); // active 1 (and startTime) as soon as the pod is "created"
    const record = (configErrors: string[]): PodRun => {
      const run: PodRun = { job: s.name, namespace: s.namespace, attempt, startedAt: clock(), stdout: '', stderr: '', configErrors };
      pods.push(run);
      return run;
    };
    const why = unsupported(s.spec);
    if (why) {
      s.starting = false;
      s.pod = { run: record([`job controller stand-in: ${why} is not emulated`]) };
      return;
    }
    const template = structuredClone(s.spec.template);
    const labels = { 'batch.kubernetes.io/job-name': s.name, 'batch.kubernetes.io/controller-uid': s.uid, 'job-name': s.name, 'controller-uid': s.uid };
    // generateName makes the kubelet emulator name the pod `<job>-<attempt>-local`: one name per attempt.
    template.metadata = { ...template.metadata, generateName: `${s.name}-${attempt}-`, labels: { ...template.metadata?.labels, ...labels } };
    let prepared: PreparedContainer;
    try {
      prepared = await prepareContainer(template, { api, namespace: s.namespace, imagePaths: opts.imagePaths });
    } catch (err) {
      // The emulator refuses what it cannot emulate: shown as a pod that cannot start.
      s.starting = false;
      if (!stopped && !s.gone && !s.done) s.pod = { run: record([(err as Error).message]) };
      return;
    }
    s.starting = false;
    if (stopped || s.gone || s.done) return prepared.cleanup();
    const run = record(prepared.configErrors);
    const pod: Pod = { run, prepared };
    s.pod = pod;
    // CreateContainerConfigError: the pod stays Pending (active) until the Job ends some other way.
    if (prepared.configErrors.length > 0) return;

    const [file, ...args] = prepared.command;
    const child = spawn(file!, args, { cwd: prepared.cwd, env: { ...prepared.env, ...opts.extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    pod.child = child;
    procs.set(run, pod);
    run.pid = child.pid;
    const append = (key: 'stdout' | 'stderr') => (chunk: Buffer) => {
      run[key] = (run[key] + chunk.toString('utf8')).slice(-OUTPUT_LIMIT);
    };
    child.stdout!.on('data', append('stdout'));
    child.stderr!.on('data', append('stderr'));
    pod.exited = new Promise<void>((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (!live.delete(child)) return;
        onExit(s, pod, code, signal);
        resolve();
      };
      child.once('close', finish);
      // The executable could not be started: the kubelet reports StartError, exit code 128.
      child.once('error', (err) => {
        if (child.pid !== undefined) return;
        run.stderr += `${err.message}\n`;
        finish(128, null);
      });
    });
  };

  /** What the controller does on every event for a Job: start time, deadline, a pod when none runs. */
  const sync = (s: JobState): void => {
    if (stopped || s.gone || s.done) return;
    s.startTime ??= timestamp(clock());
    checkDeadline(s);
    if (s.done || s.failing) return;
    if (!s.pod && !s.starting && !s.retry && !s.deleting) track(startPod(s));
    else write(s);
  };

  const observe = (type: 'added' | 'modified' | 'deleted', job: KubeObject): void => {
    if (job.apiVersion !== 'batch/v1' || job.kind !== 'Job') return;
    const namespace = job.metadata.namespace ?? '';
    const key = `${namespace}/${job.metadata.name}`;
    let s = states.get(key);
    if (type === 'deleted') {
      if (!s) return;
      states.delete(key);
      s.gone = true;
      clearTimeout(s.retry);
      if (s.pod?.child) terminate(s.pod, GRACE_MS);
      else dropPending(s);
      return;
    }
    if (!s) {
      // Picks up where the status stands (a Job put with a status, or one seen before this controller started).
      const status = (job.status ?? {}) as { startTime?: string; failed?: number; succeeded?: number; conditions?: Condition[] };
      const conditions = Array.isArray(status.conditions) ? status.conditions : [];
      s = {
        namespace,
        name: job.metadata.name,
        uid: job.metadata.uid ?? '',
        spec: job.spec as JobSpecLike,
        deleting: false,
        ...(status.startTime && { startTime: status.startTime }),
        succeeded: status.succeeded ?? 0,
        failed: status.failed ?? 0,
        conditions,
        attempts: 0,
        starting: false,
        done: conditions.some((c) => c.status === 'True' && TERMINAL.has(c.type)),
        gone: false,
      };
      states.set(key, s);
    }
    s.spec = job.spec as JobSpecLike;
    s.deleting = Boolean(job.metadata.deletionTimestamp); // a Job being deleted gets no new pod
    const state = s;
    // Not inside the store's listener: this controller's own writes would nest in it.
    queueMicrotask(() => sync(state));
  };

  const unsubscribe = api.onChange((event) => observe(event.type, event.object));
  for (const job of api.list('batch/v1', 'Job')) observe('added', job);

  const busy = (): string[] => [
    ...[...procs.values()].map((p) => `pod ${p.run.namespace}/${p.run.job}-${p.run.attempt}-local runs`),
    ...[...states.values()].filter((s) => s.starting || s.retry).map((s) => `a pod of ${s.namespace}/${s.name} is about to start`),
    ...(pending.size > 0 ? [`${pending.size} pod start(s) or cleanup(s) in flight`] : []),
  ];

  return {
    pods,
    running: () => [...procs.keys()],
    idle(timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      return new Promise((resolve, reject) => {
        // The first look comes after a macrotask: events queued by a put just before are handled by then.
        const look = (): void => {
          const reasons = busy();
          if (reasons.length === 0) return resolve();
          if (Date.now() >= deadline) return reject(new Error(`job controller not idle after ${timeoutMs} ms: ${reasons.join('; ')}`));
          setTimeout(look, 10);
        };
        setImmediate(look);
      });
    },
    kill(namespace, job, signal = 'SIGTERM') {
      const child = states.get(`${namespace}/${job}`)?.pod?.child;
      if (!child || !live.has(child)) return false;
      return child.kill(signal);
    },
    tick() {
      for (const s of states.values()) checkDeadline(s);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      unsubscribe();
      for (const s of states.values()) {
        clearTimeout(s.retry);
        dropPending(s);
      }
      const exits = [...procs.values()].map((pod) => {
        terminate(pod, STOP_GRACE_MS);
        return pod.exited;
      });
      await Promise.all(exits);
      while (pending.size > 0) await Promise.all(pending);
    },
  };
}
