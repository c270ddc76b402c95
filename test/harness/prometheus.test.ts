// The Prometheus harness against the real hook server: it scrapes /metrics and answers queries.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { packageRoot } from '../../src/api/crds.js';
import { startServer, type RunningServer } from '../helpers/server.js';
import { startPrometheus, type Prometheus } from './prometheus.js';

describe('Prometheus harness', () => {
  let server: RunningServer;
  let prom: Prometheus;
  before(async () => {
    server = await startServer();
    prom = await startPrometheus({ targets: [server.url] });
  });
  after(async () => {
    await prom?.stop();
    await server?.close();
  });

  it('scrapes the hook server and answers a query about a hook call', async () => {
    const body = readFileSync(join(packageRoot(), 'examples', 'hooks', 'schedule-sync.json'), 'utf8');
    const answer = await fetch(`${server.url}/hooks/schedule/sync`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(answer.status, 200);
    await prom.waitForScrape();
    const [sample] = await prom.query('sum by (hook, code) (talos_etcd_backup_hook_requests_total)');
    assert.deepEqual(sample, { metric: { hook: 'schedule/sync', code: '200' }, value: 1 });
  });

  it("honours the series' own namespace label, as the chart's ServiceMonitor has it; others get the target's", async () => {
    const [schedule] = await prom.query('talos_etcd_backup_schedule_synced_timestamp_seconds');
    assert.equal(schedule?.metric.namespace, 'talos-backup', "the schedule's namespace, from the hook server");
    assert.equal(schedule?.metric.exported_namespace, undefined);
    const [requests] = await prom.query('talos_etcd_backup_hook_requests_total{hook="schedule/sync"}');
    assert.equal(requests?.metric.namespace, 'talos-etcd-backup', 'the target label: where the hook server runs');
  });
});
