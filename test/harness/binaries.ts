// Where the Go-built test binaries are: scripts/install-test-deps.sh builds them from the modules in
// test/harness/go/ into a cache outside the repository, one directory per version. The versions are read from those
// go.mod files (the one place they are pinned), so a version bump needs no change here.
// A missing binary is an error that says how to get it, never a skipped test.

import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/api/crds.js';

export type EtcdMinor = '3.5' | '3.6';
export const ETCD_MINORS: readonly EtcdMinor[] = ['3.5', '3.6'];

const INSTALL_HINT = 'run ./scripts/install-test-deps.sh (it builds them with Go from the Go module proxy)';

function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'talos-etcd-backup');
}

/** The version `go.mod` in test/harness/go/<module> pins for `path`. */
function pinnedVersion(module: string, path: string): string {
  const text = readFileSync(join(packageRoot(), 'test', 'harness', 'go', module, 'go.mod'), 'utf8');
  const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = new RegExp(`^(?:require)?\\s*${escaped} (v\\S+)`, 'm').exec(text);
  if (!match) throw new Error(`test/harness/go/${module}/go.mod does not pin ${path}`);
  return match[1]!;
}

export const kubernetesVersion = (): string => pinnedVersion('kubernetes', 'k8s.io/kubernetes');
export const etcdVersion = (minor: EtcdMinor): string => pinnedVersion(`etcd-v${minor}`, 'go.etcd.io/etcd/server/v3');

function executable(dir: string, name: string, what: string): string {
  const file = join(dir, 'bin', name);
  try {
    accessSync(file, constants.X_OK);
  } catch {
    throw new Error(`the tests need ${what}: ${file} is missing; ${INSTALL_HINT}`);
  }
  return file;
}

export function kubernetesBinary(name: 'kube-apiserver' | 'kube-controller-manager' | 'kubectl'): string {
  const version = kubernetesVersion();
  return executable(join(cacheDir(), `kubernetes-${version}`), name, `Kubernetes ${version}`);
}

export function etcdBinary(minor: EtcdMinor, name: 'etcd' | 'etcdctl' | 'etcdutl'): string {
  const version = etcdVersion(minor);
  return executable(join(cacheDir(), `etcd-${version}`), name, `etcd ${version}`);
}

export const prometheusOperatorVersion = (): string =>
  pinnedVersion('prometheus-operator', 'github.com/prometheus-operator/prometheus-operator');

/** prometheus-operator's ServiceMonitor and PrometheusRule CRD manifests (files). */
export function prometheusOperatorCrds(): string[] {
  const version = prometheusOperatorVersion();
  const dir = join(cacheDir(), `prometheus-operator-${version}`, 'crds');
  return ['monitoring.coreos.com_servicemonitors.yaml', 'monitoring.coreos.com_prometheusrules.yaml'].map((file) => {
    const path = join(dir, file);
    try {
      accessSync(path, constants.R_OK);
    } catch {
      throw new Error(`the tests need prometheus-operator ${version}'s CRDs: ${path} is missing; ${INSTALL_HINT}`);
    }
    return path;
  });
}
