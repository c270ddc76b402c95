// The test kubelet on the real control plane, with the real Job controller and garbage collector: it binds and
// runs pods (tiny `node -e` containers), resolves their env and volumes as the kubelet does (the projected
// service-account token is the pod's own, bound to it), waits while a Secret is missing, writes the statuses the Job
// controller reads, honours deletion (SIGTERM, SIGKILL after the grace period), refuses loudly what it cannot
// emulate, and stop() leaves no process or directory behind.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BatchV1Api, CoreV1Api, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from '../harness/control-plane.js';
import { startKubelet, type Kubelet } from './kubelet.js';
import { isAlive } from '../harness/processes.js';

const NS = 'kubelet-test';

describe('test kubelet on the real API server', () => {
  let cp: ControlPlane;
  let kubelet: Kubelet;
  let core: CoreV1Api;
  let batch: BatchV1Api;

  before(async () => {
    cp = await startControlPlane();
    // Short watches: the API server ends one every 2 s, so the whole file also proves the kubelet watches on
    // from the resourceVersion it saw last without missing a pod.
    kubelet = await startKubelet({ controlPlane: cp, watchTimeoutSeconds: 2 });
    const kc = await cp.kubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    batch = kc.makeApiClient(BatchV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    // Pods need the namespace's default ServiceAccount (admission) and kube-root-ca.crt (the token volume).
    await kubelet.waitFor(
      'the default ServiceAccount and kube-root-ca.crt',
      async () => {
        const sa = await core.readNamespacedServiceAccount({ namespace: NS, name: 'default' }).catch(() => undefined);
        const cm = await core
          .readNamespacedConfigMap({ namespace: NS, name: 'kube-root-ca.crt' })
          .catch(() => undefined);
        return Boolean(sa && cm);
      },
      30_000,
    );
  });
  after(async () => {
    await kubelet?.stop();
    await cp?.stop();
  });

  const job = (
    name: string,
    script: string,
    spec: Record<string, unknown> = {},
    podSpec: Record<string, unknown> = {},
  ): V1Job => ({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: NS },
    spec: {
      backoffLimit: 0,
      ...spec,
      template: {
        metadata: { labels: { app: name } },
        spec: {
          restartPolicy: 'Never',
          containers: [{ name: 'main', image: 'node:22', command: ['node', '-e', script] }],
          ...podSpec,
        },
      },
    },
  });

  async function jobCondition(name: string, timeoutMs = 60_000): Promise<{ type: string; reason?: string }> {
    return kubelet.waitFor(
      `Job ${name} to finish`,
      async () => {
        const j = await batch.readNamespacedJob({ namespace: NS, name });
        const c = j.status?.conditions?.find(
          (x) => (x.type === 'Complete' || x.type === 'Failed') && x.status === 'True',
        );
        return c && { type: c.type, ...(c.reason && { reason: c.reason }) };
      },
      timeoutMs,
    );
  }

  const readPod = (name: string): Promise<V1Pod> => core.readNamespacedPod({ namespace: NS, name });
  const podGone = (name: string) =>
    kubelet.waitFor(
      `pod ${name} to be gone from the API`,
      () =>
        readPod(name).then(
          () => false,
          (err: { code?: number }) => err.code === 404,
        ),
      30_000,
    );

  it("registers a Ready node, binds the Job's pod, runs it, and the real Job controller completes the Job", async () => {
    const node = await core.readNode({ name: kubelet.nodeName });
    assert.equal(node.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    await batch.createNamespacedJob({
      namespace: NS,
      body: job('hello', "console.log('hello from', process.env.HOSTNAME)"),
    });
    assert.deepEqual(await jobCondition('hello'), { type: 'Complete', reason: 'CompletionsReached' });
    const run = kubelet.pod({ namespace: NS, job: 'hello' })!;
    assert.equal(run.attempt, 1);
    assert.equal(run.exitCode, 0);
    assert.equal(run.stdout, `hello from ${run.name}\n`);
    assert.equal(run.state, 'Terminated');

    const pod = await readPod(run.name);
    assert.equal(pod.spec?.nodeName, kubelet.nodeName, 'bound through pods/binding');
    assert.equal(pod.status?.phase, 'Succeeded');
    const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
    assert.equal(terminated?.exitCode, 0);
    assert.equal(terminated?.reason, 'Completed');
    assert.ok(terminated?.startedAt && terminated.finishedAt);
    const conditions = Object.fromEntries((pod.status?.conditions ?? []).map((c) => [c.type, c.status]));
    assert.deepEqual(conditions, {
      PodReadyToStartContainers: 'False',
      Initialized: 'True',
      Ready: 'False',
      ContainersReady: 'False',
      PodScheduled: 'True',
    });
    // The Job controller accounted for the pod: its tracking finalizer is gone.
    assert.ok(!(pod.metadata?.finalizers ?? []).includes('batch.kubernetes.io/job-tracking'));
    await kubelet.idle(10_000);
  });

  it("resolves env and volumes as the kubelet does; the projected token is the pod's own, bound to it", async () => {
    await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'reader' } } });
    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: 's1' }, stringData: { password: 'pa55', other: 'x' } },
    });
    await core.createNamespacedConfigMap({
      namespace: NS,
      body: {
        metadata: { name: 'cm1' },
        data: { greeting: 'hi', 'colour.txt': 'blue' },
        binaryData: { 'blob.bin': Buffer.from([1, 2, 3]).toString('base64') },
      },
    });
    const script = `
      const fs = require('fs'), https = require('https'), path = require('path');
      const read = (p) => fs.readFileSync(p, 'utf8');
      const mode = (p) => (fs.statSync(p).mode & 0o777).toString(8);
      const e = process.env;
      fs.writeFileSync(path.join(e.SCRATCH, 'w'), 'ok');
      const claims = (t) => JSON.parse(Buffer.from(t.split('.')[1], 'base64url').toString());
      const vault = claims(read(path.join(e.PROJECTED, 'vault-token')));
      const out = {
        env: Object.fromEntries(Object.entries(e).filter(([k]) => !['PATH', 'HOME', 'KUBERNETES_SERVICE_ACCOUNT_DIR', 'SECRET_FILE', 'CM_DIR', 'SCRATCH', 'DOWNWARD', 'PROJECTED'].includes(k))),
        secretFile: [read(e.SECRET_FILE), mode(e.SECRET_FILE)],
        cm: { greeting: [read(path.join(e.CM_DIR, 'greeting')), mode(path.join(e.CM_DIR, 'greeting'))], blob: [...fs.readFileSync(path.join(e.CM_DIR, 'blob.bin'))] },
        scratch: read(path.join(e.SCRATCH, 'w')),
        downward: read(path.join(e.DOWNWARD, 'labels')),
        projected: { secret: read(path.join(e.PROJECTED, 'pw')), colour: read(path.join(e.PROJECTED, 'colour')), ns: read(path.join(e.PROJECTED, 'ns')), vaultAud: vault.aud, vaultPod: vault['kubernetes.io'].pod.name },
        saNamespace: read(path.join(e.KUBERNETES_SERVICE_ACCOUNT_DIR, 'namespace')),
      };
      const sa = e.KUBERNETES_SERVICE_ACCOUNT_DIR;
      const req = https.request({ host: e.KUBERNETES_SERVICE_HOST, port: e.KUBERNETES_SERVICE_PORT, method: 'POST', path: '/apis/authentication.k8s.io/v1/selfsubjectreviews',
        ca: fs.readFileSync(path.join(sa, 'ca.crt')), headers: { authorization: 'Bearer ' + read(path.join(sa, 'token')).trim(), 'content-type': 'application/json' } }, (res) => {
        let body = ''; res.on('data', (c) => (body += c));
        res.on('end', () => { out.review = { status: res.statusCode, user: JSON.parse(body).status.userInfo }; console.log(JSON.stringify(out)); });
      });
      req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }));`;
    const body = job(
      'resolve',
      script,
      {},
      {
        serviceAccountName: 'reader',
        volumes: [
          {
            name: 'creds',
            secret: { secretName: 's1', items: [{ key: 'password', path: 'pw', mode: 0o600 }], defaultMode: 0o400 },
          },
          { name: 'config', configMap: { name: 'cm1', defaultMode: 0o440 } },
          { name: 'scratch', emptyDir: {} },
          { name: 'podinfo', downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] } },
          {
            name: 'bundle',
            projected: {
              sources: [
                { secret: { name: 's1', items: [{ key: 'password', path: 'pw' }] } },
                { configMap: { name: 'cm1', items: [{ key: 'colour.txt', path: 'colour' }] } },
                { downwardAPI: { items: [{ path: 'ns', fieldRef: { fieldPath: 'metadata.namespace' } }] } },
                { serviceAccountToken: { audience: 'vault', expirationSeconds: 600, path: 'vault-token' } },
              ],
            },
          },
        ],
      },
    );
    const container = body.spec!.template.spec!.containers[0]!;
    container.volumeMounts = [
      { name: 'creds', mountPath: '/etc/creds', readOnly: true },
      { name: 'config', mountPath: '/etc/config' },
      { name: 'scratch', mountPath: '/scratch' },
      { name: 'podinfo', mountPath: '/etc/podinfo' },
      { name: 'bundle', mountPath: '/etc/projected' },
    ];
    container.envFrom = [
      { prefix: 'CM_', configMapRef: { name: 'cm1' } },
      { secretRef: { name: 'no-such-secret', optional: true } },
    ];
    container.env = [
      { name: 'PLAIN', value: 'plain' },
      { name: 'EXPANDED', value: '$(PLAIN)-$(KUBERNETES_SERVICE_PORT)-$$(PLAIN)-$(UNDEFINED)' },
      { name: 'FROM_SECRET', valueFrom: { secretKeyRef: { name: 's1', key: 'password' } } },
      { name: 'FROM_CM', valueFrom: { configMapKeyRef: { name: 'cm1', key: 'greeting' } } },
      { name: 'OPTIONAL_SECRET', valueFrom: { secretKeyRef: { name: 'no-such-secret', key: 'x', optional: true } } },
      { name: 'OPTIONAL_KEY', valueFrom: { secretKeyRef: { name: 's1', key: 'no-such-key', optional: true } } },
      { name: 'OPTIONAL_CM_KEY', valueFrom: { configMapKeyRef: { name: 'cm1', key: 'no-such-key', optional: true } } },
      ...(
        [
          ['POD_NAME', 'metadata.name'],
          ['POD_NAMESPACE', 'metadata.namespace'],
          ['POD_UID', 'metadata.uid'],
          ['APP_LABEL', "metadata.labels['app']"],
          ['MISSING_ANNOTATION', "metadata.annotations['nope']"],
          ['NODE', 'spec.nodeName'],
          ['SA', 'spec.serviceAccountName'],
          ['POD_IP', 'status.podIP'],
          ['HOST_IP', 'status.hostIP'],
        ] as const
      ).map(([name, fieldPath]) => ({ name, valueFrom: { fieldRef: { fieldPath } } })),
      { name: 'SECRET_FILE', value: '/etc/creds/pw' },
      { name: 'CM_DIR', value: '/etc/config' },
      { name: 'SCRATCH', value: '/scratch' },
      { name: 'DOWNWARD', value: '/etc/podinfo' },
      { name: 'PROJECTED', value: '/etc/projected' },
    ];
    await batch.createNamespacedJob({ namespace: NS, body });
    const finished = await jobCondition('resolve');
    const run = kubelet.pod({ namespace: NS, job: 'resolve' })!;
    assert.equal(finished.type, 'Complete', run.stderr);
    const pod = await readPod(run.name);
    const out = JSON.parse(run.stdout) as Record<string, any>;

    assert.deepEqual(
      out.env,
      {
        CM_greeting: 'hi',
        'CM_colour.txt': 'blue',
        HOSTNAME: run.name,
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
        KUBERNETES_SERVICE_PORT: String(cp.port),
        KUBERNETES_SERVICE_PORT_HTTPS: String(cp.port),
        KUBERNETES_PORT: `tcp://127.0.0.1:${cp.port}`,
        [`KUBERNETES_PORT_${cp.port}_TCP`]: `tcp://127.0.0.1:${cp.port}`,
        [`KUBERNETES_PORT_${cp.port}_TCP_PROTO`]: 'tcp',
        [`KUBERNETES_PORT_${cp.port}_TCP_PORT`]: String(cp.port),
        [`KUBERNETES_PORT_${cp.port}_TCP_ADDR`]: '127.0.0.1',
        PLAIN: 'plain',
        EXPANDED: `plain-${cp.port}-$(PLAIN)-$(UNDEFINED)`,
        FROM_SECRET: 'pa55',
        FROM_CM: 'hi',
        POD_NAME: run.name,
        POD_NAMESPACE: NS,
        POD_UID: pod.metadata!.uid,
        APP_LABEL: 'resolve',
        MISSING_ANNOTATION: '',
        NODE: kubelet.nodeName,
        SA: 'reader',
        POD_IP: '127.0.0.1',
        HOST_IP: '127.0.0.1',
      },
      'nothing of the test process leaks in; optional refs that are missing are left out',
    );
    assert.deepEqual(out.secretFile, ['pa55', '600'], 'item mode over defaultMode');
    assert.deepEqual(out.cm, { greeting: ['hi', '440'], blob: [1, 2, 3] }, 'a ConfigMap volume has binaryData too');
    assert.equal(out.scratch, 'ok');
    assert.match(out.downward, /^app="resolve"$/m);
    assert.deepEqual(out.projected, {
      secret: 'pa55',
      colour: 'blue',
      ns: NS,
      vaultAud: ['vault'],
      vaultPod: run.name,
    });
    assert.equal(out.saNamespace, NS);

    // The admission plugin added the kube-api-access volume; the token in it authenticates as the pod's service
    // account, bound to this pod on this node.
    assert.ok(
      pod.spec?.volumes?.some((v) => v.name.startsWith('kube-api-access-') && v.projected),
      'the ServiceAccount admission plugin mounted the token volume',
    );
    assert.equal(out.review.status, 201);
    assert.equal(out.review.user.username, `system:serviceaccount:${NS}:reader`);
    assert.deepEqual(out.review.user.extra['authentication.kubernetes.io/pod-name'], [run.name]);
    assert.deepEqual(out.review.user.extra['authentication.kubernetes.io/pod-uid'], [pod.metadata!.uid]);
    assert.deepEqual(out.review.user.extra['authentication.kubernetes.io/node-name'], [kubelet.nodeName]);
  });

  it('runs init containers in order and a native sidecar beside the main container, stopped once it ended', async () => {
    const node = (name: string, script: string, extra: Record<string, unknown> = {}) => ({
      name,
      image: 'node:22',
      command: ['node', '-e', script],
      // A path reaches the process through its environment (mapped to the volume), not inside a script.
      env: [{ name: 'SHARED', value: '/shared' }],
      volumeMounts: [{ name: 'shared', mountPath: '/shared' }],
      ...extra,
    });
    const sidecar = [
      "const fs = require('node:fs');",
      "process.on('SIGTERM', () => process.exit(0));",
      "fs.writeFileSync(process.env.SHARED + '/sidecar-up', String(process.pid)); setInterval(() => {}, 1000);",
    ].join(' ');
    await batch.createNamespacedJob({
      namespace: NS,
      body: job(
        'with-sidecar',
        '',
        {},
        {
          volumes: [{ name: 'shared', emptyDir: {} }],
          initContainers: [
            node('first', "require('node:fs').writeFileSync(process.env.SHARED + '/first', 'done')"),
            node('side', sidecar, { restartPolicy: 'Always' }),
          ],
          containers: [
            node(
              'main',
              "const fs = require('node:fs'); const d = process.env.SHARED; const wait = () => fs.existsSync(d + '/sidecar-up') ? console.log(fs.readFileSync(d + '/first', 'utf8')) : setTimeout(wait, 50); wait();",
            ),
          ],
        },
      ),
    });
    assert.deepEqual(await jobCondition('with-sidecar'), { type: 'Complete', reason: 'CompletionsReached' });
    const run = kubelet.pod({ namespace: NS, job: 'with-sidecar' })!;
    assert.equal(run.stdout, 'done\n', 'the main container saw what the first init container wrote');
    assert.deepEqual(
      run.initContainers.map((i) => [i.name, i.sidecar, i.exitCode]),
      [
        ['first', false, 0],
        ['side', true, 0],
      ],
      'the sidecar got SIGTERM once the main container ended, and exited',
    );
    const pod = await readPod(run.name);
    assert.equal(pod.status?.phase, 'Succeeded');
    assert.deepEqual(
      pod.status?.initContainerStatuses?.map((s) => [s.name, s.state?.terminated?.exitCode]),
      [
        ['first', 0],
        ['side', 0],
      ],
    );
    await kubelet.idle(10_000);
  });

  it('a failing init container fails the pod before the main container starts; the podFailurePolicy reads its exit code', async () => {
    await batch.createNamespacedJob({
      namespace: NS,
      body: job(
        'init-fails',
        "console.log('never')",
        {
          podFailurePolicy: {
            rules: [{ action: 'FailJob', onExitCodes: { containerName: 'setup', operator: 'In', values: [2] } }],
          },
          backoffLimit: 3,
        },
        { initContainers: [{ name: 'setup', image: 'node:22', command: ['node', '-e', 'process.exit(2)'] }] },
      ),
    });
    assert.deepEqual(await jobCondition('init-fails'), { type: 'Failed', reason: 'PodFailurePolicy' });
    const run = kubelet.pod({ namespace: NS, job: 'init-fails' })!;
    assert.equal(run.stdout, '', 'the main container never ran');
    assert.equal(run.initContainers[0]?.exitCode, 2);
    const pod = await readPod(run.name);
    assert.equal(pod.status?.phase, 'Failed');
    assert.equal(pod.status?.initContainerStatuses?.[0]?.state?.terminated?.exitCode, 2);
    assert.equal(pod.status?.containerStatuses?.[0]?.state?.waiting?.reason, 'PodInitializing');
    await kubelet.idle(10_000);
  });

  it('a missing Secret or key keeps the pod Pending in CreateContainerConfigError; it starts once both exist', async () => {
    const body = job('late-secret', 'console.log(process.env.TOKEN.length)');
    body.spec!.template.spec!.containers[0]!.env = [
      { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'late', key: 'token' } } },
    ];
    await batch.createNamespacedJob({ namespace: NS, body });
    const waiting = async (message: string) => {
      const run = await kubelet.waitForPod({ namespace: NS, job: 'late-secret' }, 'Waiting');
      return kubelet.waitFor(
        `pod waiting with ${message}`,
        async () => {
          const status = (await readPod(run.name)).status;
          const w = status?.containerStatuses?.[0]?.state?.waiting;
          return (
            w?.reason === 'CreateContainerConfigError' && w.message === message && status?.phase === 'Pending' && run
          );
        },
        20_000,
      );
    };
    const run = await waiting('secret "late" not found');
    assert.equal(run.pid, undefined, 'no process started');
    assert.deepEqual(run.configErrors, ['secret "late" not found']);
    const active = await batch.readNamespacedJob({ namespace: NS, name: 'late-secret' });
    assert.equal(active.status?.active, 1, 'the Job controller counts it as active');

    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: 'late' }, stringData: { other: 'x' } },
    });
    await waiting(`couldn't find key token in Secret ${NS}/late`);
    await core.patchNamespacedSecret({
      namespace: NS,
      name: 'late',
      body: [{ op: 'add', path: '/data/token', value: Buffer.from('abcdef').toString('base64') }],
    });
    assert.equal((await jobCondition('late-secret')).type, 'Complete');
    assert.equal(run.stdout, '6\n');
    assert.deepEqual(run.configErrors, []);
    assert.equal(
      kubelet.pods().filter((r) => r.job === 'late-secret').length,
      1,
      'the same pod started: no retry was spent',
    );
  });

  it('deleting a Job (background propagation): the garbage collector deletes its pod, the kubelet SIGTERMs it and removes it', async () => {
    const script =
      "process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(3); }); console.log('up'); setInterval(() => {}, 1000);";
    await batch.createNamespacedJob({ namespace: NS, body: job('doomed', script) });
    const run = await kubelet.waitForPod({ namespace: NS, job: 'doomed' }, 'Running');
    await kubelet.waitFor('the container to be up', () => run.stdout.includes('up'), 20_000);
    assert.equal((await readPod(run.name)).status?.phase, 'Running');
    await batch.deleteNamespacedJob({ namespace: NS, name: 'doomed', propagationPolicy: 'Background' });
    await kubelet.waitForPod({ namespace: NS, job: 'doomed' }, 'Terminated', 40_000);
    assert.deepEqual(run.signalsSent, ['SIGTERM']);
    assert.equal(run.exitCode, 3);
    assert.equal(run.stdout, 'up\ngot SIGTERM\n');
    // The kubelet's grace-0 delete; the Job controller then drops the tracking finalizer of the orphaned pod.
    await podGone(run.name);
    assert.equal(isAlive(run.pid!), false);
    assert.equal(existsSync(run.dir!), false, "the pod's directory is removed");
  });

  it('a container that ignores SIGTERM is SIGKILLed after its terminationGracePeriodSeconds; kill() injects faults', async () => {
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'stubborn' },
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: 'main',
              image: 'node:22',
              command: [
                'node',
                '-e',
                "process.on('SIGTERM', () => console.log('ignored')); console.log('armed'); setInterval(() => {}, 1000);",
              ],
            },
          ],
        },
      },
    });
    const stubborn = await kubelet.waitForPod({ namespace: NS, name: 'stubborn' }, 'Running');
    await kubelet.waitFor(
      'the handler to be installed',
      async () => stubborn.stdout.includes('armed') && (await readPod('stubborn')).status?.phase === 'Running',
      20_000,
    );
    await core.deleteNamespacedPod({ namespace: NS, name: 'stubborn' });
    await kubelet.waitForPod({ namespace: NS, name: 'stubborn' }, 'Terminated', 20_000);
    assert.deepEqual(stubborn.signalsSent, ['SIGTERM', 'SIGKILL']);
    assert.deepEqual([stubborn.exitCode, stubborn.signal], [137, 'SIGKILL']);
    assert.equal(stubborn.stdout, 'armed\nignored\n');
    await podGone('stubborn');

    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'victim' },
        spec: {
          restartPolicy: 'Never',
          containers: [{ name: 'main', image: 'node:22', command: ['node', '-e', 'setInterval(() => {}, 1000)'] }],
        },
      },
    });
    await kubelet.waitForPod({ namespace: NS, name: 'victim' }, 'Running');
    kubelet.kill(NS, 'victim', 'SIGKILL');
    const victim = await kubelet.waitForPod({ namespace: NS, name: 'victim' }, 'Terminated');
    assert.equal(victim.exitCode, 137);
    const status = (await readPod('victim')).status;
    assert.equal(status?.phase, 'Failed');
    const terminated = status?.containerStatuses?.[0]?.state?.terminated;
    assert.deepEqual([terminated?.exitCode, terminated?.reason, terminated?.signal], [137, 'Error', 9]);
    assert.throws(() => kubelet.kill(NS, 'victim'), /no running process/);
  });

  it('leaves a pod whose nodeSelector the node does not satisfy unbound, PodScheduled False (Unschedulable)', async () => {
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'picky' },
        spec: {
          restartPolicy: 'Never',
          nodeSelector: { disk: 'ssd' },
          containers: [{ name: 'main', image: 'node:22', command: ['node', '-e', '0'] }],
        },
      },
    });
    const scheduled = await kubelet.waitFor(
      'the scheduling verdict',
      async () => (await readPod('picky')).status?.conditions?.find((x) => x.type === 'PodScheduled'),
      20_000,
    );
    assert.deepEqual([scheduled.status, scheduled.reason], ['False', 'Unschedulable']);
    assert.equal((await readPod('picky')).spec?.nodeName, undefined);
    await assert.rejects(kubelet.idle(1_000), /not within 1 s/, 'a pod waiting to be scheduled keeps the kubelet busy');
    await core.deleteNamespacedPod({ namespace: NS, name: 'picky' });
    await podGone('picky');
    await kubelet.idle(10_000);
    assert.equal(kubelet.pod({ name: 'picky' }), undefined);
  });

  it('refuses loudly what it cannot emulate: the pod stays Pending and waits reject with the reason', async () => {
    const strict = await startKubelet({ controlPlane: cp, nodeName: 'strict-node' });
    try {
      await core.createNamespacedPod({
        namespace: NS,
        body: {
          metadata: { name: 'host-path' },
          spec: {
            nodeName: 'strict-node',
            restartPolicy: 'Never',
            volumes: [{ name: 'h', hostPath: { path: '/etc' } }],
            containers: [{ name: 'main', image: 'node:22', command: ['node', '-e', '0'] }],
          },
        },
      });
      await assert.rejects(
        strict.waitForPod({ namespace: NS, name: 'host-path' }, 'Running', 20_000),
        /the test kubelet cannot run it: volume h: hostPath volumes are not emulated/,
      );
      assert.equal(strict.problems().length, 1);
      const waitingReason = await strict.waitFor(
        'the refusal in the pod status',
        async () => (await readPod('host-path')).status?.containerStatuses?.[0]?.state?.waiting?.reason,
        10_000,
      );
      assert.equal(waitingReason, 'TestKubeletUnsupported');
      assert.equal(kubelet.pod({ name: 'host-path' }), undefined, "a pod bound to another node is not this kubelet's");
    } finally {
      await strict.stop();
      await core.deleteNamespacedPod({ namespace: NS, name: 'host-path', gracePeriodSeconds: 0 });
    }
  });

  it('stop() kills every process and removes every directory; a second stop() is a no-op', async () => {
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'forever' },
        spec: {
          restartPolicy: 'Never',
          containers: [{ name: 'main', image: 'node:22', command: ['node', '-e', 'setInterval(() => {}, 1000)'] }],
        },
      },
    });
    const run = await kubelet.waitForPod({ namespace: NS, name: 'forever' }, 'Running');
    assert.ok(isAlive(run.pid!));
    assert.ok(existsSync(run.dir!));
    assert.deepEqual(
      kubelet.running().map((r) => r.name),
      ['forever'],
    );
    await kubelet.stop();
    assert.equal(isAlive(run.pid!), false, 'the process is gone');
    assert.equal(existsSync(dirname(run.dir!)), false, "the kubelet's directory is gone");
    assert.deepEqual(kubelet.problems(), []);
    await kubelet.stop();
  });
});
