// What the hook server logs (README, "Configuration of the hook server"): for each request its method, path (never
// the query string), status and duration; for each decision the object's namespace/name (from a body that passed
// the envelope schema) and the outcome; for a refused body the status, code and the schema rule it broke. Never
// request content: no query string, no message from a status or a report, no name or value quoted by a 400.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { BACKUP_CHILDREN_KEY } from '../../../src/api/constants.js';
import { packageRoot } from '../../../src/api/crds.js';
import { buildApp } from '../../../src/server/app.js';
import { schedule, syncRequest } from '../../helpers/builders.js';

type J = any;

const example = (file: string): J => JSON.parse(readFileSync(join(packageRoot(), 'examples', 'hooks', file), 'utf8'));
const SECRET = 'sEcReT-31337';

describe('hook server logs', () => {
  let app: FastifyInstance;
  let lines: J[] = [];
  before(async () => {
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    app = await buildApp({ clock: () => new Date('2026-01-15T12:01:20Z'), logger: { level: 'debug', stream } });
  });
  after(() => app.close());
  beforeEach(() => {
    lines = [];
  });

  const post = (url: string, payload: unknown) =>
    app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json' },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
  const text = () => lines.map((l) => JSON.stringify(l)).join('\n');

  it('a request line has the path without its query string', async () => {
    const response = await post(`/hooks/schedule/sync?token=${SECRET}`, syncRequest(schedule(), []));
    assert.equal(response.statusCode, 200);
    const incoming = lines.find((l) => l.msg === 'incoming request');
    assert.deepEqual(
      { method: incoming.req.method, url: incoming.req.url },
      { method: 'POST', url: '/hooks/schedule/sync' },
    );
    const completed = lines.find((l) => l.msg === 'request completed');
    assert.equal(completed.res.statusCode, 200);
    assert.equal(typeof completed.responseTime, 'number');
    assert.ok(
      lines.some(
        (l) =>
          l.msg === 'schedule synced' && l.schedule === 'talos-backup/daily-backup-schedule' && l.outcome === 'created',
      ),
    );
    assert.doesNotMatch(text(), new RegExp(SECRET));
  });

  it('a refused body logs its status, code and the schema rule, not the names or values the answer quotes', async () => {
    const request = syncRequest(schedule(), []) as J;
    request.children[BACKUP_CHILDREN_KEY][`backup-${SECRET}`] = {
      kind: 'TalosEtcdBackup',
      metadata: { name: `backup-${SECRET}` },
    };
    const response = await post('/hooks/schedule/sync', request);
    assert.equal(response.statusCode, 400);
    assert.match(response.json().message, new RegExp(SECRET), 'the client is told which object');
    const rejected = lines.find((l) => l.msg === 'request rejected');
    assert.equal(rejected.statusCode, 400);
    assert.equal(rejected.code, 'FST_ERR_VALIDATION');
    assert.equal(rejected.keyword, 'required');
    assert.match(rejected.schemaPath, /^#\/properties\/children\//);
    assert.doesNotMatch(text(), new RegExp(SECRET));
  });

  it('a body that is not JSON, or is too deep, is logged by its code only', async () => {
    assert.equal((await post('/hooks/schedule/sync', `password=${SECRET}`)).statusCode, 400);
    assert.equal(
      (await post('/hooks/schedule/sync', `{"a":"${SECRET}","b":${'['.repeat(200)}${']'.repeat(200)}}`)).statusCode,
      400,
    );
    assert.deepEqual(
      lines.filter((l) => l.msg === 'request rejected').map((l) => l.code),
      ['FST_ERR_CTP_INVALID_JSON_BODY', 'TEB_JSON_TOO_DEEP'],
    );
    assert.doesNotMatch(text(), new RegExp(SECRET));
  });

  it('a failed backup is logged with its name and outcome; the failure message from its report is not', async () => {
    const body = example('backup-sync-running.json');
    body.object.status.report = {
      state: 'Failed',
      retryable: false,
      message: `Failed to get secret: ${SECRET}`,
      updatedAt: '2026-01-15T12:01:19Z',
    };
    const response = await post('/hooks/backup/sync', body);
    assert.equal(response.statusCode, 200);
    assert.match(response.json().status.message, new RegExp(SECRET), 'the status carries the message');
    const synced = lines.find((l) => l.msg === 'backup synced');
    assert.deepEqual(
      { backup: synced.backup, outcome: synced.outcome, phase: synced.phase },
      { backup: `${body.object.metadata.namespace}/${body.object.metadata.name}`, outcome: 'failed', phase: 'Failed' },
    );
    assert.equal(synced.message, undefined);
    assert.doesNotMatch(text(), new RegExp(SECRET));
  });

  it('a finalize is logged with its outcome, not the deletion message (the object key)', async () => {
    const body = example('backup-finalize.json');
    const response = await post('/hooks/backup/finalize', body);
    assert.equal(response.statusCode, 200);
    const deletion = response.json().status.deletion?.message as string;
    assert.match(deletion, /s3:\/\//);
    const finalizing = lines.find((l) => l.msg === 'backup finalizing');
    assert.equal(finalizing.outcome, 'deleting');
    assert.doesNotMatch(text(), /s3:\/\//);
  });

  it('an unknown path is logged without its query string', async () => {
    assert.equal((await post(`/hooks/nope?token=${SECRET}`, {})).statusCode, 404);
    assert.ok(lines.some((l) => l.req?.url === '/hooks/nope'));
    assert.doesNotMatch(text(), new RegExp(SECRET));
  });
});
