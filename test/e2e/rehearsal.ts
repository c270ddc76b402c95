// The whole product on one machine, for real, with stand-ins only for what cannot run here: a real etcd behind
// the Talos API double (mutual TLS), Ceph RGW as S3, the real hook server (one or more replicas), the
// Metacontroller stand-in applying its answers to a local Kubernetes API, and the Job controller stand-in running
// every Job's container as a local process. Time is simulated for the controllers (cron slots, resyncs,
// deadlines) while the snapshots stream in real time. Used by `npm run demo` and test/e2e/rehearsal.test.ts.

import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { parseAllDocuments } from 'yaml';
import { API_VERSION, BACKUP_KIND, SCHEDULE_KIND } from '../../src/api/constants.js';
import { packageRoot } from '../../src/api/crds.js';
import type { BackupStatus, ScheduleStatus } from '../../src/api/types.js';
import { restoreSnapshot, startEtcd, type Etcd } from '../support/etcd.js';
import { startJobController, type JobController } from '../support/job-controller.js';
import { startFakeKubeApi, type FakeKubeApi, type KubeObject } from '../support/kube-api.js';
import { startMetacontroller, type MetacontrollerStandIn } from '../support/metacontroller.js';
import { createTalosPki, talosconfigYaml } from '../support/pki.js';
import { startRgw, type Rgw } from '../support/rgw.js';
import { startTalosDouble, type TalosDouble } from '../support/talos-double.js';
import { startServer, type RunningServer } from '../helpers/server.js';

export const NAMESPACE = 'talos-backup';
export const BUCKET = 'etcd-backups';
export const SCHEDULE = 'daily-backup-schedule';

export interface RehearsalOptions {
  /** Hook server replicas; Metacontroller's calls rotate through them. Default 1. */
  replicas?: number;
  /** Simulated start. Default 2026-11-21T10:02:00Z. */
  start?: Date;
  /** Extra environment for every Job's pod (tests shorten the progress interval). */
  podEnv?: Record<string, string>;
  log?: (line: string) => void;
}

export interface Rehearsal {
  api: FakeKubeApi;
  metacontroller: MetacontrollerStandIn;
  jobs: JobController;
  talos: TalosDouble;
  etcd: Etcd;
  rgw: Rgw;
  s3: S3Client;
  servers: RunningServer[];
  now(): Date;
  /** Moves the simulated clock and lets every controller act until nothing is left to do. */
  advanceTo(time: Date): Promise<void>;
  /** Lets the controllers and the running Jobs finish what is in flight, at the current simulated time. */
  settle(): Promise<void>;
  /** Restarts hook server `index` (a new process-level server on a new port; Metacontroller's URL list follows). */
  restartServer(index: number): Promise<void>;
  /**
   * The example resources (examples/*.yaml) with the rehearsal's endpoints, as `kubectl apply` would send them;
   * `spec` overrides fields of the schedule's spec, `template` fields of its backup template's spec.
   */
  applyExamples(overrides?: { spec?: Record<string, unknown>; template?: Record<string, unknown> }): void;
  backups(): KubeObject[];
  schedule(): KubeObject | undefined;
  objects(): Promise<{ key: string; size: number }[]>;
  /** Downloads `key`, restores it with etcdctl and returns the restored etcd (stop it). */
  restore(key: string): Promise<Etcd>;
  close(): Promise<void>;
}

function exampleDocuments(file: string): KubeObject[] {
  const docs = parseAllDocuments(readFileSync(join(packageRoot(), 'examples', file), 'utf8'));
  return (Array.isArray(docs) ? docs : []).map((d) => d.toJS() as KubeObject).filter(Boolean);
}

/** What the API server stores for a Secret applied with stringData. */
function secret(name: string, data: Record<string, string>): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: NAMESPACE },
    type: 'Opaque',
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  };
}

export async function startRehearsal(opts: RehearsalOptions = {}): Promise<Rehearsal> {
  const log = opts.log ?? (() => undefined);
  let now = new Date(opts.start ?? '2026-11-21T10:02:00Z');
  const clock = () => new Date(now);
  const closers: (() => Promise<unknown>)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    const [etcd, rgw, api, pki] = await Promise.all([startEtcd(), startRgw(), startFakeKubeApi({ clock }), createTalosPki()]);
    closers.push(() => etcd.stop(), () => rgw.stop(), () => api.close());
    const talos = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    closers.push(() => talos.stop());
    await rgw.createBucket(BUCKET);
    const s3 = rgw.client();
    log(`etcd ${etcd.clientUrl}, Talos API ${talos.endpoint} (mTLS), S3 ${rgw.endpoint}, Kubernetes API ${api.url}`);

    const servers: RunningServer[] = [];
    for (let i = 0; i < (opts.replicas ?? 1); i += 1) servers.push(await startServer({ clock, jobImage: { image: 'talos-etcd-backup:rehearsal', pullPolicy: 'IfNotPresent', pullSecrets: [] } }));
    closers.push(() => Promise.all(servers.map((s) => s.close())));
    const hookUrls = servers.map((s) => s.url);
    const metacontroller = await startMetacontroller({ api, hookUrls, clock });
    closers.push(async () => metacontroller.stop());
    const jobs = startJobController({ api, clock, imagePaths: { '/app': packageRoot() }, ...(opts.podEnv && { extraEnv: opts.podEnv }) });
    closers.push(() => jobs.stop());

    // The talosconfig Secret Talos itself would create for the example's Talos ServiceAccount (role os:etcd:backup).
    const client = await pki.clientCert(['os:etcd:backup']);
    const talosconfig = talosconfigYaml({ context: 'default', endpoints: [talos.endpoint], caPem: pki.caPem, certPem: client.certPem, keyPem: client.keyPem });

    const settle = async () => {
      // Jobs report over HTTPS while they run; each report is a change the controllers act on.
      for (;;) {
        await metacontroller.settle();
        if (jobs.running().length === 0) {
          await jobs.idle();
          await metacontroller.settle();
          if (jobs.running().length === 0) return;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };

    const rehearsal: Rehearsal = {
      api,
      metacontroller,
      jobs,
      talos,
      etcd,
      rgw,
      s3,
      servers,
      now: clock,
      settle,
      async advanceTo(time) {
        now = new Date(time);
        jobs.tick();
        await settle();
      },
      async restartServer(index) {
        await servers[index]!.close();
        servers[index] = await startServer({ clock, jobImage: { image: 'talos-etcd-backup:rehearsal', pullPolicy: 'IfNotPresent', pullSecrets: [] } });
        hookUrls.splice(index, 1, servers[index]!.url);
      },
      applyExamples(overrides = {}) {
        const [credentials] = exampleDocuments('s3-credentials-secret.yaml');
        api.put(secret(credentials!.metadata.name, { 'access-key-id': rgw.accessKeyId, 'secret-access-key': rgw.secretAccessKey }));
        api.put(secret('etcd-backup', { config: talosconfig }));
        const [example] = exampleDocuments('schedule.yaml');
        const spec = example!.spec as { backupTemplate: { spec: Record<string, unknown> & { backupStorage: { s3: Record<string, unknown> } } } };
        spec.backupTemplate.spec.backupStorage.s3.endpoint = rgw.endpoint;
        Object.assign(spec.backupTemplate.spec, overrides.template);
        metacontroller.apply({ ...example!, spec: { ...spec, ...overrides.spec } });
      },
      backups: () => api.list(API_VERSION, BACKUP_KIND, NAMESPACE),
      schedule: () => api.get(API_VERSION, SCHEDULE_KIND, NAMESPACE, SCHEDULE),
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
          return await restoreSnapshot(file);
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

/** What `kubectl get tebs,teb -n talos-backup` would print. */
export function kubectlGet(r: Rehearsal): string {
  const age = (created: unknown) => {
    const seconds = Math.max(0, (r.now().getTime() - new Date(String(created)).getTime()) / 1000);
    return seconds < 3600 ? `${Math.floor(seconds / 60)}m` : `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
  };
  const table = (rows: string[][]) => {
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
    return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('   ').trimEnd()).join('\n');
  };
  const out: string[] = [];
  const schedule = r.schedule();
  if (schedule) {
    const spec = schedule.spec as { schedule: string; retention: number; paused?: boolean };
    const status = (schedule.status ?? {}) as ScheduleStatus;
    out.push(
      table([
        ['NAME', 'SCHEDULE', 'RETENTION', 'PAUSED', 'LAST BACKUP', 'NEXT', 'AGE'],
        [`talosetcdbackupschedule.talos.alperen.cloud/${schedule.metadata.name}`, spec.schedule, String(spec.retention), String(spec.paused ?? false), status.lastSuccessfulBackupTime ? age(status.lastSuccessfulBackupTime) : '<none>', status.nextScheduleTime ?? '<none>', age(schedule.metadata.creationTimestamp)],
      ]),
      '',
    );
  }
  const rows = [['NAME', 'PHASE', 'CLUSTER', 'SIZE', 'AGE']];
  for (const b of r.backups()) {
    const status = (b.status ?? {}) as BackupStatus;
    rows.push([`talosetcdbackup.talos.alperen.cloud/${b.metadata.name}`, status.phase ?? '', status.cluster ?? '', status.snapshot ? String(status.snapshot.size) : '', age(b.metadata.creationTimestamp)]);
  }
  out.push(table(rows));
  return out.join('\n');
}
