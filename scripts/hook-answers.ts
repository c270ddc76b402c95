// Records the hook server's answers to the examples/hooks bodies and variations of them (no status, deleting, a
// broken spec, nothing observed; malformed bodies) under three clocks, three hook settings and two Job images, one
// file per answer. For refactors that must not change behaviour: record before and after, then `diff -r`.
//
//   npx tsc -p tsconfig.json && node dist/scripts/hook-answers.js /tmp/answers-before

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../src/api/crds.js';
import { buildApp, type AppOptions } from '../src/server/app.js';

type Body = Record<string, unknown> & { object?: Record<string, any>; parent?: Record<string, any> };

const CLOCKS = { early: '2026-01-01T00:00:00Z', mid: '2026-06-15T03:04:05Z', late: '2030-01-01T00:00:00Z' };
const SETTINGS: Record<string, AppOptions['backupHooks']> = {
  default: undefined,
  noTalosOperator: { attachmentDeadlineSeconds: 600, talosOperator: false },
  shortDeadline: { attachmentDeadlineSeconds: 1, talosOperator: true },
};
const JOB_IMAGES: Record<string, AppOptions['jobImage']> = {
  default: undefined,
  custom: { image: 'example.org/teb:1.2.3', pullPolicy: 'Always', pullSecrets: ['regcred'] },
};
const MALFORMED: [string, string][] = [
  ['/hooks/schedule/sync', '{"parent": {}}'],
  ['/hooks/backup/sync', 'not json'],
  ['/hooks/backup/customize', '{}'],
  ['/hooks/backup/finalize', '[]'],
];

function routeOf(file: string): string {
  if (file.startsWith('schedule-sync')) return '/hooks/schedule/sync';
  if (file.startsWith('backup-customize')) return '/hooks/backup/customize';
  if (file.startsWith('backup-finalize')) return '/hooks/backup/finalize';
  return '/hooks/backup/sync';
}

function variants(text: string): Record<string, string> {
  const variant = (change: (body: Body, subject: Record<string, any>) => void): string => {
    const body = JSON.parse(text) as Body;
    change(body, (body.object ?? body.parent)!);
    return JSON.stringify(body);
  };
  return {
    as: text,
    noStatus: variant((_b, s) => delete s.status),
    deleting: variant((_b, s) => (s.metadata.deletionTimestamp = '2026-06-15T03:00:00Z')),
    broken: variant((_b, s) => {
      if (!s.spec) return;
      s.spec.bogus = 1;
      if (s.spec.backupStorage) s.spec.backupStorage.bucket = '';
    }),
    childless: variant((b) => {
      for (const map of ['children', 'attachments', 'related']) if (b[map]) b[map] = {};
    }),
  };
}

async function record(out: string): Promise<number> {
  mkdirSync(out, { recursive: true });
  const hooks = join(packageRoot(), 'examples', 'hooks');
  let count = 0;
  for (const [clockName, time] of Object.entries(CLOCKS))
    for (const [settingsName, backupHooks] of Object.entries(SETTINGS))
      for (const [imageName, jobImage] of Object.entries(JOB_IMAGES)) {
        const app = await buildApp({
          clock: () => new Date(time),
          logger: false,
          ...(backupHooks && { backupHooks }),
          ...(jobImage && { jobImage }),
        });
        const answer = async (name: string, url: string, payload: string) => {
          const r = await app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json' } });
          writeFileSync(
            join(out, `${clockName}.${settingsName}.${imageName}.${name}.txt`),
            `${r.statusCode}\n${r.body}\n`,
          );
          count += 1;
        };
        for (const file of readdirSync(hooks).sort())
          for (const [variant, payload] of Object.entries(variants(readFileSync(join(hooks, file), 'utf8'))))
            await answer(`${file}.${variant}`, routeOf(file), payload);
        for (const [url, payload] of MALFORMED) await answer(`bad${url.replaceAll('/', '_')}`, url, payload);
        await app.close();
      }
  return count;
}

const out = process.argv[2];
if (!out) {
  process.stderr.write('usage: node dist/scripts/hook-answers.js OUTPUT_DIR\n');
  process.exitCode = 2;
} else {
  process.stdout.write(`${await record(out)} answers in ${out}\n`);
}
