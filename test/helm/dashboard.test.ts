// The Grafana dashboard (helm/talos-etcd-backup/files/dashboard.json): the chart ships it in a ConfigMap for
// Grafana's dashboard sidecar, and every PromQL expression in it is accepted by Prometheus' own parser (each loaded
// as a recording rule into `promtool check rules`, Grafana's variables replaced by values they take).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { CHART_DIR, renderChart } from '../harness/helm.js';

interface Panel {
  id: number;
  title: string;
  type: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets: { refId: string; expr: string; legendFormat?: string }[];
}
const dashboard = JSON.parse(readFileSync(join(CHART_DIR, 'files', 'dashboard.json'), 'utf8')) as {
  uid: string;
  panels: Panel[];
};
const expressions = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr })));

/** Grafana's variables as Prometheus would see them once Grafana has filled them in. */
const asPrometheusSees = (expr: string) =>
  expr.replaceAll('$__rate_interval', '5m').replaceAll('$namespace', '.*').replaceAll('$schedule', '.*');

function checkRules(dir: string, exprs: string[]): { status: number | null; output: string } {
  const path = join(dir, `dashboard-${Math.random().toString(36).slice(2)}.yaml`);
  const rules = exprs.map((expr, i) => ({ record: `dashboard:expression_${i}`, expr }));
  writeFileSync(path, stringify({ groups: [{ name: 'dashboard', rules }] }));
  const run = spawnSync('promtool', ['check', 'rules', path], { encoding: 'utf8', timeout: 60_000 });
  if (run.error) {
    throw new Error(
      `promtool is not usable (${run.error.message}); run ./scripts/install-test-deps.sh (Debian package prometheus)`,
    );
  }
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('the Grafana dashboard', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'talos-etcd-backup-dashboard-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every PromQL expression parses (promtool check rules)', () => {
    assert.ok(expressions.length >= 10, 'the dashboard has its expressions');
    const checked = checkRules(
      dir,
      expressions.map((e) => asPrometheusSees(e.expr)),
    );
    assert.equal(checked.status, 0, checked.output);
    assert.match(checked.output, new RegExp(`SUCCESS: ${expressions.length} rules found`));
  });

  it('the check would catch a broken expression', () => {
    assert.notEqual(checkRules(dir, ['sum by (namespace (talos_etcd_backup_schedule_backups)']).status, 0);
  });

  it('panels are laid out on Grafana’s 24-column grid, with unique ids and titles', () => {
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const p of dashboard.panels) {
      assert.ok(p.title && p.targets.length > 0, `panel ${p.id}`);
      assert.ok(p.gridPos.x >= 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits the grid`);
    }
  });

  it('is shipped in a ConfigMap the Grafana sidecar picks up, only when enabled', async () => {
    assert.ok(!(await renderChart({})).some((o) => o.kind === 'ConfigMap'), 'off by default');
    const objects = await renderChart({ grafanaDashboard: { enabled: true, folder: 'Backups' } });
    const map = objects.find((o) => o.kind === 'ConfigMap')!;
    assert.equal(map.metadata.labels?.grafana_dashboard, '1');
    assert.equal(map.metadata.annotations?.grafana_folder, 'Backups');
    assert.deepEqual(JSON.parse(map.data['talos-etcd-backup.json'] as string), dashboard);
    const plain = (await renderChart({ grafanaDashboard: { enabled: true, labels: {} } })).find(
      (o) => o.kind === 'ConfigMap',
    )!;
    assert.equal(plain.metadata.annotations, undefined, 'no folder, no annotation');
  });
});
