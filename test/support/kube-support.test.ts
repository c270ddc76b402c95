// Proves the fake Kubernetes API (kube-api.ts) and the kubelet emulator (kubelet.ts): RBAC denies what the Role
// does not grant (with kube-apiserver's messages), the status subresource is split from the main resource, and a
// container run by the emulator reaches the API over TLS with its mounted service-account token.

import assert from 'node:assert/strict';
import { request, Agent } from 'node:https';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFakeKubeApi, type FakeKubeApi, type KubeObject } from './kube-api.js';
import { prepareContainer, runContainer, type PodTemplateSpecLike, type PreparedContainer } from './kubelet.js';

const GROUP = 'talos.alperen.cloud';
const API_VERSION = `${GROUP}/v1alpha1`;
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

/** One HTTPS request to the fake API, trusting its CA (no connection reuse unless an agent is given). */
function call(api: FakeKubeApi, method: string, path: string, o: { token?: string; body?: unknown; contentType?: string; agent?: Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = o.body === undefined ? undefined : JSON.stringify(o.body);
    const headers: Record<string, string> = {};
    if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
    if (payload !== undefined) headers['content-type'] = o.contentType ?? (method === 'PATCH' ? 'application/merge-patch+json' : 'application/json');
    const req = request(`${api.url}${path}`, { method, headers, ca: api.caPem, agent: o.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
    });
    req.once('error', reject);
    req.end(payload);
  });
}

const backupPath = (ns: string, name?: string, sub?: string): string =>
  `/apis/${API_VERSION}/namespaces/${ns}/talosetcdbackups${name ? `/${name}` : ''}${sub ? `/${sub}` : ''}`;

function backup(ns: string, name: string): KubeObject {
  return { apiVersion: API_VERSION, kind: 'TalosEtcdBackup', metadata: { name, namespace: ns }, spec: { cluster: 'c1' }, status: { phase: 'Pending' } };
}

function role(ns: string, name: string, rules: unknown[]): KubeObject {
  return { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name, namespace: ns }, rules };
}

function binding(ns: string, name: string, roleRef: { kind: string; name: string }, subjects: unknown[]): KubeObject {
  return { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name, namespace: ns }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', ...roleRef }, subjects };
}

const sa = (name: string, namespace = 'ns'): { kind: string; name: string; namespace: string } => ({ kind: 'ServiceAccount', name, namespace });

function forbidden(resource: string, name: string | undefined, user: string, verb: string, combined: string, group: string, ns: string): string {
  return `${resource}${name ? ` "${name}"` : ''} is forbidden: User "${user}" cannot ${verb} resource "${combined}" in API group "${group}" in the namespace "${ns}"`;
}

describe('fake Kubernetes API', () => {
  let api: FakeKubeApi;
  let token: string;
  let admin: string;

  before(async () => {
    api = await startFakeKubeApi();
    token = api.tokenFor('ns', 'sa');
    admin = api.tokenFor('ns', 'admin');
    api.put(
      role('ns', 'backup-status', [
        { apiGroups: [GROUP], resources: ['talosetcdbackups/status'], verbs: ['get', 'patch'], resourceNames: ['b1'] },
        { apiGroups: [''], resources: ['secrets'], verbs: ['get'], resourceNames: ['s1'] },
        { apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] },
      ]),
    );
    api.put(binding('ns', 'backup-status', { kind: 'Role', name: 'backup-status' }, [sa('sa')]));
    api.put({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'all' }, rules: [{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }] });
    api.put(binding('ns', 'admin', { kind: 'ClusterRole', name: 'all' }, [{ kind: 'ServiceAccount', name: 'admin' }])); // namespace defaults to the binding's
    for (const ns of ['ns', 'other']) {
      api.put(backup(ns, 'b1'));
      api.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c1', namespace: ns }, data: { k: 'v' } });
    }
    api.put(backup('ns', 'b2'));
    for (const name of ['s1', 's2']) api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'ns' }, data: { k: b64(name) } });
  });
  after(() => api.close());

  it('serves HTTPS for 127.0.0.1 with a certificate from caPem', async () => {
    assert.match(api.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(api.url, `https://${api.host}:${api.port}`);
    assert.match(api.caPem, /^-----BEGIN CERTIFICATE-----/);
    await assert.rejects(
      new Promise((resolve, reject) => request(`${api.url}/api/v1/namespaces/ns/configmaps/c1`, { agent: false }, resolve).once('error', reject).end()),
      /self-signed|unable to (get|verify)/,
    );
  });

  it('answers 401 with a Status body to a missing or unknown token', async () => {
    for (const t of [undefined, 'not-a-token']) {
      const res = await call(api, 'GET', '/api/v1/namespaces/ns/configmaps/c1', t === undefined ? {} : { token: t });
      assert.equal(res.status, 401);
      assert.deepEqual(res.body, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
    }
  });

  it('allows what the Role grants and nothing else, with kube-apiserver messages', async () => {
    const user = 'system:serviceaccount:ns:sa';
    const qualified = `talosetcdbackups.${GROUP}`;
    assert.equal((await call(api, 'GET', backupPath('ns', 'b1', 'status'), { token })).status, 200);
    assert.equal((await call(api, 'GET', '/api/v1/namespaces/ns/secrets/s1', { token })).status, 200);
    const list = await call(api, 'GET', '/api/v1/namespaces/ns/configmaps', { token });
    assert.equal(list.status, 200);
    assert.equal(list.body.kind, 'ConfigMapList');
    assert.deepEqual((list.body.items as KubeObject[]).map((o) => o.metadata.name), ['c1']);

    const denied: Array<[string, string, string]> = [
      // subresource granted, main resource not
      ['GET', backupPath('ns', 'b1'), forbidden(qualified, 'b1', user, 'get', 'talosetcdbackups', GROUP, 'ns')],
      // resourceNames
      ['PATCH', backupPath('ns', 'b2', 'status'), forbidden(qualified, 'b2', user, 'patch', 'talosetcdbackups/status', GROUP, 'ns')],
      ['GET', '/api/v1/namespaces/ns/secrets/s2', forbidden('secrets', 's2', user, 'get', 'secrets', '', 'ns')],
      // a rule with resourceNames never allows list
      ['GET', '/api/v1/namespaces/ns/secrets', forbidden('secrets', undefined, user, 'list', 'secrets', '', 'ns')],
      // wrong verb
      ['PUT', backupPath('ns', 'b1', 'status'), forbidden(qualified, 'b1', user, 'update', 'talosetcdbackups/status', GROUP, 'ns')],
      // wrong namespace: the binding lives in ns
      ['GET', '/api/v1/namespaces/other/configmaps/c1', forbidden('configmaps', 'c1', user, 'get', 'configmaps', '', 'other')],
    ];
    for (const [method, path, message] of denied) {
      const res = await call(api, method, path, { token, ...(method === 'GET' ? {} : { body: { status: {} } }) });
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.body.reason, 'Forbidden');
      assert.equal(res.body.message, message);
      assert.equal(res.body.kind, 'Status');
      assert.equal(res.body.code, 403);
    }
  });

  it('denies a service account without a binding, and names a binding to a missing Role', async () => {
    const res = await call(api, 'GET', '/api/v1/namespaces/ns/configmaps/c1', { token: api.tokenFor('ns', 'nobody') });
    assert.equal(res.status, 403);
    assert.equal(res.body.message, forbidden('configmaps', 'c1', 'system:serviceaccount:ns:nobody', 'get', 'configmaps', '', 'ns'));

    api.put(binding('ns', 'dangling', { kind: 'Role', name: 'missing' }, [sa('dangling')]));
    const dangling = await call(api, 'GET', '/api/v1/namespaces/ns/configmaps/c1', { token: api.tokenFor('ns', 'dangling') });
    assert.equal(dangling.status, 403);
    assert.match(dangling.body.message as string, /in the namespace "ns": RBAC: role\.rbac\.authorization\.k8s\.io "missing" not found$/);
  });

  it('records every request with the resolved verb, resource and status', async () => {
    const before = api.requests.length;
    await call(api, 'PATCH', backupPath('ns', 'b1', 'status'), { token, body: { status: { phase: 'Running' } } });
    await call(api, 'GET', '/api/v1/namespaces/ns/secrets', { token });
    await call(api, 'GET', '/api/v1/namespaces/ns/secrets/s1?x=1', { token: 'bad' });
    assert.deepEqual(api.requests.slice(before), [
      { method: 'PATCH', path: backupPath('ns', 'b1', 'status'), user: 'system:serviceaccount:ns:sa', verb: 'patch', resource: 'talosetcdbackups', subresource: 'status', name: 'b1', namespace: 'ns', status: 200 },
      { method: 'GET', path: '/api/v1/namespaces/ns/secrets', user: 'system:serviceaccount:ns:sa', verb: 'list', resource: 'secrets', namespace: 'ns', status: 403 },
      { method: 'GET', path: '/api/v1/namespaces/ns/secrets/s1', user: '', verb: 'get', resource: 'secrets', name: 's1', namespace: 'ns', status: 401 },
    ]);
  });

  it('PATCH on /status changes only .status (RFC 7386) and bumps resourceVersion', async () => {
    const start = api.get(API_VERSION, 'TalosEtcdBackup', 'other', 'b1')!;
    api.put(binding('other', 'status', { kind: 'Role', name: 'status' }, [sa('sa', 'ns')]));
    api.put(role('other', 'status', [{ apiGroups: [GROUP], resources: ['talosetcdbackups/status'], verbs: ['patch'] }]));
    const patch = { spec: { cluster: 'hacked' }, metadata: { labels: { a: 'b' } }, status: { phase: 'Running', report: { bytes: 1, node: 'n1' } } };
    const res = await call(api, 'PATCH', backupPath('other', 'b1', 'status'), { token, body: patch });
    assert.equal(res.status, 200);
    const stored = api.get(API_VERSION, 'TalosEtcdBackup', 'other', 'b1')!;
    assert.deepEqual(res.body, stored);
    assert.deepEqual(stored.spec, { cluster: 'c1' });
    assert.equal(stored.metadata.labels, undefined);
    assert.deepEqual(stored.status, { phase: 'Running', report: { bytes: 1, node: 'n1' } });
    assert.ok(Number(stored.metadata.resourceVersion) > Number(start.metadata.resourceVersion));
    assert.equal(stored.metadata.uid, start.metadata.uid);

    // null deletes a key, other keys stay
    const second = await call(api, 'PATCH', backupPath('other', 'b1', 'status'), { token, body: { status: { report: { node: null } } } });
    assert.deepEqual(second.body.status, { phase: 'Running', report: { bytes: 1 } });
    assert.ok(Number((second.body.metadata as KubeObject['metadata']).resourceVersion) > Number(stored.metadata.resourceVersion));
  });

  it('PATCH and PUT on the main resource cannot change .status; preconditions and media types are enforced', async () => {
    const path = backupPath('ns', 'b2');
    const res = await call(api, 'PATCH', path, { token: admin, body: { spec: { cluster: 'c2' }, status: { phase: 'Succeeded' } } });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.spec, { cluster: 'c2' });
    assert.deepEqual(res.body.status, { phase: 'Pending' });

    const current = api.get(API_VERSION, 'TalosEtcdBackup', 'ns', 'b2')!;
    const stale = await call(api, 'PATCH', path, { token: admin, body: { metadata: { resourceVersion: '1' }, spec: { cluster: 'x' } } });
    assert.equal(stale.status, 409);
    assert.equal(stale.body.reason, 'Conflict');
    const put = await call(api, 'PUT', path, { token: admin, body: { ...current, spec: { cluster: 'c3' }, status: { phase: 'Failed' } } });
    assert.equal(put.status, 200);
    assert.deepEqual([put.body.spec, put.body.status], [{ cluster: 'c3' }, { phase: 'Pending' }]);
    assert.equal((await call(api, 'PUT', path, { token: admin, body: current })).status, 409); // current's resourceVersion is stale now

    for (const contentType of ['application/json-patch+json', 'application/strategic-merge-patch+json']) {
      const wrong = await call(api, 'PATCH', path, { token: admin, body: [], contentType });
      assert.equal(wrong.status, 415);
      assert.equal(wrong.body.reason, 'UnsupportedMediaType');
    }
  });

  it('creates, refuses duplicates, deletes, and answers NotFound', async () => {
    const created = await call(api, 'POST', backupPath('ns'), { token: admin, body: { apiVersion: API_VERSION, kind: 'TalosEtcdBackup', metadata: { name: 'b3' }, spec: {}, status: { phase: 'Succeeded' } } });
    assert.equal(created.status, 201);
    assert.equal(created.body.status, undefined); // the server owns status
    assert.equal((created.body.metadata as KubeObject['metadata']).namespace, 'ns');
    const again = await call(api, 'POST', backupPath('ns'), { token: admin, body: { metadata: { name: 'b3' } } });
    assert.deepEqual([again.status, again.body.reason, again.body.message], [409, 'AlreadyExists', `talosetcdbackups.${GROUP} "b3" already exists`]);
    assert.equal((await call(api, 'DELETE', backupPath('ns', 'b3'), { token: admin })).status, 200);
    const gone = await call(api, 'GET', backupPath('ns', 'b3'), { token: admin });
    assert.deepEqual([gone.status, gone.body.reason, gone.body.message], [404, 'NotFound', `talosetcdbackups.${GROUP} "b3" not found`]);
    assert.equal(api.get(API_VERSION, 'TalosEtcdBackup', 'ns', 'b3'), undefined);
  });

  it('close() ends kept-alive connections', async () => {
    const other = await startFakeKubeApi();
    const agent = new Agent({ keepAlive: true });
    try {
      other.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: 'ns' } });
      assert.equal((await call(other, 'GET', '/api/v1/namespaces/ns/configmaps/c', { token: other.tokenFor('ns', 'x'), agent })).status, 403);
      await other.close();
      await other.close(); // idempotent
    } finally {
      agent.destroy();
    }
  });
});

describe('kubelet emulator', () => {
  let api: FakeKubeApi;
  const prepared: PreparedContainer[] = [];
  const repo = '/work/checkout';

  before(async () => {
    api = await startFakeKubeApi();
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds', namespace: 'ns' }, data: { username: b64('alice'), talosconfig: b64('context: x\n') } });
    api.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'ns' }, data: { region: 'eu-1', bucket: 'b' } });
    api.put({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'backup', namespace: 'ns' } });
    api.put({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'quiet', namespace: 'ns' }, automountServiceAccountToken: false });
    api.put(role('ns', 'read-settings', [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get'], resourceNames: ['settings'] }]));
    api.put(binding('ns', 'backup', { kind: 'Role', name: 'read-settings' }, [sa('backup')]));
  });
  after(async () => {
    for (const p of prepared) await p.cleanup();
    await api.close();
  });

  async function prepare(spec: Partial<PodTemplateSpecLike['spec']>, metadata?: PodTemplateSpecLike['metadata']): Promise<PreparedContainer> {
    const template: PodTemplateSpecLike = { ...(metadata ? { metadata } : {}), spec: { serviceAccountName: 'backup', containers: [{ name: 'main', command: ['node', '-e', ''] }], ...spec } };
    const p = await prepareContainer(template, { api, namespace: 'ns', imagePaths: { '/app': repo } });
    prepared.push(p);
    return p;
  }

  it('resolves env (secretKeyRef, configMapKeyRef, fieldRef, $(VAR)), mounts and argv like the kubelet', async () => {
    const p = await prepare(
      {
        containers: [
          {
            name: 'snapshot',
            command: ['node', '--max-semi-space-size=2', '/app/dist/src/main.js', 'snapshot'],
            args: ['--talosconfig=/var/run/secrets/talos.dev/config', '$(REGION)', '$$(REGION)'],
            env: [
              { name: 'USER', valueFrom: { secretKeyRef: { name: 'creds', key: 'username' } } },
              { name: 'REGION', valueFrom: { configMapKeyRef: { name: 'settings', key: 'region' } } },
              { name: 'LABEL', value: '$(USER)@$(REGION) $$(USER) $(LATER) $(KUBERNETES_SERVICE_HOST)' },
              { name: 'LATER', value: 'x' },
              { name: 'MAYBE', valueFrom: { secretKeyRef: { name: 'absent', key: 'k', optional: true } } },
              { name: 'MAYBE_KEY', valueFrom: { secretKeyRef: { name: 'creds', key: 'absent', optional: true } } },
              { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
              { name: 'SA', valueFrom: { fieldRef: { fieldPath: 'spec.serviceAccountName' } } },
              { name: 'TALOSCONFIG', value: '/var/run/secrets/talos.dev/config' },
              { name: 'APP', value: '/app' },
              { name: 'ELSEWHERE', value: '/application/x' },
            ],
            volumeMounts: [
              { name: 'talosconfig', mountPath: '/var/run/secrets/talos.dev', readOnly: true },
              { name: 'settings', mountPath: '/etc/settings' },
              { name: 'scratch', mountPath: '/tmp/scratch' },
            ],
          },
        ],
        volumes: [
          { name: 'talosconfig', secret: { secretName: 'creds', items: [{ key: 'talosconfig', path: 'config', mode: 0o400 }] } },
          { name: 'settings', configMap: { name: 'settings' } },
          { name: 'scratch', emptyDir: {} },
        ],
      },
      { generateName: 'backup-b1-' },
    );
    const { dir } = p;
    assert.deepEqual(p.configErrors, []);
    assert.deepEqual(p.command, [
      process.execPath,
      '--max-semi-space-size=2',
      `${repo}/dist/src/main.js`,
      'snapshot',
      `--talosconfig=${dir}/var/run/secrets/talos.dev/config`,
      'eu-1',
      '$(REGION)',
    ]);
    const saDir = `${dir}/var/run/secrets/kubernetes.io/serviceaccount`;
    assert.deepEqual(p.env, {
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: String(api.port),
      KUBERNETES_SERVICE_PORT_HTTPS: String(api.port),
      KUBERNETES_PORT: `tcp://127.0.0.1:${api.port}`,
      HOSTNAME: 'backup-b1-local',
      USER: 'alice',
      REGION: 'eu-1',
      LABEL: 'alice@eu-1 $(USER) $(LATER) 127.0.0.1',
      LATER: 'x',
      POD_NAME: 'backup-b1-local',
      POD_NAMESPACE: 'ns',
      SA: 'backup',
      TALOSCONFIG: `${dir}/var/run/secrets/talos.dev/config`,
      APP: repo,
      ELSEWHERE: '/application/x',
      KUBERNETES_SERVICE_ACCOUNT_DIR: saDir,
      ...(process.env.PATH ? { PATH: process.env.PATH } : {}),
      ...(process.env.HOME ? { HOME: process.env.HOME } : {}),
    });
    assert.equal(await readFile(join(dir, 'var/run/secrets/talos.dev/config'), 'utf8'), 'context: x\n');
    assert.equal((await stat(join(dir, 'var/run/secrets/talos.dev/config'))).mode & 0o777, 0o400);
    assert.deepEqual((await readdir(join(dir, 'var/run/secrets/talos.dev'))).sort(), ['config']); // items: only those
    assert.deepEqual((await readdir(join(dir, 'etc/settings'))).sort(), ['bucket', 'region']); // no items: every key
    assert.equal(await readFile(join(dir, 'etc/settings/region'), 'utf8'), 'eu-1');
    assert.deepEqual(await readdir(join(dir, 'tmp/scratch')), []);
    assert.equal(await readFile(join(saDir, 'token'), 'utf8'), api.tokenFor('ns', 'backup'));
    assert.equal(await readFile(join(saDir, 'ca.crt'), 'utf8'), api.caPem);
    assert.equal(await readFile(join(saDir, 'namespace'), 'utf8'), 'ns');
  });

  it('reports what a real kubelet refuses (CreateContainerConfigError, MountVolume.SetUp) and runContainer refuses too', async () => {
    const p = await prepare({
      containers: [
        {
          name: 'main',
          command: ['node', '-e', ''],
          env: [
            { name: 'A', valueFrom: { secretKeyRef: { name: 'nope', key: 'k' } } },
            { name: 'B', valueFrom: { secretKeyRef: { name: 'creds', key: 'nokey' } } },
            { name: 'C', valueFrom: { configMapKeyRef: { name: 'gone', key: 'k' } } },
            { name: 'D', valueFrom: { configMapKeyRef: { name: 'settings', key: 'nokey' } } },
          ],
          volumeMounts: [
            { name: 'items', mountPath: '/items' },
            { name: 'optional-items', mountPath: '/optional-items' },
            { name: 'missing', mountPath: '/missing' },
            { name: 'optional', mountPath: '/optional' },
          ],
        },
      ],
      volumes: [
        { name: 'items', secret: { secretName: 'creds', items: [{ key: 'username', path: 'u' }, { key: 'nokey', path: 'n' }] } },
        { name: 'optional-items', configMap: { name: 'settings', optional: true, items: [{ key: 'nokey', path: 'n' }, { key: 'bucket', path: 'sub/b' }] } },
        { name: 'missing', configMap: { name: 'gone' } },
        { name: 'optional', secret: { secretName: 'nope', optional: true } },
      ],
    });
    assert.deepEqual(p.configErrors, [
      'MountVolume.SetUp failed for volume "items" : references non-existent secret key: nokey',
      'MountVolume.SetUp failed for volume "missing" : configmap "gone" not found',
      'secret "nope" not found',
      "couldn't find key nokey in Secret ns/creds",
      'configmap "gone" not found',
      "couldn't find key nokey in ConfigMap ns/settings",
    ]);
    assert.deepEqual(Object.keys(p.env).filter((k) => /^[A-D]$/.test(k)), []);
    assert.deepEqual(await readdir(join(p.dir, 'items')), ['u']);
    assert.equal(await readFile(join(p.dir, 'optional-items/sub/b'), 'utf8'), 'b');
    assert.deepEqual(await readdir(join(p.dir, 'optional')), []);
    await assert.rejects(runContainer(p), /the kubelet would not start this container: MountVolume/);

    const noAccount = await prepare({ serviceAccountName: 'ghost' });
    assert.deepEqual(noAccount.configErrors, ['pods "pod-local" is forbidden: error looking up service account ns/ghost: serviceaccount "ghost" not found']);
  });

  it('runs the container with the mounted token and CA: it reads what its Role allows and is denied the rest', async () => {
    // Plain CommonJS for `node -e`; what an in-cluster client does, with the emulator's service-account dir.
    const script = `
      const https = require('node:https'), fs = require('node:fs'), path = require('node:path');
      const dir = process.env.KUBERNETES_SERVICE_ACCOUNT_DIR;
      const read = (f) => fs.readFileSync(path.join(dir, f), 'utf8');
      const get = (name) => new Promise((resolve, reject) => {
        https.get({
          host: process.env.KUBERNETES_SERVICE_HOST, port: Number(process.env.KUBERNETES_SERVICE_PORT),
          servername: 'kubernetes.default.svc', ca: read('ca.crt'),
          path: '/api/v1/namespaces/' + read('namespace') + '/configmaps/' + name,
          headers: { authorization: 'Bearer ' + read('token') },
        }, (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(b) })); }).on('error', reject);
      });
      get('settings').then((a) => get('other').then((b) => [a, b])).then((r) => console.log(JSON.stringify({ results: r, env: Object.keys(process.env).sort() })), (e) => { console.error(e); process.exit(2); });
    `;
    const p = await prepare({ containers: [{ name: 'main', command: ['node', '-e', script] }] });
    const result = await runContainer(p, { timeoutMs: 30_000 });
    assert.equal(result.code, 0, result.stderr);
    const out = JSON.parse(result.stdout) as { results: Reply[]; env: string[] };
    assert.equal(out.results[0]!.status, 200);
    assert.deepEqual((out.results[0]!.body.data as Record<string, string>).region, 'eu-1');
    assert.equal(out.results[1]!.status, 403);
    assert.equal(out.results[1]!.body.message, forbidden('configmaps', 'other', 'system:serviceaccount:ns:backup', 'get', 'configmaps', '', 'ns'));
    // only what the container would see (no NODE_TEST_CONTEXT, NODE_OPTIONS... from the test runner)
    assert.deepEqual(out.env, Object.keys(p.env).sort());
    assert.deepEqual(
      api.requests.map((r) => [r.user, r.verb, r.name, r.status]),
      [
        ['system:serviceaccount:ns:backup', 'get', 'settings', 200],
        ['system:serviceaccount:ns:backup', 'get', 'other', 403],
      ],
    );
  });

  it('does not mount a token when the pod or its ServiceAccount opts out; service variables stay', async () => {
    for (const spec of [{ automountServiceAccountToken: false }, { serviceAccountName: 'quiet' }]) {
      const p = await prepare(spec);
      assert.deepEqual(p.configErrors, []);
      assert.equal(p.env.KUBERNETES_SERVICE_ACCOUNT_DIR, undefined);
      assert.equal(p.env.KUBERNETES_SERVICE_HOST, '127.0.0.1');
      await assert.rejects(stat(join(p.dir, 'var/run/secrets/kubernetes.io/serviceaccount')), { code: 'ENOENT' });
    }
    // the pod's field wins over the ServiceAccount's
    const p = await prepare({ serviceAccountName: 'quiet', automountServiceAccountToken: true });
    assert.equal(await readFile(join(p.env.KUBERNETES_SERVICE_ACCOUNT_DIR!, 'token'), 'utf8'), api.tokenFor('ns', 'quiet'));
  });

  it('kills a container that outlives timeoutMs, and cleanup() removes the directory', async () => {
    const p = await prepare({ containers: [{ name: 'main', command: ['node', '-e', 'setTimeout(() => {}, 60_000)'] }] });
    const result = await runContainer(p, { timeoutMs: 300 });
    assert.deepEqual([result.timedOut, result.signal, result.code], [true, 'SIGKILL', null]);
    await p.cleanup();
    await p.cleanup();
    await assert.rejects(stat(p.dir), { code: 'ENOENT' });
  });
});
