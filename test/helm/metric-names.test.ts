// The alert rules and the dashboard read only metrics the hook server exports, with labels it sets: a renamed or
// dropped metric fails here, not silently in a user's Prometheus.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createMetrics } from '../../src/server/http/metrics.js';
import { CHART_DIR } from '../harness/helm.js';

const exported = new Map(
  createMetrics({ expirySeconds: 900, clock: () => new Date(0) })
    .registry.getMetricsAsArray()
    .map((m) => m as unknown as { name: string; labelNames: string[] })
    .map((m) => [m.name, new Set(m.labelNames)]),
);

/** Metric names a PromQL text uses, histogram series mapped to their histogram. */
const namesIn = (text: string): Set<string> =>
  new Set([...text.matchAll(/talos_etcd_backup_[a-z_]+/g)].map(([name]) => name.replace(/_(bucket|sum|count)$/, '')));

/** `name{label...` and `by (label, ...)` uses: every label an expression filters or groups on. */
const labelsIn = (text: string): Set<string> => {
  const labels = new Set<string>();
  for (const [, group] of text.matchAll(/\bby \(([^)]*)\)/g))
    for (const label of group!.split(',')) labels.add(label.trim());
  for (const [, matchers] of text.matchAll(/talos_etcd_backup_[a-z_]+\{([^}]*)\}/g))
    for (const [, label] of matchers!.matchAll(/(\w+)\s*(?:=~|!=|!~|=)/g)) labels.add(label!);
  labels.delete('le'); // the histogram's own
  labels.delete('');
  return labels;
};

const sources = {
  'files/alerts.yaml': readFileSync(join(CHART_DIR, 'files', 'alerts.yaml'), 'utf8'),
  'files/dashboard.json': (
    JSON.parse(readFileSync(join(CHART_DIR, 'files', 'dashboard.json'), 'utf8')) as {
      panels: { targets?: { expr: string }[] }[];
    }
  ).panels
    .flatMap((p) => p.targets ?? [])
    .map((t) => t.expr)
    .join('\n'),
};

describe("the chart's alerts and dashboard use the exported metrics", () => {
  for (const [file, text] of Object.entries(sources)) {
    it(`${file}: every metric it reads is exported, and every label it uses is one of that metric's`, () => {
      const names = namesIn(text);
      assert.ok(names.size > 0, 'reads some metric');
      for (const name of names) assert.ok(exported.has(name), `${name} is not exported`);
      const allLabels = new Set([...names].flatMap((n) => [...exported.get(n)!]));
      for (const label of labelsIn(text)) assert.ok(allLabels.has(label), `label ${label} is not on any metric used`);
    });
  }
});
