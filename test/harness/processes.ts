// Child processes a test harness starts (etcd, kube-apiserver, kube-controller-manager, a pod's container): each
// keeps the tail of its output for error messages, and stop() ends it (SIGTERM, then SIGKILL after a grace). An exit
// hook kills whatever a crashed or careless test left running and removes the directories registered with it, so no
// process or temporary directory outlives the test process.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { rmSync } from 'node:fs';

const live = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** Kills `child` (SIGKILL) if it still runs when the test process exits. startProcess() does this itself. */
export function trackChild(child: ChildProcess): void {
  installExitHook();
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
}

/** Removes `dir` when the test process exits, unless release() was called first (after removing it yourself). */
export function ownDir(dir: string): { release(): void } {
  installExitHook();
  ownedDirs.add(dir);
  return { release: () => ownedDirs.delete(dir) };
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Managed {
  name: string;
  args: readonly string[];
  child: ChildProcess;
  pid: number;
  /** The last lines the process wrote (stdout and stderr interleaved). */
  logTail(lines?: number): string;
  /** Resolves when the process has exited (immediately if it has). */
  exited: Promise<Exit>;
  /** The exit, once it happened. */
  exit(): Exit | undefined;
  /** SIGTERM, then SIGKILL after graceMs (default 5 s); resolves once the process is gone. Idempotent. */
  stop(graceMs?: number): Promise<Exit>;
}

export interface StartOptions extends Pick<SpawnOptions, 'env' | 'cwd'> {
  /** Lines of output kept (default 200). */
  keepLines?: number;
  /** Called with every complete output line. */
  onLine?: (line: string) => void;
  /** Written to the process's standard input, which is then closed (default: no standard input). */
  input?: string;
}

export function startProcess(name: string, file: string, args: readonly string[], opts: StartOptions = {}): Managed {
  installExitHook();
  const child = spawn(file, args, {
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    ...(opts.env && { env: opts.env }),
    ...(opts.cwd && { cwd: opts.cwd }),
  });
  trackChild(child);
  if (opts.input !== undefined) {
    child.stdin!.on('error', () => undefined); // a process that exits without reading its input
    child.stdin!.end(opts.input);
  }
  const keep = opts.keepLines ?? 200;
  const lines: string[] = [];
  let partial = '';
  const onData = (chunk: Buffer): void => {
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      lines.push(line);
      if (lines.length > keep) lines.shift();
      opts.onLine?.(line);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exit: Exit | undefined;
  const exited = new Promise<Exit>((resolve) => {
    const done = (e: Exit): void => {
      exit ??= e;
      live.delete(child);
      resolve(exit);
    };
    child.once('exit', (code, signal) => done({ code, signal }));
    // spawn failures (ENOENT, EACCES) emit 'error' and no 'exit'
    child.once('error', (err) => {
      lines.push(`spawn ${file}: ${err.message}`);
      done({ code: null, signal: null });
    });
  });
  let stopping: Promise<Exit> | undefined;
  return {
    name,
    args,
    child,
    pid: child.pid ?? -1,
    logTail: (n = 40) => [...lines, partial].filter(Boolean).slice(-n).join('\n'),
    exited,
    exit: () => exit,
    stop(graceMs = 5_000) {
      stopping ??= (async () => {
        if (exit) return exit;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const result = await exited;
        clearTimeout(timer);
        return result;
      })();
      return stopping;
    },
  };
}

/** Polls `ready` every intervalMs until it resolves true; fails when the process exits or after timeoutMs. */
export async function waitUntilReady(
  process: Managed,
  ready: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exit = process.exit();
    if (exit)
      throw new Error(
        `${process.name} exited (${exit.code ?? exit.signal}) before it was ready; output:\n${process.logTail()}`,
      );
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`${process.name} not ready after ${timeoutMs} ms; output:\n${process.logTail()}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
