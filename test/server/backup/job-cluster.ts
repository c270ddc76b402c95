// The world the snapshot Job runs in, for test/server/backup/job-run.test.ts and job-controller.test.ts: the real control
// plane (kube-apiserver with an audit log of what the Jobs' service accounts do, the real Job controller and
// garbage collector), the test kubelet running the pods as local processes of this checkout (the image's
// configuration read from the Dockerfile), a real etcd behind the Talos API double (mutual TLS), and Ceph RGW.
//
// Metacontroller's part is played by applyAttachments(): the backup hook's attachments are created as
// Metacontroller creates them (common/manage_children.go): group by group in its GVK order (sortGvkKeys),
// each with a controller ownerReference to the backup (controller, blockOwnerDeletion) and the
// `metacontroller.k8s.io/decorator-controller` annotation naming the DecoratorController of
// metacontroller/backup-controller.yaml. (The Metacontroller stand-in itself lives in test/doubles/metacontroller.ts.)

import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before } from 'node:test';
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { parse } from 'yaml';
import {
  API_VERSION,
  BACKUP_KIND,
  BACKUP_PLURAL,
  GROUP,
  JOB_KEY,
  SCHEDULED_TIME_ANNOTATION,
  VERSION,
} from '../../../src/api/constants.js';
import { packageRoot } from '../../../src/api/crds.js';
import type { JobImage } from '../../../src/server/backup/job.js';
import { syncBackup, type BackupSyncResult } from '../../../src/server/backup/sync.js';
import type { DecoratorSyncRequest, KubernetesObject } from '../../../src/server/metacontroller/types.js';
import { etcdBinary } from '../../harness/binaries.js';
import { startControlPlane, type ControlPlane } from '../../harness/control-plane.js';
import { startKubelet, type Kubelet, type PodRun } from '../../doubles/kubelet.js';
import { sortGvkKeys } from '../../doubles/metacontroller.js';
import { ownDir } from '../../harness/processes.js';
import { buildImage, parseDockerfile } from '../../image/docker-recipe.js';
import { startEtcd, type Etcd } from '../../harness/etcd.js';
import { createTalosPki, talosconfigYaml, type TalosPki } from '../../harness/pki.js';
import { startRgw, type Rgw } from '../../harness/rgw.js';
import { startTalosDouble, type TalosDouble } from '../../doubles/talos.js';

export const NAMESPACE = 'talos-backup';
export const BUCKET = 'etcd-backups';
export const IMAGE: JobImage = { image: 'talos-etcd-backup:test', pullPolicy: 'IfNotPresent', pullSecrets: [] };
/** The DecoratorController's name (metadata.name of metacontroller/backup-controller.yaml). */
export const DECORATOR = (
  parse(readFileSync(join(packageRoot(), 'metacontroller', 'backup-controller.yaml'), 'utf8')) as {
    metadata: { name: string };
  }
).metadata.name;
export const DECORATOR_ANNOTATION = 'metacontroller.k8s.io/decorator-controller';
/** etcd's release images, as the restore-test Job names them, mapped to the etcd binaries built here. */
export const ETCD_IMAGES = {
  'gcr.io/etcd-development/etcd:v3.5.': { paths: { '/usr/local/bin': dirname(etcdBinary('3.5', 'etcd')) } },
  'gcr.io/etcd-development/etcd:v3.6.': { paths: { '/usr/local/bin': dirname(etcdBinary('3.6', 'etcd')) } },
};
/** The finalizer Metacontroller puts on every backup, since the DecoratorController has a finalize hook. */
export const DECORATOR_FINALIZER = `metacontroller.io/decoratorcontroller-${DECORATOR}`;
/**
 * What the Jobs' pods get on top of what the Job says: short progress intervals, 5 MiB parts, and a first report
 * that waits 15 s (not 60) for a permission that never comes (the windows measured here are ~2 s at 5 QPS).
 */
export const POD_ENV = {
  PROGRESS_INTERVAL_SECONDS: '0.1',
  S3_PART_SIZE_MIB: '5',
  REPORT_PERMISSION_WAIT_SECONDS: '15',
};

export type Obj = KubernetesObject & Record<string, any>;

/** One request as the API server's audit log recorded it (level RequestResponse for status patches). */
export interface AuditEvent {
  verb: string;
  user: { username: string };
  objectRef?: { resource?: string; subresource?: string; name?: string; namespace?: string; apiGroup?: string };
  responseStatus?: { code?: number; message?: string };
  requestObject?: any;
  responseObject?: any;
  requestURI: string;
  stage: string;
}

export interface JobCluster {
  cp: ControlPlane;
  kubelet: Kubelet;
  rgw: Rgw;
  etcd: Etcd;
  /** The keys written into etcd before the tests. */
  keys: Map<string, string>;
  pki: TalosPki;
  /** cp-1: the real etcd's snapshot. */
  talos: TalosDouble;
  /** cp-big: 48 MiB of synthetic snapshot (several 5 MiB parts), for progress and abort tests. */
  big: TalosDouble;
  talosconfig: string;
  core: CoreV1Api;
  batch: BatchV1Api;
  custom: CustomObjectsApi;
  objects: KubernetesObjectApi;
  /** A scratch directory (removed at the end). */
  dir: string;
  /** A new TalosEtcdBackup, as kubectl apply would create it (a distinct scheduled time, so a distinct key). */
  createBackup(opts?: {
    talosconfigSecret?: string;
    s3Secret?: string;
    finalizer?: boolean;
    spec?: (spec: Record<string, any>) => Record<string, any>;
  }): Promise<Obj>;
  /** The backup as the API server has it now. */
  backupNow(name: string): Promise<Obj>;
  /** The Job as the API server has it now (raw JSON, as Metacontroller would hand it to the hook). */
  jobNow(name: string): Promise<Obj | undefined>;
  /** The hook's answer for the backup now, with its Jobs (if any) as the API server has them. */
  sync(backupName: string, related?: DecoratorSyncRequest['related']): Promise<BackupSyncResult>;
  /** Metacontroller's create of missing attachments; returns the `Kind/name`s in the order created. */
  applyAttachments(
    backup: Obj,
    attachments: KubernetesObject[],
    opts?: { skip?: (o: KubernetesObject) => boolean },
  ): Promise<string[]>;
  /** Metacontroller's delete of attachments no longer desired: Background propagation, UID precondition. */
  deleteAttachments(backup: Obj): Promise<void>;
  /** First sync, attachments created as Metacontroller would; returns the Job's name and the creates in order. */
  startJob(
    backup: Obj,
    opts?: { skip?: (o: KubernetesObject) => boolean },
  ): Promise<{ jobName: string; created: string[] }>;
  /** startJob, then waits until the Job's (first) pod has stopped. */
  runJob(
    backup: Obj,
    opts?: { skip?: (o: KubernetesObject) => boolean },
  ): Promise<{ jobName: string; run: PodRun; created: string[] }>;
  /** Waits until the Job has condition Complete or Failed (True) and returns it as the API server has it. */
  jobFinished(name: string, timeoutMs?: number): Promise<Obj>;
  /** Metacontroller's UpdateStatus of the backup with the hook's status (resourceVersion as read). */
  writeStatus(backupName: string, status: Record<string, unknown>): Promise<Obj>;
  /** The audit log's events for a service account of NAMESPACE (ResponseComplete stage). */
  audit(serviceAccount?: string): Promise<AuditEvent[]>;
  /** Stops everything it started and removes its directory. */
  stop(): Promise<void>;
  /** A request to the API server with a bearer token (a pod's own). */
  asToken(
    token: string,
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
  ): Promise<{ status: number; message: string; body: any }>;
}

const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: RequestResponse
    userGroups: ["system:serviceaccounts:${NAMESPACE}"]
    resources: [{ group: "${GROUP}", resources: ["${BACKUP_PLURAL}/status"] }]
  - level: Metadata
    userGroups: ["system:serviceaccounts:${NAMESPACE}"]
  - level: None
`;

const b64 = (text: string) => Buffer.from(text).toString('base64');

/**
 * Metacontroller's create of missing attachments (common/manage_children.go): group by group in its GVK order
 * (group, version, kind: ServiceAccount, Job, Role, RoleBinding; sortGvkKeys) (by name within a group), each with its last-applied annotation, the
 * DecoratorController annotation and a controller ownerReference to the parent. Returns the `Kind/name`s created.
 */
export async function createAsMetacontroller(
  objects: KubernetesObjectApi,
  parent: Obj,
  attachments: KubernetesObject[],
  opts: { skip?: (o: KubernetesObject) => boolean } = {},
): Promise<string[]> {
  const key = (o: KubernetesObject) => `${o.kind}.${o.apiVersion}`;
  const created: string[] = [];
  for (const group of sortGvkKeys([...new Set(attachments.map(key))])) {
    for (const desired of attachments
      .filter((o) => key(o) === group)
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
      if (opts.skip?.(desired)) continue;
      const object = structuredClone(desired) as Obj;
      object.metadata.annotations = {
        ...object.metadata.annotations,
        [DECORATOR_ANNOTATION]: DECORATOR,
        'metacontroller.k8s.io/last-applied-configuration': JSON.stringify(desired),
      };
      object.metadata.ownerReferences = [
        ...((object.metadata.ownerReferences as unknown[]) ?? []),
        {
          apiVersion: parent.apiVersion,
          kind: parent.kind,
          name: parent.metadata.name,
          uid: parent.metadata.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ];
      await objects.create(object as never);
      created.push(`${object.kind}/${object.metadata.name}`);
    }
  }
  return created;
}

/** The image's configuration as the Dockerfile sets it (ENTRYPOINT, CMD, WORKDIR, ENV), without building. */
export async function dockerfileImage() {
  const config = await buildImage({
    dockerfile: parseDockerfile(readFileSync(join(packageRoot(), 'Dockerfile'), 'utf8')),
    context: '',
    root: '',
    configOnly: true,
    run: async () => {},
  });
  return {
    ...(config.entrypoint && { entrypoint: config.entrypoint }),
    ...(config.cmd && { cmd: config.cmd }),
    workingDir: config.workdir,
    env: config.env,
  };
}

export async function startJobCluster(): Promise<JobCluster> {
  const stops: (() => Promise<unknown>)[] = [];
  let stopped = false;
  const stopAll = async () => {
    if (stopped) return;
    stopped = true;
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  };
  try {
    const dir = await mkdtemp(join(tmpdir(), 'job-cluster-'));
    const owned = ownDir(dir);
    stops.push(async () => {
      await rm(dir, { recursive: true, force: true });
      owned.release();
    });
    const policy = join(dir, 'audit-policy.yaml');
    const auditLog = join(dir, 'audit.log');
    await writeFile(policy, AUDIT_POLICY);

    // Started side by side; whatever started is stopped even if another failed.
    const started = await Promise.allSettled([
      startControlPlane({
        apiServerArgs: [
          `--audit-policy-file=${policy}`,
          `--audit-log-path=${auditLog}`,
          '--audit-log-mode=blocking',
          '--audit-log-format=json',
        ],
      }),
      startRgw(),
      startEtcd(),
    ]);
    for (const s of started) if (s.status === 'fulfilled') stops.push(() => s.value.stop());
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    const [cp, rgw, etcd] = started.map((s) => (s as PromiseFulfilledResult<unknown>).value) as [
      ControlPlane,
      Rgw,
      Etcd,
    ];
    await cp.installCrds();
    const keys = await etcd.putMany(2000, 'registry/job/');
    const pki = await createTalosPki();
    const client = await pki.clientCert(['os:etcd:backup']);
    const talos = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    stops.push(() => talos.stop());
    const db = Buffer.alloc(48 * 1024 * 1024, 7);
    const big = await startTalosDouble({
      pki,
      hostname: 'cp-big',
      source: Buffer.concat([db, createHash('sha256').update(db).digest()]),
    });
    stops.push(() => big.stop());
    const talosconfig = talosconfigYaml({
      context: 'prod',
      endpoints: [talos.endpoint],
      caPem: pki.caPem,
      certPem: client.certPem,
      keyPem: client.keyPem,
    });
    const bigTalosconfig = talosconfigYaml({
      context: 'prod',
      endpoints: [big.endpoint],
      caPem: pki.caPem,
      certPem: client.certPem,
      keyPem: client.keyPem,
    });
    await rgw.createBucket(BUCKET);

    const kc = await cp.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const batch = kc.makeApiClient(BatchV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const objects = KubernetesObjectApi.makeApiClient(kc);
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
    for (const [name, data] of [
      ['etcd-backup', { config: b64(talosconfig) }],
      ['etcd-backup-big', { config: b64(bigTalosconfig) }],
      ['s3-credentials', { 'access-key-id': b64(rgw.accessKeyId), 'secret-access-key': b64(rgw.secretAccessKey) }],
    ] as const) {
      await core.createNamespacedSecret({ namespace: NAMESPACE, body: { metadata: { name }, data } });
    }

    const image = await dockerfileImage();
    const kubelet = await startKubelet({
      controlPlane: cp,
      imagePaths: { [image.workingDir]: packageRoot() },
      image,
      images: ETCD_IMAGES,
      extraEnv: POD_ENV,
    });
    stops.push(() => kubelet.stop());

    let count = 0;
    const backupNow = async (name: string): Promise<Obj> =>
      (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NAMESPACE,
        plural: BACKUP_PLURAL,
        name,
      })) as Obj;
    const jobNow = async (name: string): Promise<Obj | undefined> =>
      (
        custom.getNamespacedCustomObject({
          group: 'batch',
          version: 'v1',
          namespace: NAMESPACE,
          plural: 'jobs',
          name,
        }) as Promise<Obj>
      ).catch((err: { code?: number }) => {
        if (err.code === 404) return undefined;
        throw err;
      });

    const cluster: JobCluster = {
      cp,
      kubelet,
      rgw,
      etcd,
      keys,
      pki,
      talos,
      big,
      talosconfig,
      core,
      batch,
      custom,
      objects,
      dir,
      stop: stopAll,
      async createBackup(opts = {}) {
        count += 1;
        const spec: Record<string, any> = {
          talosConfigSecretRef: { name: opts.talosconfigSecret ?? 'etcd-backup', key: 'config' },
          clusterName: 'prod',
          backupStorage: {
            s3: {
              bucket: BUCKET,
              region: rgw.region,
              endpoint: rgw.endpoint,
              accessKeyID: { name: opts.s3Secret ?? 's3-credentials', key: 'access-key-id' },
              secretAccessKey: { name: opts.s3Secret ?? 's3-credentials', key: 'secret-access-key' },
            },
          },
        };
        const time = new Date(Date.UTC(2026, 10, 21, 10, 0, count)).toISOString().replace('.000Z', 'Z');
        return (await custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NAMESPACE,
          plural: BACKUP_PLURAL,
          body: {
            apiVersion: API_VERSION,
            kind: BACKUP_KIND,
            metadata: {
              name: `job-run-${count}`,
              namespace: NAMESPACE,
              annotations: { [SCHEDULED_TIME_ANNOTATION]: time },
              ...(opts.finalizer && { finalizers: [DECORATOR_FINALIZER] }),
            },
            spec: opts.spec ? opts.spec(spec) : spec,
          },
        })) as Obj;
      },
      backupNow,
      jobNow,
      async sync(backupName, related = {}) {
        const object = await backupNow(backupName);
        const jobs: Record<string, Obj> = {};
        for (const jobName of [`${backupName}-snapshot`, `${backupName}-restore-test`]) {
          const job = await jobNow(jobName);
          if (job) jobs[jobName] = job;
        }
        return syncBackup({ object, attachments: { [JOB_KEY]: jobs }, related }, new Date(), IMAGE);
      },
      applyAttachments: (backup, attachments, opts = {}) => createAsMetacontroller(objects, backup, attachments, opts),
      async deleteAttachments(backup) {
        const uid = backup.metadata.uid;
        for (const [apiVersion, kind] of [
          ['batch/v1', 'Job'],
          ['rbac.authorization.k8s.io/v1', 'Role'],
          ['rbac.authorization.k8s.io/v1', 'RoleBinding'],
          ['v1', 'ServiceAccount'],
        ] as const) {
          const list = await objects.list(apiVersion, kind, NAMESPACE);
          for (const o of list.items.filter((i) => i.metadata?.ownerReferences?.some((r) => r.uid === uid))) {
            await objects.delete(
              { apiVersion, kind, metadata: { name: o.metadata!.name!, namespace: NAMESPACE } },
              undefined,
              undefined,
              undefined,
              undefined,
              'Background',
              { preconditions: { uid: o.metadata!.uid! } },
            );
          }
        }
      },
      async startJob(backup, opts = {}) {
        const { response } = syncBackup(
          { object: await backupNow(backup.metadata.name), attachments: {}, related: {} },
          new Date(),
          IMAGE,
        );
        const job = response.attachments.find((a) => a.kind === 'Job');
        if (!job) throw new Error(`the hook attached no Job: ${JSON.stringify(response.status)}`);
        const created = await cluster.applyAttachments(backup, response.attachments, opts);
        return { jobName: job.metadata.name, created };
      },
      async runJob(backup, opts = {}) {
        const { jobName, created } = await cluster.startJob(backup, opts);
        const run = await kubelet.waitForPod({ namespace: NAMESPACE, job: jobName }, 'Terminated', 120_000);
        return { jobName, run, created };
      },
      async jobFinished(name, timeoutMs = 60_000) {
        return kubelet.waitFor(
          `Job ${name} to finish`,
          async () => {
            const job = await jobNow(name);
            const conditions =
              (job?.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? [];
            return conditions.some((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True') && job;
          },
          timeoutMs,
        );
      },
      async writeStatus(backupName, status) {
        const current = await backupNow(backupName);
        return (await custom.replaceNamespacedCustomObjectStatus({
          group: GROUP,
          version: VERSION,
          namespace: NAMESPACE,
          plural: BACKUP_PLURAL,
          name: backupName,
          body: { ...current, status },
        })) as Obj;
      },
      async audit(serviceAccount) {
        const text = await readFile(auditLog, 'utf8').catch(() => '');
        return text
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as AuditEvent)
          .filter(
            (e) =>
              e.stage === 'ResponseComplete' &&
              (serviceAccount === undefined ||
                e.user.username === `system:serviceaccount:${NAMESPACE}:${serviceAccount}`),
          );
      },
      asToken(token, method, path, body, contentType = 'application/merge-patch+json') {
        return new Promise((resolve, reject) => {
          const payload = body === undefined ? undefined : JSON.stringify(body);
          const req = request(
            {
              host: cp.host,
              port: cp.port,
              path,
              method,
              ca: cp.caPem,
              headers: {
                authorization: `Bearer ${token}`,
                accept: 'application/json',
                ...(payload !== undefined && { 'content-type': contentType }),
              },
            },
            (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (c: string) => (text += c));
              res.on('end', () => {
                let parsed: any = text;
                try {
                  parsed = JSON.parse(text);
                } catch {
                  // not JSON
                }
                resolve({
                  status: res.statusCode ?? 0,
                  message: typeof parsed === 'object' ? (parsed?.message ?? '') : text,
                  body: parsed,
                });
              });
            },
          );
          req.on('error', reject);
          req.end(payload);
        });
      },
    };
    return cluster;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** node:test: a JobCluster started in `before` and stopped in `after` of the enclosing suite or file. */
export function useJobCluster(): () => JobCluster {
  let cluster: JobCluster | undefined;
  before(
    async () => {
      cluster = await startJobCluster();
    },
    { timeout: 180_000 },
  );
  after(async () => {
    await cluster?.stop();
  });
  return () => {
    if (!cluster) throw new Error('useJobCluster(): not started yet');
    return cluster;
  };
}

/** Merge-patch content type for client-node's patch calls. */
export const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
