// The CLI's stderr contract for `talos-etcd-backup snapshot`: nothing on success, exactly one line on failure, for
// an IP endpoint (the usual Talos case) and for a DNS endpoint. Run as the image runs it but WITHOUT the Job's node
// flags (no --disable-warning): Node must have nothing to warn about (DEP0123 is what an IP sent as the TLS server
// name prints). Real etcd behind the Talos double (mutual TLS), real Ceph RGW.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { packageRoot } from '../../src/api/crds.js';
import { startEtcd, type Etcd } from '../harness/etcd.js';
import { createTalosPki, talosconfigYaml } from '../harness/pki.js';
import { useRgw } from '../harness/rgw.js';
import { startTalosDouble, type TalosDouble } from '../doubles/talos.js';

const BUCKET = 'stderr-contract';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node dist/src/main.js snapshot`, with only PATH and `env` in its environment (no NODE_OPTIONS) and no node flags. */
function snapshotCli(env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(packageRoot(), 'dist/src/main.js'), 'snapshot'], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('snapshot CLI: stderr is empty on success and one line on failure', () => {
  const rgw = useRgw();
  let etcd: Etcd;
  let talos: TalosDouble;
  /** Right CA, wrong names (IP 10.9.9.9, DNS apid.elsewhere.example). */
  let misnamed: TalosDouble;
  let dir: string;
  let seconds = 0;
  const configs: Record<string, string> = {};

  before(async () => {
    [etcd, dir] = await Promise.all([startEtcd(), mkdtemp(join(tmpdir(), 'snapshot-stderr-'))]);
    await etcd.putMany(500, 'registry/stderr/');
    const pki = await createTalosPki();
    const client = await pki.clientCert(['os:etcd:backup']);
    const reader = await pki.clientCert(['os:reader']);
    const wrong = await pki.serverCert({ ips: ['10.9.9.9'], dnsNames: ['apid.elsewhere.example'] });
    talos = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    misnamed = await startTalosDouble({
      pki: { caPem: pki.caPem, serverCertPem: wrong.certPem, serverKeyPem: wrong.keyPem },
      etcd,
      hostname: 'cp-misnamed',
    });
    for (const [name, endpoint] of [
      ['ip', `127.0.0.1:${talos.port}`],
      ['dns', `localhost:${talos.port}`],
      ['ip-misnamed', `127.0.0.1:${misnamed.port}`],
      ['dns-misnamed', `localhost:${misnamed.port}`],
    ] as const) {
      configs[name] = join(dir, `talosconfig-${name}`);
      await writeFile(
        configs[name]!,
        talosconfigYaml({
          context: 'prod',
          endpoints: [endpoint],
          caPem: pki.caPem,
          certPem: client.certPem,
          keyPem: client.keyPem,
        }),
      );
      // The same endpoint with a role that may not take snapshots: the TLS session is set up, then apid refuses.
      configs[`${name}-reader`] = join(dir, `talosconfig-${name}-reader`);
      await writeFile(
        configs[`${name}-reader`]!,
        talosconfigYaml({
          context: 'prod',
          endpoints: [endpoint],
          caPem: pki.caPem,
          certPem: reader.certPem,
          keyPem: reader.keyPem,
        }),
      );
    }
    await rgw().createBucket(BUCKET);
  });
  after(async () => {
    await Promise.all([talos?.stop(), misnamed?.stop()]);
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The Job's settings for one run (its own BACKUP_TIME, so its own key). */
  function env(talosconfig: string, overrides: Record<string, string> = {}): Record<string, string> {
    seconds += 1;
    return {
      TALOSCONFIG: talosconfig,
      S3_BUCKET: BUCKET,
      S3_REGION: rgw().region,
      S3_ENDPOINT: rgw().endpoint,
      CLUSTER_NAME: 'prod',
      BACKUP_TIME: `2026-03-04T05:06:${String(seconds).padStart(2, '0')}Z`,
      AWS_ACCESS_KEY_ID: rgw().accessKeyId,
      AWS_SECRET_ACCESS_KEY: rgw().secretAccessKey,
      ...overrides,
    };
  }

  for (const kind of ['ip', 'dns'] as const) {
    const host = kind === 'ip' ? '127.0.0.1' : 'localhost';
    it(`${kind.toUpperCase()} endpoint (${host}): success prints one JSON line on stdout and nothing on stderr`, async () => {
      const run = await snapshotCli(env(configs[kind]!));
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, '');
      const lines = run.stdout.trim().split('\n');
      assert.equal(lines.length, 1);
      assert.equal((JSON.parse(lines[0]!) as { endpoint: string }).endpoint, `${host}:${talos.port}`);
    });

    it(`${kind.toUpperCase()} endpoint (${host}): a refusal over an established TLS session is exactly one line (a role without os:etcd:backup, exit 2)`, async () => {
      const run = await snapshotCli(env(configs[`${kind}-reader`]!));
      assert.equal(run.code, 2);
      assert.equal(run.stdout, '');
      assert.match(
        run.stderr,
        /^Failed to take etcd snapshot: [^\n]* refused the snapshot: the talosconfig's role needs os:etcd:backup[^\n]*\n$/,
      );
    });

    it(`${kind.toUpperCase()} endpoint (${host}): an S3 failure is exactly one line (wrong S3 secret, exit 2)`, async () => {
      const run = await snapshotCli(env(configs[kind]!, { AWS_SECRET_ACCESS_KEY: 'wrong-secret-key' }));
      assert.equal(run.code, 2);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, /^Failed to upload snapshot to S3: SignatureDoesNotMatch \(HTTP 403\)[^\n]*\n$/);
    });

    it(`${kind.toUpperCase()} endpoint (${host}): a certificate without the endpoint's name fails in exactly one line`, async () => {
      const run = await snapshotCli(env(configs[`${kind}-misnamed`]!));
      assert.equal(run.code, 1, 'another endpoint or a retry may do better: not permanent');
      assert.equal(run.stdout, '');
      const name =
        kind === 'ip'
          ? /IP: 127\.0\.0\.1 is not in the cert's list: 10\.9\.9\.9/
          : /Host: localhost\. is not in the cert's altnames/;
      assert.match(run.stderr, /^Failed to take etcd snapshot: cannot reach the Talos API at [^\n]*\n$/);
      assert.match(run.stderr, name);
    });
  }
});
