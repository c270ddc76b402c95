// The workstation commands that read the cluster: `list`, `backup --from-schedule`, `restore --backup` and
// `restore-test`. They talk to the API server with @kubernetes/client-node (kubeconfig and context as kubectl takes
// them), which only these commands load: the snapshot Job uses its own small client (src/job/kubernetes/in-cluster.ts).

import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { BACKUP_PLURAL, GROUP, SCHEDULE_PLURAL, VERSION } from '../api/constants.js';
import type { RawSettings } from '../contract/settings.js';
import { formatTime, parseTime } from '../api/conditions.js';
import type { BackupStatus } from '../api/types.js';
import { restoreCommand, type RestoreHooks } from '../job/commands.js';
import { isPermanentFailure, JobError } from '../job/errors.js';
import { VerificationError } from '../job/pipeline/verify.js';
import { copyCredentialEnv } from '../contract/copies.js';
import type { RestoreResult } from '../job/pipeline/restore.js';
import {
  backupFromSchedule,
  backupRow,
  backupTable,
  restoreInputs,
  selectBackups,
  storedDestinations,
  withoutReach,
  type ClusterObject,
} from './backups.js';

export interface ClusterFlags {
  kubeconfig?: string | undefined;
  context?: string | undefined;
  namespace?: string | undefined;
}

export interface Cluster {
  namespace: string;
  objects: CustomObjectsApi;
  core: CoreV1Api;
}

/** A failure of a workstation command, worded for a person; `permanent` when trying again cannot help. */
const failure = (message: string, permanent: boolean, cause?: unknown) =>
  new JobError(undefined, message, { permanent, cause });

/** The kubeconfig as kubectl reads it: --kubeconfig, else $KUBECONFIG, else ~/.kube/config; --context and -n over it. */
export function connect(flags: ClusterFlags): Cluster {
  const kc = new KubeConfig();
  try {
    if (flags.kubeconfig) kc.loadFromFile(flags.kubeconfig);
    else kc.loadFromDefault();
  } catch (error) {
    throw failure(`cannot read the kubeconfig: ${(error as Error).message}`, true, error);
  }
  if (flags.context) {
    if (!kc.getContextObject(flags.context))
      throw failure(`the kubeconfig has no context ${JSON.stringify(flags.context)}`, true);
    kc.setCurrentContext(flags.context);
  }
  const namespace = flags.namespace || kc.getContextObject(kc.getCurrentContext())?.namespace || 'default';
  return { namespace, objects: kc.makeApiClient(CustomObjectsApi), core: kc.makeApiClient(CoreV1Api) };
}

/** An API error as one line a person can act on; 4xx but 408/429 cannot pass by trying again. */
function apiFailure(what: string, error: unknown): JobError {
  if (error instanceof ApiException) {
    const body = typeof error.body === 'string' ? safeJson(error.body) : error.body;
    const detail = (body as { message?: string } | undefined)?.message ?? `HTTP ${error.code}`;
    const permanent = error.code >= 400 && error.code < 500 && error.code !== 408 && error.code !== 429;
    return failure(`${what}: ${detail}`, permanent, error);
  }
  return failure(`${what}: ${(error as Error).message}`, false, error);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}

async function getBackup(cluster: Cluster, name: string): Promise<ClusterObject> {
  try {
    return (await cluster.objects.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: cluster.namespace,
      plural: BACKUP_PLURAL,
      name,
    })) as ClusterObject;
  } catch (error) {
    throw apiFailure(`cannot read TalosEtcdBackup ${cluster.namespace}/${name}`, error);
  }
}

export type ListFormat = 'table' | 'json' | 'yaml';

/** `list`: the backups of a namespace (or all), newest first, as a table or as a kubectl List in JSON or YAML. */
export async function listCommand(
  cluster: Cluster,
  opts: { schedule?: string | undefined; format: ListFormat; allNamespaces: boolean },
): Promise<string> {
  let items: ClusterObject[];
  const where = opts.allNamespaces ? 'all namespaces' : `namespace ${cluster.namespace}`;
  try {
    const list = (
      opts.allNamespaces
        ? await cluster.objects.listClusterCustomObject({ group: GROUP, version: VERSION, plural: BACKUP_PLURAL })
        : await cluster.objects.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: cluster.namespace,
            plural: BACKUP_PLURAL,
          })
    ) as { items: ClusterObject[] };
    items = list.items;
  } catch (error) {
    throw apiFailure(`cannot list TalosEtcdBackups in ${where}`, error);
  }
  const selected = selectBackups(items, opts.schedule);
  if (opts.format === 'json' || opts.format === 'yaml') {
    const listObject = { apiVersion: 'v1', kind: 'List', items: selected };
    return opts.format === 'json' ? JSON.stringify(listObject, null, 2) : stringify(listObject).trimEnd();
  }
  if (selected.length === 0)
    return `No TalosEtcdBackups found in ${where}${opts.schedule ? ` for schedule ${opts.schedule}` : ''}.`;
  return backupTable(selected.map(backupRow), opts.allNamespaces);
}

/** `backup --from-schedule S [NAME]`: creates an on-demand backup from the schedule's template. */
export async function backupFromScheduleCommand(
  cluster: Cluster,
  scheduleName: string,
  name: string | undefined,
  now = new Date(),
): Promise<{ name: string; namespace: string; schedule: string }> {
  let schedule: ClusterObject;
  try {
    schedule = (await cluster.objects.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: cluster.namespace,
      plural: SCHEDULE_PLURAL,
      name: scheduleName,
    })) as ClusterObject;
  } catch (error) {
    throw apiFailure(`cannot read TalosEtcdBackupSchedule ${cluster.namespace}/${scheduleName}`, error);
  }
  const body = backupFromSchedule(schedule, now, name);
  try {
    await cluster.objects.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: cluster.namespace,
      plural: BACKUP_PLURAL,
      body,
    });
  } catch (error) {
    throw apiFailure(`cannot create TalosEtcdBackup ${cluster.namespace}/${body.metadata.name}`, error);
  }
  return { name: body.metadata.name, namespace: cluster.namespace, schedule: scheduleName };
}

async function readKey(
  cluster: Cluster,
  ref: { kind: 'Secret' | 'ConfigMap'; name: string; key: string },
  why: string,
): Promise<string> {
  const where = `${ref.kind} ${cluster.namespace}/${ref.name}`;
  let data: Record<string, string> | undefined;
  try {
    data =
      ref.kind === 'Secret'
        ? (await cluster.core.readNamespacedSecret({ name: ref.name, namespace: cluster.namespace })).data
        : (await cluster.core.readNamespacedConfigMap({ name: ref.name, namespace: cluster.namespace })).data;
  } catch (error) {
    throw apiFailure(`cannot read ${where} (${why})`, error);
  }
  const value = data?.[ref.key];
  if (value === undefined) throw failure(`${where} has no key ${JSON.stringify(ref.key)} (${why})`, true);
  return ref.kind === 'Secret' ? Buffer.from(value, 'base64').toString('utf8') : value;
}

export interface RestoreFromBackupOptions {
  /** What the user set on the workstation (flags and this tool's variables, no defaults): how to reach S3. */
  local: RawSettings;
  /** The settings' defaults, under the backup's and the user's. */
  defaults: RawSettings;
  /** Read the S3 keys from the Secrets the backup's spec names, instead of the workstation's own. */
  credentialsFromCluster: boolean;
  hooks: RestoreHooks;
  /** Filled with the S3 keys read from the cluster, so that the caller keeps them out of every message it prints. */
  secrets: string[];
  /** The workstation's environment (a copy's keys: S3_COPY_<N>_ACCESS_KEY_ID, S3_COPY_<N>_SECRET_ACCESS_KEY). */
  env?: NodeJS.ProcessEnv;
  /** Told when a destination failed and the next copy is tried. */
  onFallback?: (message: string) => void;
}

/**
 * `restore --backup NAME`: bucket, key, format and the recorded hashes from the backup's status, the endpoint and
 * region from its spec (the user's own settings win, to reach S3 from where they are), then the verified restore.
 * With copies (spec.backupStorage.copies), `--copy N` restores copy N; without it the primary is tried first, then
 * each stored copy in order while a destination cannot be read or its object is not what the backup recorded
 * (`onFallback` says why); a failure on this side (the output file) stops at once. The user's S3 settings apply to
 * the destination tried first only: the copies are other stores.
 */
export async function restoreFromBackupCommand(
  cluster: Cluster,
  name: string,
  opts: RestoreFromBackupOptions,
): Promise<RestoreResult & { destination: string }> {
  const backup = await getBackup(cluster, name);
  const chosen = opts.local.copy === undefined ? undefined : Number(opts.local.copy);
  if (chosen !== undefined && !(Number.isInteger(chosen) && chosen >= 0))
    throw failure(`--copy must be 0 (the primary) or the number of a copy, got ${opts.local.copy}`, true);
  const order = chosen !== undefined ? [chosen] : storedDestinations(backup);
  const reasons: string[] = [];
  for (const [i, destination] of order.entries()) {
    const inputs = restoreInputs(backup, i === 0 ? opts.local : withoutReach(opts.local), destination);
    const label = destination === 0 ? 'the primary' : `copy ${destination}`;
    const s3: NonNullable<RestoreHooks['s3']> = {};
    if (inputs.caBundle) s3.caBundlePem = await readKey(cluster, inputs.caBundle, "the backup's S3 CA bundle");
    if (opts.credentialsFromCluster) {
      if (!inputs.credentials)
        throw failure(
          `backup ${cluster.namespace}/${name} names no S3 key Secrets for ${label} (it uses the Job's own credentials): drop --s3-credentials-from-cluster and set ${destination === 0 ? 'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY' : `${copyCredentialEnv(destination).accessKeyId} and ${copyCredentialEnv(destination).secretAccessKey}`}`,
          true,
        );
      const why = '--s3-credentials-from-cluster';
      const accessKeyId = await readKey(cluster, { kind: 'Secret', ...inputs.credentials.accessKeyID }, why);
      const secretAccessKey = await readKey(cluster, { kind: 'Secret', ...inputs.credentials.secretAccessKey }, why);
      s3.credentials = { accessKeyId, secretAccessKey };
      opts.secrets.push(accessKeyId, secretAccessKey);
    } else if (destination > 0) {
      // A copy's own keys, under the names the Job uses; else the default chain (AWS_*), as for the primary.
      const names = copyCredentialEnv(destination);
      const accessKeyId = opts.env?.[names.accessKeyId];
      const secretAccessKey = opts.env?.[names.secretAccessKey];
      if (accessKeyId && secretAccessKey) {
        s3.credentials = { accessKeyId, secretAccessKey };
        opts.secrets.push(accessKeyId, secretAccessKey);
      }
    }
    try {
      const result = await restoreCommand(
        { ...opts.defaults, ...inputs.raw },
        { ...opts.hooks, expected: inputs.expected, s3, secrets: inputs.secrets },
      );
      return { ...result, destination: label };
    } catch (error) {
      // Only a destination's fault moves on: it cannot be reached or read, or holds other bytes.
      if (!(error instanceof VerificationError) || i === order.length - 1) {
        if (reasons.length === 0) throw error;
        throw failure(`${reasons.join('; ')}; ${label}: ${(error as Error).message}`, isPermanentFailure(error), error);
      }
      reasons.push(`${label}: ${error.message}`);
      opts.onFallback?.(`${label} could not be restored (${error.message}); trying copy ${order[i + 1]}`);
    }
  }
  throw failure(`backup ${cluster.namespace}/${name} has nothing to restore`, true);
}

export interface RestoreTestOptions {
  /** Wait for the outcome, at most this long; undefined: only ask for the test. */
  waitMs?: number;
  now?: Date;
  pollMs?: number;
}

/**
 * `restore-test NAME`: asks for a restore test of a backup now (spec.restoreTest.requestedAt, later than the last
 * test's request) and, with --wait, waits for its outcome; a failed test is a permanent failure whose message is
 * the test's.
 */
export async function restoreTestCommand(
  cluster: Cluster,
  name: string,
  opts: RestoreTestOptions = {},
): Promise<{ name: string; namespace: string; requestedAt: string; result?: string; message?: string }> {
  const backup = await getBackup(cluster, name);
  const status = (backup.status ?? {}) as BackupStatus;
  let requestedAt = opts.now ?? new Date();
  // The last request: a pending one (spec) or the last answered (status), whichever is later.
  const pending = (backup.spec as { restoreTest?: { requestedAt?: string } } | undefined)?.restoreTest?.requestedAt;
  const last = Math.max(parseTime(pending)?.getTime() ?? 0, parseTime(status.restoreTest?.requestedAt)?.getTime() ?? 0);
  // Requests are compared by their time (seconds): a second request within a second must still be later.
  if (last >= Math.floor(requestedAt.getTime() / 1000) * 1000) requestedAt = new Date(last + 1000);
  const at = formatTime(requestedAt);
  try {
    await cluster.objects.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace: cluster.namespace,
        plural: BACKUP_PLURAL,
        name,
        body: { spec: { restoreTest: { requestedAt: at } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  } catch (error) {
    throw apiFailure(`cannot ask for a restore test of TalosEtcdBackup ${cluster.namespace}/${name}`, error);
  }
  const asked = { name, namespace: cluster.namespace, requestedAt: at };
  if (opts.waitMs === undefined) return asked;
  const until = Date.now() + opts.waitMs;
  for (;;) {
    const test = ((await getBackup(cluster, name)).status as BackupStatus | undefined)?.restoreTest;
    if (test?.requestedAt === at && (test.result === 'Succeeded' || test.result === 'Failed')) {
      if (test.result === 'Failed')
        throw new JobError('restoreTest', `${name}: ${test.message ?? 'the restore test failed'}`, { permanent: true });
      return { ...asked, result: test.result, ...(test.message && { message: test.message }) };
    }
    if (Date.now() >= until) {
      const where = test?.requestedAt === at ? `it is ${test.result ?? 'asked for'}` : 'it has not started';
      throw failure(
        `the restore test of ${cluster.namespace}/${name} asked for at ${at} did not end within ${Math.round(opts.waitMs / 1000)}s (${where}): kubectl describe teb -n ${cluster.namespace} ${name}`,
        false,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, opts.pollMs ?? 2000));
  }
}
