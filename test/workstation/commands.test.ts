// The workstation commands as a person runs them: the real CLI (and kubectl, through the plugin) against the real
// API server (test/harness/control-plane.ts), with a real snapshot of a real etcd 3.6 stored in Ceph RGW by the
// snapshot pipeline, and restored from nothing but the TalosEtcdBackup's name.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { BACKUP_PLURAL, GROUP, SCHEDULE_PLURAL, VERSION } from '../../src/api/constants.js';
import { packageRoot } from '../../src/api/crds.js';
import type { SnapshotInfo } from '../../src/api/types.js';
import { snapshotCommand } from '../../src/job/commands.js';
import { kubernetesBinary } from '../harness/binaries.js';
import { imageNodeBinary } from '../harness/node22.js';
import { useControlPlane } from '../harness/control-plane.js';
import { restoreSnapshot, startEtcd, type Etcd } from '../harness/etcd.js';
import { createTalosPki, talosconfigYaml } from '../harness/pki.js';
import { useRgw } from '../harness/rgw.js';
import { startTalosDouble, type TalosDouble } from '../doubles/talos.js';

const NS = 'talos-backup';
const BUCKET = 'workstation';
const MAIN = join(packageRoot(), 'dist', 'src', 'main.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject).once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('list, backup --from-schedule and restore --backup against a real cluster and a real S3', () => {
  const cp = useControlPlane();
  const rgw = useRgw();
  let etcd: Etcd;
  let talos: TalosDouble;
  let dir: string;
  let custom: CustomObjectsApi;
  let stored: SnapshotInfo;
  /** The CLI as a person runs it: their kubeconfig in $KUBECONFIG, their own S3 keys (or none). */
  let cli: (
    args: string[],
    opts?: { s3Keys?: boolean; cwd?: string; node?: string; env?: Record<string, string> },
  ) => Promise<Run>;

  const s3Spec = () => ({
    bucket: BUCKET,
    region: rgw().region,
    endpoint: rgw().endpoint,
    accessKeyID: { name: 's3-credentials', key: 'access-key-id' },
    secretAccessKey: { name: 's3-credentials', key: 'secret-access-key' },
  });
  const backupSpec = () => ({ talosConfigSecretRef: { name: 'etcd-backup' }, backupStorage: { s3: s3Spec() } });
  const createBackup = async (
    name: string,
    status: Record<string, unknown>,
    extra: Record<string, unknown> = {},
    spec: Record<string, unknown> = backupSpec(),
  ) => {
    const created = (await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: BACKUP_PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'TalosEtcdBackup',
        metadata: { name, ...extra },
        spec,
      },
    })) as Record<string, unknown>;
    await custom.replaceNamespacedCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: BACKUP_PLURAL,
      name,
      body: { ...created, status },
    });
  };
  const succeeded = (snapshot: SnapshotInfo) => ({
    phase: 'Succeeded',
    startTime: '2026-12-03T02:00:01Z',
    completionTime: '2026-12-03T02:00:09Z',
    snapshot,
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'BackupSucceeded',
        message: 'stored',
        lastTransitionTime: '2026-12-03T02:00:09Z',
      },
    ],
  });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'workstation-test-'));
    await rgw().createBucket(BUCKET);
    etcd = await startEtcd({ version: '3.6' });
    await etcd.putMany(300, 'registry/workstation/');
    await etcd.put('registry/workstation/marker', 'restored from the backup name alone');
    const pki = await createTalosPki();
    const client = await pki.clientCert(['os:etcd:backup']);
    talos = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    const talosconfig = join(dir, 'talosconfig');
    await writeFile(
      talosconfig,
      talosconfigYaml({
        context: 'prod',
        endpoints: [talos.endpoint],
        caPem: pki.caPem,
        certPem: client.certPem,
        keyPem: client.keyPem,
      }),
    );
    // The snapshot Job's pipeline stores a real backup (its S3 keys from the environment, as the Job's are).
    process.env.AWS_ACCESS_KEY_ID = rgw().accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = rgw().secretAccessKey;
    const outcome = await snapshotCommand({
      bucket: BUCKET,
      region: rgw().region,
      endpoint: rgw().endpoint,
      talosconfig,
      key: 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-12-03T02-00-00Z.db.zst',
      compression: 'zstd',
      verify: 'true',
      backupNamespace: NS,
      backupName: 'nightly-1764727200',
    });
    const { bucket, key, size, sha256, etcdSha256, node, compression, encrypted, verified, verification } = outcome;
    stored = { bucket, key, size, sha256, etcdSha256, node, compression, encrypted, verified, verification };

    await cp().installCrds();
    const kc = await cp().kubeConfig();
    custom = kc.makeApiClient(CustomObjectsApi);
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    await core.createNamespacedSecret({
      namespace: NS,
      body: {
        metadata: { name: 's3-credentials' },
        stringData: { 'access-key-id': rgw().accessKeyId, 'secret-access-key': rgw().secretAccessKey },
      },
    });
    const nightly = (await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: SCHEDULE_PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'TalosEtcdBackupSchedule',
        metadata: { name: 'nightly' },
        spec: {
          schedule: '0 2 * * *',
          retention: 7,
          backupTemplate: { metadata: { labels: { team: 'platform' } }, spec: backupSpec() },
        },
      },
    })) as { metadata: { uid: string } };
    // The schedule's real uid: the garbage collector deletes a backup whose owner does not exist.
    const owner = [
      {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'TalosEtcdBackupSchedule',
        name: 'nightly',
        uid: nightly.metadata.uid,
        controller: true,
      },
    ];
    await createBackup('nightly-1764727200', succeeded(stored), {
      ownerReferences: owner,
      annotations: { 'talos.alperen.cloud/scheduled-time': '2026-12-03T02:00:00Z' },
    });
    await createBackup('tampered', succeeded({ ...stored, sha256: 'f'.repeat(64) }));
    const withCa = (name: string) => ({
      ...backupSpec(),
      backupStorage: { s3: { ...s3Spec(), caBundle: { kind: 'ConfigMap', name, key: 'ca.crt' } } },
    });
    await core.createNamespacedConfigMap({
      namespace: NS,
      body: { metadata: { name: 's3-ca' }, data: { 'ca.crt': pki.caPem } },
    });
    await createBackup('with-ca', succeeded(stored), {}, withCa('s3-ca'));
    await createBackup('missing-ca', succeeded(stored), {}, withCa('no-such-ca'));
    await createBackup('broken', {
      phase: 'Failed',
      message: 'Failed to upload snapshot to S3: NoSuchBucket',
    });

    // The person's kubeconfig: the test cluster as the current context, in namespace talos-backup.
    const kubeconfig = join(dir, 'kubeconfig');
    const config = parse(readFileSync(cp().kubeconfigPath, 'utf8')) as {
      contexts: { context: Record<string, string> }[];
    };
    for (const c of config.contexts) c.context.namespace = NS;
    await writeFile(kubeconfig, stringify(config), { mode: 0o600 });
    cli = (args, opts = {}) =>
      run(
        opts.node ?? process.execPath,
        [MAIN, ...args],
        {
          PATH: process.env.PATH,
          HOME: dir,
          KUBECONFIG: kubeconfig,
          ...(opts.s3Keys !== false && {
            AWS_ACCESS_KEY_ID: rgw().accessKeyId,
            AWS_SECRET_ACCESS_KEY: rgw().secretAccessKey,
          }),
          ...opts.env,
        },
        opts.cwd ?? dir,
      );
  });
  after(async () => {
    await talos?.stop();
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('list: a table newest first, the namespace from the context; --schedule, -o json and -A', async () => {
    const table = await cli(['list']);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^NAME\s+SCHEDULE\s+PHASE\s+TIME\s+SIZE\s+FORMAT\s+VERIFIED\s+RESTORE TEST$/);
    const nightly = lines.find((l) => l.startsWith('nightly-1764727200 '))!;
    assert.match(nightly, /nightly\s+Succeeded\s+2026-12-03T02:00:00Z\s+\S+\s+zstd\s+true\s+<none>$/);
    assert.equal(lines.length, 6);
    const only = await cli(['list', '--schedule', 'nightly', '-o', 'json']);
    assert.equal(only.code, 0, only.stderr);
    const list = JSON.parse(only.stdout) as { kind: string; items: { metadata: { name: string } }[] };
    assert.equal(list.kind, 'List');
    assert.deepEqual(
      list.items.map((i) => i.metadata.name),
      ['nightly-1764727200'],
    );
    // The same under the Node.js the image ships (22), where a workstation may run it too.
    const on22 = await cli(['list'], { node: imageNodeBinary() });
    assert.equal(on22.code, 0, on22.stderr);
    assert.equal(on22.stdout, table.stdout);
    const all = await cli(['list', '-A']);
    assert.match(all.stdout, /^NAMESPACE\s+NAME/);
    const none = await cli(['list', '-n', 'default']);
    assert.equal(none.stdout, 'No TalosEtcdBackups found in namespace default.\n');
    const bad = await cli(['list', '-o', 'wide']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--output must be table, json or yaml/);
  });

  it("backup --from-schedule: an on-demand backup from the template, not the schedule's child", async () => {
    const made = await cli(['backup', '--from-schedule', 'nightly', 'before-upgrade']);
    assert.equal(made.code, 0, made.stderr);
    assert.deepEqual(JSON.parse(made.stdout), { name: 'before-upgrade', namespace: NS, schedule: 'nightly' });
    const object = (await custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: BACKUP_PLURAL,
      name: 'before-upgrade',
    })) as { metadata: Record<string, any>; spec: Record<string, any> };
    assert.deepEqual(object.metadata.labels, { team: 'platform', 'talos.alperen.cloud/from-schedule': 'nightly' });
    assert.equal(object.metadata.ownerReferences, undefined);
    assert.equal(object.spec.backupStorage.s3.bucket, BUCKET);
    const listed = await cli(['list', '--schedule', 'nightly']);
    assert.match(listed.stdout, /^before-upgrade\s+nightly\s+Pending/m);
    const missing = await cli(['backup', '--from-schedule', 'weekly']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^cannot read TalosEtcdBackupSchedule talos-backup\/weekly: .*not found/);
    const usage = await cli(['backup']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: backup --from-schedule SCHEDULE \[NAME\]/);
  });

  it('restore --backup NAME: everything from the backup; the file restores into etcd 3.6 with the data', async () => {
    const restored = await cli(['restore', '--backup', 'nightly-1764727200']);
    assert.equal(restored.code, 0, restored.stderr);
    const result = JSON.parse(restored.stdout) as Record<string, unknown>;
    assert.equal(result.key, stored.key);
    assert.equal(result.etcdSha256, stored.etcdSha256);
    const file = join(dir, 'etcd-snapshot-2026-12-03T02-00-00Z.db');
    assert.equal(result.output, 'etcd-snapshot-2026-12-03T02-00-00Z.db');
    assert.ok(existsSync(file));
    const restoredEtcd = await restoreSnapshot(file, { version: '3.6' });
    try {
      assert.equal(await restoredEtcd.get('registry/workstation/marker'), 'restored from the backup name alone');
    } finally {
      await restoredEtcd.stop();
    }
  });

  it('restore --backup with copies: --copy N restores that copy with its own keys; an unreachable primary falls back to the copy', async () => {
    // A second trust domain: another RGW user, its own bucket, holding the same stored bytes as the primary.
    const offsite = await rgw().createUser('workstation-offsite');
    await offsite.createBucket('offsite-backups');
    const bytes = await (
      await rgw()
        .client()
        .send(new GetObjectCommand({ Bucket: BUCKET, Key: stored.key }))
    ).Body!.transformToByteArray();
    await offsite.client().send(new PutObjectCommand({ Bucket: 'offsite-backups', Key: stored.key, Body: bytes }));
    const copySpec = {
      name: 'offsite',
      bucket: 'offsite-backups',
      region: rgw().region,
      endpoint: rgw().endpoint,
    };
    const copied = (primaryEndpoint: string) => ({
      ...backupSpec(),
      backupStorage: {
        s3: { ...s3Spec(), endpoint: primaryEndpoint },
        copies: [copySpec, { ...copySpec, name: 'gone', bucket: 'gone-backups', required: false }],
      },
    });
    const status = succeeded({
      ...stored,
      copies: [
        { name: 'offsite', bucket: 'offsite-backups', key: stored.key, size: stored.size, sha256: stored.sha256 },
        {
          name: 'gone',
          bucket: 'gone-backups',
          key: stored.key,
          error: 'Failed to upload snapshot to S3: NoSuchBucket',
        },
      ],
    } as SnapshotInfo);
    await createBackup('copied', status, {}, copied(rgw().endpoint));
    // Port 9 (discard) is closed here: the primary cannot be reached.
    await createBackup('copied-primary-down', status, {}, copied('http://127.0.0.1:9'));
    const copyKeys = {
      S3_COPY_1_ACCESS_KEY_ID: offsite.accessKeyId,
      S3_COPY_1_SECRET_ACCESS_KEY: offsite.secretAccessKey,
    };

    const chosen = await cli(['restore', '--backup', 'copied', '--copy', '1', '--output', 'copy-1.db'], {
      env: copyKeys,
    });
    assert.equal(chosen.code, 0, chosen.stderr);
    const result = JSON.parse(chosen.stdout) as { bucket: string; destination: string };
    assert.equal(result.bucket, 'offsite-backups');
    assert.equal(result.destination, 'copy 1');
    assert.ok(!chosen.stdout.includes(offsite.secretAccessKey) && !chosen.stderr.includes(offsite.secretAccessKey));

    const fellBack = await cli(['restore', '--backup', 'copied-primary-down', '--output', 'fallback.db'], {
      env: copyKeys,
    });
    assert.equal(fellBack.code, 0, fellBack.stderr);
    assert.equal((JSON.parse(fellBack.stdout) as { destination: string }).destination, 'copy 1');
    assert.match(fellBack.stderr, /the primary could not be restored \(.*\); trying copy 1/);
    const restoredEtcd = await restoreSnapshot(join(dir, 'fallback.db'), { version: '3.6' });
    try {
      assert.equal(await restoredEtcd.get('registry/workstation/marker'), 'restored from the backup name alone');
    } finally {
      await restoredEtcd.stop();
    }

    const notStored = await cli(['restore', '--backup', 'copied', '--copy', '2', '--output', 'copy-2.db']);
    assert.equal(notStored.code, 2);
    assert.match(notStored.stderr, /has no stored copy 2 \(gone: Failed to upload snapshot to S3: NoSuchBucket\)/);
  });

  it("--s3-credentials-from-cluster reads the spec's Secrets instead of the workstation's keys, and prints neither", async () => {
    const without = await cli(['restore', '--backup', 'nightly-1764727200', '--output', 'a.db'], { s3Keys: false });
    assert.notEqual(without.code, 0, 'no S3 keys on the workstation');
    const withCluster = await cli(
      ['restore', '--backup', 'nightly-1764727200', '--output', 'b.db', '--s3-credentials-from-cluster'],
      { s3Keys: false },
    );
    assert.equal(withCluster.code, 0, withCluster.stderr);
    assert.ok(existsSync(join(dir, 'b.db')));
    for (const text of [withCluster.stdout, withCluster.stderr])
      assert.ok(!text.includes(rgw().secretAccessKey) && !text.includes(rgw().accessKeyId));
  });

  it("reads the spec's CA bundle from the cluster, and says which object it cannot read", async () => {
    const withCa = await cli(['restore', '--backup', 'with-ca', '--output', 'ca.db']);
    assert.equal(withCa.code, 0, withCa.stderr);
    const missing = await cli(['restore', '--backup', 'missing-ca', '--output', 'no-ca.db']);
    assert.equal(missing.code, 2, missing.stdout);
    assert.match(
      missing.stderr,
      /^cannot read ConfigMap talos-backup\/no-such-ca \(the backup's S3 CA bundle\): .*not found/,
    );
    assert.ok(!existsSync(join(dir, 'no-ca.db')));
  });

  it('refuses what it cannot restore, saying why, with exit code 2', async () => {
    const tampered = await cli(['restore', '--backup', 'tampered', '--output', 't.db']);
    assert.equal(tampered.code, 2);
    assert.match(tampered.stderr, /but f{64} was recorded when it was stored/);
    assert.ok(!existsSync(join(dir, 't.db')));
    const broken = await cli(['restore', '--backup', 'broken']);
    assert.equal(broken.code, 2);
    assert.match(
      broken.stderr,
      /^backup talos-backup\/broken has no stored snapshot to restore \(phase Failed: Failed to upload snapshot to S3: NoSuchBucket\)/,
    );
    const missing = await cli(['restore', '--backup', 'nope']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^cannot read TalosEtcdBackup talos-backup\/nope: .*not found/);
    const keyed = await cli(['restore', '--backup', 'nightly-1764727200', '--key', 'x']);
    assert.equal(keyed.code, 2);
    assert.match(keyed.stderr, /--key cannot be used with --backup/);
  });

  it('restore-test NAME asks for a test now; --wait prints its outcome, exit 2 when it failed', async () => {
    await createBackup('to-test', succeeded(stored));
    const asked = await cli(['restore-test', 'to-test']);
    assert.equal(asked.code, 0, asked.stderr);
    const { requestedAt } = JSON.parse(asked.stdout) as { requestedAt: string };
    const read = async () =>
      (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: BACKUP_PLURAL,
        name: 'to-test',
      })) as { spec: { restoreTest?: Record<string, unknown> }; status: Record<string, unknown> };
    const spec = (await read()).spec.restoreTest!;
    assert.equal(spec.requestedAt, requestedAt);
    assert.equal(spec.etcdImage, 'gcr.io/etcd-development/etcd:v3.6.16', "the API server applied the CRD's defaults");

    // The hook's part, played: the outcome of the request the command made.
    const answer = async (result: string, message: string) => {
      const current = await read();
      const { requestedAt: at } = current.spec.restoreTest as { requestedAt: string };
      await custom.replaceNamespacedCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: BACKUP_PLURAL,
        name: 'to-test',
        body: { ...current, status: { ...current.status, restoreTest: { requestedAt: at, result, message } } },
      });
    };
    const waited = cli(['restore-test', 'to-test', '--wait', '--timeout', '60']);
    const later = async (at: string) => {
      for (let i = 0; i < 100; i += 1) {
        const now = (await read()).spec.restoreTest!.requestedAt as string;
        if (now !== at) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await later(requestedAt);
    await answer('Succeeded', 'restored into gcr.io/etcd-development/etcd:v3.6.16');
    const ok = await waited;
    assert.equal(ok.code, 0, ok.stderr);
    const outcome = JSON.parse(ok.stdout) as { requestedAt: string; result: string };
    assert.equal(outcome.result, 'Succeeded');
    assert.ok(outcome.requestedAt > requestedAt, 'a second request is later than the first, even within a second');

    const failing = cli(['restore-test', 'to-test', '--wait']);
    await later(outcome.requestedAt);
    await answer('Failed', 'Snapshot verification failed: damaged');
    const bad = await failing;
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^Restore test failed: to-test: Snapshot verification failed: damaged$/m);

    const missing = await cli(['restore-test', 'no-such-backup']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read TalosEtcdBackup talos-backup\/no-such-backup/);
  });

  it('as a kubectl plugin: kubectl talos-etcd-backup list', async () => {
    const bin = join(dir, 'bin');
    await mkdir(bin);
    // What `npm install -g` links: the package's bin entry under the plugin's name.
    const plugin = join(bin, 'kubectl-talos_etcd_backup');
    await writeFile(plugin, `#!/bin/sh\nexec "${process.execPath}" "${MAIN}" "$@"\n`);
    await chmod(plugin, 0o755);
    const env = { PATH: `${bin}:${process.env.PATH}`, HOME: dir, KUBECONFIG: join(dir, 'kubeconfig') };
    const plugins = await run(kubernetesBinary('kubectl'), ['plugin', 'list'], env);
    assert.match(plugins.stdout, /kubectl-talos_etcd_backup/);
    const listed = await run(kubernetesBinary('kubectl'), ['talos-etcd-backup', 'list', '-n', NS], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^nightly-1764727200\s+nightly\s+Succeeded/m);
  });
});
