// A real Prometheus for tests (Debian's `prometheus` package): one server on 127.0.0.1, scraping the given targets
// every second as the chart's ServiceMonitor has prometheus-operator do it (honor_labels, a `namespace` target
// label), evaluating the given rule files every second, its data in a fresh temporary directory removed on stop
// (and by the exit hook if a test crashes).
//
//   const prom = await startPrometheus({ targets: [server.url] });
//   await prom.waitForScrape();
//   const [sample] = await prom.query('talos_etcd_backup_schedule_backups{phase="Succeeded"}');
//   await prom.stop();

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePorts } from './etcd.js';
import { ownDir, startProcess, waitUntilReady } from './processes.js';

const INSTALL_HINT = 'run ./scripts/install-test-deps.sh (Debian package prometheus)';

export interface Sample {
  metric: Record<string, string>;
  value: number;
}

export interface Prometheus {
  url: string;
  /** An instant query; each result's labels and value. */
  query(expr: string): Promise<Sample[]>;
  /** The rule groups as Prometheus evaluated them: each rule's name, health and last error. */
  rules(): Promise<{ name: string; health: string; lastError?: string }[]>;
  /** Resolves once every target has been scraped successfully (up == 1) since `since` (default: now). */
  waitForScrape(since?: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface PrometheusOptions {
  targets: string[];
  /** Rule files (plain Prometheus rule groups) to load. */
  ruleFiles?: string[];
  /** The `namespace` target label prometheus-operator gives every target: the hook server's namespace. */
  targetNamespace?: string;
}

export async function startPrometheus(opts: PrometheusOptions): Promise<Prometheus> {
  const check = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
  if (check.error || check.status !== 0)
    throw new Error(`the tests need a real Prometheus: \`prometheus\` is not usable; ${INSTALL_HINT}`);
  const dir = mkdtempSync(join(tmpdir(), 'talos-etcd-backup-prometheus-'));
  const owned = ownDir(dir);
  const [port] = (await freePorts(1)) as [number];
  const hosts = opts.targets.map((t) => new URL(t).host);
  writeFileSync(
    join(dir, 'prometheus.yml'),
    stringify({
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      ...(opts.ruleFiles && { rule_files: opts.ruleFiles }),
      scrape_configs: [
        {
          job_name: 'talos-etcd-backup',
          metrics_path: '/metrics',
          honor_labels: true,
          static_configs: [{ targets: hosts, labels: { namespace: opts.targetNamespace ?? 'talos-etcd-backup' } }],
        },
      ],
    }),
  );
  const server = startProcess('prometheus', 'prometheus', [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ]);
  const url = `http://127.0.0.1:${port}`;
  await waitUntilReady(server, async () => (await fetch(`${url}/-/ready`)).ok, 30_000);

  const query = async (expr: string): Promise<Sample[]> => {
    const answer = (await (await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as {
      status: string;
      error?: string;
      data?: { result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (answer.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${answer.error}`);
    return answer.data!.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  };
  return {
    url,
    query,
    async rules() {
      const answer = (await (await fetch(`${url}/api/v1/rules`)).json()) as {
        data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
      };
      return answer.data.groups.flatMap((g) =>
        g.rules.map(({ name, health, lastError }) => ({ name, health, lastError })),
      );
    },
    async waitForScrape(since = Date.now(), timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const targets = (await (await fetch(`${url}/api/v1/targets`)).json()) as {
          data: { activeTargets: { health: string; lastScrape: string }[] };
        };
        const active = targets.data.activeTargets;
        if (
          active.length === hosts.length &&
          active.every((t) => t.health === 'up' && Date.parse(t.lastScrape) > since)
        )
          return;
        if (Date.now() > deadline) throw new Error(`Prometheus did not scrape every target: ${JSON.stringify(active)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
      owned.release();
    },
  };
}
