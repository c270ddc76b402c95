// A real Kubernetes control plane for tests, from the binaries scripts/install-test-deps.sh builds: etcd 3.6 as its
// store, kube-apiserver (client-certificate authentication, RBAC, service-account token signing, the default
// admission plugins) and kube-controller-manager with only the controllers this project relies on. Everything
// listens on free 127.0.0.1 ports and lives in one temporary directory; stop() ends every process and removes it,
// and so does the process exit hook when a test crashes.
//
//   const cp = await startControlPlane();      // or, in a test file: const cp = useControlPlane();
//   await cp.kubectl(['apply', '-f', 'crds/']);
//   const kc = cp.kubeConfig();                // @kubernetes/client-node, as system:masters
//   await cp.stop();
//
// What it leaves out: the kubelet and the scheduler (test/doubles/kubelet.ts plays the node), kube-proxy and
// cluster DNS (a pod reaches the API server at 127.0.0.1:<port> through KUBERNETES_SERVICE_HOST/PORT).

import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { packageRoot } from '../../src/api/crds.js';
import { freePorts } from './etcd.js';
import { createTalosPki, type CertAndKey } from './pki.js';
import { etcdBinary, kubernetesBinary, kubernetesVersion } from './binaries.js';
import { ownDir, startProcess, waitUntilReady, type Managed } from './processes.js';

/** kube-controller-manager's controllers the tests need (names as --controllers takes them). */
export const CONTROLLERS = [
  'job-controller',
  'garbage-collector-controller',
  'serviceaccount-controller',
  'serviceaccount-token-controller',
  'namespace-controller',
  'resourcequota-controller',
  'root-ca-certificate-publisher-controller',
] as const;

export const SERVICE_CLUSTER_IP_RANGE = '10.0.0.0/24';

export interface User {
  /** The certificate's CN: the user name the API server sees. */
  name: string;
  /** The certificate's O values: the user's groups. */
  groups?: string[];
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  url: string;
  host: string;
  port: number;
  /** The cluster CA (signs the serving certificate and every client certificate; what pods get as ca.crt). */
  caPem: string;
  /** An admin (system:masters) kubeconfig file. */
  kubeconfigPath: string;
  /** A client-node configuration for the admin, or for another user (a client certificate made for it). */
  kubeConfig(user?: User): Promise<KubeConfig>;
  /** A kubeconfig file for a user, for kubectl --kubeconfig. */
  kubeconfigFor(user: User): Promise<string>;
  /** Runs the built kubectl as the admin (or opts.kubeconfig); never rejects on a non-zero exit. */
  kubectl(
    args: readonly string[],
    opts?: { input?: string; kubeconfig?: string; timeoutMs?: number },
  ): Promise<CommandResult>;
  /**
   * Installs the project's CRDs (crds/) with server-side apply and waits until the API server serves them
   * (condition Established). Idempotent.
   */
  installCrds(): Promise<void>;
  /** The temporary directory holding the PKI, the etcd data and the kubeconfig files. */
  dir: string;
  /** The processes it runs, in start order. */
  processes(): { name: string; pid: number; args: readonly string[] }[];
  /** The Kubernetes version (from the harness's go.mod). */
  version: string;
  /** Output tails of the three processes, for failure messages. */
  logs(): string;
  /** Stops kube-controller-manager, kube-apiserver and etcd, and removes every file. Idempotent. */
  stop(): Promise<void>;
}

export interface ControlPlaneOptions {
  /** Default: CONTROLLERS. */
  controllers?: readonly string[];
  /** Extra kube-apiserver flags (e.g. --enable-admission-plugins=...). */
  apiServerArgs?: readonly string[];
}

const READY_TIMEOUT_MS = 60_000;

/** GET over HTTPS: with the cluster CA and a client certificate, or (tls undefined) trusting a self-signed server. */
function httpsGet(url: string, tls?: { ca: string; client: CertAndKey }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const options = tls
      ? { ca: tls.ca, cert: tls.client.certPem, key: tls.client.keyPem }
      : { rejectUnauthorized: false };
    const req = request(url, { ...options, timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function kubeconfigYaml(url: string, caPem: string, user: string, client: CertAndKey): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server: url, 'certificate-authority-data': b64(caPem) } }],
    users: [
      { name: user, user: { 'client-certificate-data': b64(client.certPem), 'client-key-data': b64(client.keyPem) } },
    ],
    contexts: [{ name: 'test', context: { cluster: 'test', user } }],
    'current-context': 'test',
  });
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const bin = {
    etcd: etcdBinary('3.6', 'etcd'),
    apiserver: kubernetesBinary('kube-apiserver'),
    kcm: kubernetesBinary('kube-controller-manager'),
    kubectl: kubernetesBinary('kubectl'),
  };
  const dir = await mkdtemp(join(tmpdir(), 'talos-etcd-backup-k8s-'));
  const owned = ownDir(dir);
  const processes: Managed[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Controllers first, the store last, so nothing logs errors about a vanished dependency.
    for (const p of [...processes].reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
    owned.release();
  };
  const logs = () => processes.map((p) => `--- ${p.name}\n${p.logTail(30)}`).join('\n');

  try {
    // ---- PKI: one CA for serving and client certificates; an ECDSA key pair signs service-account tokens.
    const pki = await createTalosPki({
      algorithm: 'ECDSA-P256',
      caOrganization: 'kubernetes',
      server: {
        commonName: 'kube-apiserver',
        ips: ['127.0.0.1', '10.0.0.1'],
        dnsNames: [
          'localhost',
          'kubernetes',
          'kubernetes.default',
          'kubernetes.default.svc',
          'kubernetes.default.svc.cluster.local',
        ],
      },
    });
    const certFor = (user: User) => pki.clientCert(user.groups ?? [], { commonName: user.name });
    const sa = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pkiDir = join(dir, 'pki');
    await mkdir(pkiDir);
    const files = {
      ca: join(pkiDir, 'ca.crt'),
      serverCert: join(pkiDir, 'apiserver.crt'),
      serverKey: join(pkiDir, 'apiserver.key'),
      saKey: join(pkiDir, 'sa.key'),
      saPub: join(pkiDir, 'sa.pub'),
    };
    await Promise.all([
      writeFile(files.ca, pki.caPem),
      writeFile(files.serverCert, pki.serverCertPem),
      writeFile(files.serverKey, pki.serverKeyPem, { mode: 0o600 }),
      writeFile(files.saKey, sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 }),
      writeFile(files.saPub, sa.publicKey.export({ type: 'spki', format: 'pem' })),
    ]);

    const [etcdClient, etcdPeer, apiPort, kcmPort] = (await freePorts(4)) as [number, number, number, number];
    const url = `https://127.0.0.1:${apiPort}`;
    const admin = await certFor({ name: 'admin', groups: ['system:masters'] });
    const kubeconfigFor = async (user: User): Promise<string> => {
      const file = join(
        dir,
        `kubeconfig-${user.name.replace(/[^A-Za-z0-9_.-]/g, '_')}-${Math.random().toString(36).slice(2, 8)}`,
      );
      await writeFile(file, kubeconfigYaml(url, pki.caPem, user.name, await certFor(user)), { mode: 0o600 });
      return file;
    };
    const kubeconfigPath = join(dir, 'admin.kubeconfig');
    await writeFile(kubeconfigPath, kubeconfigYaml(url, pki.caPem, 'admin', admin), { mode: 0o600 });
    const kcmKubeconfig = await kubeconfigFor({ name: 'system:kube-controller-manager' });

    // ---- etcd 3.6, the API server's store
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    const etcd = startProcess('etcd', bin.etcd, [
      '--name=k8s',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=k8s=${peerUrl}`,
      '--log-level=warn',
      '--unsafe-no-fsync', // test data: durability is not the point, speed is
    ]);
    processes.push(etcd);
    await waitUntilReady(
      etcd,
      async () => {
        const res = await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(1_000) });
        return res.ok && ((await res.json()) as { health?: string }).health === 'true';
      },
      READY_TIMEOUT_MS,
    );

    // ---- kube-apiserver
    const apiserver = startProcess('kube-apiserver', bin.apiserver, [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${files.serverCert}`,
      `--tls-private-key-file=${files.serverKey}`,
      `--client-ca-file=${files.ca}`,
      '--authorization-mode=RBAC',
      `--service-account-issuer=${url}`,
      `--service-account-key-file=${files.saPub}`,
      `--service-account-signing-key-file=${files.saKey}`,
      `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
      '--allow-privileged=true',
      // The `kubernetes` Service's Endpoints may not point at a loopback address; pods here dial 127.0.0.1 directly.
      '--endpoint-reconciler-type=none',
      '--profiling=false',
      '--v=0',
      ...(opts.apiServerArgs ?? []),
    ]);
    processes.push(apiserver);
    await waitUntilReady(
      apiserver,
      async () => (await httpsGet(`${url}/readyz`, { ca: pki.caPem, client: admin })).status === 200,
      READY_TIMEOUT_MS,
      200,
    );

    // ---- kube-controller-manager
    const kcm = startProcess('kube-controller-manager', bin.kcm, [
      `--kubeconfig=${kcmKubeconfig}`,
      `--controllers=${(opts.controllers ?? CONTROLLERS).join(',')}`,
      `--service-account-private-key-file=${files.saKey}`,
      `--root-ca-file=${files.ca}`,
      // Each controller acts as its own ServiceAccount under the bootstrap system:controller:* roles, as kubeadm runs it.
      '--use-service-account-credentials=true',
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${kcmPort}`,
      `--cert-dir=${join(dir, 'kcm-certs')}`,
      '--profiling=false',
      '--v=0',
      // The Job controller's pod-failure backoff starts at 10 s; the tests' retries are real time.
      '--concurrent-job-syncs=5',
      '--concurrent-gc-syncs=5',
    ]);
    processes.push(kcm);
    // Its /healthz (self-signed serving certificate, always-allowed path) answers once the controllers started.
    await waitUntilReady(
      kcm,
      async () => (await httpsGet(`https://127.0.0.1:${kcmPort}/healthz`)).status === 200,
      READY_TIMEOUT_MS,
      200,
    );

    const kubectl = (
      args: readonly string[],
      o: { input?: string; kubeconfig?: string; timeoutMs?: number } = {},
    ): Promise<CommandResult> => {
      const p = startProcess('kubectl', bin.kubectl, ['--kubeconfig', o.kubeconfig ?? kubeconfigPath, ...args], {
        ...(o.input !== undefined && { input: o.input }),
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      p.child.stdout!.on('data', (c: Buffer) => out.push(c));
      p.child.stderr!.on('data', (c: Buffer) => err.push(c));
      const timer = setTimeout(() => void p.stop(1_000), o.timeoutMs ?? 60_000);
      return p.exited.then((exit) => {
        clearTimeout(timer);
        return {
          code: exit.code,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
        };
      });
    };

    const installCrds = async (): Promise<void> => {
      const crds = join(packageRoot(), 'crds');
      const applied = await kubectl(['apply', '--server-side', '--field-manager=talos-etcd-backup-tests', '-f', crds]);
      if (applied.code !== 0) throw new Error(`kubectl apply -f crds/ failed: ${applied.stderr}`);
      const established = await kubectl(['wait', '--for=condition=Established', '--timeout=30s', '-f', crds]);
      if (established.code !== 0) throw new Error(`the CRDs of crds/ are not Established: ${established.stderr}`);
    };

    return {
      url,
      host: '127.0.0.1',
      port: apiPort,
      caPem: pki.caPem,
      kubeconfigPath,
      async kubeConfig(user) {
        const kc = new KubeConfig();
        kc.loadFromString(
          user
            ? kubeconfigYaml(url, pki.caPem, user.name, await certFor(user))
            : kubeconfigYaml(url, pki.caPem, 'admin', admin),
        );
        return kc;
      },
      kubeconfigFor,
      kubectl,
      installCrds,
      dir,
      processes: () => processes.map((p) => ({ name: p.name, pid: p.pid, args: p.args })),
      version: kubernetesVersion(),
      logs,
      stop,
    };
  } catch (err) {
    const tail = logs();
    await stop();
    throw new Error(`${(err as Error).message}${tail ? `\n${tail}` : ''}`, { cause: err });
  }
}

/**
 * node:test helper: a control plane started in `before` and stopped in `after` of the enclosing suite (or file);
 * the returned getter fails if used before it started.
 */
export function useControlPlane(opts: ControlPlaneOptions = {}): () => ControlPlane {
  let current: ControlPlane | undefined;
  before(async () => {
    current = await startControlPlane(opts);
  });
  after(async () => {
    await current?.stop();
  });
  return () => {
    if (!current)
      throw new Error('useControlPlane(): the control plane is not started yet (use it inside a test or a later hook)');
    return current;
  };
}
