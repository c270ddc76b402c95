// Benchmark-only entry: the Talos API double (test/doubles/talos.ts) in fast mode, in its own process so that
// neither its CPU nor its source buffer (at most 1 GiB: larger snapshots repeat one block) counts against the process
// being measured.
// Spawned by bench/pipeline.ts with an IPC channel:
//   parent → {type:'start', tls, dbBytes, layout?}   child → {type:'ready', endpoint, facts}
//   parent → {type:'stats'}                 child → {type:'stats', cpuUs, calls}
// It exits when the channel closes (the bench ended, or died without stopping it).

import { performance } from 'node:perf_hooks';
import { startTalosDouble, type TalosDouble, type TalosDoubleTls } from '../test/doubles/talos.js';
import {
  buildRepeatedSnapshot,
  buildSnapshot,
  MIB,
  type DatabaseLayout,
  type SnapshotFacts,
} from './snapshot-bytes.js';

/** Above this a 'random' database is served as this block repeated (bench/snapshot-bytes.ts, buildRepeatedSnapshot). */
const LARGEST_BUFFER_BYTES = 1024 * MIB;

export interface StartMessage {
  type: 'start';
  tls: TalosDoubleTls;
  /** Database bytes (a multiple of 4096); the snapshot is these plus the 32-byte trailer. */
  dbBytes: number;
  /** How the database's bytes are laid out (default 'random'; see bench/snapshot-bytes.ts). */
  layout?: DatabaseLayout;
}

export interface ReadyMessage {
  type: 'ready';
  endpoint: string;
  facts: SnapshotFacts;
  buildMs: number;
}

export interface StatsMessage {
  type: 'stats';
  /** process.cpuUsage() user + system, microseconds, all threads. */
  cpuUs: number;
  /** EtcdSnapshot calls so far: bytes sent and final status (undefined while running). */
  calls: { bytes: number; messages: number; code: number | undefined }[];
}

export interface ErrorMessage {
  type: 'error';
  message: string;
}

let double: TalosDouble | undefined;

function send(message: ReadyMessage | StatsMessage | ErrorMessage): void {
  process.send?.(message);
}

async function start(message: StartMessage): Promise<void> {
  if (double) throw new Error('the double is already running');
  const began = performance.now();
  const repeat = message.dbBytes > LARGEST_BUFFER_BYTES && (message.layout ?? 'random') === 'random';
  let source: Buffer | Buffer[];
  let facts: SnapshotFacts;
  if (repeat) ({ segments: source, facts } = buildRepeatedSnapshot(message.dbBytes, LARGEST_BUFFER_BYTES));
  else ({ buffer: source, facts } = buildSnapshot(message.dbBytes, message.layout));
  const buildMs = performance.now() - began;
  double = await startTalosDouble({ pki: message.tls, source, hostname: 'bench-cp-1' });
  send({ type: 'ready', endpoint: double.endpoint, facts, buildMs });
}

function stats(): StatsMessage {
  const { user, system } = process.cpuUsage();
  const calls = (double?.records ?? [])
    .filter((r) => r.method === 'EtcdSnapshot')
    .map((r) => ({ bytes: r.bytes, messages: r.messages, code: r.code }));
  return { type: 'stats', cpuUs: user + system, calls };
}

if (!process.send) {
  console.error('bench/talos-server.js is started by bench/pipeline.js with an IPC channel');
  process.exit(2);
}

process.on('message', (raw: unknown) => {
  const message = raw as { type?: unknown } | null;
  if (message?.type === 'start') {
    start(message as StartMessage).catch((error: unknown) => {
      send({ type: 'error', message: (error as Error).stack ?? String(error) });
      process.exit(1);
    });
  } else if (message?.type === 'stats') {
    send(stats());
  }
});

process.on('disconnect', () => {
  const stopped = double?.stop() ?? Promise.resolve();
  const timer = setTimeout(() => process.exit(0), 2_000);
  void stopped.finally(() => {
    clearTimeout(timer);
    process.exit(0);
  });
});
