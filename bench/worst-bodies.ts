// The most expensive hook bodies the server accepts: as many bytes as the body limit allows and as many values as
// the value limit allows, placed where the hooks do the most with them (validated, copied, echoed in the answer).
// Used by `npm run bench` (precise figures) and test/server/http/memory.test.ts (a bound with a wide margin).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../src/api/crds.js';
import { BACKUP_CHILDREN_KEY } from '../src/api/constants.js';
import { BACKUP_SYNC_PATH } from '../src/server/http/backup-hooks.js';
import { jsonLimitsFor, jsonShapeProblem, type JsonLimits } from '../src/server/http/json-body.js';
import { SCHEDULE_SYNC_PATH } from '../src/server/http/schedule-sync.js';
import { scheduleSyncFixture } from './fixtures.js';

type J = any;

export interface WorstBody {
  name: string;
  path: string;
  /** Builds the body (16 MiB at the default limit: built one at a time, when sent). */
  build(): string;
}

const JUNK = '"@@junk@@"';
const PAD = '@@pad@@';

/** `count` values of one small shape, as JSON text (without the enclosing brackets' own value). */
type Shape = 'arrays' | 'objects' | 'keys' | 'strings' | 'shapes';

function junkText(shape: Shape, count: number): string {
  switch (shape) {
    case 'shapes': {
      // Objects of 100 keys drawn from 1,200 (below the key limit with the request's own): as many distinct
      // key sequences, so hidden classes, as the limits allow.
      let seed = 0x2545f491;
      const next = () => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return (seed >>> 0) % 1200;
      };
      const objects: string[] = [];
      for (let made = 0; made + 101 <= count; made += 101) {
        const keys = new Set<number>();
        while (keys.size < 100) keys.add(next());
        objects.push(`{${[...keys].map((k) => `"s${k.toString(36)}":0`).join(',')}}`);
      }
      return `[${objects.join(',')}]`;
    }
    case 'arrays':
      return `[${Array(count).fill('[]').join(',')}]`;
    case 'objects':
      return `[${Array(count).fill('{}').join(',')}]`;
    case 'keys':
      // One object with distinct keys: V8 keeps it as a hash table, the most memory per value of the small shapes.
      return `{${Array.from({ length: count }, (_, i) => `"k${i.toString(36)}":0`).join(',')}}`;
    case 'strings':
      return `[${Array.from({ length: count }, (_, i) => `"${i.toString(36)}"`).join(',')}]`;
  }
}

/**
 * Replaces the `"@@junk@@"` placeholder in `template` with as many values as `limits` admit (minus a margin for
 * the scan's upper-bound count) and the `@@pad@@` placeholder with a string that fills the body to `bodyLimit`
 * bytes. The padding holds one non-Latin-1 character, so V8 stores the whole decoded body with two bytes per character.
 */
function fill(template: string, shape: Shape, bodyLimit: number, limits: JsonLimits): string {
  const baseValues = countValues(template.replace(JUNK, '0').replace(PAD, ''), limits);
  // Each empty array or object is a value and opens a container (the scan counts both); a key or string is one.
  const perItem = shape === 'arrays' || shape === 'objects' ? 2 : 1;
  const count = Math.floor((limits.maxValues - baseValues - 16) / perItem);
  const junk = junkText(shape, count);
  const withJunk = template.replace(JUNK, junk);
  const room = bodyLimit - Buffer.byteLength(withJunk.replace(PAD, '')) - 64;
  if (room < 0) throw new Error(`the ${shape} junk alone exceeds the body limit by ${-room} bytes`);
  const pad = `\u4e00${'x'.repeat(Math.max(0, room - 3))}`;
  const body = withJunk.replace(PAD, pad);
  const problem = jsonShapeProblem(body, limits);
  if (problem) throw new Error(`the generated body is not accepted: ${problem.message}`);
  return body;
}

function countValues(text: string, limits: JsonLimits): number {
  // Binary search for the smallest maxValues that admits the text: the scanner's own count.
  let low = 1;
  let high = limits.maxValues;
  if (jsonShapeProblem(text, { ...limits, maxValues: high }))
    throw new Error('the template alone exceeds the value limit');
  while (low < high) {
    const mid = Math.floor((low + high) / 2);
    if (jsonShapeProblem(text, { ...limits, maxValues: mid })) low = mid + 1;
    else high = mid;
  }
  return low;
}

const example = (file: string): J => JSON.parse(readFileSync(join(packageRoot(), 'examples', 'hooks', file), 'utf8'));

/** Every worst body for a server with `bodyLimit` (and the limits derived from it), each at both limits at once. */
export function worstBodies(bodyLimit: number, limits: JsonLimits = jsonLimitsFor(bodyLimit)): WorstBody[] {
  const schedule = (): J => structuredClone(scheduleSyncFixture({ children: 3 }).request);
  const backup = (): J => structuredClone(example('backup-sync-running.json'));
  const bodies: { name: string; path: string; request: J; shape: Shape }[] = [];

  // The template's spec is validated (ajv with every error, CEL) and, when valid, copied into the created backup.
  for (const shape of ['arrays', 'keys', 'shapes'] as const) {
    const request = schedule();
    request.parent.spec.backupTemplate.spec.unknownField = '@@junk@@';
    request.parent.metadata.annotations['example.com/pad'] = PAD;
    bodies.push({
      name: `schedule: ${shape} in an unknown field of backupTemplate.spec`,
      path: SCHEDULE_SYNC_PATH,
      request,
      shape,
    });
  }
  {
    const request = schedule();
    request.parent.spec.backupTemplate.spec.endpoints = '@@junk@@';
    request.parent.metadata.annotations['example.com/pad'] = PAD;
    bodies.push({
      name: 'schedule: invalid items in backupTemplate.spec.endpoints',
      path: SCHEDULE_SYNC_PATH,
      request,
      shape: 'objects',
    });
  }
  {
    // A child is re-emitted in the answer as it came (its spec by reference) and read through the CRD checks.
    const request = schedule();
    const children = request.children[BACKUP_CHILDREN_KEY];
    const first = children[Object.keys(children)[0]!];
    first.spec.unknownField = '@@junk@@';
    first.status.unknownField = PAD;
    bodies.push({
      name: 'schedule: arrays in a child backup spec',
      path: SCHEDULE_SYNC_PATH,
      request,
      shape: 'arrays',
    });
  }
  {
    const request = schedule();
    request.parent.status = { conditions: '@@junk@@', pad: PAD };
    bodies.push({
      name: 'schedule: invalid conditions in the schedule status',
      path: SCHEDULE_SYNC_PATH,
      request,
      shape: 'objects',
    });
  }
  {
    // Observed attachments are copied and echoed in the answer.
    const request = backup();
    request.attachments['Job.batch/v1']['manual-backup-snapshot'].spec.unknownField = '@@junk@@';
    request.object.metadata.annotations = { ...request.object.metadata.annotations, 'example.com/pad': PAD };
    bodies.push({ name: 'backup: arrays in the observed Job', path: BACKUP_SYNC_PATH, request, shape: 'arrays' });
  }
  {
    const request = backup();
    request.object.spec.endpoints = '@@junk@@';
    request.object.metadata.annotations = { ...request.object.metadata.annotations, 'example.com/pad': PAD };
    bodies.push({ name: 'backup: invalid items in spec.endpoints', path: BACKUP_SYNC_PATH, request, shape: 'objects' });
  }
  {
    const request = backup();
    request.object.status.conditions = '@@junk@@';
    request.object.status.pad = PAD;
    bodies.push({
      name: 'backup: invalid conditions in the backup status',
      path: BACKUP_SYNC_PATH,
      request,
      shape: 'strings',
    });
  }
  {
    const request = backup();
    const related = request.related['TalosControlPlane.talos.alperen.cloud/v1alpha1'];
    const tcp = related[Object.keys(related)[0]!];
    tcp.spec.unknownField = '@@junk@@';
    tcp.metadata.annotations = { ...tcp.metadata.annotations, 'example.com/pad': PAD };
    bodies.push({
      name: 'backup: keys in the related TalosControlPlane',
      path: BACKUP_SYNC_PATH,
      request,
      shape: 'keys',
    });
  }
  {
    const request = backup();
    const related = request.related['TalosControlPlane.talos.alperen.cloud/v1alpha1'];
    const tcp = related[Object.keys(related)[0]!];
    tcp.spec.unknownField = '@@junk@@';
    request.object.metadata.annotations = { ...request.object.metadata.annotations, 'example.com/pad': PAD };
    bodies.push({
      name: 'backup: object shapes in the related TalosControlPlane',
      path: BACKUP_SYNC_PATH,
      request,
      shape: 'shapes',
    });
  }
  {
    const request = schedule();
    request.unknownField = '@@junk@@';
    request.pad = PAD;
    bodies.push({ name: 'schedule: objects beside the request', path: SCHEDULE_SYNC_PATH, request, shape: 'objects' });
  }

  return bodies.map(({ name, path, request, shape }) => ({
    name,
    path,
    build: () => fill(JSON.stringify(request), shape, bodyLimit, limits),
  }));
}
