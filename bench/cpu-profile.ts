// Summarises a V8 CPU profile (`node --cpu-prof`) by layer: which part of the stack spent the samples. Used by
// `BENCH_SECTIONS=cpu` (BENCH_CPU_PROFILE=1) on the plain CLI run; `node dist/bench/cpu-profile.js FILE` alone.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The layers, first match wins: by the function's script, else its name (V8's pseudo-frames). */
const LAYERS: [string, (frame: ProfileNode['callFrame']) => boolean][] = [
  ['garbage collection', (f) => f.functionName === '(garbage collector)'],
  ['idle', (f) => f.functionName === '(idle)'],
  ['grpc-js', (f) => f.url.includes('/@grpc/grpc-js/')],
  ['AWS SDK (lib-storage, client-s3, smithy)', (f) => /\/@(aws-sdk|smithy|aws-crypto)\//.test(f.url)],
  ['talos-etcd-backup', (f) => f.url.includes('/dist/src/')],
  ['node:crypto (sha256, TLS ciphers are native)', (f) => f.url.startsWith('node:internal/crypto')],
  ['node:http2', (f) => f.url.startsWith('node:internal/http2')],
  ['node:streams', (f) => f.url.startsWith('node:internal/streams') || f.url === 'node:stream'],
  ['node:tls, net, http', (f) => /^node:(internal\/)?(tls|net|_tls|_http|http|stream_base)/.test(f.url)],
  ['node: other', (f) => f.url.startsWith('node:')],
  ['native, program', (f) => f.url === ''],
  ['other JS', () => true],
];

/** Self time per layer, milliseconds, in LAYERS' order (idle left out of the total). */
export function summariseProfile(file: string): { total: number; layers: Record<string, number> } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const layerOf = new Map<number, string>();
  for (const node of profile.nodes) layerOf.set(node.id, LAYERS.find(([, match]) => match(node.callFrame))![0]);
  const layers: Record<string, number> = Object.fromEntries(LAYERS.map(([name]) => [name, 0]));
  profile.samples.forEach((id, i) => {
    layers[layerOf.get(id)!]! += (profile.timeDeltas[i] ?? 0) / 1000;
  });
  const total = Object.entries(layers).reduce((sum, [name, ms]) => (name === 'idle' ? sum : sum + ms), 0);
  return { total, layers };
}

export function printProfile(file: string): ReturnType<typeof summariseProfile> {
  const summary = summariseProfile(file);
  for (const [name, ms] of Object.entries(summary.layers)) {
    if (ms < 1) continue;
    const share = name === 'idle' ? '' : `${((ms / summary.total) * 100).toFixed(1).padStart(5)} %`;
    console.log(`  ${name.padEnd(46)}${(ms / 1000).toFixed(2).padStart(7)} s ${share}`);
  }
  return summary;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: node dist/bench/cpu-profile.js FILE.cpuprofile');
  printProfile(file);
}
