// Loaded with `node --import` into every process the pipeline benchmark measures (the real CLI included, unchanged):
// when the process exits it writes its peak RSS (VmHWM) and CPU time to $BENCH_MEASURE_FILE. A parent cannot read
// these after the child is gone (Node exposes no rusage of children), and sampling /proc from outside misses peaks.
//
// With BENCH_S3_TIMING=1 it also times every S3 command the process sends (by wrapping S3Client.prototype.send,
// which the CLI's client inherits), so a run can tell streaming the parts from the server-side metadata copy.

import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export interface S3CommandTiming {
  command: string;
  /** ms since the process started (performance.now()). */
  startMs: number;
  endMs: number;
  ok: boolean;
}

/** process.memoryUsage() (MiB) at the sample with the highest RSS. */
export interface MemorySample {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  /** Memory of ArrayBuffers and Buffers (outside the V8 heap), included in `external`. */
  arrayBuffers: number;
  external: number;
}

export interface ChildMeasure {
  /** Peak resident set size of this process image: VmHWM, KiB (see peakRssKiB). */
  maxRssKiB: number;
  /** Where maxRssKiB comes from. */
  rssSource: 'VmHWM' | 'getrusage';
  /** CPU time of the whole process (all threads), microseconds. */
  userCpuUs: number;
  systemCpuUs: number;
  /** Time from process start to exit, ms. */
  uptimeMs: number;
  exitCode: number;
  /** Sampled every 50 ms: where the memory was at the highest sampled RSS (the true peak may fall between samples). */
  atPeak?: MemorySample;
  s3?: S3CommandTiming[];
}

const file = process.env.BENCH_MEASURE_FILE;
delete process.env.BENCH_MEASURE_FILE;
const traceS3 = process.env.BENCH_S3_TIMING === '1';
delete process.env.BENCH_S3_TIMING;

const s3: S3CommandTiming[] = [];
if (traceS3) {
  const { S3Client } = await import('@aws-sdk/client-s3');
  type Send = (this: unknown, command: { constructor: { name: string } }, ...rest: unknown[]) => Promise<unknown>;
  const proto = S3Client.prototype as unknown as { send: Send };
  const send = proto.send;
  proto.send = async function timedSend(this: unknown, command, ...rest) {
    const record: S3CommandTiming = {
      command: command.constructor.name,
      startMs: performance.now(),
      endMs: Number.NaN,
      ok: false,
    };
    s3.push(record);
    try {
      const result = await send.call(this, command, ...rest);
      record.ok = true;
      return result;
    } finally {
      record.endMs = performance.now();
    }
  };
}

const mib = (bytes: number): number => Math.round((bytes / 1048576) * 10) / 10;
let atPeak: MemorySample | undefined;
function sample(): void {
  const usage = process.memoryUsage();
  if (atPeak && usage.rss / 1048576 <= atPeak.rss) return;
  atPeak = {
    rss: mib(usage.rss),
    heapTotal: mib(usage.heapTotal),
    heapUsed: mib(usage.heapUsed),
    arrayBuffers: mib(usage.arrayBuffers),
    external: mib(usage.external),
  };
}

/**
 * The peak RSS of this process since its exec: /proc/self/status VmHWM. Not getrusage's ru_maxrss: Linux carries the
 * high-water mark of the image replaced by exec into it, so a child forked from the bench would report at least the
 * bench's own RSS (measured: 308-325 MiB against a true peak of 236-238 MiB).
 */
function peakRssKiB(): { kib: number; source: ChildMeasure['rssSource'] } {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (match?.[1]) return { kib: Number(match[1]), source: 'VmHWM' };
  } catch {
    // not Linux: fall back
  }
  return { kib: process.resourceUsage().maxRSS, source: 'getrusage' };
}

if (file) {
  setInterval(sample, 50).unref();
  process.on('exit', (code) => {
    sample();
    const usage = process.resourceUsage();
    const peak = peakRssKiB();
    const measure: ChildMeasure = {
      maxRssKiB: peak.kib,
      rssSource: peak.source,
      userCpuUs: usage.userCPUTime,
      systemCpuUs: usage.systemCPUTime,
      uptimeMs: process.uptime() * 1000,
      exitCode: code,
      ...(atPeak && { atPeak }),
      ...(traceS3 && { s3 }),
    };
    writeFileSync(file, JSON.stringify(measure));
  });
}
