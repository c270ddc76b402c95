// What users apply, applied to the real kube-apiserver: both CRDs, the Metacontroller manifests and the chart's
// rendered objects are accepted (server-side apply, dry run, strict field validation: an unknown or misplaced field
// is an error), `helm install` / `helm uninstall` work against it, and `kubectl get` prints the documented columns —
// the README's sample output is compared with what the real kubectl prints.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { GROUP, API_VERSION, BACKUP_PLURAL, SCHEDULE_PLURAL } from '../../src/api/constants.js';
import { packageRoot } from '../../src/api/crds.js';
import { prometheusOperatorCrds } from '../harness/binaries.js';
import { useControlPlane } from '../harness/control-plane.js';
import { ALL_FEATURES, ALL_FEATURES_RELEASE, CHART_DIR, helm, renderChart, type KubeObject } from '../harness/helm.js';

const root = packageRoot();
const METACONTROLLER_CRDS = join(root, 'test', 'fixtures', 'metacontroller-crds-v1.yaml');

/** Lines kubectl or the API server printed as warnings (deprecated fields, unknown fields in lenient modes, ...). */
const warnings = (stderr: string) => stderr.split('\n').filter((l) => /warning/i.test(l));

/** Column headers of kubectl's table output: words separated by two or more spaces. */
const headers = (table: string) =>
  table
    .split('\n')[0]!
    .trim()
    .split(/\s{2,}/);

/** The table in the README right after the command line `$ cmd` or `cmd` (with or without `# ` before each line). */
function readmeTable(command: string): string[] {
  const lines = readFileSync(join(root, 'README.md'), 'utf8').split('\n');
  const at = lines.findIndex((l) => l.replace(/^\$ /, '').trim() === command);
  assert.ok(at >= 0, `README has no \`${command}\` line`);
  const table: string[] = [];
  for (const line of lines.slice(at + 1)) {
    const text = line.replace(/^# /, '');
    if (line.startsWith('```') || (table.length > 0 && text.trim() === '' && !line.startsWith('#'))) break;
    table.push(text);
  }
  return table;
}

describe('the manifests on a real API server', () => {
  const cp = useControlPlane();
  before(async () => {
    // What a cluster has before our chart: Metacontroller's CRDs, and prometheus-operator's for the ServiceMonitor.
    for (const file of [METACONTROLLER_CRDS, ...prometheusOperatorCrds()]) {
      const applied = await cp().kubectl(['apply', '--server-side', '-f', file]);
      assert.equal(applied.code, 0, applied.stderr);
    }
    const established = await cp().kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=30s',
      '-f',
      METACONTROLLER_CRDS,
      ...prometheusOperatorCrds().flatMap((f) => ['-f', f]),
    ]);
    assert.equal(established.code, 0, established.stderr);
  });

  it('accepts both CRDs (server-side dry run) without a warning', async () => {
    const result = await cp().kubectl(['apply', '--server-side', '--dry-run=server', '-f', join(root, 'crds')]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split('\n').sort(), [
      'customresourcedefinition.apiextensions.k8s.io/talosetcdbackups.talos.alperen.cloud serverside-applied (server dry run)',
      'customresourcedefinition.apiextensions.k8s.io/talosetcdbackupschedules.talos.alperen.cloud serverside-applied (server dry run)',
    ]);
    assert.deepEqual(warnings(result.stderr), []);
  });

  it("accepts the Metacontroller manifests against Metacontroller v4.17.2's CRDs", async () => {
    const result = await cp().kubectl([
      'apply',
      '--server-side',
      '--dry-run=server',
      '-f',
      join(root, 'metacontroller'),
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split('\n').sort(), [
      'compositecontroller.metacontroller.k8s.io/talos-etcd-backup-schedule serverside-applied (server dry run)',
      'decoratorcontroller.metacontroller.k8s.io/talos-etcd-backup serverside-applied (server dry run)',
    ]);
    assert.deepEqual(warnings(result.stderr), []);
  });

  for (const [label, values, release] of [
    ['defaults', {}, { release: 'talos-etcd-backup', namespace: 'talos-etcd-backup' }],
    ['every feature on', ALL_FEATURES, ALL_FEATURES_RELEASE],
  ] as const) {
    it(`accepts every object the chart renders (${label}), strict field validation`, async () => {
      const objects: KubeObject[] = await renderChart(values, release);
      const namespace = await cp().kubectl([
        'create',
        'namespace',
        release.namespace,
        '--dry-run=client',
        '-o',
        'yaml',
      ]);
      const create = await cp().kubectl(['apply', '--server-side', '-f', '-'], { input: namespace.stdout });
      assert.equal(create.code, 0, create.stderr);
      const input = objects
        .map(
          (o) =>
            `---\n${stringify({ ...o, metadata: { namespace: o.metadata.namespace ?? release.namespace, ...o.metadata } })}`,
        )
        .join('');
      const result = await cp().kubectl(
        ['apply', '--server-side', '--dry-run=server', '--validate=strict', '-f', '-'],
        { input },
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.trim().split('\n').length, objects.length, result.stdout);
      assert.deepEqual(warnings(result.stderr), []);
      if (label === 'every feature on')
        assert.ok(
          objects.some((o) => o.kind === 'ServiceMonitor') && objects.some((o) => o.kind === 'NetworkPolicy'),
          'the optional objects were rendered',
        );
    });
  }

  it('helm install puts the CRDs, the hook server and both controllers into the cluster; helm uninstall removes all but the CRDs', async () => {
    const kubeconfig = ['--kubeconfig', cp().kubeconfigPath];
    const install = await helm([
      'install',
      'backups',
      CHART_DIR,
      '--namespace',
      'talos-etcd-backup-helm',
      '--create-namespace',
      ...kubeconfig,
    ]);
    assert.equal(install.status, 0, install.stderr);
    const crds = await cp().kubectl([
      'get',
      'crd',
      `${BACKUP_PLURAL}.${GROUP}`,
      `${SCHEDULE_PLURAL}.${GROUP}`,
      '-o',
      'name',
    ]);
    assert.equal(crds.code, 0, crds.stderr);
    const installed = await cp().kubectl([
      'get',
      'deployment,service,serviceaccount,poddisruptionbudget',
      '-n',
      'talos-etcd-backup-helm',
      '-o',
      'name',
    ]);
    assert.deepEqual(
      installed.stdout
        .trim()
        .split('\n')
        .filter((l) => !l.endsWith('/default'))
        .sort(),
      [
        'deployment.apps/backups-talos-etcd-backup',
        'poddisruptionbudget.policy/backups-talos-etcd-backup',
        'service/backups-talos-etcd-backup',
        'serviceaccount/backups-talos-etcd-backup',
      ],
    );
    // talos-operator is not installed here: `auto` turned TalosControlPlanes off.
    const env = await cp().kubectl([
      'get',
      'deployment',
      'backups-talos-etcd-backup',
      '-n',
      'talos-etcd-backup-helm',
      '-o',
      'jsonpath={.spec.template.spec.containers[0].env[?(@.name=="TALOS_OPERATOR")].value}',
    ]);
    assert.equal(env.stdout, 'false', env.stderr);
    const controllers = await cp().kubectl(['get', 'compositecontroller,decoratorcontroller', '-o', 'name']);
    assert.equal(controllers.stdout.trim().split('\n').length, 2, controllers.stdout + controllers.stderr);

    const uninstall = await helm([
      'uninstall',
      'backups',
      '--namespace',
      'talos-etcd-backup-helm',
      '--wait',
      '--timeout',
      '60s',
      ...kubeconfig,
    ]);
    assert.equal(uninstall.status, 0, uninstall.stderr);
    const left = await cp().kubectl([
      'get',
      'deployment,service,compositecontroller,decoratorcontroller',
      '-A',
      '-o',
      'name',
    ]);
    assert.deepEqual(
      left.stdout
        .trim()
        .split('\n')
        .filter((l) => l !== '' && !l.startsWith('service/kubernetes')),
      [],
    );
    const kept = await cp().kubectl(['get', 'crd', `${BACKUP_PLURAL}.${GROUP}`, '-o', 'name']);
    assert.equal(kept.code, 0, 'Helm keeps CRDs on uninstall (a backup resource must never vanish with a release)');
  });

  it('kubectl get prints the documented columns, as the README shows them', async () => {
    await cp().installCrds();
    const ns = 'talos-backup';
    const created = await cp().kubectl(['create', 'namespace', ns]);
    assert.equal(created.code, 0, created.stderr);
    const examples = ['s3-credentials-secret.yaml', 'schedule.yaml', 'backup.yaml']
      .map((f) => join(root, 'examples', f))
      .flatMap((f) => ['-f', f]);
    const applied = await cp().kubectl(['apply', '--server-side', ...examples]);
    assert.equal(applied.code, 0, applied.stderr);

    // The status a finished run leaves, written through the status subresource as Metacontroller does.
    const custom = (await cp().kubeConfig()).makeApiClient(CustomObjectsApi);
    const [group, version] = API_VERSION.split('/') as [string, string];
    const schedule = await custom.getNamespacedCustomObject({
      group,
      version,
      namespace: ns,
      plural: SCHEDULE_PLURAL,
      name: 'daily-backup-schedule',
    });
    await custom.replaceNamespacedCustomObjectStatus({
      group,
      version,
      namespace: ns,
      plural: SCHEDULE_PLURAL,
      name: 'daily-backup-schedule',
      body: {
        ...schedule,
        status: {
          lastSuccessfulBackupTime: new Date(Date.now() - 14 * 3600_000).toISOString().replace(/\.\d+Z$/, 'Z'),
          nextScheduleTime: '2026-01-16T01:00:00Z',
          observedGeneration: 1,
        },
      },
    });
    const backup = await custom.getNamespacedCustomObject({
      group,
      version,
      namespace: ns,
      plural: BACKUP_PLURAL,
      name: 'manual-backup',
    });
    await custom.replaceNamespacedCustomObjectStatus({
      group,
      version,
      namespace: ns,
      plural: BACKUP_PLURAL,
      name: 'manual-backup',
      body: {
        ...backup,
        status: {
          phase: 'Failed',
          cluster: 'prod',
          message: 'Failed to get secret: secret talos-backup/etcd-backup key config (not found)',
        },
      },
    });

    const tebs = await cp().kubectl(['get', 'tebs', '-n', ns]);
    assert.equal(tebs.code, 0, tebs.stderr);
    const documented = readmeTable('kubectl get tebs -n talos-backup');
    assert.deepEqual(
      headers(tebs.stdout),
      headers(documented.join('\n')),
      `README:\n${documented.join('\n')}\nkubectl:\n${tebs.stdout}`,
    );
    assert.deepEqual(headers(tebs.stdout), ['NAME', 'SCHEDULE', 'RETENTION', 'PAUSED', 'LAST BACKUP', 'NEXT', 'AGE']);
    const row = tebs.stdout
      .split('\n')[1]!
      .trim()
      .split(/\s{2,}/);
    const readmeRow = documented[1]!.trim().split(/\s{2,}/);
    // Same cells where the README's example matches this status; LAST BACKUP and AGE are ages, as the README shows.
    assert.deepEqual([row[0], row[3], row[5]], [readmeRow[0], readmeRow[3], readmeRow[5]]);
    assert.match(row[4]!, /^14h$/);
    assert.match(row[6]!, /^\d+s$/);

    const teb = await cp().kubectl(['get', 'teb', '-n', ns]);
    assert.deepEqual(headers(teb.stdout), ['NAME', 'PHASE', 'CLUSTER', 'SIZE', 'AGE']);
    const wide = await cp().kubectl(['get', 'teb', '-n', ns, '-o', 'wide']);
    assert.deepEqual(headers(wide.stdout), ['NAME', 'PHASE', 'CLUSTER', 'SIZE', 'KEY', 'MESSAGE', 'AGE']);
    // An absent field is an empty cell (kubectl prints <none> only for built-in kinds' columns).
    assert.match(
      wide.stdout,
      /manual-backup\s+Failed\s+prod\s+Failed to get secret: secret talos-backup\/etcd-backup key config \(not found\)/,
    );

    const category = await cp().kubectl(['get', 'talos-etcd-backup', '-n', ns, '-o', 'name']);
    assert.deepEqual(category.stdout.trim().split('\n').sort(), [
      `talosetcdbackup.${GROUP}/manual-backup`,
      `talosetcdbackupschedule.${GROUP}/daily-backup-schedule`,
    ]);
  });

  it("the API server enforces the schedule's retentionPolicy rules: at most 1000 kept, keepWithin's grammar", async () => {
    await cp().installCrds();
    const ns = 'retention-rules';
    assert.equal((await cp().kubectl(['create', 'namespace', ns])).code, 0);
    const custom = (await cp().kubeConfig()).makeApiClient(CustomObjectsApi);
    const [group, version] = API_VERSION.split('/') as [string, string];
    const create = (name: string, spec: Record<string, unknown>) =>
      custom.createNamespacedCustomObject({
        group,
        version,
        namespace: ns,
        plural: SCHEDULE_PLURAL,
        body: {
          apiVersion: API_VERSION,
          kind: 'TalosEtcdBackupSchedule',
          metadata: { name },
          spec: {
            schedule: '@hourly',
            backupTemplate: {
              spec: {
                talosConfigSecretRef: { name: 'etcd-backup' },
                backupStorage: { s3: { bucket: 'etcd-backups', region: 'us-east-1' } },
              },
            },
            ...spec,
          },
        },
      });
    const message = (error: unknown) => String((error as { body?: unknown }).body ?? error);
    await create('tiered', { retentionPolicy: { keepHourly: 24, keepDaily: 7, keepWeekly: 4, keepWithin: '2w' } });
    await assert.rejects(create('too-many', { retention: 10, retentionPolicy: { keepHourly: 991 } }), (error) => {
      assert.match(message(error), /retention and the counts of retentionPolicy add up to more than 1000/);
      return true;
    });
    await assert.rejects(create('bad-within', { retentionPolicy: { keepWithin: '1d1y' } }), (error) => {
      assert.match(message(error), /keepWithin/);
      return true;
    });
  });
});
