// How the hook server starts node in the Job's container: flags and environment the snapshot's memory bound
// depends on (the backup controller's Job writer and the benchmark use both).

/**
 * Flags the snapshot Job starts node with (the backup controller's Job command and the benchmark both use this).
 * A 1 GiB snapshot is a million 1 KiB gRPC messages, each leaving short-lived garbage: V8's default young
 * generation (16 MiB semi-spaces) grows to ~50 MiB of heap for it. 2 MiB semi-spaces keep the heap near 20 MiB;
 * measured with `npm run bench`: peak RSS 148 instead of 213 MiB at 1 GiB, for more frequent scavenges.
 * Collecting on the main thread alone (no GC helper threads) takes another ~18 MiB off the peak for the same CPU
 * (Node 22, 1 GiB, six interleaved runs each: median 170 vs 189 MiB, 10.5 vs 10.8 CPU s/GiB); 8 MiB semi-spaces
 * would save ~1.5 CPU s/GiB for ~20 MiB more. `BENCH_SECTIONS=cpu` with BENCH_CLI_NODE_FLAGS; README "Performance".
 */
export const SNAPSHOT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--single-threaded-gc'];

/**
 * Environment the snapshot Job runs with, for the same reason. glibc's malloc would otherwise keep the freed
 * 8 MiB part buffers in its heap (its mmap threshold grows to fit them) spread over several arenas; a fixed 1 MiB
 * threshold returns them to the system on free. Measured with `npm run bench`: peak RSS 145–161 MiB at 1 GiB
 * instead of 163–166 MiB. (Other C libraries ignore these variables.)
 */
export const SNAPSHOT_RUNTIME_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: '1048576',
};
