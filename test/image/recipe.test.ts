// The container image, proved without a Docker engine. The Dockerfile is read, not restated: the build context is
// copied through .dockerignore, each stage's WORKDIR/COPY/ENV/ARG is performed as written and its RUN lines run
// here (npm ci, npm run build; only those may), the stages in parallel as BuildKit runs them. The runtime stage's
// directory is then the image's filesystem: it must hold the compiled CLI and production dependencies only, and
// its ENTRYPOINT must run `--help`, `serve` (the default CMD) and the snapshot Job's own container against a real
// etcd behind the Talos API double and Ceph RGW: the Job the backup hook emits is created on the real control plane
// (test/harness/control-plane.ts), the real Job controller makes its pod, and the test kubelet resolves that pod's
// env and volumes (Secrets, the projected service-account token) against the real API and starts the container
// from the built image directory. Those runs happen as the image's USER (65532:65532) on a read-only filesystem: in
// their own mount and PID namespaces with every writable mount read-only when this machine allows it (root: CI),
// and the image's files must not change.
// Not covered: the base image itself (its Node.js is this machine's Node.js here, 22 in the image) and the final
// stage's RUN, which only removes the base image's package managers (checked to touch nothing else).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import {
  API_VERSION,
  BACKUP_KIND,
  BACKUP_PLURAL,
  GROUP,
  SCHEDULED_TIME_ANNOTATION,
  VERSION,
} from '../../src/api/constants.js';
import { packageRoot } from '../../src/api/crds.js';
import type { BackupStatus } from '../../src/api/types.js';
import { CONTAINER_NAME, IMAGE_ENTRYPOINT, type JobImage } from '../../src/server/backup/job.js';
import { syncBackup } from '../../src/server/backup/sync.js';
import { DEFAULTS } from '../../src/server/config.js';
import type { KubernetesObject } from '../../src/server/metacontroller/types.js';
import { SNAPSHOT_NODE_FLAGS, SNAPSHOT_RUNTIME_ENV } from '../../src/contract/runtime.js';
import { startEtcd, type Etcd } from '../harness/etcd.js';
import { CoreV1Api, CustomObjectsApi, KubernetesObjectApi } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from '../harness/control-plane.js';
import { startKubelet, type Kubelet } from '../doubles/kubelet.js';
import { createAsMetacontroller, type Obj } from '../server/backup/job-cluster.js';
import { createTalosPki, talosconfigYaml } from '../harness/pki.js';
import { startRgw, type Rgw } from '../harness/rgw.js';
import { startTalosDouble, type TalosDouble } from '../doubles/talos.js';
import {
  buildImage,
  completion,
  confinement,
  copyContext,
  diskUsage,
  isIgnored,
  parseDockerfile,
  parseDockerignore,
  sh,
  spawnConfined,
  treeFingerprint,
  type Confinement,
  type ImageConfig,
  type RunStep,
} from './docker-recipe.js';

// The SDK's warning that it will need Node 22 (this process runs on the machine's Node 20): not this test's subject.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const run = promisify(execFile);
const ROOT = packageRoot();
const DOCKERFILE = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const IGNORE = parseDockerignore(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  description: string;
  license: string;
  devDependencies: Record<string, string>;
  allowScripts?: Record<string, boolean>;
};
const LOCK = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean }>;
};
const FINAL = DOCKERFILE.stages.at(-1)!;
/** What the build stages may run on this machine. */
const ALLOWED_RUN = /^npm (ci|run build)( --[a-z-]+(=\S+)?)*$/;

/** The image's configuration (ENTRYPOINT, USER, ...) as the Dockerfile sets it, without building. */
const imageConfig = () =>
  buildImage({ dockerfile: DOCKERFILE, context: '', root: '', configOnly: true, run: async () => {} });

/** Sources a stage COPYs from the build context. */
const contextSources = (stage = FINAL) =>
  stage.instructions
    .filter((i) => i.keyword === 'COPY' && i.flags.from === undefined)
    .flatMap((i) => (i.json ?? i.args.split(/\s+/)).slice(0, -1));

describe('Dockerfile', () => {
  it('builds every stage from one Node.js 22 LTS Debian slim image, pinned to a patch release', () => {
    const bases = new Set(DOCKERFILE.stages.map((s) => s.from));
    assert.equal(bases.size, 1, `one base image for every stage, got ${[...bases].join(', ')}`);
    assert.match([...bases][0]!, /^node:22\.\d+\.\d+-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
    assert.ok(DOCKERFILE.stages.length >= 3, 'multi-stage: build, production dependencies, runtime');
  });

  it('runs the CLI as the backup Jobs and the chart expect: ENTRYPOINT, CMD serve, numeric non-root USER, port', async () => {
    const config = await imageConfig();
    assert.deepEqual(
      config.entrypoint,
      ['node', IMAGE_ENTRYPOINT],
      'the Jobs run node <flags> IMAGE_ENTRYPOINT <command>',
    );
    assert.deepEqual(config.cmd, ['serve']);
    assert.equal(config.user, '65532:65532', 'numeric, so that runAsNonRoot can check it; the Jobs run as 65532:65532');
    assert.ok(IMAGE_ENTRYPOINT.startsWith(`${config.workdir}/`), `WORKDIR ${config.workdir} holds ${IMAGE_ENTRYPOINT}`);
    assert.deepEqual(config.exposed, [String(DEFAULTS.port)]);
    assert.equal(config.env.NODE_ENV, 'production');
  });

  it('carries the OCI labels, in step with package.json', async () => {
    const { labels } = await imageConfig();
    const oci = (key: string) => labels[`org.opencontainers.image.${key}`];
    assert.equal(oci('title'), PKG.name);
    assert.equal(oci('description'), PKG.description);
    assert.equal(oci('licenses'), PKG.license);
    assert.equal(oci('version'), PKG.version, 'the VERSION build argument defaults to the package version');
    assert.equal(oci('base.name'), FINAL.from);
    for (const key of ['source', 'revision']) assert.ok(`org.opencontainers.image.${key}` in labels, key);
  });

  it('installs without install scripts, and the production dependencies from the package files alone', () => {
    assert.equal(PKG.allowScripts?.protobufjs, false, "package.json's allowScripts denies protobufjs' postinstall");
    const runs = DOCKERFILE.stages
      .filter((s) => s !== FINAL)
      .flatMap((s) => s.instructions.filter((i) => i.keyword === 'RUN').map((i) => ({ stage: s, command: i.args })));
    for (const { command } of runs)
      if (/\bnpm ci\b/.test(command))
        assert.match(command, /--ignore-scripts\b/, `${command}: the image's npm does not read allowScripts`);
    const prod = runs.filter((r) => /\bnpm ci\b.*--omit=dev\b/.test(r.command));
    assert.equal(prod.length, 1, 'one stage runs npm ci --omit=dev');
    const deps = prod[0]!.stage;
    assert.deepEqual(
      contextSources(deps).sort(),
      ['.npmrc', 'package-lock.json', 'package.json'],
      'that stage sees nothing but the package files (and npm settings)',
    );
    const copied = FINAL.instructions.filter(
      (i) => i.keyword === 'COPY' && i.flags.from !== undefined && i.args.split(/\s+/)[0]!.endsWith('/node_modules'),
    );
    assert.deepEqual(
      copied.map((i) => i.flags.from),
      [deps.name ?? String(deps.index)],
      'the runtime takes node_modules from that stage',
    );
  });

  it('.dockerignore keeps installs, builds, git, tests and benchmarks out of the context, and lets every COPY source in', () => {
    for (const path of [
      'node_modules',
      'node_modules/fastify/package.json',
      'dist',
      'dist/src/main.js',
      '.git',
      '.git/HEAD',
      'test',
      'test/image/recipe.test.ts',
      'bench',
      'coverage',
      'helm',
      'examples',
      '.ci',
      'src/node_modules/x',
      'dist/.tsbuildinfo',
    ]) {
      assert.ok(isIgnored(IGNORE, path), `${path} is ignored`);
    }
    const sources = DOCKERFILE.stages.flatMap((s) => contextSources(s));
    assert.ok(sources.includes('src') && sources.includes('package-lock.json'));
    for (const source of sources)
      assert.ok(!isIgnored(IGNORE, source.replace(/^\.?\/+|\/+$/g, '')), `${source} reaches the build`);
  });
});

const NS = 'talos-backup';
const BUCKET = 'etcd-backups';
const JOB_IMAGE: JobImage = { image: `talos-etcd-backup:${PKG.version}`, pullPolicy: 'IfNotPresent', pullSecrets: [] };
const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('the image built by the Dockerfile, without a Docker engine', () => {
  let work: string;
  let image: ImageConfig;
  let app: string;
  let confined: Confinement;
  let fingerprint: string[];
  let contextFiles: string[];
  const finalRuns: string[] = [];
  const timings: Record<string, number> = {};
  let rgw: Rgw | undefined;
  let etcd: Etcd | undefined;
  let talos: TalosDouble | undefined;
  let cp: ControlPlane | undefined;
  let kubelet: Kubelet | undefined;

  /** PATH without the project's node_modules/.bin that `npm test` put first: the build uses its own tools. */
  const hostPath = () =>
    (process.env.PATH ?? '/usr/bin:/bin')
      .split(':')
      .filter((dir) => !dir.includes('node_modules'))
      .join(':');
  /** The environment for RUN: this machine's, without what `npm test` set for itself. */
  const hostEnv = () => ({
    ...Object.fromEntries(
      Object.entries(process.env).filter(
        (e): e is [string, string] =>
          e[1] !== undefined && !/^(npm_|NODE_TEST_CONTEXT$|INIT_CWD$|NODE_OPTIONS$)/i.test(e[0]),
      ),
    ),
    PATH: hostPath(),
  });

  async function runStep(step: RunStep): Promise<void> {
    if (step.final) {
      finalRuns.push(step.command); // changes the base image only (checked below); not run on this machine
      return;
    }
    for (const part of step.command.split('&&'))
      assert.match(part.trim(), ALLOWED_RUN, `stage ${step.stage.name}: only npm ci and npm run build run here`);
    const startedAt = Date.now();
    // The local npm cache first: the registry only for what it lacks.
    await sh(step.command, step.cwd, {
      ...hostEnv(),
      ...step.env,
      npm_config_prefer_offline: 'true',
      npm_config_update_notifier: 'false',
    });
    timings[`${step.stage.name}: ${step.command.split(' --')[0]}`] = (Date.now() - startedAt) / 1000;
  }

  async function startServices(): Promise<void> {
    const startedAt = Date.now();
    const started = await Promise.allSettled([
      startRgw().then((r) => (rgw = r)),
      startEtcd().then((e) => (etcd = e)),
      startControlPlane().then((c) => (cp = c)),
    ]);
    for (const outcome of started) if (outcome.status === 'rejected') throw outcome.reason;
    if (!rgw || !etcd || !cp) throw new Error('unreachable');
    await cp.installCrds();
    await etcd.putMany(500, 'registry/image/');
    const pki = await createTalosPki();
    const client = await pki.clientCert(['os:etcd:backup']);
    talos = await startTalosDouble({ pki, etcd, hostname: 'cp-1' });
    await rgw.createBucket(BUCKET);
    const talosconfig = talosconfigYaml({
      context: 'prod',
      endpoints: [talos.endpoint],
      caPem: pki.caPem,
      certPem: client.certPem,
      keyPem: client.keyPem,
    });
    const core = (await cp.kubeConfig()).makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: 'etcd-backup' }, data: { config: b64(talosconfig) } },
    });
    await core.createNamespacedSecret({
      namespace: NS,
      body: {
        metadata: { name: 's3-credentials' },
        data: { 'access-key-id': b64(rgw.accessKeyId), 'secret-access-key': b64(rgw.secretAccessKey) },
      },
    });
    timings['etcd, Talos API double, RGW, Kubernetes control plane'] = (Date.now() - startedAt) / 1000;
  }

  before(
    async () => {
      work = await mkdtemp(join(tmpdir(), 'image-recipe-'));
      await chmod(work, 0o755); // the image's user must reach the image directory below it
      const build = async () => {
        const startedAt = Date.now();
        const context = join(work, 'context');
        contextFiles = await copyContext(ROOT, IGNORE, context);
        image = await buildImage({ dockerfile: DOCKERFILE, context, root: join(work, 'image'), run: runStep });
        timings['build (all stages)'] = (Date.now() - startedAt) / 1000;
      };
      // Both run to their end, so that after() finds whatever they started.
      for (const outcome of await Promise.allSettled([build(), startServices()]))
        if (outcome.status === 'rejected') throw outcome.reason;
      app = image.localPath(image.workdir);
      // The image's files as a read-only root filesystem has them: nobody may write (root aside, as ever).
      await run('chmod', ['-R', 'a-w', image.root]);
      const [uid, gid] = image.user!.split(':').map(Number) as [number, number];
      confined = confinement(uid, gid);
      fingerprint = await treeFingerprint(image.root);
      // The node: runs each pod's container from the image directory, confined as the image's user.
      kubelet = await startKubelet({
        controlPlane: cp!,
        imagePaths: { [image.workdir]: app },
        image: { entrypoint: image.entrypoint!, cmd: image.cmd!, workingDir: image.workdir, env: image.env },
        launch: (pod) => {
          const started = spawnConfined(confined, pod.command, { cwd: pod.cwd, env: pod.env });
          // A signal goes to the container's command (PID 1 of its namespace), not to unshare.
          return {
            child: started.child,
            kill: (signal) =>
              void started
                .pid()
                .then((pid) => process.kill(pid, signal))
                .catch(() => undefined),
          };
        },
      });
    },
    { timeout: 300_000 },
  );

  after(async () => {
    await kubelet?.stop();
    await Promise.allSettled([talos?.stop(), cp?.stop()]);
    await Promise.allSettled([etcd?.stop(), rgw?.stop()]);
    if (work) {
      if (image) await run('chmod', ['-R', 'u+w', image.root]).catch(() => undefined);
      await rm(work, { recursive: true, force: true });
    }
  });

  /** argv of the image's ENTRYPOINT plus `args`, with image paths mapped here and `node` this Node.js. */
  function entrypoint(args: string[]): string[] {
    const [exe, ...rest] = image.entrypoint!;
    assert.equal(exe, 'node');
    return [process.execPath, ...rest.map((a) => (a.startsWith('/') ? image.localPath(a) : a)), ...args];
  }
  /** The container's environment: the image's ENV under the container's; HOME is / for a user the image does not list. */
  const containerEnv = (env: Record<string, string>): Record<string, string> => ({
    PATH: hostPath(),
    HOME: '/',
    ...image.env,
    ...env,
  });

  async function runImage(args: string[], env: Record<string, string> = {}) {
    const child = spawnConfined(confined, entrypoint(args), { cwd: app, env: containerEnv(env) }).child;
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    try {
      return await completion(child);
    } finally {
      clearTimeout(timer);
    }
  }

  it('sends only the allowed files as the build context', (t) => {
    t.diagnostic(`confinement: ${confined.description}`);
    t.diagnostic(`seconds: ${JSON.stringify(timings)}`);
    const tops = [...new Set(contextFiles.map((f) => f.split('/')[0]))].sort();
    assert.deepEqual(tops, [
      '.npmrc',
      'crds',
      'package-lock.json',
      'package.json',
      'protos',
      'src',
      'tsconfig.build.json',
      'tsconfig.json',
    ]);
  });

  it('holds the compiled CLI, the production dependencies and the files the code reads; nothing else', async (t) => {
    assert.deepEqual(await readdir(image.root), [image.workdir.slice(1)], 'the Dockerfile writes only its WORKDIR');
    assert.deepEqual((await readdir(app)).sort(), ['crds', 'dist', 'node_modules', 'package.json', 'protos']);
    assert.deepEqual(await readdir(join(app, 'dist')), ['src'], 'no dist/test, no dist/bench');
    assert.ok(existsSync(image.localPath(IMAGE_ENTRYPOINT)), IMAGE_ENTRYPOINT);
    const compiled = await readdir(join(app, 'dist', 'src'), { recursive: true });
    assert.ok(!compiled.some((f) => f.endsWith('.ts')), 'JavaScript only');
    assert.deepEqual((await readdir(join(app, 'crds'))).sort(), (await readdir(join(ROOT, 'crds'))).sort());
    assert.ok(existsSync(join(app, 'protos', 'machine', 'machine.proto')));
    assert.equal(await readFile(join(app, 'package.json'), 'utf8'), await readFile(join(ROOT, 'package.json'), 'utf8'));

    // node_modules: exactly the lockfile's production packages.
    const installed = await installedPackages(join(app, 'node_modules'));
    const notProduction = installed.filter((path) => !LOCK.packages[path] || LOCK.packages[path]!.dev);
    assert.deepEqual(notProduction, [], 'every installed package is a production package of the lockfile');
    const required = Object.entries(LOCK.packages)
      .filter(([path, e]) => path.startsWith('node_modules/') && !e.dev && !e.optional && !e.devOptional)
      .map(([path]) => path);
    assert.deepEqual(
      required.filter((path) => !installed.includes(path)),
      [],
      'every production package is installed',
    );
    for (const name of Object.keys(PKG.devDependencies)) {
      if (LOCK.packages[`node_modules/${name}`]?.dev)
        assert.ok(!installed.includes(`node_modules/${name}`), `devDependency ${name} is absent`);
    }
    for (const name of ['typescript', 'fast-check', '@kubernetes/client-node'])
      assert.ok(!existsSync(join(app, 'node_modules', name)), name);
    // The workstation commands say why they cannot run in the image, in one line.
    const list = await run(process.execPath, [image.localPath(IMAGE_ENTRYPOINT), 'list'], {
      env: { PATH: process.env.PATH },
    }).catch((error: { code: number; stderr: string }) => error);
    assert.equal((list as { code?: number }).code, 2);
    assert.match(
      (list as { stderr: string }).stderr,
      /^talos-etcd-backup: list reads the cluster with @kubernetes\/client-node, an optional dependency this installation left out/,
    );
    assert.ok(!existsSync(join(app, 'node_modules', '.bin', 'tsc')));
    const bytes = await diskUsage(join(app, 'node_modules'));
    t.diagnostic(
      `runtime node_modules: ${installed.length} packages, ${(bytes / 2 ** 20).toFixed(1)} MiB; whole /app ${((await diskUsage(app)) / 2 ** 20).toFixed(1)} MiB`,
    );
  });

  it("the runtime stage's RUN only removes the base image's package managers", () => {
    assert.ok(finalRuns.length <= 1);
    for (const command of finalRuns) {
      const match = /^rm -rf((?: \/\S+)+)$/.exec(command);
      assert.ok(match, `unexpected RUN in the runtime stage: ${command}`);
      for (const path of match[1]!.trim().split(' ')) {
        assert.match(path, /^\/(usr\/local\/(lib\/node_modules|bin)|opt)\//, path);
        assert.doesNotMatch(
          path,
          /^\/usr\/local\/bin\/node$|^\/usr\/local\/lib\/node_modules\/?$/,
          `${path}: node stays`,
        );
        assert.ok(!path.startsWith(`${image.workdir}/`), path);
      }
    }
  });

  it('runs as the image user, unprivileged, on a read-only filesystem', async () => {
    const probe = [
      "const fs = require('node:fs'), os = require('node:os'), path = require('node:path');",
      "const tryWrite = (f) => { try { fs.writeFileSync(f, 'x'); fs.unlinkSync(f); return 'written'; } catch (e) { return e.code; } };",
      'console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), pid: process.pid,',
      "  app: tryWrite(path.join(process.cwd(), 'probe')), tmp: tryWrite(path.join(os.tmpdir(), 'probe-' + process.pid)) }));",
    ].join('\n');
    const child = spawnConfined(confined, [process.execPath, '-e', probe], { cwd: app, env: containerEnv({}) }).child;
    const result = await completion(child);
    assert.equal(result.code, 0, result.stderr);
    const seen = JSON.parse(result.stdout) as { uid: number; gid: number; pid: number; app: string; tmp: string };
    assert.notEqual(seen.app, 'written', 'the image directory is not writable');
    if (confined.mode !== 'none') assert.deepEqual([seen.uid, seen.gid], [confined.uid, confined.gid]);
    if (confined.mode === 'namespaces') {
      assert.deepEqual([seen.app, seen.tmp], ['EROFS', 'EROFS'], 'the whole filesystem is read-only, /tmp too');
      assert.equal(seen.pid, 1, 'the command is PID 1, as in a container');
    }
  });

  it('--help lists the commands and exits 0; --version prints the package version', async () => {
    const help = await runImage(['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: talos-etcd-backup <command>/);
    for (const command of ['serve', 'snapshot', 'verify', 'delete'])
      assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'), command);
    assert.equal(help.stderr, '');
    const version = await runImage(['--version']);
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout, `${PKG.version}\n`);
  });

  it('serve (the default command) answers /healthz and /readyz, and exits 0 soon after SIGTERM', async () => {
    const started = spawnConfined(confined, entrypoint(image.cmd!), {
      cwd: app,
      env: containerEnv({ HOST: '127.0.0.1', PORT: '0', SHUTDOWN_DELAY_SECONDS: '0' }),
    });
    const { child } = started;
    const done = completion(child);
    try {
      let output = '';
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`serve did not start:\n${output}`)), 20_000);
        const onData = (chunk: Buffer) => {
          output += chunk.toString();
          const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
          if (match) {
            clearTimeout(timer);
            resolve(match[1]!);
          }
        };
        child.stdout!.on('data', onData);
        child.stderr!.on('data', onData);
        child.once('exit', (code) => reject(new Error(`serve exited with ${code}:\n${output}`)));
      });
      const health = await fetch(`${url}/healthz`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: 'ok' });
      assert.equal((await fetch(`${url}/readyz`)).status, 200);

      // The container runtime signals the command itself (PID 1 under namespaces: only handled signals arrive).
      process.kill(await started.pid(), 'SIGTERM');
      const stoppedAt = Date.now();
      const result = await Promise.race([
        done,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('serve did not exit within 5 s of SIGTERM')), 5_000),
        ),
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.ok(Date.now() - stoppedAt < 5_000);
      assert.match(result.stdout, /"msg":"shutting down"/);
    } finally {
      child.kill('SIGKILL');
      await done.catch(() => undefined);
    }
  });

  it("the snapshot Job's container, as the backup hook emits it, uploads a snapshot and reports it", async () => {
    const kc = await cp!.kubeConfig();
    const custom = kc.makeApiClient(CustomObjectsApi);
    const resource = { group: GROUP, version: VERSION, namespace: NS, plural: BACKUP_PLURAL };
    const backup = (await custom.createNamespacedCustomObject({
      ...resource,
      body: {
        apiVersion: API_VERSION,
        kind: BACKUP_KIND,
        metadata: {
          name: 'image-recipe',
          namespace: NS,
          annotations: { [SCHEDULED_TIME_ANNOTATION]: '2026-11-21T10:00:00Z' },
        },
        spec: {
          talosConfigSecretRef: { name: 'etcd-backup', key: 'config' },
          clusterName: 'prod',
          backupStorage: {
            s3: {
              bucket: BUCKET,
              region: rgw!.region,
              endpoint: rgw!.endpoint,
              accessKeyID: { name: 's3-credentials', key: 'access-key-id' },
              secretAccessKey: { name: 's3-credentials', key: 'secret-access-key' },
            },
          },
        },
      },
    })) as Obj;
    const { response } = syncBackup(
      { object: backup as KubernetesObject, attachments: {}, related: {} },
      new Date(),
      JOB_IMAGE,
    );
    const job = response.attachments.find((a) => a.kind === 'Job')!;
    type Template = {
      spec: {
        securityContext: { runAsUser: number; runAsGroup: number };
        containers: {
          name: string;
          image: string;
          command: string[];
          securityContext: { readOnlyRootFilesystem: boolean };
        }[];
      };
    };
    const template = (job.spec as { template: Template }).template;
    const container = template.spec.containers.find((c) => c.name === CONTAINER_NAME)!;
    assert.equal(container.image, JOB_IMAGE.image);
    assert.deepEqual(container.command, ['node', ...SNAPSHOT_NODE_FLAGS, IMAGE_ENTRYPOINT, 'snapshot']);
    assert.equal(
      `${template.spec.securityContext.runAsUser}:${template.spec.securityContext.runAsGroup}`,
      image.user,
      "the pod's user is the image's",
    );
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);

    // Metacontroller creates the attachments; the Job controller makes the pod; the kubelet runs it, confined.
    await createAsMetacontroller(KubernetesObjectApi.makeApiClient(kc), backup, response.attachments);
    const run = await kubelet!.waitForPod({ namespace: NS, job: job.metadata.name }, 'Terminated', 90_000);
    for (const [name, value] of Object.entries(SNAPSHOT_RUNTIME_ENV)) assert.equal(run.env![name], value, name);
    assert.equal(run.env!.NODE_ENV, image.env.NODE_ENV, "the image's ENV");
    assert.equal(run.exitCode, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines.length, 1, run.stdout);
    const printed = JSON.parse(lines[0]!) as { key: string; size: number; sha256: string; endpoint: string };
    assert.equal(printed.key, 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-11-21T10-00-00Z.db');
    assert.equal(printed.endpoint, talos!.endpoint);
    const head = await rgw!.client().send(new HeadObjectCommand({ Bucket: BUCKET, Key: printed.key }));
    assert.equal(head.ContentLength, printed.size);
    const report = (
      ((await custom.getNamespacedCustomObject({ ...resource, name: 'image-recipe' })) as Obj).status as
        BackupStatus | undefined
    )?.report;
    assert.equal(report?.state, 'Succeeded', 'the Job reported through the Kubernetes API, with its own token');
    assert.equal(report?.snapshot?.key, printed.key);
    assert.equal(report?.pod, run.name);
  });

  it('no file of the image changed while it ran', async () => {
    assert.deepEqual(await treeFingerprint(image.root), fingerprint);
  });
});

/** `node_modules/a`, `node_modules/@s/b`, `node_modules/a/node_modules/c`, ... as the lockfile names them. */
async function installedPackages(dir: string, prefix = 'node_modules'): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const names = entry.name.startsWith('@')
      ? (await readdir(join(dir, entry.name))).map((n) => `${entry.name}/${n}`)
      : [entry.name];
    for (const name of names) {
      found.push(`${prefix}/${name}`);
      if (existsSync(join(dir, name, 'node_modules')))
        found.push(...(await installedPackages(join(dir, name, 'node_modules'), `${prefix}/${name}/node_modules`)));
    }
  }
  return found.sort();
}
