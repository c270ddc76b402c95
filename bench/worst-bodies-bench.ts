// `npm run bench`, section "worst bodies": each of the most expensive bodies the server accepts (bench/worst-bodies.ts)
// sent to `talos-etcd-backup serve` running as in the chart's pod (POD_ENV), with /healthz probed meanwhile as the
// kubelet does; then all of them back to back on one server, then a realistic 1,000-backup schedule. Peak RSS is the
// process's VmHWM, each body on a fresh server. test/server/http/memory.test.ts asserts a wide bound; the figures are here.

import { scheduleSyncFixture } from './fixtures.js';
import { POD_ENV, POD_MEMORY_LIMIT_MIB, post, probeDuring, startServe } from './serve-process.js';
import { SCHEDULE_SYNC_PATH } from '../src/server/http/schedule-sync.js';
import { worstBodies } from './worst-bodies.js';
import { DEFAULTS } from '../src/server/config.js';

/** Targets: a worst body's peak stays below 75% of the pod's limit, all of them in a row (or 4 at once) below 80%; no probe over 2 s. */
export const TARGET_PEAK_MIB = Math.round(0.75 * POD_MEMORY_LIMIT_MIB);
export const TARGET_BARRAGE_PEAK_MIB = Math.round(0.8 * POD_MEMORY_LIMIT_MIB);
export const TARGET_PROBE_MS = 2_000;

export interface WorstBodyFigure {
  name: string;
  status: number;
  ms: number;
  peakMiB: number;
  slowestProbeMs: number;
}

export interface WorstBodiesFigures {
  bodyLimitMiB: number;
  idleRssMiB: number;
  bodies: WorstBodyFigure[];
  worstPeakMiB: number;
  barragePeakMiB: number;
  concurrent: { bodies: number; ms: number; peakMiB: number };
  realistic: { children: number; bodyMiB: number; status: number; ms: number; peakMiB: number };
  pass: boolean;
}

const round = (value: number, digits = 0): number => Number(value.toFixed(digits));

export async function runWorstBodiesBenchmark(): Promise<WorstBodiesFigures> {
  const bodyLimit = DEFAULTS.bodyLimit;
  console.log(
    `\n## worst bodies: the most expensive requests the limits admit (body limit ${bodyLimit / 1048576} MiB), serve as in the pod`,
  );
  const bodies = worstBodies(bodyLimit);
  const figures: WorstBodyFigure[] = [];
  let idleRssMiB = 0;
  // Each body on a fresh server: its peak is its own, not what the ones before left behind.
  for (const body of bodies) {
    const text = body.build();
    const server = await startServe(POD_ENV);
    try {
      idleRssMiB = Math.max(idleRssMiB, server.memory().rssMiB);
      const started = performance.now();
      const { result, probes } = await probeDuring(`${server.url}/healthz`, post(`${server.url}${body.path}`, text));
      const figure = {
        name: body.name,
        status: result.status,
        ms: round(performance.now() - started),
        peakMiB: round(server.memory().peakMiB),
        slowestProbeMs: round(probes.slowestMs),
      };
      figures.push(figure);
      console.log(
        `${body.name.padEnd(58)} HTTP ${figure.status}  ${String(figure.ms).padStart(5)} ms  peak ${figure.peakMiB} MiB  slowest probe ${figure.slowestProbeMs} ms`,
      );
    } finally {
      await server.stop();
    }
  }

  // All of them again, back to back on a fresh server: what garbage and fragmentation add up to.
  const barrage = await startServe(POD_ENV);
  let barragePeakMiB: number;
  try {
    for (const body of bodies) await post(`${barrage.url}${body.path}`, body.build());
    barragePeakMiB = round(barrage.memory().peakMiB);
  } finally {
    await barrage.stop();
  }

  // Four of the heaviest at once, as Metacontroller's workers may send them: they take turns (http/body-budget.ts).
  const together = await startServe(POD_ENV);
  let concurrentPeakMiB: number;
  let concurrentMs: number;
  try {
    const heaviest = bodies.filter((b) => /keys|shapes/.test(b.name)).slice(0, 4);
    const texts = heaviest.map((b) => b.build());
    const started = performance.now();
    await Promise.all(heaviest.map((b, i) => post(`${together.url}${b.path}`, texts[i]!)));
    concurrentMs = round(performance.now() - started);
    concurrentPeakMiB = round(together.memory().peakMiB);
  } finally {
    await together.stop();
  }

  const fixture = scheduleSyncFixture({ children: 1000 });
  const real = await startServe(POD_ENV);
  let realistic: WorstBodiesFigures['realistic'];
  try {
    const started = performance.now();
    const answer = await post(`${real.url}${SCHEDULE_SYNC_PATH}`, fixture.body);
    realistic = {
      children: 1000,
      bodyMiB: round(Buffer.byteLength(fixture.body) / 1048576, 1),
      status: answer.status,
      ms: round(performance.now() - started),
      peakMiB: round(real.memory().peakMiB),
    };
  } finally {
    await real.stop();
  }

  const worstPeakMiB = Math.max(...figures.map((f) => f.peakMiB));
  const slowestProbe = Math.max(...figures.map((f) => f.slowestProbeMs));
  const pass =
    worstPeakMiB <= TARGET_PEAK_MIB &&
    barragePeakMiB <= TARGET_BARRAGE_PEAK_MIB &&
    concurrentPeakMiB <= TARGET_BARRAGE_PEAK_MIB &&
    slowestProbe <= TARGET_PROBE_MS &&
    figures.every((f) => f.status < 500);
  console.log(
    `idle RSS ${round(idleRssMiB)} MiB; worst single peak ${worstPeakMiB} MiB (target <= ${TARGET_PEAK_MIB}); all in a row ${barragePeakMiB} MiB (target <= ${TARGET_BARRAGE_PEAK_MIB}); slowest probe ${slowestProbe} ms (target <= ${TARGET_PROBE_MS})`,
  );
  console.log(
    `4 of the heaviest at once: ${concurrentMs} ms, peak ${concurrentPeakMiB} MiB (target <= ${TARGET_BARRAGE_PEAK_MIB})`,
  );
  console.log(
    `realistic: ${realistic.children} backups, ${realistic.bodyMiB} MiB: HTTP ${realistic.status} in ${realistic.ms} ms, peak ${realistic.peakMiB} MiB`,
  );
  console.log(pass ? 'PASS' : 'FAIL  <<<<<<<<<<');
  return {
    bodyLimitMiB: bodyLimit / 1048576,
    idleRssMiB: round(idleRssMiB),
    bodies: figures,
    worstPeakMiB,
    barragePeakMiB,
    concurrent: { bodies: 4, ms: concurrentMs, peakMiB: concurrentPeakMiB },
    realistic,
    pass,
  };
}
