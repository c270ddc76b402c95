// The alert rules (helm/talos-etcd-backup/files/alerts.yaml), with Prometheus' own tools: the chart renders them as
// a PrometheusRule only when it should, `promtool check rules` accepts what it renders, and `promtool test rules`
// runs a unit test for every alert: it fires when it should and stays silent when it should not, at the 2× interval
// boundary of an hourly and a daily schedule, across two replicas, for a paused schedule.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { CHART_DIR, renderChart, type KubeObject } from '../harness/helm.js';

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
interface RuleGroups {
  groups: { name: string; rules: Rule[] }[];
}

const INSTALL_HINT = 'run ./scripts/install-test-deps.sh (Debian package prometheus, which has promtool)';
const file = parse(readFileSync(join(CHART_DIR, 'files', 'alerts.yaml'), 'utf8')) as RuleGroups;
const rules = file.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
const recordings = file.groups.flatMap((g) => g.rules).filter((r) => r.alert === undefined);

function promtool(args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { encoding: 'utf8', timeout: 60_000 });
  if (run.error) throw new Error(`promtool is not usable (${run.error.message}); ${INSTALL_HINT}`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** An alert as promtool reports it firing: the rule's labels and the series' labels, its annotations expanded. */
function firing(alert: string, labels: Record<string, string>) {
  const rule = rules.find((r) => r.alert === alert)!;
  const expand = (text: string) =>
    text.replace(/\{\{\s*\$labels\.(\w+)\s*\}\}/g, (_all, name: string) => labels[name] ?? '');
  const annotations = Object.fromEntries(Object.entries(rule.annotations).map(([k, v]) => [k, expand(v)]));
  return { exp_labels: { ...rule.labels, ...labels }, exp_annotations: annotations };
}

type Series = { series: string; values: string };
type Check = { eval_time: string; alertname: string; exp_alerts: ReturnType<typeof firing>[] };
interface UnitTest {
  name: string;
  /** Between two values of a series (promtool's default: 1m). */
  interval?: string;
  input_series: Series[];
  alert_rule_test: Check[];
}

/** A schedule's series as replica `instance` exports them. */
const at = (namespace: string, schedule: string, instance = 'a') =>
  `{namespace="${namespace}",schedule="${schedule}",instance="${instance}"}`;
const gauge = (name: string, labels: string, values: string): Series => ({
  series: `talos_etcd_backup_${name}${labels}`,
  values,
});
/** The replica's sync times: by default it synced at the start of the test and every minute after. */
const synced = (labels: string, values = '0+60x3000'): Series =>
  gauge('schedule_synced_timestamp_seconds', labels, values);

const HOURLY = at('prod', 'hourly');
const DAILY = at('prod', 'daily');

/** Every alert's cases. Times count from 0: a timestamp value of 0 means "at the start of the test". */
const TESTS: UnitTest[] = [
  {
    name: 'an hourly schedule: silent at exactly twice its interval since the last success, critical a minute later',
    input_series: [
      synced(HOURLY),
      gauge('schedule_last_success_timestamp_seconds', HOURLY, '0x200'),
      gauge('schedule_expected_interval_seconds', HOURLY, '3600x200'),
      gauge('schedule_paused', HOURLY, '0x200'),
    ],
    alert_rule_test: [
      { eval_time: '2h', alertname: 'TalosEtcdBackupNoRecentSuccess', exp_alerts: [] },
      {
        eval_time: '2h1m',
        alertname: 'TalosEtcdBackupNoRecentSuccess',
        exp_alerts: [firing('TalosEtcdBackupNoRecentSuccess', { namespace: 'prod', schedule: 'hourly' })],
      },
    ],
  },
  {
    name: 'a daily schedule: silent at 48 h since the last success, critical after',
    input_series: [
      synced(DAILY),
      gauge('schedule_last_success_timestamp_seconds', DAILY, '0x2900'),
      gauge('schedule_expected_interval_seconds', DAILY, '86400x2900'),
      gauge('schedule_paused', DAILY, '0x2900'),
    ],
    alert_rule_test: [
      { eval_time: '47h', alertname: 'TalosEtcdBackupNoRecentSuccess', exp_alerts: [] },
      { eval_time: '48h', alertname: 'TalosEtcdBackupNoRecentSuccess', exp_alerts: [] },
      {
        eval_time: '48h1m',
        alertname: 'TalosEtcdBackupNoRecentSuccess',
        exp_alerts: [firing('TalosEtcdBackupNoRecentSuccess', { namespace: 'prod', schedule: 'daily' })],
      },
    ],
  },
  {
    name: 'a newer success resets the clock; across two replicas the one that synced last counts',
    input_series: [
      // Replica a synced the schedule at 0 only (before its 1 h success) and still exports that; b synces every
      // minute and has seen the success.
      synced(at('prod', 'hourly', 'a'), '0x300'),
      gauge('schedule_last_success_timestamp_seconds', at('prod', 'hourly', 'a'), '0x300'),
      gauge('schedule_expected_interval_seconds', at('prod', 'hourly', 'a'), '3600x300'),
      gauge('schedule_paused', at('prod', 'hourly', 'a'), '0x300'),
      synced(at('prod', 'hourly', 'b'), '_x60 3600+60x240'),
      gauge('schedule_last_success_timestamp_seconds', at('prod', 'hourly', 'b'), '_x60 3600x240'),
      gauge('schedule_expected_interval_seconds', at('prod', 'hourly', 'b'), '_x60 3600x240'),
      gauge('schedule_paused', at('prod', 'hourly', 'b'), '_x60 0x240'),
    ],
    alert_rule_test: [
      { eval_time: '2h30m', alertname: 'TalosEtcdBackupNoRecentSuccess', exp_alerts: [] },
      { eval_time: '3h', alertname: 'TalosEtcdBackupNoRecentSuccess', exp_alerts: [] },
      {
        eval_time: '3h1m',
        alertname: 'TalosEtcdBackupNoRecentSuccess',
        exp_alerts: [firing('TalosEtcdBackupNoRecentSuccess', { namespace: 'prod', schedule: 'hourly' })],
      },
    ],
  },
  {
    name: 'a paused schedule is not expected to back up',
    input_series: [
      synced(HOURLY),
      synced(at('prod', 'new')),
      gauge('schedule_last_success_timestamp_seconds', HOURLY, '0x300'),
      gauge('schedule_created_timestamp_seconds', at('prod', 'new'), '0x300'),
      gauge('schedule_expected_interval_seconds', HOURLY, '3600x300'),
      gauge('schedule_expected_interval_seconds', at('prod', 'new'), '3600x300'),
      gauge('schedule_paused', HOURLY, '1x300'),
      gauge('schedule_paused', at('prod', 'new'), '1x300'),
    ],
    alert_rule_test: [
      { eval_time: '4h', alertname: 'TalosEtcdBackupNoRecentSuccess', exp_alerts: [] },
      { eval_time: '4h', alertname: 'TalosEtcdBackupNeverSucceeded', exp_alerts: [] },
    ],
  },
  {
    name: 'a schedule that never succeeded: silent for twice its interval after creation, critical after; not once it succeeded',
    input_series: [
      synced(at('prod', 'new')),
      gauge('schedule_created_timestamp_seconds', at('prod', 'new'), '0x200'),
      gauge('schedule_expected_interval_seconds', at('prod', 'new'), '3600x200'),
      gauge('schedule_paused', at('prod', 'new'), '0x200'),
      synced(at('prod', 'ok')),
      gauge('schedule_created_timestamp_seconds', at('prod', 'ok'), '0x200'),
      gauge('schedule_expected_interval_seconds', at('prod', 'ok'), '3600x200'),
      gauge('schedule_last_success_timestamp_seconds', at('prod', 'ok'), '3000x200'),
      gauge('schedule_paused', at('prod', 'ok'), '0x200'),
    ],
    alert_rule_test: [
      { eval_time: '2h', alertname: 'TalosEtcdBackupNeverSucceeded', exp_alerts: [] },
      {
        eval_time: '2h1m',
        alertname: 'TalosEtcdBackupNeverSucceeded',
        exp_alerts: [firing('TalosEtcdBackupNeverSucceeded', { namespace: 'prod', schedule: 'new' })],
      },
    ],
  },
  {
    name: 'the last backup failed: a warning once it has stayed failed for 15 minutes; a success is silent',
    input_series: [
      synced(at('prod', 'failing')),
      gauge('schedule_last_status', at('prod', 'failing'), '0x30'),
      synced(at('prod', 'fine')),
      gauge('schedule_last_status', at('prod', 'fine'), '1x30'),
    ],
    alert_rule_test: [
      { eval_time: '14m', alertname: 'TalosEtcdBackupLastFailed', exp_alerts: [] },
      {
        eval_time: '15m',
        alertname: 'TalosEtcdBackupLastFailed',
        exp_alerts: [firing('TalosEtcdBackupLastFailed', { namespace: 'prod', schedule: 'failing' })],
      },
    ],
  },
  {
    name: "a replica's older view does not count: the last backup failed by the newest sync, succeeded by an older one",
    input_series: [
      synced(at('prod', 'failing', 'stale'), '0x30'),
      gauge('schedule_last_status', at('prod', 'failing', 'stale'), '1x30'),
      synced(at('prod', 'failing', 'fresh'), '60+60x30'),
      gauge('schedule_last_status', at('prod', 'failing', 'fresh'), '0x30'),
      // And the other way round: fixed by the newest sync, still failed in an older one.
      synced(at('prod', 'fixed', 'stale'), '0x30'),
      gauge('schedule_last_status', at('prod', 'fixed', 'stale'), '0x30'),
      synced(at('prod', 'fixed', 'fresh'), '60+60x30'),
      gauge('schedule_last_status', at('prod', 'fixed', 'fresh'), '1x30'),
    ],
    alert_rule_test: [
      {
        eval_time: '20m',
        alertname: 'TalosEtcdBackupLastFailed',
        exp_alerts: [firing('TalosEtcdBackupLastFailed', { namespace: 'prod', schedule: 'failing' })],
      },
    ],
  },
  {
    name: 'a backup unfinished past its deadline and the 10 minutes for a Job that cannot be created: stuck',
    input_series: [
      // Unfinished since 0 with a one-hour deadline; the daily one's deadline is 50 minutes later.
      synced(HOURLY),
      gauge('schedule_unfinished_deadline_timestamp_seconds', HOURLY, '3600x100'),
      synced(DAILY),
      gauge('schedule_unfinished_deadline_timestamp_seconds', DAILY, '_x50 6600x50'),
      // A replica that synced before the backup finished still exports its deadline: not a stuck backup.
      synced(at('prod', 'done', 'stale'), '0x100'),
      gauge('schedule_unfinished_deadline_timestamp_seconds', at('prod', 'done', 'stale'), '0x100'),
      synced(at('prod', 'done', 'fresh'), '60+60x100'),
    ],
    alert_rule_test: [
      { eval_time: '75m', alertname: 'TalosEtcdBackupStuck', exp_alerts: [] },
      {
        eval_time: '76m',
        alertname: 'TalosEtcdBackupStuck',
        exp_alerts: [firing('TalosEtcdBackupStuck', { namespace: 'prod', schedule: 'hourly' })],
      },
    ],
  },
  {
    name: 'a Failed schedule (invalid spec or cron): a warning after 5 minutes',
    input_series: [
      synced(at('prod', 'broken')),
      gauge('schedule_failed', at('prod', 'broken'), '1x20'),
      synced(HOURLY),
      gauge('schedule_failed', HOURLY, '0x20'),
    ],
    alert_rule_test: [
      { eval_time: '4m', alertname: 'TalosEtcdBackupScheduleFailed', exp_alerts: [] },
      {
        eval_time: '5m',
        alertname: 'TalosEtcdBackupScheduleFailed',
        exp_alerts: [firing('TalosEtcdBackupScheduleFailed', { namespace: 'prod', schedule: 'broken' })],
      },
    ],
  },
  {
    name: 'no successful restore test for 30 days: a warning after 30 days, whether or not the schedule tests',
    interval: '1h',
    input_series: [
      synced(at('prod', 'tested'), '0+3600x1000'),
      gauge('schedule_created_timestamp_seconds', at('prod', 'tested'), '0x1000'),
      gauge('schedule_last_successful_restore_test_timestamp_seconds', at('prod', 'tested'), '86400x1000'),
      gauge('schedule_paused', at('prod', 'tested'), '0x1000'),
      synced(at('prod', 'untested'), '0+3600x1000'),
      gauge('schedule_created_timestamp_seconds', at('prod', 'untested'), '0x1000'),
      gauge('schedule_paused', at('prod', 'untested'), '0x1000'),
      synced(at('prod', 'paused'), '0+3600x1000'),
      gauge('schedule_created_timestamp_seconds', at('prod', 'paused'), '0x1000'),
      gauge('schedule_paused', at('prod', 'paused'), '1x1000'),
    ],
    alert_rule_test: [
      { eval_time: '720h', alertname: 'TalosEtcdBackupNoRecentRestoreTest', exp_alerts: [] },
      {
        eval_time: '721h',
        alertname: 'TalosEtcdBackupNoRecentRestoreTest',
        exp_alerts: [firing('TalosEtcdBackupNoRecentRestoreTest', { namespace: 'prod', schedule: 'untested' })],
      },
      {
        eval_time: '745h',
        alertname: 'TalosEtcdBackupNoRecentRestoreTest',
        exp_alerts: [
          firing('TalosEtcdBackupNoRecentRestoreTest', { namespace: 'prod', schedule: 'tested' }),
          firing('TalosEtcdBackupNoRecentRestoreTest', { namespace: 'prod', schedule: 'untested' }),
        ],
      },
    ],
  },
  {
    name: 'the last restore test failed: a warning after 5 minutes; a later success is silent',
    input_series: [synced(HOURLY), gauge('schedule_last_restore_test_status', HOURLY, '1x10 0x20 1x20')],
    alert_rule_test: [
      { eval_time: '14m', alertname: 'TalosEtcdBackupRestoreTestFailed', exp_alerts: [] },
      {
        eval_time: '16m',
        alertname: 'TalosEtcdBackupRestoreTestFailed',
        exp_alerts: [firing('TalosEtcdBackupRestoreTestFailed', { namespace: 'prod', schedule: 'hourly' })],
      },
      { eval_time: '40m', alertname: 'TalosEtcdBackupRestoreTestFailed', exp_alerts: [] },
    ],
  },
  {
    name: 'hook answers of 4xx or 5xx for 10 minutes: a warning per hook and code; 200s are silent',
    input_series: [
      { series: 'talos_etcd_backup_hook_requests_total{hook="backup/sync",code="500",instance="a"}', values: '0+1x40' },
      {
        series: 'talos_etcd_backup_hook_requests_total{hook="schedule/sync",code="200",instance="a"}',
        values: '0+10x40',
      },
    ],
    alert_rule_test: [
      { eval_time: '9m', alertname: 'TalosEtcdBackupHookErrors', exp_alerts: [] },
      {
        eval_time: '12m',
        alertname: 'TalosEtcdBackupHookErrors',
        exp_alerts: [firing('TalosEtcdBackupHookErrors', { hook: 'backup/sync', code: '500' })],
      },
    ],
  },
  {
    name: 'no schedule sync for 15 minutes while schedules were seen within the hour: critical after 10 more',
    input_series: [
      // Synced every minute for 30 minutes, then Metacontroller stops: the counters stay, the schedule expires.
      { series: 'talos_etcd_backup_schedule_syncs_total{result="idle",instance="a"}', values: '0+1x30 30x90' },
      { series: 'talos_etcd_backup_schedule_syncs_total{result="created",instance="a"}', values: '0x120' },
      gauge('schedule_created_timestamp_seconds', HOURLY, '0x45'),
    ],
    alert_rule_test: [
      { eval_time: '40m', alertname: 'TalosEtcdBackupSchedulesUnsynced', exp_alerts: [] },
      { eval_time: '50m', alertname: 'TalosEtcdBackupSchedulesUnsynced', exp_alerts: [] },
      {
        eval_time: '56m',
        alertname: 'TalosEtcdBackupSchedulesUnsynced',
        exp_alerts: [firing('TalosEtcdBackupSchedulesUnsynced', {})],
      },
      // An hour after the last schedule was seen, nothing is expected any more.
      { eval_time: '1h50m', alertname: 'TalosEtcdBackupSchedulesUnsynced', exp_alerts: [] },
    ],
  },
  {
    name: 'schedules synced by one replica: silent, however idle the other is',
    input_series: [
      { series: 'talos_etcd_backup_schedule_syncs_total{result="idle",instance="a"}', values: '0+1x120' },
      { series: 'talos_etcd_backup_schedule_syncs_total{result="idle",instance="b"}', values: '0x120' },
      gauge('schedule_created_timestamp_seconds', HOURLY, '0x120'),
    ],
    alert_rule_test: [{ eval_time: '100m', alertname: 'TalosEtcdBackupSchedulesUnsynced', exp_alerts: [] }],
  },
  {
    name: 'no schedule ever seen: silent, though no schedule sync comes',
    input_series: [{ series: 'talos_etcd_backup_schedule_syncs_total{result="idle",instance="a"}', values: '0x120' }],
    alert_rule_test: [{ eval_time: '100m', alertname: 'TalosEtcdBackupSchedulesUnsynced', exp_alerts: [] }],
  },
];

describe('alert rules', () => {
  let dir: string;
  let rendered: KubeObject[];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'talos-etcd-backup-alerts-'));
    rendered = await renderChart({
      prometheusRule: { enabled: true, force: true, namespace: 'monitoring', additionalLabels: { release: 'kps' } },
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const rule = () => rendered.find((o) => o.kind === 'PrometheusRule')!;

  it('the chart renders them as a PrometheusRule, as they are in files/alerts.yaml, with its namespace and labels', () => {
    assert.ok(rule(), 'rendered');
    assert.equal(rule().apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(rule().metadata.namespace, 'monitoring');
    assert.equal(rule().metadata.labels?.release, 'kps');
    assert.deepEqual(rule().spec, file);
  });

  it('renders no PrometheusRule unless enabled, and unless the cluster serves the API or it is forced', async () => {
    const kinds = async (values: object, apiVersions: string[] = []) =>
      (await renderChart(values, { apiVersions })).map((o) => o.kind);
    assert.ok(!(await kinds({})).includes('PrometheusRule'), 'off by default');
    assert.ok(!(await kinds({ prometheusRule: { enabled: true } })).includes('PrometheusRule'), 'no API, not forced');
    assert.ok(
      (await kinds({ prometheusRule: { enabled: true } }, ['monitoring.coreos.com/v1/PrometheusRule'])).includes(
        'PrometheusRule',
      ),
      'the cluster serves the API',
    );
  });

  it('promtool check rules accepts what the chart renders', () => {
    const path = join(dir, 'rendered.yaml');
    writeFileSync(path, stringify(rule().spec));
    const checked = promtool(['check', 'rules', path]);
    assert.equal(checked.status, 0, checked.output);
    assert.match(checked.output, new RegExp(`SUCCESS: ${rules.length + recordings.length} rules found`));
  });

  it('every alert has a summary, a description saying what to run, a runbook and a severity', () => {
    for (const r of rules) {
      assert.ok(r.annotations.summary, r.alert);
      assert.match(r.annotations.description ?? '', /kubectl /, r.alert);
      assert.match(r.annotations.runbook ?? '', new RegExp(`Monitoring and alerts: ${r.alert}$`), r.alert);
      assert.ok(['critical', 'warning'].includes(r.labels.severity ?? ''), r.alert);
    }
  });

  it('promtool test rules: every alert fires when it should and stays silent when it should not', () => {
    const fired = new Set(
      TESTS.flatMap((t) => t.alert_rule_test.filter((c) => c.exp_alerts.length > 0).map((c) => c.alertname)),
    );
    assert.deepEqual([...fired].sort(), rules.map((r) => r.alert).sort(), 'a firing case for every alert');
    const rulesPath = join(dir, 'alerts.yaml');
    writeFileSync(rulesPath, stringify(rule().spec));
    const testsPath = join(dir, 'alerts.test.yaml');
    writeFileSync(
      testsPath,
      stringify({
        rule_files: [rulesPath],
        evaluation_interval: '1m',
        tests: TESTS.map(({ name: _name, ...t }) => ({ interval: '1m', ...t })),
      }),
    );
    const tested = promtool(['test', 'rules', testsPath]);
    assert.equal(tested.status, 0, tested.output);
    assert.match(tested.output, /SUCCESS/);
  });
});
