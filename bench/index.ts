// Entry of `npm run bench`: runs each benchmark section in turn and ends with one JSON line of all figures.
// A benchmark, not a test: a missed target is printed as FAIL but the exit code stays 0; a broken run exits 1.

import {
  runCodecsBenchmark,
  runCopiesBenchmark,
  runCpuBenchmark,
  runPipelineBenchmark,
  runSizesBenchmark,
} from './pipeline.js';
import { runScheduleFailedChildrenBenchmark } from './schedule-failed-children.js';
import { runScheduleHookBenchmark } from './schedule-hook.js';
import { runWorstBodiesBenchmark } from './worst-bodies-bench.js';

async function main(): Promise<void> {
  console.log(`talos-etcd-backup benchmarks — node ${process.version}, ${process.platform}/${process.arch}`);
  if (typeof globalThis.gc !== 'function')
    console.log('note: run with --expose-gc (npm run bench does) for steadier baselines');

  // Further sections (e.g. the snapshot pipeline) go here, each adding its figures under its own key.
  const figures: Record<string, unknown> = { node: process.version };
  // BENCH_SECTIONS=copies,pipeline runs only those sections (all by default).
  const only = process.env.BENCH_SECTIONS?.split(',').map((s) => s.trim());
  const runs = (name: string) => !only || only.includes(name);
  if (runs('scheduleHook')) figures.scheduleHook = await runScheduleHookBenchmark();
  if (runs('scheduleFailedChildren')) figures.scheduleFailedChildren = await runScheduleFailedChildrenBenchmark();
  if (runs('worstBodies')) figures.worstBodies = await runWorstBodiesBenchmark();
  if (runs('pipeline')) figures.pipeline = await runPipelineBenchmark();
  if (runs('copies')) figures.copies = await runCopiesBenchmark();
  if (runs('cpu')) figures.cpu = await runCpuBenchmark();
  if (runs('codecs')) figures.codecs = await runCodecsBenchmark();
  if (runs('sizes')) figures.sizes = await runSizesBenchmark();

  console.log('');
  console.log(JSON.stringify(figures));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
