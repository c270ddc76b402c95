// The control-plane harness itself: the real kube-apiserver (RBAC, client certificates, service-account tokens) and
// kube-controller-manager answer, and stop() leaves no process, port or directory behind.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { AuthenticationV1Api, CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { kubernetesVersion } from './binaries.js';
import { CONTROLLERS, startControlPlane } from './control-plane.js';
import { isAlive } from './processes.js';

const listening = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

describe('control plane harness', () => {
  it('serves the pinned Kubernetes with RBAC, runs the controllers, and stop() leaves nothing behind', async (t) => {
    const started = Date.now();
    const cp = await startControlPlane();
    t.diagnostic(`control plane ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    let pids: number[] = [];
    try {
      const version = await cp.kubectl(['version', '-o', 'json']);
      assert.equal(version.code, 0, version.stderr);
      assert.equal(
        (JSON.parse(version.stdout) as { serverVersion: { gitVersion: string } }).serverVersion.gitVersion,
        kubernetesVersion(),
      );

      // The namespace controller's peers: the serviceaccount controller creates `default` in a new namespace, the
      // root CA publisher its kube-root-ca.crt (what a pod's projected token volume mounts).
      const core = (await cp.kubeConfig()).makeApiClient(CoreV1Api);
      await core.createNamespace({ body: { metadata: { name: 'harness' } } });
      const deadline = Date.now() + 20_000;
      for (;;) {
        const sas = await core.listNamespacedServiceAccount({ namespace: 'harness' });
        const cms = await core.listNamespacedConfigMap({ namespace: 'harness' });
        if (
          sas.items.some((s) => s.metadata?.name === 'default') &&
          cms.items.some((c) => c.metadata?.name === 'kube-root-ca.crt')
        )
          break;
        assert.ok(Date.now() < deadline, 'no default ServiceAccount / kube-root-ca.crt in a new namespace after 20 s');
        await new Promise((r) => setTimeout(r, 200));
      }
      const rootCa = await core.readNamespacedConfigMap({ namespace: 'harness', name: 'kube-root-ca.crt' });
      assert.equal(rootCa.data?.['ca.crt'], cp.caPem);

      // RBAC is enforced for a user without bindings, and a binding grants exactly what it says.
      const alice = await cp.kubeConfig({ name: 'alice' });
      await assert.rejects(
        alice.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: 'harness' }),
        (err: { code?: number }) => err.code === 403,
      );
      const rbac = (await cp.kubeConfig()).makeApiClient(RbacAuthorizationV1Api);
      await rbac.createNamespacedRole({
        namespace: 'harness',
        body: {
          metadata: { name: 'read-secrets' },
          rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['list'] }],
        },
      });
      await rbac.createNamespacedRoleBinding({
        namespace: 'harness',
        body: {
          metadata: { name: 'alice' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-secrets' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'alice' }],
        },
      });
      await alice.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: 'harness' });

      // The TokenRequest API signs tokens the API server then accepts (service-account token signing works).
      const token = await core.createNamespacedServiceAccountToken({
        namespace: 'harness',
        name: 'default',
        body: { spec: { audiences: [cp.url], expirationSeconds: 600 } },
      });
      const review = await (
        await cp.kubeConfig()
      )
        .makeApiClient(AuthenticationV1Api)
        .createTokenReview({ body: { spec: { token: token.status!.token } } });
      assert.equal(review.status?.user?.username, 'system:serviceaccount:harness:default');

      // The project's CRDs install and are served.
      await cp.installCrds();
      const crds = await cp.kubectl(['get', 'crd', '-o', 'name']);
      assert.deepEqual(crds.stdout.trim().split('\n').sort(), [
        'customresourcedefinition.apiextensions.k8s.io/talosetcdbackups.talos.alperen.cloud',
        'customresourcedefinition.apiextensions.k8s.io/talosetcdbackupschedules.talos.alperen.cloud',
      ]);

      pids = cp.processes().map((p) => p.pid);
      assert.deepEqual(
        cp.processes().map((p) => p.name),
        ['etcd', 'kube-apiserver', 'kube-controller-manager'],
      );
      assert.match(cp.processes()[2]!.args.join(' '), new RegExp(`--controllers=${CONTROLLERS.join(',')}`));
    } finally {
      await cp.stop();
    }
    assert.ok(
      pids.every((pid) => !isAlive(pid)),
      'a control-plane process is still running',
    );
    assert.equal(await listening(cp.port), false, 'the API server port still accepts connections');
    assert.equal(existsSync(cp.dir), false, 'the temporary directory is still there');
  });
});
