// The whole product on one machine, on a real Kubernetes control plane: etcd 3.6 behind the Talos API double
// (mutual TLS) as the cluster being backed up, Ceph RGW as S3, the real hook server (one or more replicas), the real
// kube-apiserver, Job controller and garbage collector (test/harness/control-plane.ts), the Metacontroller stand-in
// applying the hooks' answers through the API (test/doubles/metacontroller.ts) and the test kubelet running every
// Job's pod as a local process of this checkout (test/doubles/kubelet.ts). Time is simulated for the hooks and
// Metacontroller (cron slots, resyncs) while the API server, the Job controller and the snapshots run in real
// time. Used by `npm run demo` and test/e2e/rehearsal.test.ts.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { BatchV1Api, CoreV1Api } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { API_VERSION, BACKUP_KIND, SCHEDULE_KIND } from '../../src/api/constants.js';
import { packageRoot } from '../../src/api/crds.js';
import type { JobImage } from '../../src/server/backup/job.js';
import type { KubernetesObject } from '../../src/server/metacontroller/types.js';
import { dockerfileImage, ETCD_IMAGES } from '../server/backup/job-cluster.js';
import { startControlPlane, type ControlPlane } from '../harness/control-plane.js';
import { startKubelet, type Kubelet } from '../doubles/kubelet.js';
import {
  installTalosOperatorCrds,
  startMetacontroller,
  type MetacontrollerStandIn,
} from '../doubles/metacontroller.js';
import { restoreSnapshot, startEtcd, type Etcd } from '../harness/etcd.js';
import { createTalosPki, talosconfigYaml } from '../harness/pki.js';
import { startRgw, type Rgw } from '../harness/rgw.js';
import { startTalosDouble, type TalosDouble } from '../doubles/talos.js';
import { startServer, type RunningServer } from '../helpers/server.js';

export const NAMESPACE = 'talos-backup';
export const BUCKET = 'etcd-backups';
export const SCHEDULE = 'daily-backup-schedule';
/** The cluster being backed up runs the etcd Talos ships today. */
export const ETCD_VERSION = '3.6';

export type KubeObject = KubernetesObject & Record<string, any>;

const JOB_IMAGE: JobImage = { image: 'talos-etcd-backup:rehearsal', pullPolicy: 'IfNotPresent', pullSecrets: [] };
/**
 * Metacontroller's client rate limit here. Its default (5 QPS, burst 10: the stand-in's default, tested in
 * test/doubles/metacontroller.test.ts) is plenty for a slot every 5 real minutes, but the rehearsal runs a slot every
 * few real seconds, and a slot costs ~15 requests (4 attachments created and deleted, statuses, retention): at 5 QPS
 * the limiter, not the product, would set the pace (measured: `npm run demo` 183 s instead of 52 s).
 */
const METACONTROLLER_QPS = { qps: 50, burst: 100 };
/** What settle() waits for at most (real time); a backup whose Job retries waits the Job controller's backoff. */
const SETTLE_TIMEOUT_MS = 180_000;

export interface RehearsalOptions {
  /** Hook server replicas; Metacontroller's calls rotate through them. Default 1. */
  replicas?: number;
  /** Extra environment for every Job's pod (tests shorten the progress interval). */
  podEnv?: Record<string, string>;
  log?: (line: string) => void;
}

export interface Rehearsal {
  cp: ControlPlane;
  metacontroller: MetacontrollerStandIn;
  kubelet: Kubelet;
  talos: TalosDouble;
  etcd: Etcd;
  rgw: Rgw;
  s3: S3Client;
  servers: RunningServer[];
  /** The hooks' simulated clock. It starts at the real time the rehearsal starts and only advanceTo() moves it. */
  now(): Date;
  /** Moves the simulated clock and lets every controller act until nothing is left to do. */
  advanceTo(time: Date): Promise<void>;
  /**
   * Lets the controllers, the running Jobs and the garbage collector finish what is in flight: Metacontroller has
   * nothing queued, no pod runs or waits, and every Job in the namespace has finished (or is gone).
   */
  settle(): Promise<void>;
  /** Polls `check` (real time) until it returns something other than undefined/false; rejects naming `what`. */
  waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs?: number): Promise<T>;
  /** Restarts hook server `index` (a new server on a new port; Metacontroller's URL list follows). */
  restartServer(index: number): Promise<void>;
  /**
   * The example resources (examples/*.yaml) with the rehearsal's endpoints, applied as `kubectl apply` would;
   * `spec` overrides fields of the schedule's spec, `template` fields of its backup template's spec.
   */
  applyExamples(overrides?: { spec?: Record<string, unknown>; template?: Record<string, unknown> }): Promise<void>;
  backups(): Promise<KubeObject[]>;
  schedule(): Promise<KubeObject | undefined>;
  /** Jobs, ServiceAccounts (but `default`), Roles and RoleBindings in the namespace, as `Kind/name`. */
  helpers(): Promise<string[]>;
  objects(): Promise<{ key: string; size: number }[]>;
  /** Downloads `key`, restores it with etcd 3.6's etcdutl and returns the restored etcd (stop it). */
  restore(key: string): Promise<Etcd>;
  close(): Promise<void>;
}

function exampleDocuments(file: string): KubeObject[] {
  const docs = parseAllDocuments(readFileSync(join(packageRoot(), 'examples', file), 'utf8'));
  return (Array.isArray(docs) ? docs : []).map((d) => d.toJS() as KubeObject).filter(Boolean);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startRehearsal(opts: RehearsalOptions = {}): Promise<Rehearsal> {
  const log = opts.log ?? (() => undefined);
  let now = new Date();
  const clock = () => new Date(now);
  const closers: (() => Promise<unknown>)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    closers.length = 0;
  };
  try {
    const [etcd, rgw, cp, pki] = await Promise.all([
      startEtcd({ version: ETCD_VERSION }),
      startRgw(),
      startControlPlane(),
      createTalosPki(),
    ]);
    closers.push(
      () => etcd.stop(),
      () => rgw.stop(),
      () => cp.stop(),
    );
    const talos = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    closers.push(() => talos.stop());
    await Promise.all([rgw.createBucket(BUCKET), cp.installCrds(), installTalosOperatorCrds(cp)]);
    const admin = await cp.kubeConfig();
    const core = admin.makeApiClient(CoreV1Api);
    const batch = admin.makeApiClient(BatchV1Api);
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
    const s3 = rgw.client();
    log(
      `etcd ${etcd.version} ${etcd.clientUrl}, Talos API ${talos.endpoint} (mTLS), S3 ${rgw.endpoint}, Kubernetes ${cp.version} ${cp.url}`,
    );

    const servers: RunningServer[] = [];
    const startHook = () => startServer({ clock, jobImage: JOB_IMAGE });
    for (let i = 0; i < (opts.replicas ?? 1); i += 1) servers.push(await startHook());
    closers.push(() => Promise.all(servers.map((s) => s.close())));
    const metacontroller = await startMetacontroller({
      kubeConfig: admin,
      hookUrls: () => servers.map((s) => s.url),
      clock,
      settleTimeoutMs: SETTLE_TIMEOUT_MS,
      maxSyncsPerSettle: 2000,
      ...METACONTROLLER_QPS,
    });
    closers.push(() => metacontroller.stop());
    const image = await dockerfileImage();
    const kubelet = await startKubelet({
      controlPlane: cp,
      imagePaths: { [image.workingDir]: packageRoot() },
      image,
      images: ETCD_IMAGES,
      ...(opts.podEnv && { extraEnv: opts.podEnv }),
    });
    closers.push(() => kubelet.stop());

    // The talosconfig Secret Talos itself would create for the example's Talos ServiceAccount (role os:etcd:backup).
    const client = await pki.clientCert(['os:etcd:backup']);
    const talosconfig = talosconfigYaml({
      context: 'default',
      endpoints: [talos.endpoint],
      caPem: pki.caPem,
      certPem: client.certPem,
      keyPem: client.keyPem,
    });

    const unfinishedJobs = async (): Promise<string[]> => {
      const jobs = await batch.listNamespacedJob({ namespace: NAMESPACE });
      return jobs.items
        .filter(
          (j) =>
            !(j.status?.conditions ?? []).some(
              (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True',
            ),
        )
        .map((j) => j.metadata!.name!);
    };
    const waitFor = async <T>(
      what: string,
      check: () => Promise<T | undefined | false>,
      timeoutMs = SETTLE_TIMEOUT_MS,
    ): Promise<T> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const value = await check();
        if (value !== undefined && value !== false) return value;
        if (Date.now() > deadline)
          throw new Error(
            `rehearsal: ${what} did not happen within ${timeoutMs} ms; Metacontroller errors: ${JSON.stringify(metacontroller.errors.slice(-5))}; kubelet problems: ${JSON.stringify(kubelet.problems())}`,
          );
        await sleep(100);
      }
    };
    const settle = async (): Promise<void> => {
      // Each report a Job writes, each pod and Job status, each deletion is an event the controllers act on; the
      // loop ends once a settled Metacontroller finds nothing running and nothing unfinished.
      await waitFor('the controllers and Jobs to settle', async () => {
        await metacontroller.settle();
        if (kubelet.running().length > 0) return false;
        await kubelet.idle();
        if ((await unfinishedJobs()).length > 0) return false;
        await metacontroller.settle();
        return kubelet.running().length === 0 && (await unfinishedJobs()).length === 0;
      });
    };

    const list = (kind: string) => metacontroller.list(API_VERSION, kind, NAMESPACE) as Promise<KubeObject[]>;
    const rehearsal: Rehearsal = {
      cp,
      metacontroller,
      kubelet,
      talos,
      etcd,
      rgw,
      s3,
      servers,
      now: clock,
      settle,
      waitFor,
      async advanceTo(time) {
        if (time < now)
          throw new Error(`the simulated clock cannot go back from ${now.toISOString()} to ${time.toISOString()}`);
        now = new Date(time);
        await settle();
      },
      async restartServer(index) {
        await servers[index]!.close();
        servers[index] = await startHook();
      },
      async applyExamples(overrides = {}) {
        const [credentials] = exampleDocuments('s3-credentials-secret.yaml');
        await core.createNamespacedSecret({
          namespace: NAMESPACE,
          body: {
            metadata: { name: credentials!.metadata.name },
            stringData: { 'access-key-id': rgw.accessKeyId, 'secret-access-key': rgw.secretAccessKey },
          },
        });
        await core.createNamespacedSecret({
          namespace: NAMESPACE,
          body: { metadata: { name: 'etcd-backup' }, stringData: { config: talosconfig } },
        });
        const [example] = exampleDocuments('schedule.yaml');
        const spec = example!.spec as {
          backupTemplate: { spec: Record<string, unknown> & { backupStorage: { s3: Record<string, unknown> } } };
        };
        spec.backupTemplate.spec.backupStorage.s3.endpoint = rgw.endpoint;
        Object.assign(spec.backupTemplate.spec, overrides.template);
        await metacontroller.apply({
          ...example!,
          metadata: { ...example!.metadata, namespace: NAMESPACE },
          spec: { ...spec, ...overrides.spec },
        });
      },
      backups: () => list(BACKUP_KIND),
      schedule: async () => (await list(SCHEDULE_KIND)).find((s) => s.metadata.name === SCHEDULE),
      async helpers() {
        const kinds = [
          ['batch/v1', 'Job'],
          ['v1', 'ServiceAccount'],
          ['rbac.authorization.k8s.io/v1', 'Role'],
          ['rbac.authorization.k8s.io/v1', 'RoleBinding'],
        ] as const;
        const found: string[] = [];
        for (const [apiVersion, kind] of kinds) {
          for (const o of await metacontroller.list(apiVersion, kind, NAMESPACE))
            if (!(kind === 'ServiceAccount' && o.metadata.name === 'default')) found.push(`${kind}/${o.metadata.name}`);
        }
        return found;
      },
      async objects() {
        const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
        return (listed.Contents ?? []).map((o) => ({ key: o.Key!, size: o.Size ?? 0 }));
      },
      async restore(key) {
        const dir = await mkdtemp(join(tmpdir(), 'rehearsal-restore-'));
        try {
          const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
          const file = join(dir, 'snapshot.db');
          await writeFile(file, Buffer.from(await object.Body!.transformToByteArray()));
          return await restoreSnapshot(file, { version: ETCD_VERSION });
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
      close,
    };
    return rehearsal;
  } catch (error) {
    await close();
    throw error;
  }
}
