// Benchmark of POST /hooks/schedule/sync for a schedule with many failed backups (issue 13 §5): the request
// Metacontroller sends (every child in full) and what the hook costs, at 1,000 and 10,000 failed children, and for
// the largest history the CRD admits (retention 1,000 + failedBackupsHistoryLimit 100), against the server's
// default body limit. With failed backups kept forever, a schedule failing every 5 minutes adds 288 children a day;
// with the default limit (3) the request stays at the size of the steady state printed last.
//
// Run alone: npx tsc -p tsconfig.json && node --expose-gc dist/bench/schedule-failed-children.js
// (or with every section: npm run bench). BENCH_FAILED_REPEATS sets the requests per size (default 5).

import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { BACKUP_CHILDREN_KEY, LAST_APPLIED_ANNOTATION, SCHEDULED_TIME_ANNOTATION } from '../src/api/constants.js';
import { buildApp } from '../src/server/app.js';
import { DEFAULTS } from '../src/server/config.js';
import { MAX_JSON_DEPTH } from '../src/server/http/json-body.js';
import { SCHEDULE_SYNC_PATH } from '../src/server/http/schedule-sync.js';
import type { CompositeSyncRequest, CompositeSyncResponse } from '../src/server/metacontroller/types.js';
import { DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT } from '../src/server/schedule/retention.js';
import { scheduleSyncFixture } from './fixtures.js';

type Json = Record<string, any>;

export interface FailedChildrenCase {
  label: string;
  failed: number;
  succeeded: number;
  bodyMiB: number;
  bytesPerChild: number;
  /** Answer of the server with its default body limit. */
  status: number;
  /** Median wall time of one request (send, parse, answer, receive), default body limit. */
  medianMs: number;
  /** The same with the body limit raised to fit (what the hook itself costs when the request gets through). */
  raisedLimitStatus: number;
  raisedLimitMedianMs: number;
  answerKiB: number;
  childrenKept: number;
  childrenDeleted: number;
}

export interface FailedChildrenFigures {
  bodyLimitMiB: number;
  defaultFailedBackupsHistoryLimit: number;
  /** How many failed children (beside 5 successful ones) the default server still answers with 200. */
  failedChildrenThatFit: number;
  /** Days a schedule failing every 5 minutes would take to reach the limit if failed backups were kept forever. */
  daysToLimitAt5Min: number;
  cases: FailedChildrenCase[];
  /** Target: the largest history the CRD admits is answered 200 by the default server. */
  pass: boolean;
}

const SLOT_MS = 5 * 60_000;
const REPEATS = Math.max(1, Math.round(Number(process.env.BENCH_FAILED_REPEATS ?? 5)));
const rfc3339 = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The fixture's failed child and successful child (realistic: managedFields, last-applied), as templates. */
function templates(): { request: CompositeSyncRequest; failed: Json; succeeded: Json; scheduleName: string } {
  const fixture = scheduleSyncFixture({ children: 18 });
  const children = Object.values(fixture.request.children[BACKUP_CHILDREN_KEY] ?? {}) as Json[];
  const failed = children.find((c) => c.status?.phase === 'Failed');
  const succeeded = children.find((c) => c.status?.phase === 'Succeeded');
  if (!failed || !succeeded) throw new Error('bench/fixtures.ts no longer has a failed and a successful child');
  // What the snapshot Job writes on its last attempt (status.report, a merge patch with the pod's token), as it
  // stands beside the decorator's status, with the managed-fields entry of that patch.
  const report = {
    state: 'Failed',
    pod: `${failed.metadata.name}-snapshot-x7k2p`,
    startedAt: failed.status.startTime,
    updatedAt: failed.status.completionTime,
    bytesUploaded: 0,
    message: failed.status.message,
    retryable: true,
  };
  failed.status = { ...failed.status, report };
  failed.metadata.managedFields = [
    ...failed.metadata.managedFields,
    {
      manager: 'talos-etcd-backup',
      operation: 'Update',
      apiVersion: failed.apiVersion,
      time: failed.status.completionTime,
      fieldsType: 'FieldsV1',
      fieldsV1: {
        'f:status': {
          'f:report': {
            '.': {},
            'f:bytesUploaded': {},
            'f:message': {},
            'f:pod': {},
            'f:retryable': {},
            'f:startedAt': {},
            'f:state': {},
            'f:updatedAt': {},
          },
        },
      },
      subresource: 'status',
    },
  ];
  return { request: fixture.request, failed, succeeded, scheduleName: fixture.scheduleName };
}

/** A copy of `template` for another slot: its own name, uid, scheduled time and last-applied configuration. */
function childAt(template: Json, scheduleName: string, slot: number, index: number): Json {
  const child = structuredClone(template);
  const oldName = child.metadata.name as string;
  const name = `${scheduleName}-${Math.floor(slot / 1000)}`;
  child.metadata.name = name;
  child.metadata.uid = `${index.toString(16).padStart(8, '0')}-0000-4000-8000-${index.toString(16).padStart(12, '0')}`;
  child.metadata.resourceVersion = String(50_000_000 + index);
  child.metadata.creationTimestamp = rfc3339(slot + 400);
  child.metadata.annotations[SCHEDULED_TIME_ANNOTATION] = rfc3339(slot);
  child.metadata.annotations[LAST_APPLIED_ANNOTATION] = (
    child.metadata.annotations[LAST_APPLIED_ANNOTATION] as string
  ).replaceAll(oldName, name);
  if (child.status.report) child.status.report.pod = `${name}-snapshot-x7k2p`;
  return child;
}

/** A sync request for a schedule with `failed` failed and `succeeded` successful backups, 5 minutes apart. */
export function failedChildrenRequest(failed: number, succeeded: number, spec: Json = {}): { body: string; now: Date } {
  const t = templates();
  const request = structuredClone(t.request) as Json;
  const total = failed + succeeded;
  const newest = Date.parse('2026-03-01T00:00:00Z');
  const children: Record<string, Json> = {};
  for (let i = 0; i < total; i += 1) {
    const slot = newest - (total - 1 - i) * SLOT_MS;
    // The successful ones are the newest: the schedule is fine now, the failures are history.
    const child = childAt(i < failed ? t.failed : t.succeeded, t.scheduleName, slot, i);
    children[child.metadata.name] = child;
  }
  request.children = { [BACKUP_CHILDREN_KEY]: children };
  request.parent.spec = { ...request.parent.spec, schedule: '*/5 * * * *', retention: Math.max(5, succeeded), ...spec };
  delete request.parent.spec.failedBackupsHistoryLimit;
  Object.assign(request.parent.spec, spec);
  // Between two slots: nothing is due, the answer is the history under retention.
  return { body: JSON.stringify(request), now: new Date(newest + 2 * 60_000) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function measure(
  body: string,
  now: Date,
  bodyLimit: number,
  opts: { raised?: boolean; repeats?: number } = {},
): Promise<{ status: number; medianMs: number; answer?: CompositeSyncResponse; error?: string; answerBytes: number }> {
  // Raised: the byte limit fits the body and the value limit is off, to see what the hook itself costs.
  const app = await buildApp({
    clock: () => now,
    bodyLimit,
    ...(opts.raised && { jsonLimits: { maxDepth: MAX_JSON_DEPTH, maxValues: Number.MAX_SAFE_INTEGER } }),
  });
  const url = `${await app.listen({ host: '127.0.0.1', port: 0 })}${SCHEDULE_SYNC_PATH}`;
  try {
    const times: number[] = [];
    let status = 0;
    let text = '';
    for (let i = 0; i < (opts.repeats ?? REPEATS) + 1; i += 1) {
      globalThis.gc?.();
      const start = performance.now();
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      text = await response.text();
      const ms = performance.now() - start;
      status = response.status;
      if (i > 0) times.push(ms); // the first request warms the server up
    }
    return {
      status,
      medianMs: median(times),
      ...(status === 200 ? { answer: JSON.parse(text) as CompositeSyncResponse } : { error: text.slice(0, 300) }),
      answerBytes: Buffer.byteLength(text),
    };
  } finally {
    await app.close();
  }
}

const round = (value: number, digits = 1): number => Number(value.toFixed(digits));

export async function runScheduleFailedChildrenBenchmark(): Promise<FailedChildrenFigures> {
  const bodyLimit = DEFAULTS.bodyLimit;
  console.log(`\n## schedule hook with many failed backups: POST ${SCHEDULE_SYNC_PATH}`);
  console.log(
    `default body limit ${(bodyLimit / 1048576).toFixed(0)} MiB, failedBackupsHistoryLimit default ${DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT}, ${REPEATS} requests per case (median)`,
  );
  const cases: FailedChildrenCase[] = [];
  const plan: { label: string; failed: number; succeeded: number; spec?: Json }[] = [
    { label: '1,000 failed (upgraded, limit now 3)', failed: 1_000, succeeded: 5 },
    { label: '10,000 failed (upgraded, limit now 3)', failed: 10_000, succeeded: 5 },
    {
      label: 'largest the CRD admits (1,000 + 100)',
      failed: 100,
      succeeded: 1_000,
      spec: { retention: 1_000, failedBackupsHistoryLimit: 100 },
    },
    { label: 'steady state with the default', failed: DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT, succeeded: 5 },
  ];
  for (const p of plan) {
    const { body, now } = failedChildrenRequest(p.failed, p.succeeded, p.spec);
    const bytes = Buffer.byteLength(body);
    const normal = await measure(body, now, bodyLimit);
    const raised = normal.status === 200 ? normal : await measure(body, now, bytes + 1024 * 1024, { raised: true });
    const answer = raised.answer;
    const kept = answer?.children.length ?? 0;
    const figures: FailedChildrenCase = {
      label: p.label,
      failed: p.failed,
      succeeded: p.succeeded,
      bodyMiB: round(bytes / 1048576, 2),
      bytesPerChild: Math.round(bytes / (p.failed + p.succeeded)),
      status: normal.status,
      medianMs: round(normal.medianMs),
      raisedLimitStatus: raised.status,
      raisedLimitMedianMs: round(raised.medianMs),
      answerKiB: round(raised.answerBytes / 1024),
      childrenKept: kept,
      childrenDeleted: answer ? p.failed + p.succeeded - kept : 0,
    };
    cases.push(figures);
    const why = (m: { status: number; error?: string }) =>
      m.status === 200 ? '' : ` (${(JSON.parse(m.error ?? '{}') as { code?: string }).code ?? m.error})`;
    const limited =
      figures.status === 200
        ? ''
        : `${why(normal)}; with the body limit raised to fit: HTTP ${figures.raisedLimitStatus}${why(raised)} in ${figures.raisedLimitMedianMs} ms`;
    console.log(
      `${`${p.label}:`.padEnd(42)}body ${figures.bodyMiB} MiB (${figures.bytesPerChild} B/child): HTTP ${figures.status} in ${figures.medianMs} ms${limited}; answer ${figures.answerKiB} KiB, ${kept} kept, ${figures.childrenDeleted} deleted`,
    );
  }
  // The most failed children (beside 5 successful ones) the default server still answers (byte and value limits).
  let [low, high] = [1_000, 10_000];
  while (high - low > 10) {
    const mid = Math.floor((low + high) / 2);
    const { body, now } = failedChildrenRequest(mid, 5);
    if ((await measure(body, now, bodyLimit, { repeats: 0 })).status === 200) low = mid;
    else high = mid;
  }
  const fit = low;
  const days = round(fit / 288, 1);
  console.log(
    `the default server answers up to ~${fit} failed children (then 413): ${days} days of a schedule failing every 5 minutes, if failed backups were kept forever`,
  );
  const pass = cases.find((c) => c.label.startsWith('largest'))?.status === 200;
  console.log(
    `${'target: the largest history the CRD admits is answered 200:'.padEnd(62)}${pass ? 'PASS' : 'FAIL  <<<<<<<<<<'}`,
  );
  return {
    bodyLimitMiB: bodyLimit / 1048576,
    defaultFailedBackupsHistoryLimit: DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT,
    failedChildrenThatFit: fit,
    daysToLimitAt5Min: days,
    cases,
    pass,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  runScheduleFailedChildrenBenchmark().then(
    (figures) => console.log(`\n${JSON.stringify({ scheduleFailedChildren: figures })}`),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
