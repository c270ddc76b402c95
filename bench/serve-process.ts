// `talos-etcd-backup serve` in a child process, as the pod runs it, with its memory read from /proc: the resident
// set now (VmRSS) and its peak since start or since the last reset (VmHWM). Used by `npm run bench` and the tests
// that bound what one request may cost (test/server/http/memory.test.ts) and how the server shuts down (test/cli/).

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { packageRoot } from '../src/api/crds.js';

export const MAIN = join(packageRoot(), 'dist', 'src', 'main.js');

export interface ServeProcess {
  child: ChildProcess;
  url: string;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Resident set and its peak, in MiB. */
  memory(): { rssMiB: number; peakMiB: number };
  /** SIGTERM, then SIGKILL after `graceMs`; resolves to the exit code (null when killed). */
  stop(graceMs?: number): Promise<number | null>;
}

const MIB = 1024 * 1024;

/**
 * The environment of the chart's server pod, for a process on a machine without its 384 MiB memory limit: Node
 * sizes V8's heap from the cgroup limit (old space = limit / 2 = 192 MiB, semi-spaces of ~1 MiB), which a machine
 * with more memory must be told; and the glibc malloc settings the chart's Deployment sets (the snapshot Job's).
 */
export const POD_ENV: Readonly<Record<string, string>> = {
  NODE_OPTIONS: '--max-old-space-size=192 --max-semi-space-size=1',
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: '1048576',
};
/** The chart's memory limit (resources.limits.memory), in MiB. */
export const POD_MEMORY_LIMIT_MIB = 384;

function status(pid: number, field: string): number {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  if (!match) throw new Error(`/proc/${pid}/status has no ${field}`);
  return (Number(match[1]) * 1024) / MIB;
}

/** Starts `serve` on 127.0.0.1 (a free port unless args say otherwise) and resolves once it listens. */
export async function startServe(
  env: Record<string, string> = {},
  args: string[] = ['--port', '0'],
): Promise<ServeProcess> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--host', '127.0.0.1', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
  });
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start within 15 s:\n${output}`)), 15_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before listening:\n${output}`));
    });
  });
  const pid = child.pid!;
  return {
    child,
    url,
    output: () => output,
    memory: () => ({ rssMiB: status(pid, 'VmRSS'), peakMiB: status(pid, 'VmHWM') }),
    async stop(graceMs = 20_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = once(child, 'exit') as Promise<[number | null]>;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const [code] = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** POSTs a body on a connection of its own; resolves to the status and the answer's text. */
export function post(url: string, body: string, timeoutMs = 60_000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

export interface ProbeFigures {
  probes: number;
  /** Probes without an answer within the timeout (the chart's probes allow 2 s). */
  failed: number;
  slowestMs: number;
}

/** GETs `url` every `intervalMs` with a `timeoutMs` budget until `work` settles, as the kubelet's probes would. */
export async function probeDuring<T>(
  url: string,
  work: Promise<T>,
  intervalMs = 100,
  timeoutMs = 2_000,
): Promise<{ result: T; probes: ProbeFigures }> {
  let done = false;
  const figures: ProbeFigures = { probes: 0, failed: 0, slowestMs: 0 };
  const loop = (async () => {
    while (!done) {
      const started = performance.now();
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
        await response.text();
        if (response.status !== 200) figures.failed += 1;
      } catch {
        figures.failed += 1;
      }
      figures.probes += 1;
      figures.slowestMs = Math.max(figures.slowestMs, performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  try {
    return { result: await work, probes: figures };
  } finally {
    done = true;
    await loop;
  }
}
