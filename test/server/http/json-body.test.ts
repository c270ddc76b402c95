// The body parser (src/server/http/json-body.ts): nesting, value and key limits checked on the text before JSON.parse,
// so that no body within the byte limit makes the server do unbounded work, and none answers 5xx.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { BACKUP_CHILDREN_KEY } from '../../../src/api/constants.js';
import { packageRoot } from '../../../src/api/crds.js';
import { buildApp } from '../../../src/server/app.js';
import { DEFAULTS } from '../../../src/server/config.js';
import {
  jsonLimitsFor,
  jsonShapeProblem,
  KEY_CHECK_MIN_BYTES,
  MAX_JSON_DEPTH,
  MAX_SMALL_OBJECT_KEYS,
} from '../../../src/server/http/json-body.js';
import { scheduleSyncFixture } from '../../../bench/fixtures.js';

type J = any;

const limits = jsonLimitsFor(DEFAULTS.bodyLimit);
const nested = (depth: number, leaf = '0'): string => `${'['.repeat(depth)}${leaf}${']'.repeat(depth)}`;
const example = (file: string): J => JSON.parse(readFileSync(join(packageRoot(), 'examples', 'hooks', file), 'utf8'));

describe('jsonShapeProblem', () => {
  it('accepts every example hook body and a 1,000-backup schedule with managedFields and last-applied annotations', () => {
    for (const file of readdirSync(join(packageRoot(), 'examples', 'hooks'))) {
      assert.equal(
        jsonShapeProblem(readFileSync(join(packageRoot(), 'examples', 'hooks', file), 'utf8'), limits),
        undefined,
        file,
      );
    }
    const body = scheduleSyncFixture({ children: 1000 }).body;
    assert.ok(body.length > KEY_CHECK_MIN_BYTES, 'large enough for the key check');
    assert.equal(jsonShapeProblem(body, limits), undefined);
  });

  it(`nesting: ${MAX_JSON_DEPTH} levels pass, one more does not`, () => {
    assert.equal(jsonShapeProblem(nested(MAX_JSON_DEPTH), limits), undefined);
    assert.equal(jsonShapeProblem(`{"a":${nested(MAX_JSON_DEPTH - 1)}}`, limits), undefined);
    assert.equal(jsonShapeProblem(nested(MAX_JSON_DEPTH + 1), limits)?.kind, 'depth');
  });

  it('brackets, commas and escaped quotes inside strings do not count', () => {
    const text = JSON.stringify({ a: `${'['.repeat(500)}"\\",,,{{{`, b: ['\\'] });
    assert.equal(jsonShapeProblem(text, { ...limits, maxValues: 8 }), undefined);
  });

  it('values: counts elements and members, and stops at the limit', () => {
    const text = `[${Array(1000).fill('1').join(',')}]`;
    assert.equal(jsonShapeProblem(text, { ...limits, maxValues: 1001 }), undefined);
    assert.equal(jsonShapeProblem(text, { ...limits, maxValues: 999 })?.kind, 'values');
  });

  it(`keys: in a body of ${KEY_CHECK_MIN_BYTES / 1048576} MiB or more, at most ${MAX_SMALL_OBJECT_KEYS} distinct keys in small objects; big maps (child names) are exempt`, () => {
    const pad = `"${'x'.repeat(KEY_CHECK_MIN_BYTES)}"`;
    const smallObjects = (distinct: number) =>
      `[${Array.from({ length: distinct }, (_, i) => `{"k${i}":0,"same":1}`).join(',')},${pad}]`;
    assert.equal(jsonShapeProblem(smallObjects(MAX_SMALL_OBJECT_KEYS - 1), limits), undefined);
    assert.equal(jsonShapeProblem(smallObjects(MAX_SMALL_OBJECT_KEYS + 10), limits)?.kind, 'keys');
    const bigMap = `[{${Array.from({ length: 20_000 }, (_, i) => `"backup-${i}":{"a":1}`).join(',')}},${pad}]`;
    assert.equal(jsonShapeProblem(bigMap, limits), undefined);
    // Below the size at which the key check runs, the same shapes pass (their worst case is cheap).
    assert.equal(
      jsonShapeProblem(`[${Array.from({ length: 3000 }, (_, i) => `{"k${i}":0}`).join(',')}]`, limits),
      undefined,
    );
  });
});

describe('the hook server refuses what is too deep, too many or too varied before parsing it, never with a 5xx', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await buildApp({ clock: () => new Date('2026-03-01T00:02:00Z') });
  });
  after(() => app.close());

  const post = async (url: string, payload: string) => {
    const response = await app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json' },
      payload,
    });
    return { status: response.statusCode, body: response.json() as J };
  };

  const scheduleWith = (patch: (request: J) => void): string => {
    const request = structuredClone(scheduleSyncFixture({ children: 2 }).request) as J;
    patch(request);
    return JSON.stringify(request);
  };

  it("2,200 levels in a child backup's spec: 400 naming the limit (answered 500 before)", async () => {
    const body = scheduleWith((r) => {
      const children = r.children[BACKUP_CHILDREN_KEY];
      children[Object.keys(children)[0]!].spec.deep = '@@';
    }).replace('"@@"', nested(2200));
    const { status, body: answer } = await post('/hooks/schedule/sync', body);
    assert.equal(status, 400);
    assert.equal(answer.code, 'TEB_JSON_TOO_DEEP');
    assert.match(answer.message, /nests deeper than 100 levels/);
  });

  it("3,200 levels in a backup's spec: 400 (answered 500 before)", async () => {
    const request = example('backup-sync.json');
    request.object.spec.deep = '@@';
    const { status, body } = await post('/hooks/backup/sync', JSON.stringify(request).replace('"@@"', nested(3200)));
    assert.equal(status, 400);
    assert.match(body.message, /nests deeper than 100 levels/);
  });

  it('the deepest accepted nesting, in every place recursive code reads, is answered without a 5xx', async () => {
    const places: [string, (r: J) => void][] = [
      ['a child backup spec', (r) => ((Object.values(r.children[BACKUP_CHILDREN_KEY])[0] as J).spec.deep = '@@')],
      ['a child backup status', (r) => ((Object.values(r.children[BACKUP_CHILDREN_KEY])[0] as J).status.deep = '@@')],
      ['the template spec', (r) => (r.parent.spec.backupTemplate.spec.deep = '@@')],
      ['the schedule status', (r) => (r.parent.status = { conditions: '@@' })],
    ];
    for (const [where, patch] of places) {
      // The request itself nests 5 levels above a child's spec: fill the rest of the budget.
      const body = scheduleWith(patch).replace('"@@"', nested(MAX_JSON_DEPTH - 8));
      assert.equal(jsonShapeProblem(body, limits), undefined, where);
      const { status } = await post('/hooks/schedule/sync', body);
      assert.ok(status === 200 || status === 400, `${where}: HTTP ${status}`);
    }
    const request = example('backup-sync.json');
    request.object.spec.deep = '@@';
    request.object.status = { report: { state: 'Running', deep: '@@' } };
    const { status } = await post(
      '/hooks/backup/sync',
      JSON.stringify(request).replaceAll('"@@"', nested(MAX_JSON_DEPTH - 6)),
    );
    assert.equal(status, 200);
  });

  it('more values than the limit: 413 before parsing', async () => {
    const body = scheduleWith((r) => (r.junk = '@@')).replace(
      '"@@"',
      `[${Array(limits.maxValues).fill('[]').join(',')}]`,
    );
    assert.ok(body.length < DEFAULTS.bodyLimit, 'within the byte limit');
    const { status, body: answer } = await post('/hooks/schedule/sync', body);
    assert.equal(status, 413);
    assert.equal(answer.code, 'TEB_JSON_TOO_MANY_VALUES');
  });

  it('too many distinct keys in small objects: 400', async () => {
    const junk = `[${Array.from({ length: 4000 }, (_, i) => `{"k${i}":0}`).join(',')},"${'x'.repeat(KEY_CHECK_MIN_BYTES)}"]`;
    const { status, body } = await post(
      '/hooks/schedule/sync',
      scheduleWith((r) => (r.junk = '@@')).replace('"@@"', junk),
    );
    assert.equal(status, 400);
    assert.equal(body.code, 'TEB_JSON_TOO_MANY_KEYS');
  });

  it('a 1,000-backup schedule (what retention can keep) is answered', async () => {
    const fixture = scheduleSyncFixture({ children: 1000 });
    const local = await buildApp({ clock: () => fixture.now });
    try {
      const response = await local.inject({
        method: 'POST',
        url: '/hooks/schedule/sync',
        headers: { 'content-type': 'application/json' },
        payload: fixture.body,
      });
      assert.equal(response.statusCode, 200);
      const answer = response.json();
      assert.equal(answer.status.conditions.find((c: J) => c.type === 'Ready').status, 'True');
      assert.ok(answer.children.length > 0);
    } finally {
      await local.close();
    }
  });
});
