// Benchmark of the snapshot pipeline: an etcd snapshot streamed from the Talos API (mutual TLS, 1024-byte messages)
// through the integrity check into S3 (Ceph RGW on loopback), by the real CLI as the Job runs it (`node <SNAPSHOT_NODE_FLAGS> dist/src/main.js snapshot`, SNAPSHOT_RUNTIME_ENV),
// against its two stages alone and against the two-step script a user would write otherwise.
//
// Every measured run is a child process of its own (peak RSS and CPU are per run, recorded at its exit by
// bench/measure-preload.js); the Talos double runs in another child (bench/talos-server.js) and RGW's daemons in
// their own processes, so neither counts against the measured one. Each S3 run gets a fresh RGW: RGW frees deleted
// objects only by a deferred garbage collection, and a fresh store puts every run on the same footing.
//
// Runs, in order: the CLI at the small size (for the RSS comparison), then at the big size stage A (gRPC read +
// verify to nowhere), stage B (S3 upload of the same bytes, generated in the process), the two-step baseline
// (talosctl-like save to file.part + fsync + rename, then an upload of the file) and the CLI. BENCH_PIPELINE_MIB sets
// the big size (default 1024); the small one is 256, or a quarter of the big one below 1024.
// Then the CLI again at the big size with the stored formats on (COMPRESSION, AGE_RECIPIENTS, VERIFY with
// AGE_IDENTITY_FILE): gzip, zstd, zstd + age, zstd + age + verify (the read-back runs in the same process, so its
// memory and time count). These four take a second double whose snapshot is the same keystream laid out as a valid
// etcd bbolt database (bench/snapshot-bytes.ts, layout 'bolt'), which VERIFY's structure check requires; its bytes
// are as incompressible as the first's, so their compression ratios and codec speeds are a worst case.
// Issue 18's sections (each also alone: BENCH_SECTIONS=cpu,codecs,sizes): `cpu`, the plain CLI against a minimal
// pipeline, the two-step and the floors of its own work (node:http2 read, + sha256, upload from memory signed and
// unsigned, over HTTP and HTTPS), on this Node and the image's, with a --cpu-prof run summarised by layer;
// `codecs`, the CLI with zstd + age + verify against its parts measured alone; `sizes`, peak RSS from 256 MiB to
// 8 GiB. See runCpuBenchmark, runCodecsBenchmark and runSizesBenchmark for their settings.
// Reading the figures: CPU seconds per process over the run tell who was busy (one JS thread caps a Node process at
// about 1.0 core); on this RGW the CopyObject that adds the hashes is a metadata operation (~10 ms), other stores may
// copy the bytes server-side; above 5 GiB it is a multipart copy, which RGW does by rewriting the bytes (37 s at 8 GiB).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, GetObjectTaggingCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import type { Compression } from '../src/api/types.js';
import { GZIP_LEVEL, ZSTD_LEVEL, zstdImplementation } from '../src/job/codec/compression.js';
import { sniffFormat } from '../test/helpers/stored-format.js';
import { SETTINGS } from '../src/contract/settings.js';
import { SNAPSHOT_NODE_FLAGS, SNAPSHOT_RUNTIME_ENV } from '../src/contract/runtime.js';
import { createTalosPki, talosconfigYaml } from '../test/harness/pki.js';
import { startRgw, type Rgw } from '../test/harness/rgw.js';
import { CHUNK_SIZE } from '../test/doubles/talos.js';
import { printProfile } from './cpu-profile.js';
import type { ChildMeasure, S3CommandTiming } from './measure-preload.js';
import type { ChildConfig, ChildMode, ChildReport } from './pipeline-child.js';
import { MIB, type DatabaseLayout, type SnapshotFacts } from './snapshot-bytes.js';
import type { ErrorMessage, ReadyMessage, StartMessage, StatsMessage } from './talos-server.js';

/** The issue's targets. */
export const PIPELINE_TARGETS = {
  /** Pipeline time at most this times the slower stage alone. */
  pipelineToSlowerStage: 1.3,
  /** Pipeline time at most this times the two-step baseline. */
  pipelineToTwoStep: 0.65,
  /** Peak RSS of the pipeline process, MiB. */
  peakRssMiB: 160,
  /** Peak RSS difference between the small and the big snapshot, MiB. */
  rssGrowthMiB: 16,
} as const;

// The CLI's own defaults (S3_PART_SIZE_MIB, S3_QUEUE_SIZE), passed explicitly everywhere.
const PART_SIZE_MIB = Number(SETTINGS.partSize.default);
const QUEUE_SIZE = Number(SETTINGS.queueSize.default);
const BUCKET = 'etcd-backups';

export interface RunFigures {
  /** Snapshot bytes (database + 32-byte trailer). */
  bytes: number;
  mib: number;
  /** Wall time of the measured process, spawn to exit (node start-up and module loading included). */
  seconds: number;
  mibPerSec: number;
  peakRssMiB: number;
  /** Where the measured process's memory was at its highest sampled RSS (every 50 ms), MiB. */
  atPeakMiB: { v8Heap: number; buffers: number; rest: number } | null;
  /** CPU seconds (user + system, all threads) of the measured process, the Talos double and RGW (radosgw + OSD). */
  cpuSeconds: { measured: number; double: number | null; rgw: number | null };
  /** Where the time went, seconds (see the report for each phase's meaning). */
  phases: Record<string, number>;
}

/** A CLI run with a stored format: the run's figures and what the CLI stored. */
export interface FormatRunFigures extends RunFigures {
  compression: Compression;
  encrypted: boolean;
  verified: boolean;
  /** With VERIFY: 'Full' (the plain snapshot was read: trailer and bbolt structure) or 'StoredBytes'. */
  verification: 'Full' | 'StoredBytes' | null;
  /** Bytes of the stored object (compressed, encrypted). */
  storedBytes: number;
  storedMiB: number;
  /** Stored bytes / snapshot bytes. */
  ratio: number;
}

/** The runs with stored formats, in the order they run. */
export const FORMAT_RUNS = [
  { name: 'gzip', label: 'pipeline + gzip', compression: 'gzip', encrypt: false, verify: false },
  { name: 'zstd', label: 'pipeline + zstd', compression: 'zstd', encrypt: false, verify: false },
  { name: 'zstdAge', label: 'pipeline + zstd + age', compression: 'zstd', encrypt: true, verify: false },
  { name: 'zstdAgeVerify', label: 'pipeline + zstd + age + verify', compression: 'zstd', encrypt: true, verify: true },
] as const satisfies readonly {
  name: string;
  label: string;
  compression: Compression;
  encrypt: boolean;
  verify: boolean;
}[];
export type FormatRunName = (typeof FORMAT_RUNS)[number]['name'];

export interface PipelineFigures {
  messageBytes: number;
  partSizeMiB: number;
  queueSize: number;
  smallMiB: number;
  bigMiB: number;
  pipelineSmall: RunFigures;
  pipeline: RunFigures;
  readVerify: RunFigures;
  s3Upload: RunFigures;
  twoStep: RunFigures;
  slowerStage: 'readVerify' | 's3Upload';
  pipelineToSlowerStage: number;
  pipelineToTwoStep: number;
  rssGrowthMiB: number;
  /** The CLI at the big size with stored formats on (bytes: see `formatData`). */
  formats: Record<FormatRunName, FormatRunFigures>;
  /** What the format runs' snapshot holds: its compressibility decides what their ratios and codec speeds mean. */
  formatData: string;
  /** zstd of the CLI under this Node: node:zlib (Node >= 22.15) or WebAssembly (Node 20: slower). */
  zstdImplementation: 'node:zlib' | 'wasm';
  targets: typeof PIPELINE_TARGETS;
  pass: {
    pipelineToSlowerStage: boolean;
    pipelineToTwoStep: boolean;
    peakRss: boolean;
    rssGrowth: boolean;
    /** Each format run's peak RSS against the same target. */
    formatPeakRss: Record<FormatRunName, boolean>;
  };
}

const round = (value: number, digits = 2): number => Number(value.toFixed(digits));

function positiveInteger(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new Error(`${name} must be a positive whole number, got ${JSON.stringify(raw)}`);
  return value;
}

// --- children: tracked so that they are killed on any exit ---------------------------------------------------

const live = new Set<ChildProcess>();

function killChildren(): void {
  for (const child of live) child.kill('SIGKILL');
}

/**
 * On exit and on SIGINT/SIGTERM: kills our children and removes the temporary directory (then lets the signal do
 * what it would have done). The normal path cleans up in finally blocks; this covers the rest.
 */
function installCleanup(dir: string): () => void {
  const lastResort = (): void => {
    killChildren();
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // exiting anyway
    }
  };
  process.on('exit', lastResort);
  const handlers = (['SIGINT', 'SIGTERM'] as const).map((signal) => {
    const handler = (): void => {
      lastResort();
      process.removeListener(signal, handler);
      // test/harness/rgw.js re-raises the signal after its own clean-up when no other handler is left.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    process.removeListener('exit', lastResort);
    for (const [signal, handler] of handlers) process.removeListener(signal, handler);
  };
}

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** Keeps the last `max` characters of a stream (children's stderr, for error messages). */
function tail(stream: NodeJS.ReadableStream | null, max = 8_000): () => string {
  let text = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    text = (text + chunk).slice(-max);
  });
  return () => text.trim();
}

async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  if (child.connected) child.disconnect();
  else child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

// --- the Talos double, in its own process ----------------------------------------------------------------------

interface DoubleProcess {
  endpoint: string;
  facts: SnapshotFacts;
  buildMs: number;
  stats(): Promise<StatsMessage>;
  stop(): Promise<void>;
}

function reply<T extends { type: string }>(
  child: ChildProcess,
  type: T['type'],
  what: string,
  timeoutMs: number,
  stderr: () => string,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`the Talos double did not ${what} within ${timeoutMs / 1000} s; stderr: ${stderr()}`));
    }, timeoutMs);
    const onMessage = (raw: unknown): void => {
      const message = raw as { type?: unknown } | null;
      if (message?.type === 'error') {
        done();
        reject(new Error(`the Talos double failed: ${(message as ErrorMessage).message}`));
      } else if (message?.type === type) {
        done();
        resolve(message as T);
      }
    };
    const onExit = (code: number | null, signal: string | null): void => {
      done();
      reject(
        new Error(
          `the Talos double exited (code ${code}, signal ${signal}) before it could ${what}; stderr: ${stderr()}`,
        ),
      );
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function startDouble(
  tls: StartMessage['tls'],
  dbBytes: number,
  layout: DatabaseLayout = 'random',
): Promise<DoubleProcess> {
  const entry = fileURLToPath(new URL('./talos-server.js', import.meta.url));
  const child = spawn(process.execPath, [entry], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: childEnv() });
  track(child);
  const stderr = tail(child.stderr);
  try {
    // Building the snapshot takes ~1 s per GiB (keystream + two hashes), more under load.
    const ready = reply<ReadyMessage>(child, 'ready', 'start', 60_000 + (dbBytes / (1024 * MIB)) * 15_000, stderr);
    child.send({ type: 'start', tls, dbBytes, layout } satisfies StartMessage);
    const { endpoint, facts, buildMs } = await ready;
    return {
      endpoint,
      facts,
      buildMs,
      stats: () => {
        const answer = reply<StatsMessage>(child, 'stats', 'report its stats', 5_000, stderr);
        child.send({ type: 'stats' });
        return answer;
      },
      stop: () => stopChild(child),
    };
  } catch (error) {
    await stopChild(child);
    throw error;
  }
}

// --- CPU time of RGW's daemons, from /proc ---------------------------------------------------------------------

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU seconds (user + system, all threads) of every process whose command line mentions the RGW's directory. */
function rgwCpuSeconds(rgw: Rgw): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(`${rgw.dir}/`)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from #3 (state) on
      ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0); // #14 utime, #15 stime
    } catch {
      // gone meanwhile
    }
  }
  return ticks / ticksPerSecond();
}

// --- one measured process --------------------------------------------------------------------------------------

interface Measured {
  wallMs: number;
  stdout: string;
  measure: ChildMeasure;
}

/** Every variable the CLI reads a setting from (COMPRESSION, VERIFY, AGE_RECIPIENTS, ...). */
const CLI_SETTING_ENV = new Set<string>(Object.values(SETTINGS).map((setting) => setting.env));

/** The environment for children: ours, less anything that would configure the CLI or the AWS SDK behind our back. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(AWS_|S3_|TALOS|BACKUP_|BENCH_)/.test(name) || CLI_SETTING_ENV.has(name)) continue;
    env[name] = value;
  }
  return { ...env, ...extra };
}

async function runMeasured(
  label: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  dir: string,
  timeoutMs: number,
  traceS3: boolean,
  node = process.execPath,
): Promise<Measured> {
  const measureFile = join(dir, `measure-${process.hrtime.bigint()}.json`);
  const preload = new URL('./measure-preload.js', import.meta.url).href;
  const started = performance.now();
  const child = spawn(node, ['--import', preload, ...args], {
    env: { ...env, BENCH_MEASURE_FILE: measureFile, ...(traceS3 && { BENCH_S3_TIMING: '1' }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let stdout = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => (stdout += chunk));
  const stderr = tail(child.stderr);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  let code: number | null;
  let signal: NodeJS.Signals | null;
  try {
    [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null]; // rejects on 'error' (spawn failed)
  } finally {
    clearTimeout(timer);
  }
  const wallMs = performance.now() - started;
  try {
    if (code !== 0) {
      const why =
        signal === 'SIGKILL' && wallMs >= timeoutMs
          ? `timed out after ${timeoutMs / 1000} s`
          : `exited with ${code ?? signal}`;
      throw new Error(`${label}: the process ${why}\nstderr: ${stderr()}\nstdout: ${stdout.trim().slice(-2_000)}`);
    }
    const measure = JSON.parse(await readFile(measureFile, 'utf8')) as ChildMeasure;
    return { wallMs, stdout, measure };
  } finally {
    await rm(measureFile, { force: true });
  }
}

function lastJsonLine<T>(label: string, stdout: string): T {
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${label}: expected one JSON line on stdout, got ${JSON.stringify(stdout.slice(-2_000))}`);
  }
}

/**
 * Splits a run's S3 traffic: start-up until the first request, the streamed upload, the finishing requests after
 * it, and (VERIFY) the read-back: from its GetObject to the process's exit (`uptimeMs`).
 */
function s3Phases(timings: readonly S3CommandTiming[], uptimeMs: number): Record<string, number> {
  const first = timings[0];
  // The upload ends with the last CompleteMultipartUpload before the copy that adds the hashes (a CopyObject, or
  // above 5 GiB a multipart copy with its own Create/UploadPartCopy/Complete).
  const isCopy = (t: S3CommandTiming): boolean =>
    t.command === 'CopyObjectCommand' || t.command === 'UploadPartCopyCommand';
  const copyAt = timings.findIndex(isCopy);
  const completeAt = timings
    .slice(0, copyAt < 0 ? timings.length : copyAt)
    .findLastIndex((t) => t.command === 'CompleteMultipartUploadCommand');
  const complete = timings[completeAt];
  if (!first || !complete) return {};
  // A GetObject after the upload is VERIFY's read-back; the requests between are the upload's finish.
  const readBackAt = timings.findIndex((t, index) => index > completeAt && t.command === 'GetObjectCommand');
  const readBack = timings[readBackAt];
  const finishing = readBack ? timings.slice(0, readBackAt) : timings;
  const last = finishing.at(-1)!;
  const copy = finishing.findLast((t) => t.command === 'CopyObjectCommand');
  const partCopies = finishing.filter((t) => t.command === 'UploadPartCopyCommand');
  const copyCreate = finishing.slice(completeAt + 1).find((t) => t.command === 'CreateMultipartUploadCommand');
  const copyComplete = finishing.findLast((t) => t.command === 'CompleteMultipartUploadCommand');
  const probe = timings.find((t) => t.command === 'GetObjectCommand');
  const streamFrom = probe && probe.endMs <= complete.startMs ? probe.endMs : first.startMs;
  return {
    startup: round(first.startMs / 1000),
    ...(probe && probe !== readBack && { probe: round((probe.endMs - probe.startMs) / 1000) }),
    upload: round((complete.endMs - streamFrom) / 1000),
    ...(last !== complete && { finish: round((last.endMs - complete.endMs) / 1000) }),
    ...(copy && { metadataCopy: round((copy.endMs - copy.startMs) / 1000) }),
    ...(partCopies.length > 0 &&
      copyCreate &&
      copyComplete && {
        metadataCopy: round((copyComplete.endMs - copyCreate.startMs) / 1000),
      }),
    ...(readBack && { readBack: round((uptimeMs - readBack.startMs) / 1000) }),
  };
}

interface Observed {
  measured: Measured;
  figures: RunFigures;
}

/** Runs one measured process, with the double's and RGW's CPU time over it. */
async function observe(
  label: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  ctx: { dir: string; bytes: number; double?: DoubleProcess; rgw?: Rgw; passes?: number; node?: string | undefined },
): Promise<Observed> {
  const mib = (ctx.bytes - 32) / MIB;
  // 8 MiB/s at worst for each pass over the bytes (VERIFY reads them back: 2): a run slower than that is broken, not slow
  const timeoutMs = 60_000 + mib * 125 * (ctx.passes ?? 1);
  const doubleBefore = await ctx.double?.stats();
  const rgwBefore = ctx.rgw && rgwCpuSeconds(ctx.rgw);
  const measured = await runMeasured(label, args, env, ctx.dir, timeoutMs, ctx.rgw !== undefined, ctx.node);
  const doubleAfter = await ctx.double?.stats();
  const rgwAfter = ctx.rgw && rgwCpuSeconds(ctx.rgw);
  if (doubleBefore && doubleAfter) {
    const calls = doubleAfter.calls.slice(doubleBefore.calls.length);
    const served = calls.filter((c) => c.code === 0 && c.bytes === ctx.bytes);
    if (calls.length !== 1 || served.length !== 1)
      throw new Error(`${label}: expected one complete EtcdSnapshot call on the double, got ${JSON.stringify(calls)}`);
  }
  const seconds = measured.wallMs / 1000;
  const { measure } = measured;
  return {
    measured,
    figures: {
      bytes: ctx.bytes,
      mib,
      seconds: round(seconds),
      mibPerSec: round(mib / seconds, 1),
      peakRssMiB: round(measure.maxRssKiB / 1024, 1),
      atPeakMiB: measure.atPeak
        ? {
            v8Heap: measure.atPeak.heapTotal,
            buffers: measure.atPeak.arrayBuffers,
            rest: round(measure.atPeak.rss - measure.atPeak.heapTotal - measure.atPeak.arrayBuffers, 1),
          }
        : null,
      cpuSeconds: {
        measured: round((measure.userCpuUs + measure.systemCpuUs) / 1e6),
        double: doubleBefore && doubleAfter ? round((doubleAfter.cpuUs - doubleBefore.cpuUs) / 1e6) : null,
        rgw: rgwBefore !== undefined && rgwAfter !== undefined ? round(rgwAfter - rgwBefore) : null,
      },
      phases: s3Phases(measure.s3 ?? [], measure.uptimeMs),
    },
  };
}

// --- the runs --------------------------------------------------------------------------------------------------

interface Setup {
  dir: string;
  talosconfig: string;
  /** The node binary of the measured processes (default: this one). */
  node?: string;
  /** More node flags for the CLI (e.g. --cpu-prof). */
  nodeFlags?: string[];
  /** The `codecs` child mode's age recipient. */
  ageRecipient?: string;
  /** S3 over HTTPS: RGW serves this certificate (beast's TLS); the measured process trusts the CA (`caFile`). */
  tls?: BenchTls;
}

interface BenchTls {
  certPem: string;
  keyPem: string;
  caPem: string;
  caFile: string;
}

/** Objects above this go to a disk-backed OSD: in RAM, memstore needs ~2.5× their size (the 8 GiB run was OOM-killed). */
const LARGEST_IN_MEMORY_BYTES = 4096 * MIB + 4096;

async function withRgw<T>(bytes: number, body: (rgw: Rgw) => Promise<T>, tls?: BenchTls): Promise<T> {
  // The memstore OSD holds the data in RAM; the capacity is an upper bound, not an allocation. Above 5 GiB the
  // hashes are added by a multipart copy: the object is stored twice for a while.
  const capacity = Math.max(1024 * MIB, 3 * bytes + 512 * MIB);
  const store = bytes > LARGEST_IN_MEMORY_BYTES ? { diskBytes: capacity } : { memstoreBytes: capacity };
  const rgw = await startRgw({ ...store, ...(tls && { tls }) });
  try {
    await rgw.createBucket(BUCKET);
    return await body(rgw);
  } finally {
    await rgw.stop();
  }
}

function s3Env(rgw: Rgw): Record<string, string> {
  return {
    S3_BUCKET: BUCKET,
    S3_REGION: rgw.region,
    S3_ENDPOINT: rgw.endpoint,
    AWS_ACCESS_KEY_ID: rgw.accessKeyId,
    AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
  };
}

async function headObject(label: string, rgw: Rgw, key: string) {
  try {
    return await rgw.client().send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
  } catch (error) {
    throw new Error(
      `${label}: the object s3://${BUCKET}/${key} is not there (${(error as Error).name}: ${(error as Error).message})`,
    );
  }
}

/** The object at `key` must be the snapshot; with `hashes`, it must also carry them as metadata. */
async function checkObject(label: string, rgw: Rgw, key: string, facts: SnapshotFacts, hashes: boolean): Promise<void> {
  const head = await headObject(label, rgw, key);
  if (head.ContentLength !== facts.size)
    throw new Error(`${label}: the stored object has ${head.ContentLength} bytes, expected ${facts.size}`);
  if (hashes && (head.Metadata?.sha256 !== facts.sha256 || head.Metadata?.['etcd-sha256'] !== facts.etcdSha256)) {
    throw new Error(
      `${label}: the stored object's metadata ${JSON.stringify(head.Metadata)} lacks the snapshot's hashes ${JSON.stringify(facts)}`,
    );
  }
}

/** The CLI's JSON line (the fields the benchmark checks). */
interface CliResult {
  key?: unknown;
  size?: unknown;
  sha256?: unknown;
  etcdSha256?: unknown;
  alreadyUploaded?: unknown;
  compression?: unknown;
  encrypted?: unknown;
  verified?: unknown;
  verification?: unknown;
  keys?: unknown;
  revision?: unknown;
}

/**
 * The real CLI, configured by environment variables as the Job configures it (plus `extraEnv`), storing to `key`;
 * `check` judges its JSON line and the stored object before the RGW goes.
 */
async function runCliWith(
  label: string,
  setup: Setup,
  double: DoubleProcess,
  key: string,
  extraEnv: Record<string, string> | ((rgw: Rgw) => Promise<Record<string, string>>),
  passes: number,
  check: (result: CliResult, rgw: Rgw) => Promise<void>,
  storedCopies = 1,
): Promise<{ figures: RunFigures; result: CliResult }> {
  const cli = fileURLToPath(new URL('../src/main.js', import.meta.url));
  return withRgw(
    storedCopies * double.facts.size,
    async (rgw) => {
      const more = typeof extraEnv === 'function' ? await extraEnv(rgw) : extraEnv;
      const env = childEnv({
        ...s3Env(rgw),
        TALOSCONFIG: setup.talosconfig,
        S3_KEY: key,
        S3_PART_SIZE_MIB: String(PART_SIZE_MIB),
        S3_QUEUE_SIZE: String(QUEUE_SIZE),
        BACKUP_NAMESPACE: 'bench',
        BACKUP_NAME: label,
        ...(setup.tls && { S3_CA_BUNDLE: setup.tls.caFile }),
        ...SNAPSHOT_RUNTIME_ENV,
        ...more,
      });
      // BENCH_CLI_NODE_FLAGS (space-separated) replaces the Job's node flags: for trying other settings.
      const jobFlags = process.env.BENCH_CLI_NODE_FLAGS?.split(' ').filter(Boolean) ?? SNAPSHOT_NODE_FLAGS;
      const args = [...jobFlags, ...(setup.nodeFlags ?? []), cli, 'snapshot'];
      const { measured, figures } = await observe(label, args, env, {
        dir: setup.dir,
        bytes: double.facts.size,
        double,
        rgw,
        passes,
        node: setup.node,
      });
      const result = lastJsonLine<CliResult>(label, measured.stdout);
      await check(result, rgw);
      return { figures, result };
    },
    setup.tls,
  );
}

/** The real CLI, storing the snapshot as etcd wrote it. */
async function runCli(label: string, setup: Setup, double: DoubleProcess): Promise<RunFigures> {
  const key = `bench/${label.replace(/\W+/g, '-')}.db`;
  const { figures } = await runCliWith(label, setup, double, key, {}, 1, async (result, rgw) => {
    const { facts } = double;
    if (
      result.size !== facts.size ||
      result.sha256 !== facts.sha256 ||
      result.etcdSha256 !== facts.etcdSha256 ||
      result.alreadyUploaded !== false ||
      result.key !== key
    ) {
      throw new Error(
        `${label}: the CLI reported ${JSON.stringify(result)}, expected size ${facts.size}, sha256 ${facts.sha256}, etcdSha256 ${facts.etcdSha256}, key ${key}`,
      );
    }
    await checkObject(label, rgw, key, facts, true);
  });
  return figures;
}

/** An age identity (written to `identityFile`, mode 0600) and its recipient, made for this benchmark. */
interface AgeKeys {
  recipient: string;
  identityFile: string;
}

async function makeAgeKeys(dir: string): Promise<AgeKeys> {
  const identity = await generateIdentity();
  const recipient = await identityToRecipient(identity);
  const identityFile = join(dir, 'age-identity.txt');
  await writeFile(identityFile, `# talos-etcd-backup benchmark, throwaway\n# public key: ${recipient}\n${identity}\n`, {
    mode: 0o600,
  });
  return { recipient, identityFile };
}

const KEY_SUFFIX: Record<Compression, string> = { none: '', gzip: '.gz', zstd: '.zst' };
const MAGIC_FORMAT = { none: 'raw', gzip: 'gzip', zstd: 'zstd' } as const;

/** Hex SHA-256 recorded with the object: metadata (plain buckets, RGW's), else object tags (Object Lock buckets). */
async function recordedHashes(
  rgw: Rgw,
  key: string,
  metadata: Record<string, string>,
): Promise<{ sha256?: string | undefined; etcdSha256?: string | undefined }> {
  if (metadata.sha256 || metadata['etcd-sha256'])
    return { sha256: metadata.sha256, etcdSha256: metadata['etcd-sha256'] };
  const { TagSet } = await rgw.client().send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: key }));
  const tags = new Map((TagSet ?? []).map((tag) => [tag.Key, tag.Value]));
  return { sha256: tags.get('sha256'), etcdSha256: tags.get('etcd-sha256') };
}

/**
 * The real CLI with a stored format (COMPRESSION, AGE_RECIPIENTS, VERIFY + AGE_IDENTITY_FILE). Checks: etcdSha256 is
 * the snapshot's; size and sha256 are those of the stored object (its length, the hash recorded with it) and not the
 * snapshot's; the object starts with the format's magic; compression, encrypted and verified are as asked; a full
 * read-back saw the database the double serves.
 */
async function runCliFormat(
  run: (typeof FORMAT_RUNS)[number],
  setup: Setup,
  double: DoubleProcess,
  age: AgeKeys,
  /** Runs once the object is checked, while its RGW still runs (e.g. `verify` alone on it). */
  afterCheck?: (rgw: Rgw, key: string) => Promise<void>,
): Promise<FormatRunFigures> {
  const { label, compression, encrypt, verify } = run;
  const key = `bench/${label.replace(/\W+/g, '-')}.db${KEY_SUFFIX[compression]}${encrypt ? '.age' : ''}`;
  const env: Record<string, string> = {
    COMPRESSION: compression,
    ...(encrypt && { AGE_RECIPIENTS: age.recipient }),
    VERIFY: String(verify),
    ...(verify && encrypt && { AGE_IDENTITY_FILE: age.identityFile }),
  };
  const { facts } = double;
  const fail = (what: string, result: CliResult): never => {
    throw new Error(`${label}: ${what}; the CLI reported ${JSON.stringify(result)}`);
  };
  const { figures, result } = await runCliWith(label, setup, double, key, env, verify ? 2 : 1, async (result, rgw) => {
    if (result.key !== key || result.alreadyUploaded !== false) fail(`expected a fresh upload to ${key}`, result);
    if (result.etcdSha256 !== facts.etcdSha256) fail(`etcdSha256 is not the snapshot's ${facts.etcdSha256}`, result);
    if (result.compression !== compression || result.encrypted !== encrypt)
      fail(`expected compression ${compression}, encrypted ${encrypt}`, result);
    if (typeof result.size !== 'number' || typeof result.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(result.sha256))
      fail('expected the stored size and sha256', result);
    if (result.sha256 === facts.sha256)
      fail("the stored sha256 is the plain snapshot's: nothing was compressed or encrypted", result);
    if (result.verified !== verify) fail(`expected verified ${verify}`, result);
    if (verify) {
      if (result.verification !== 'Full') fail('expected a Full verification (the identity was given)', result);
      if (facts.bolt && (result.keys !== facts.bolt.keys || result.revision !== facts.bolt.revision)) {
        fail(
          `the read-back database should hold ${facts.bolt.keys} keys up to revision ${facts.bolt.revision}`,
          result,
        );
      }
    }
    const client = rgw.client();
    const head = await headObject(label, rgw, key);
    if (head.ContentLength !== result.size) fail(`the stored object has ${head.ContentLength} bytes`, result);
    const recorded = await recordedHashes(rgw, key, head.Metadata ?? {});
    if (recorded.sha256 !== result.sha256 || recorded.etcdSha256 !== facts.etcdSha256)
      fail(`the object's recorded hashes are ${JSON.stringify(recorded)}`, result);
    const first = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, Range: 'bytes=0-31' }));
    const format = sniffFormat((await first.Body?.transformToByteArray()) ?? new Uint8Array());
    const expected = encrypt ? 'age' : MAGIC_FORMAT[compression];
    if (format !== expected) fail(`the stored bytes start like ${format}, not ${expected}`, result);
    await afterCheck?.(rgw, key);
  });
  const storedBytes = result.size as number;
  return {
    ...figures,
    compression,
    encrypted: encrypt,
    verified: verify,
    verification: verify ? (result.verification as 'Full' | 'StoredBytes') : null,
    storedBytes,
    storedMiB: round(storedBytes / MIB, 1),
    ratio: round(storedBytes / facts.size, 4),
  };
}

/** Child modes that read from Talos only (no S3), and those that upload only (no Talos). */
const READ_ONLY = new Set<ChildMode>(['read', 'http2-read', 'http2-sha256']);
const UPLOAD_ONLY = new Set<ChildMode>(['upload', 'upload-memory', 'upload-memory-unsigned']);
/** Child modes that need neither: their bytes come from memory and go nowhere. */
const MEMORY_ONLY = new Set<ChildMode>(['codecs']);

async function runStage(mode: ChildMode, label: string, setup: Setup, double: DoubleProcess): Promise<RunFigures> {
  const entry = fileURLToPath(new URL('./pipeline-child.js', import.meta.url));
  const key = `bench/${mode}.db`;
  const file = join(setup.dir, 'etcd.snapshot');
  const go = async (rgw: Rgw | undefined): Promise<RunFigures> => {
    const config: ChildConfig = {
      mode,
      talosconfig: setup.talosconfig,
      dbBytes: double.facts.size - 32,
      facts: double.facts,
      s3: {
        endpoint: rgw?.endpoint ?? '',
        region: rgw?.region ?? '',
        accessKeyId: rgw?.accessKeyId ?? '',
        secretAccessKey: rgw?.secretAccessKey ?? '',
        bucket: BUCKET,
        key,
        ...(setup.tls && { caPem: setup.tls.caPem }),
      },
      partSize: PART_SIZE_MIB * MIB,
      queueSize: QUEUE_SIZE,
      ...(mode === 'two-step' && { file }),
      ...(setup.ageRecipient && { ageRecipient: setup.ageRecipient }),
    };
    const env = childEnv({ BENCH_PIPELINE_CHILD: JSON.stringify(config) });
    // The S3-only uploads need no Talos: the double is left out of their figures (it idles meanwhile).
    const ctx = {
      dir: setup.dir,
      bytes: double.facts.size,
      node: setup.node,
      ...(!UPLOAD_ONLY.has(mode) && !MEMORY_ONLY.has(mode) && { double }),
      ...(rgw && { rgw }),
    };
    try {
      // The stages run with node's defaults; BENCH_STAGE_NODE_FLAGS (space-separated) gives them flags, e.g. the Job's.
      const flags = process.env.BENCH_STAGE_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
      const { measured, figures } = await observe(label, [...flags, entry], env, ctx);
      const report = lastJsonLine<ChildReport>(label, measured.stdout);
      if (report.bytes !== double.facts.size)
        throw new Error(`${label}: ${report.bytes} bytes went through, expected ${double.facts.size}`);
      if (report.etcdSha256 !== undefined && report.etcdSha256 !== double.facts.etcdSha256)
        throw new Error(`${label}: etcdSha256 ${report.etcdSha256}, expected ${double.facts.etcdSha256}`);
      if (report.sha256 !== undefined && report.sha256 !== double.facts.sha256)
        throw new Error(`${label}: sha256 ${report.sha256}, expected ${double.facts.sha256}`);
      if (rgw) await checkObject(label, rgw, key, double.facts, mode === 'upload');
      // Start-up: node, module loading and set-up, until the child's own clock starts.
      const startup = round(figures.seconds - (report.phases.total ?? Number.NaN) / 1000);
      if (mode === 'read') figures.phases = { startup, stream: round((report.phases.total ?? Number.NaN) / 1000) };
      if (mode === 'two-step') {
        figures.phases = {
          startup,
          save: round((report.phases.save ?? Number.NaN) / 1000),
          uploadFile: round((report.phases.upload ?? Number.NaN) / 1000),
        };
      }
      return figures;
    } finally {
      await rm(file, { force: true });
      await rm(`${file}.part`, { force: true });
    }
  };
  return READ_ONLY.has(mode) || MEMORY_ONLY.has(mode) ? go(undefined) : withRgw(double.facts.size, go, setup.tls);
}

// --- report ----------------------------------------------------------------------------------------------------

const show = (label: string, value: string): void => console.log(`${`${label}:`.padEnd(34)}${value}`);
const verdict = (pass: boolean): string => (pass ? 'PASS' : 'FAIL  <<<<<<<<<<');

function describeRun(label: string, run: RunFigures): void {
  const cpu = (name: string, seconds: number | null): string =>
    seconds === null ? '' : `${name} ${seconds.toFixed(1)} (${(seconds / run.seconds).toFixed(2)})`;
  const cpus = [
    cpu('measured', run.cpuSeconds.measured),
    cpu('double', run.cpuSeconds.double),
    cpu('rgw', run.cpuSeconds.rgw),
  ]
    .filter(Boolean)
    .join(', ');
  show(
    label,
    `${run.seconds.toFixed(2).padStart(6)} s  ${run.mibPerSec.toFixed(1).padStart(6)} MiB/s  peak RSS ${run.peakRssMiB.toFixed(1).padStart(5)} MiB`,
  );
  show('  CPU s (cores busy)', cpus);
  if (run.atPeakMiB) {
    const { v8Heap, buffers, rest } = run.atPeakMiB;
    show(
      '  memory at the sampled peak',
      `V8 heap ${v8Heap.toFixed(1)} MiB, Buffers ${buffers.toFixed(1)} MiB, rest ${rest.toFixed(1)} MiB (code, native, malloc)`,
    );
  }
}

function describePhases(label: string, phases: Record<string, number>): void {
  const parts = Object.entries(phases).map(([name, seconds]) => `${name} ${seconds.toFixed(2)} s`);
  if (parts.length > 0) show(`  ${label}`, parts.join(', '));
}

export async function runPipelineBenchmark(): Promise<PipelineFigures> {
  const bigMiB = positiveInteger('BENCH_PIPELINE_MIB', 1024);
  const smallMiB = Math.min(256, Math.max(16, Math.floor(bigMiB / 4)));
  console.log(
    `\n## snapshot pipeline: Talos API (mTLS, ${CHUNK_SIZE}-byte messages) → verify → S3 (Ceph RGW on 127.0.0.1)`,
  );
  console.log(
    `snapshots: ${bigMiB} MiB and ${smallMiB} MiB (+32-byte trailer); parts ${PART_SIZE_MIB} MiB, queue ${QUEUE_SIZE}; ` +
      'the Talos double (pre-framed writes) and RGW run in their own processes; a fresh RGW for each S3 run',
  );
  console.log(
    'time = the measured process from spawn to exit; peak RSS = its VmHWM; CPU s = user + system, all threads',
  );

  const dir = await mkdtemp(join(tmpdir(), 'talos-etcd-backup-bench-'));
  const uninstall = installCleanup(dir);
  const doubles: DoubleProcess[] = [];
  try {
    const pki = await createTalosPki();
    const client = await pki.clientCert(['os:etcd:backup']);
    const tls = { caPem: pki.caPem, serverCertPem: pki.serverCertPem, serverKeyPem: pki.serverKeyPem };
    const talosconfig = join(dir, 'talosconfig');
    const setup: Setup = { dir, talosconfig };
    const startFor = async (mib: number, layout: DatabaseLayout = 'random'): Promise<DoubleProcess> => {
      const double = await startDouble(tls, mib * MIB, layout);
      doubles.push(double);
      await writeFile(
        talosconfig,
        talosconfigYaml({ context: 'bench', endpoints: [double.endpoint], caPem: pki.caPem, ...client }),
        { mode: 0o600 },
      );
      const what = layout === 'bolt' ? ' (bbolt layout)' : '';
      console.log(
        `Talos double: ${mib} MiB snapshot${what} built in ${(double.buildMs / 1000).toFixed(2)} s, serving on ${double.endpoint}`,
      );
      return double;
    };
    const retire = async (double: DoubleProcess): Promise<void> => {
      await double.stop();
      doubles.splice(doubles.indexOf(double), 1);
    };

    console.log('');
    const small = await startFor(smallMiB);
    const pipelineSmall = await runCli(`pipeline-${smallMiB}MiB`, setup, small);
    describeRun(`pipeline, ${smallMiB} MiB`, pipelineSmall);
    await retire(small);

    const big = await startFor(bigMiB);
    const readVerify = await runStage('read', 'gRPC read + verify', setup, big);
    describeRun(`stage A: gRPC read + verify`, readVerify);
    describePhases('stage A phases', readVerify.phases);
    const s3Upload = await runStage('upload', 'S3 upload alone', setup, big);
    describeRun(`stage B: S3 upload alone`, s3Upload);
    describePhases('stage B phases', s3Upload.phases);
    const twoStep = await runStage('two-step', 'two-step baseline', setup, big);
    describeRun(`two-step: save file, upload file`, twoStep);
    describePhases('two-step phases', twoStep.phases);
    const pipeline = await runCli(`pipeline-${bigMiB}MiB`, setup, big);
    describeRun(`pipeline, ${bigMiB} MiB`, pipeline);
    describePhases('pipeline phases', pipeline.phases);
    await retire(big);

    // The stored formats, on a second double serving the same keystream as a valid bbolt database.
    const zstd = zstdImplementation();
    const formatData =
      'AES-CTR keystream (random, incompressible) laid out as a valid etcd bbolt database (one revision per 4 KiB leaf, ' +
      '98.8% keystream): compression ratios and speeds are a WORST case (real etcd data compresses several-fold)';
    console.log('');
    console.log(
      `### with compression and encryption, ${bigMiB} MiB — synthetic data is random (incompressible): ratios and codec speeds are a WORST case; ` +
        `gzip ${GZIP_LEVEL}, zstd ${ZSTD_LEVEL} (${zstd === 'wasm' ? 'WebAssembly on this Node' : 'node:zlib'}), age X25519; VERIFY reads back in the same process`,
    );
    console.log(`data: ${formatData}`);
    const age = await makeAgeKeys(dir);
    const bolt = await startFor(bigMiB, 'bolt');
    const formats = {} as Record<FormatRunName, FormatRunFigures>;
    for (const run of FORMAT_RUNS) {
      const figures = await runCliFormat(run, setup, bolt, age);
      formats[run.name] = figures;
      describeRun(run.label, figures);
      show(
        '  stored',
        `${figures.storedMiB.toFixed(1)} MiB (${figures.storedBytes} bytes), ${figures.ratio.toFixed(4)} of the snapshot${figures.verified ? `; verified: ${figures.verification}` : ''}`,
      );
      describePhases(`${run.label.replace('pipeline + ', '')} phases`, figures.phases);
    }
    await retire(bolt);

    const slowerStage = readVerify.seconds >= s3Upload.seconds ? 'readVerify' : 's3Upload';
    const slower = slowerStage === 'readVerify' ? readVerify : s3Upload;
    const pipelineToSlowerStage = pipeline.seconds / slower.seconds;
    const pipelineToTwoStep = pipeline.seconds / twoStep.seconds;
    const rssGrowthMiB = pipeline.peakRssMiB - pipelineSmall.peakRssMiB;
    const peakRss = Math.max(pipeline.peakRssMiB, pipelineSmall.peakRssMiB);
    const pass = {
      pipelineToSlowerStage: pipelineToSlowerStage <= PIPELINE_TARGETS.pipelineToSlowerStage,
      pipelineToTwoStep: pipelineToTwoStep <= PIPELINE_TARGETS.pipelineToTwoStep,
      peakRss: peakRss <= PIPELINE_TARGETS.peakRssMiB,
      rssGrowth: Math.abs(rssGrowthMiB) <= PIPELINE_TARGETS.rssGrowthMiB,
      formatPeakRss: Object.fromEntries(
        FORMAT_RUNS.map(({ name }) => [name, formats[name].peakRssMiB <= PIPELINE_TARGETS.peakRssMiB]),
      ) as Record<FormatRunName, boolean>,
    };

    console.log(
      'phases: startup = node and modules until the first request; upload = probe answered → CompleteMultipartUpload; ' +
        "finish = HeadObject + CopyObject adding the hashes; readBack = VERIFY's GetObject to exit; save = Talos stream to file.part, fsync, rename",
    );
    console.log('');
    show(
      'slower stage',
      `${slowerStage === 'readVerify' ? 'A, gRPC read + verify' : 'B, S3 upload'} (${slower.seconds.toFixed(2)} s)`,
    );
    const stagesCpu = readVerify.cpuSeconds.measured + s3Upload.cpuSeconds.measured;
    show(
      'CPU: pipeline vs A + B',
      `${pipeline.cpuSeconds.measured.toFixed(1)} s vs ${readVerify.cpuSeconds.measured.toFixed(1)} + ${s3Upload.cpuSeconds.measured.toFixed(1)} = ${stagesCpu.toFixed(1)} s (the CLI does both stages' work on one JS thread)`,
    );
    show(
      `pipeline / slower stage`,
      `${pipelineToSlowerStage.toFixed(2)}  target <= ${PIPELINE_TARGETS.pipelineToSlowerStage}  ${verdict(pass.pipelineToSlowerStage)}`,
    );
    show(
      `pipeline / two-step`,
      `${pipelineToTwoStep.toFixed(2)}  target <= ${PIPELINE_TARGETS.pipelineToTwoStep}  ${verdict(pass.pipelineToTwoStep)}`,
    );
    show(
      `pipeline peak RSS`,
      `${peakRss.toFixed(1)} MiB  target <= ${PIPELINE_TARGETS.peakRssMiB}  ${verdict(pass.peakRss)}`,
    );
    show(
      `RSS ${bigMiB} MiB − ${smallMiB} MiB`,
      `${rssGrowthMiB >= 0 ? '+' : ''}${rssGrowthMiB.toFixed(1)} MiB  target within ${PIPELINE_TARGETS.rssGrowthMiB}  ${verdict(pass.rssGrowth)}`,
    );
    for (const { name, label } of FORMAT_RUNS) {
      show(
        `peak RSS ${label.replace('pipeline ', '')}`,
        `${formats[name].peakRssMiB.toFixed(1)} MiB  target <= ${PIPELINE_TARGETS.peakRssMiB}  ${verdict(pass.formatPeakRss[name])}`,
      );
    }

    return {
      messageBytes: CHUNK_SIZE,
      partSizeMiB: PART_SIZE_MIB,
      queueSize: QUEUE_SIZE,
      smallMiB,
      bigMiB,
      pipelineSmall,
      pipeline,
      readVerify,
      s3Upload,
      twoStep,
      slowerStage,
      pipelineToSlowerStage: round(pipelineToSlowerStage, 3),
      pipelineToTwoStep: round(pipelineToTwoStep, 3),
      rssGrowthMiB: round(rssGrowthMiB, 1),
      formats,
      formatData,
      zstdImplementation: zstd,
      targets: PIPELINE_TARGETS,
      pass,
    };
  } finally {
    await Promise.allSettled(doubles.map((double) => double.stop()));
    killChildren(); // nothing should be left; this is the last resort
    await rm(dir, { recursive: true, force: true });
    uninstall();
  }
}

/** One destination against two (backupStorage.copies): time and peak RSS of the CLI, the same snapshot. */
export interface CopiesFigures {
  mib: number;
  one: RunFigures;
  two: RunFigures;
  /** Peak RSS of two destinations minus one, MiB: about one more part size × (queue size + 1). */
  rssPerCopyMiB: number;
}

/**
 * The CLI storing a BENCH_COPIES_MIB (default 1024) snapshot to one destination, then to the same plus a copy in
 * another RGW user's bucket (another trust domain) in the same pass. Bounded: two runs, one fresh RGW each.
 */
export async function runCopiesBenchmark(): Promise<CopiesFigures> {
  const mib = positiveInteger('BENCH_COPIES_MIB', 1024);
  console.log(
    `\n## copies: one destination vs two in one pass, ${mib} MiB snapshot; parts ${PART_SIZE_MIB} MiB, queue ${QUEUE_SIZE}`,
  );
  const dir = await mkdtemp(join(tmpdir(), 'talos-etcd-backup-bench-copies-'));
  const uninstall = installCleanup(dir);
  let double: DoubleProcess | undefined;
  try {
    const pki = await createTalosPki();
    const client = await pki.clientCert(['os:etcd:backup']);
    const tls = { caPem: pki.caPem, serverCertPem: pki.serverCertPem, serverKeyPem: pki.serverKeyPem };
    const talosconfig = join(dir, 'talosconfig');
    const setup: Setup = { dir, talosconfig };
    double = await startDouble(tls, mib * MIB, 'random');
    await writeFile(
      talosconfig,
      talosconfigYaml({ context: 'bench', endpoints: [double.endpoint], caPem: pki.caPem, ...client }),
      { mode: 0o600 },
    );
    const one = await runCli(`copies-one-${mib}MiB`, setup, double);
    describeRun(`one destination, ${mib} MiB`, one);
    const key = `bench/copies-two-${mib}MiB.db`;
    const { figures: two } = await runCliWith(
      `copies-two-${mib}MiB`,
      setup,
      double,
      key,
      async (rgw) => {
        const offsite = await rgw.createUser('offsite');
        await offsite.createBucket('offsite');
        return {
          S3_COPIES: JSON.stringify([
            { name: 'offsite', bucket: 'offsite', region: rgw.region, endpoint: rgw.endpoint, keysFromEnv: true },
          ]),
          S3_COPY_1_ACCESS_KEY_ID: offsite.accessKeyId,
          S3_COPY_1_SECRET_ACCESS_KEY: offsite.secretAccessKey,
        };
      },
      1,
      async (result, rgw) => {
        const copies = (result as { copies?: { sha256?: string; size?: number; error?: string }[] }).copies;
        const facts = double!.facts;
        if (result.sha256 !== facts.sha256 || copies?.[0]?.sha256 !== facts.sha256 || copies[0].size !== facts.size)
          throw new Error(
            `copies: the CLI reported ${JSON.stringify(result)}, expected both at sha256 ${facts.sha256}`,
          );
        await checkObject('copies', rgw, key, facts, true);
      },
      2,
    );
    describeRun(`two destinations, ${mib} MiB`, two);
    const rssPerCopyMiB = round(two.peakRssMiB - one.peakRssMiB, 1);
    show('  peak RSS, two − one', `${rssPerCopyMiB >= 0 ? '+' : ''}${rssPerCopyMiB} MiB`);
    show('  time, two / one', `${(two.seconds / one.seconds).toFixed(2)}×`);
    return { mib, one, two, rssPerCopyMiB };
  } finally {
    await double?.stop();
    uninstall();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A Talos PKI and `dir/talosconfig` for the measured processes: `start` runs a double with a snapshot of `mib` MiB
 * and points the talosconfig at it.
 */
async function benchTalos(dir: string) {
  const pki = await createTalosPki();
  const client = await pki.clientCert(['os:etcd:backup']);
  const tls = { caPem: pki.caPem, serverCertPem: pki.serverCertPem, serverKeyPem: pki.serverKeyPem };
  const talosconfig = join(dir, 'talosconfig');
  const start = async (mib: number, layout: DatabaseLayout): Promise<DoubleProcess> => {
    const double = await startDouble(tls, mib * MIB, layout);
    await writeFile(
      talosconfig,
      talosconfigYaml({ context: 'bench', endpoints: [double.endpoint], caPem: pki.caPem, ...client }),
      { mode: 0o600 },
    );
    return double;
  };
  return { talosconfig, start };
}

// --- issue 18: the CLI against its floors, on this Node and the image's ------------------------------------------

/** The rows of the CPU comparison, in the order they run: the CLI, the baselines, then the floors. */
export const CPU_ROWS = [
  { name: 'cli', label: '`snapshot` CLI, plain' },
  { name: 'minimal', label: 'minimal pipeline (grpc-js → sha256 → lib-storage)', mode: 'minimal' },
  { name: 'twoStep', label: 'two-step: save a file (fsync), upload it', mode: 'two-step' },
  { name: 'grpcRead', label: 'gRPC read + trailer check (grpc-js)', mode: 'read' },
  { name: 'http2Read', label: 'node:http2 read alone', mode: 'http2-read' },
  { name: 'http2Sha256', label: 'node:http2 read + sha256', mode: 'http2-sha256' },
  { name: 'uploadSigned', label: 'lib-storage upload from memory, signed payload', mode: 'upload-memory' },
  { name: 'uploadUnsigned', label: 'lib-storage upload from memory, UNSIGNED-PAYLOAD', mode: 'upload-memory-unsigned' },
  // S3 over HTTPS (RGW's own TLS), where the CLI sends UNSIGNED-PAYLOAD: what TLS costs, and what the lever saves.
  { name: 'cliTls', label: '`snapshot` CLI, plain, S3 over HTTPS', tls: true },
  { name: 'uploadSignedTls', label: 'upload from memory over HTTPS, signed', mode: 'upload-memory', tls: true },
  {
    name: 'uploadUnsignedTls',
    label: 'upload from memory over HTTPS, UNSIGNED-PAYLOAD',
    mode: 'upload-memory-unsigned',
    tls: true,
  },
] as const satisfies readonly { name: string; label: string; mode?: ChildMode; tls?: boolean }[];
export type CpuRowName = (typeof CPU_ROWS)[number]['name'];

/** Issue 18's targets for the plain CLI (Node 22, 1 GiB). */
const CPU_TARGETS = { cpuSecondsPerGiB: 6, cliCpuToFloor: 1.7, cliWallToTwoStep: 0.6 } as const;

/** One row on one Node: medians over the runs. */
export interface CpuRow {
  cpuSecondsPerGiB: number;
  seconds: number;
  peakRssMiB: number;
  runs: number;
}

export interface CpuFigures {
  mib: number;
  runs: number;
  byNode: Record<
    string,
    {
      rows: Record<CpuRowName, CpuRow>;
      floor: number;
      ratios: Record<string, number>;
      /** Self seconds by layer in a --cpu-prof run of the plain CLI. */
      profile?: Record<string, number>;
    }
  >;
}

/** The node binaries a section runs the measured processes with: `this`, `image` (the image's Node) or a path. */
async function benchNodes(variable: string, fallback: string): Promise<string[]> {
  const { imageNodeBinary } = await import('../test/harness/node22.js');
  const wanted = (process.env[variable] ?? fallback).split(',').map((n) => n.trim());
  return wanted.map((n) => (n === 'image' ? imageNodeBinary() : n === 'this' ? process.execPath : n));
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/**
 * `BENCH_SECTIONS=cpu`: each row of CPU_ROWS at BENCH_CPU_MIB (default 1024) on this Node and on the image's
 * (BENCH_CPU_NODES=this,image), BENCH_CPU_RUNS times each (default 1; medians), rows interleaved so that drift
 * spreads over all of them. CPU s/GiB is user + system of the measured process alone; the floor is node:http2 read
 * + sha256 plus the unsigned upload from memory: the work the CLI cannot avoid.
 */
export async function runCpuBenchmark(): Promise<CpuFigures> {
  const mib = positiveInteger('BENCH_CPU_MIB', 1024);
  const runs = positiveInteger('BENCH_CPU_RUNS', 1);
  const nodes = await benchNodes('BENCH_CPU_NODES', 'this,image');
  // BENCH_CPU_ROWS=cli,grpcRead runs only those rows (the ratios need them all).
  const onlyRows = process.env.BENCH_CPU_ROWS?.split(',').map((r) => r.trim());
  const rowsToRun = CPU_ROWS.filter((row) => !onlyRows || onlyRows.includes(row.name));
  console.log(`\n## CPU: the CLI against its floors, ${mib} MiB, ${runs} run(s) each (medians), 1 KiB messages`);
  const dir = await mkdtemp(join(tmpdir(), 'talos-etcd-backup-bench-cpu-'));
  const uninstall = installCleanup(dir);
  let double: DoubleProcess | undefined;
  const byNode: CpuFigures['byNode'] = {};
  try {
    const { talosconfig, start } = await benchTalos(dir);
    double = await start(mib, 'random');
    const gib = double.facts.size / (1024 * MIB);
    const s3Pki = await createTalosPki({
      algorithm: 'ECDSA-P256',
      server: { commonName: 's3.bench', ips: ['127.0.0.1'] },
    });
    const s3Tls: BenchTls = {
      certPem: s3Pki.serverCertPem,
      keyPem: s3Pki.serverKeyPem,
      caPem: s3Pki.caPem,
      caFile: join(dir, 's3-ca.pem'),
    };
    await writeFile(s3Tls.caFile, s3Tls.caPem);
    for (const node of nodes) {
      const version = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
      const setup: Setup = { dir, talosconfig, node };
      const samples = new Map<CpuRowName, RunFigures[]>(CPU_ROWS.map((row) => [row.name, []]));
      for (let i = 0; i < runs; i += 1) {
        for (const row of rowsToRun) {
          const label = `${row.name}-${version}-${i}`;
          const rowSetup = 'tls' in row ? { ...setup, tls: s3Tls } : setup;
          const figures =
            'mode' in row ? await runStage(row.mode, label, rowSetup, double) : await runCli(label, rowSetup, double);
          samples.get(row.name)!.push(figures);
        }
      }
      const rows = Object.fromEntries(
        CPU_ROWS.map(({ name }) => {
          const runsOf = samples.get(name)!;
          return [
            name,
            {
              cpuSecondsPerGiB: round(median(runsOf.map((r) => r.cpuSeconds.measured)) / gib),
              seconds: round(median(runsOf.map((r) => r.seconds))),
              peakRssMiB: round(median(runsOf.map((r) => r.peakRssMiB)), 1),
              runs: runsOf.length,
            },
          ];
        }),
      ) as Record<CpuRowName, CpuRow>;
      const floor = round(rows.http2Sha256.cpuSecondsPerGiB + rows.uploadUnsigned.cpuSecondsPerGiB);
      const ratios = {
        cliCpuToFloor: round(rows.cli.cpuSecondsPerGiB / floor),
        cliCpuToTwoStep: round(rows.cli.cpuSecondsPerGiB / rows.twoStep.cpuSecondsPerGiB),
        cliWallToTwoStep: round(rows.cli.seconds / rows.twoStep.seconds),
        grpcToHttp2: round(rows.grpcRead.cpuSecondsPerGiB / rows.http2Read.cpuSecondsPerGiB),
      };
      let profile: Record<string, number> | undefined;
      if (process.env.BENCH_CPU_PROFILE !== '0') {
        // One more plain CLI run under --cpu-prof (not in the table: profiling costs time), summarised by layer.
        // Kept after the run (its path is printed), for a closer look: e.g. Chrome DevTools' Performance tab.
        const profileDir = join(tmpdir(), 'talos-etcd-backup-cpu-profiles', `${version}-${Date.now()}`);
        await runCli(
          `profile-${version}`,
          { ...setup, nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] },
          double,
        );
        const [file] = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
        if (!file) throw new Error(`no CPU profile in ${profileDir}`);
        console.log(`\nCPU profile of the plain CLI on node ${version} (${profileDir}), self time by layer:`);
        const summary = printProfile(join(profileDir, file));
        profile = Object.fromEntries(Object.entries(summary.layers).map(([k, ms]) => [k, round(ms / 1000)]));
      }
      byNode[version] = { rows, floor, ratios, ...(profile && { profile }) };
      console.log(`\n### node ${version}`);
      console.log(
        `${'what'.padEnd(52)}${'CPU s/GiB'.padStart(10)}${'wall s'.padStart(9)}${'peak RSS MiB'.padStart(14)}`,
      );
      for (const row of rowsToRun) {
        const r = rows[row.name];
        console.log(
          `${row.label.padEnd(52)}${r.cpuSecondsPerGiB.toFixed(2).padStart(10)}${r.seconds.toFixed(2).padStart(9)}${r.peakRssMiB.toFixed(1).padStart(14)}`,
        );
      }
      if (!Number.isNaN(floor)) show('floor (http2 + sha256 + unsigned upload)', `${floor.toFixed(2)} CPU s/GiB`);
      const target = (value: number, most: number): string => `  target <= ${most}  ${verdict(value <= most)}`;
      const cliCpu = rows.cli.cpuSecondsPerGiB;
      if (!Number.isNaN(cliCpu))
        show('CLI CPU', `${cliCpu.toFixed(2)} s/GiB${target(cliCpu, CPU_TARGETS.cpuSecondsPerGiB)}`);
      for (const [label, ratio, most] of [
        ['CLI CPU / floor', ratios.cliCpuToFloor, CPU_TARGETS.cliCpuToFloor],
        ['CLI CPU / two-step', ratios.cliCpuToTwoStep, undefined],
        ['CLI wall / two-step', ratios.cliWallToTwoStep, CPU_TARGETS.cliWallToTwoStep],
        ['gRPC read / http2 read (CPU)', ratios.grpcToHttp2, undefined],
      ] as const)
        if (!Number.isNaN(ratio)) show(label, `${ratio.toFixed(2)}×${most === undefined ? '' : target(ratio, most)}`);
    }
    return { mib, runs, byNode };
  } finally {
    await double?.stop();
    uninstall();
    await rm(dir, { recursive: true, force: true });
  }
}

// --- issue 18: peak RSS across sizes, up to etcd's largest quota ------------------------------------------------

export interface SizesFigures {
  node: string;
  runs: {
    mib: number;
    cpuSecondsPerGiB: number;
    seconds: number;
    mibPerSec: number;
    peakRssMiB: number;
    phases: Record<string, number>;
  }[];
  /** Peak RSS of each size up to 4 GiB less the smallest size's (null: fewer than two such sizes). */
  rssSpreadMiB: number | null;
  pass: { peakRss: boolean; flat: boolean };
}

/** Peak RSS of the plain CLI at most this, MiB (issue 18). */
const RSS_TARGET_MIB = 128;
/** ... and within this of the smallest size's, up to 4 GiB. */
const RSS_FLAT_MIB = 8;

/**
 * `BENCH_SECTIONS=sizes`: the plain CLI once at each of BENCH_SIZES_MIB (default 256,1024,4096,8192: 8 GiB is
 * etcd's largest quota) on the image's Node (BENCH_SIZES_NODE=this for this one). Above 1 GiB the double serves one
 * 1 GiB keystream block repeated (its memory stays 1 GiB); RGW keeps objects up to 4 GiB in RAM and larger ones
 * on disk (a BlueStore OSD on a sparse file under $TMPDIR: 8 GiB needs ~17 GiB of disk, the object twice for a while:
 * above 5 GiB the hashes are added by a multipart copy).
 */
export async function runSizesBenchmark(): Promise<SizesFigures> {
  const sizes = (process.env.BENCH_SIZES_MIB ?? '256,1024,4096,8192').split(',').map((raw) => {
    const value = Number(raw.trim());
    if (!Number.isSafeInteger(value) || value <= 0 || value % 4 !== 0)
      throw new Error(`BENCH_SIZES_MIB: ${JSON.stringify(raw)} is not a whole number of MiB (a multiple of 4)`);
    return value;
  });
  const [node] = await benchNodes('BENCH_SIZES_NODE', 'image');
  const version = execFileSync(node!, ['--version'], { encoding: 'utf8' }).trim();
  console.log(`\n## Sizes: the plain CLI on node ${version}, ${sizes.join(', ')} MiB, once each`);
  const dir = await mkdtemp(join(tmpdir(), 'talos-etcd-backup-bench-sizes-'));
  const uninstall = installCleanup(dir);
  let double: DoubleProcess | undefined;
  const runs: SizesFigures['runs'] = [];
  try {
    const { talosconfig, start } = await benchTalos(dir);
    for (const mib of sizes) {
      double = await start(mib, 'random');
      const run = await runCli(`size-${mib}MiB`, { dir, talosconfig, node: node! }, double);
      await double.stop();
      double = undefined;
      const figures = {
        mib,
        cpuSecondsPerGiB: round(run.cpuSeconds.measured / (mib / 1024)),
        seconds: run.seconds,
        mibPerSec: run.mibPerSec,
        peakRssMiB: run.peakRssMiB,
        phases: run.phases,
      };
      runs.push(figures);
      show(
        `${mib} MiB`,
        `${figures.seconds.toFixed(1)} s, ${figures.mibPerSec} MiB/s, ${figures.cpuSecondsPerGiB.toFixed(2)} CPU s/GiB, peak RSS ${figures.peakRssMiB.toFixed(1)} MiB`,
      );
      describePhases('  phases', run.phases);
    }
    const upTo4GiB = runs.filter((r) => r.mib <= 4096).sort((a, b) => a.mib - b.mib);
    const smallest = upTo4GiB[0];
    const rssSpreadMiB =
      smallest && upTo4GiB.length > 1
        ? round(Math.max(...upTo4GiB.map((r) => Math.abs(r.peakRssMiB - smallest.peakRssMiB))), 1)
        : null;
    const pass = {
      peakRss: runs.every((r) => r.peakRssMiB <= RSS_TARGET_MIB),
      flat: rssSpreadMiB === null || rssSpreadMiB <= RSS_FLAT_MIB,
    };
    show('peak RSS, every size', `target <= ${RSS_TARGET_MIB} MiB  ${verdict(pass.peakRss)}`);
    if (rssSpreadMiB !== null)
      show(
        `peak RSS up to 4 GiB vs ${smallest!.mib} MiB`,
        `within ${rssSpreadMiB} MiB  target ±${RSS_FLAT_MIB}  ${verdict(pass.flat)}`,
      );
    return { node: version, runs, rssSpreadMiB, pass };
  } finally {
    await double?.stop();
    uninstall();
    await rm(dir, { recursive: true, force: true });
  }
}

// --- issue 18: the stored format's cost against its parts alone -------------------------------------------------

export interface CodecsFigures {
  mib: number;
  runs: number;
  byNode: Record<
    string,
    {
      /** CPU s/GiB, medians. */
      plain: number;
      codecsAlone: number;
      verifyAlone: number;
      zstdAgeVerify: number;
      /** zstdAgeVerify / (plain + codecsAlone + verifyAlone). */
      ratio: number;
      pass: boolean;
    }
  >;
}

/** CPU of the CLI with zstd + age + verify at most this times the sum of its parts measured alone (issue 18). */
const CODECS_TARGET = 1.3;

/** The CLI's `verify` alone on a stored object (the read-back a VERIFY=true snapshot does in its own process). */
async function runVerifyAlone(label: string, setup: Setup, rgw: Rgw, key: string, age: AgeKeys, bytes: number) {
  const cli = fileURLToPath(new URL('../src/main.js', import.meta.url));
  const env = childEnv({ ...s3Env(rgw), S3_KEY: key, AGE_IDENTITY_FILE: age.identityFile, ...SNAPSHOT_RUNTIME_ENV });
  const { measured, figures } = await observe(label, [...SNAPSHOT_NODE_FLAGS, cli, 'verify'], env, {
    dir: setup.dir,
    bytes,
    rgw,
    node: setup.node,
  });
  const result = lastJsonLine<CliResult>(label, measured.stdout);
  if (result.verification !== 'Full')
    throw new Error(`${label}: expected a Full verification, got ${JSON.stringify(result)}`);
  return figures;
}

/**
 * `BENCH_SECTIONS=codecs`: on a bbolt-layout snapshot of BENCH_CPU_MIB (verify checks its structure), the CLI plain,
 * the codecs alone (zstd + age from memory), `verify` alone on the stored object, and the CLI with zstd + age +
 * verify; on BENCH_CPU_NODES, BENCH_CPU_RUNS times (medians). The data is incompressible: the codecs' worst case.
 */
export async function runCodecsBenchmark(): Promise<CodecsFigures> {
  const mib = positiveInteger('BENCH_CPU_MIB', 1024);
  const runs = positiveInteger('BENCH_CPU_RUNS', 1);
  const nodes = await benchNodes('BENCH_CPU_NODES', 'this,image');
  console.log(`\n## Codecs: zstd + age + verify against its parts alone, ${mib} MiB, ${runs} run(s) each (medians)`);
  const dir = await mkdtemp(join(tmpdir(), 'talos-etcd-backup-bench-codecs-'));
  const uninstall = installCleanup(dir);
  let double: DoubleProcess | undefined;
  const byNode: CodecsFigures['byNode'] = {};
  try {
    const { talosconfig, start } = await benchTalos(dir);
    double = await start(mib, 'bolt');
    const gib = double.facts.size / (1024 * MIB);
    const age = await makeAgeKeys(dir);
    const full = FORMAT_RUNS.find((run) => run.name === 'zstdAgeVerify')!;
    for (const node of nodes) {
      const version = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
      const setup: Setup = { dir, talosconfig, node, ageRecipient: age.recipient };
      const cpu = {
        plain: [] as number[],
        codecsAlone: [] as number[],
        verifyAlone: [] as number[],
        full: [] as number[],
      };
      for (let i = 0; i < runs; i += 1) {
        cpu.plain.push((await runCli(`plain-${version}-${i}`, setup, double)).cpuSeconds.measured);
        cpu.codecsAlone.push((await runStage('codecs', `codecs-${version}-${i}`, setup, double)).cpuSeconds.measured);
        const stored = await runCliFormat(full, setup, double, age, async (rgw, key) => {
          const alone = await runVerifyAlone(`verify-${version}-${i}`, setup, rgw, key, age, double!.facts.size);
          cpu.verifyAlone.push(alone.cpuSeconds.measured);
        });
        cpu.full.push(stored.cpuSeconds.measured);
      }
      const perGiB = (values: number[]): number => round(median(values) / gib);
      const plain = perGiB(cpu.plain);
      const codecsAlone = perGiB(cpu.codecsAlone);
      const verifyAlone = perGiB(cpu.verifyAlone);
      const zstdAgeVerify = perGiB(cpu.full);
      const ratio = round(zstdAgeVerify / (plain + codecsAlone + verifyAlone));
      const pass = ratio <= CODECS_TARGET;
      byNode[version] = { plain, codecsAlone, verifyAlone, zstdAgeVerify, ratio, pass };
      console.log(`\n### node ${version} (CPU s/GiB)`);
      show('CLI plain', plain.toFixed(2));
      show('zstd + age alone (from memory)', codecsAlone.toFixed(2));
      show('verify alone (read back, Full)', verifyAlone.toFixed(2));
      show('CLI zstd + age + verify', zstdAgeVerify.toFixed(2));
      show('CLI / (plain + parts)', `${ratio.toFixed(2)}×  target <= ${CODECS_TARGET}  ${verdict(pass)}`);
    }
    return { mib, runs, byNode };
  } finally {
    await double?.stop();
    uninstall();
    await rm(dir, { recursive: true, force: true });
  }
}
