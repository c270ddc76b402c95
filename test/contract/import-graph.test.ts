// Two processes, one tree: the hook server (src/server/) and the Job's commands (src/job/) never import each other,
// and what they share (src/api/, src/contract/) imports neither. The workstation commands (src/workstation/) build
// on the Job's restore and are imported by neither process. The Job's memory budget is a rule, checked here:
// nothing the Job's commands load pulls in the hook server's modules or packages.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, it } from 'node:test';
import { packageRoot } from '../../src/api/crds.js';

const root = packageRoot();

interface Import {
  target: string; // a src/ path (.ts) or a package name
  typeOnly: boolean;
  dynamic: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const STATIC = /^\s*(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

function importsOf(file: string): Import[] {
  // Comments dropped: they mention imports that are not made.
  const text = readFileSync(join(root, file), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
  const resolve = (specifier: string): string =>
    specifier.startsWith('.')
      ? normalize(join(dirname(file), specifier)).replace(/\.js$/, '.ts')
      : packageName(specifier);
  return [
    ...[...text.matchAll(STATIC)].map((m) => ({ target: resolve(m[3]!), typeOnly: Boolean(m[2]), dynamic: false })),
    ...[...text.matchAll(DYNAMIC)].map((m) => ({ target: resolve(m[1]!), typeOnly: false, dynamic: true })),
  ];
}

const files = sourceFiles('src');
const graph = new Map(files.map((f) => [f, importsOf(f)]));

/** Every src/ file and package loaded at run time from `roots` (type-only imports are erased). */
function loaded(roots: string[], follow: (from: string, i: Import) => boolean = () => true): Set<string> {
  const seen = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const i of graph.get(file) ?? []) if (!i.typeOnly && follow(file, i)) queue.push(i.target);
  }
  return seen;
}

const area = (file: string): string => file.split('/')[1] ?? '';

describe('the import graph of src/', () => {
  it('finds the imports it checks (the parser sees static, type-only and dynamic imports)', () => {
    const cli = graph.get('src/cli.ts')!;
    assert.ok(cli.some((i) => i.dynamic && i.target === 'src/job/commands.ts'));
    assert.ok(cli.some((i) => i.dynamic && i.target === 'src/server/serve.ts'));
    assert.ok([...graph.values()].flat().some((i) => i.typeOnly));
    assert.ok(files.length > 50);
    for (const [file, imports] of graph)
      for (const i of imports)
        if (i.target.startsWith('src/'))
          assert.ok(graph.has(i.target), `${file} imports ${i.target}, which does not exist`);
  });

  const rules: [string, (from: string) => boolean, (to: string) => boolean][] = [
    ['src/job/ never imports src/server/', (f) => area(f) === 'job', (t) => area(t) === 'server'],
    ['src/server/ never imports src/job/', (f) => area(f) === 'server', (t) => area(t) === 'job'],
    ['src/workstation/ never imports src/server/', (f) => area(f) === 'workstation', (t) => area(t) === 'server'],
    [
      'neither process imports src/workstation/',
      (f) => ['job', 'server'].includes(area(f)),
      (t) => area(t) === 'workstation',
    ],
    [
      'src/api/ and src/contract/ import neither process',
      (f) => ['api', 'contract'].includes(area(f)),
      (t) => ['server', 'job'].includes(area(t)) || t === 'src/cli.ts',
    ],
  ];
  for (const [name, from, forbidden] of rules) {
    it(name, () => {
      const broken = [...graph].flatMap(([file, imports]) =>
        from(file) ? imports.filter((i) => forbidden(i.target)).map((i) => `${file} → ${i.target}`) : [],
      );
      assert.deepEqual(broken, []);
    });
  }

  it("loads none of the hook server's modules or packages for the Job's commands", () => {
    // What `talos-etcd-backup snapshot` (and verify, delete, restore) loads: the entry's static imports, then the
    // Job's modules with everything they import, also dynamically (the entry imports the modules of serve, list,
    // backup and restore --backup only for those).
    const job = loaded(
      ['src/main.ts', ...files.filter((f) => area(f) === 'job')],
      (from, i) => !i.dynamic || area(from) === 'job',
    );
    const serverOnly = [
      'fastify',
      'fastify-plugin',
      'ajv',
      'ajv-formats',
      'prom-client',
      'croner',
      'close-with-grace',
      '@marcbachmann/cel-js',
      '@kubernetes/client-node',
    ];
    assert.deepEqual(
      [...job].filter((t) => area(t) === 'server' || serverOnly.includes(t)),
      [],
    );
    assert.ok(
      job.has('@grpc/grpc-js') && job.has('@aws-sdk/client-s3'),
      'the check sees the packages the Job does load',
    );
    assert.ok(
      loaded(files.filter((f) => area(f) === 'workstation')).has('@kubernetes/client-node'),
      'the workstation commands do load the client',
    );
  });
});
