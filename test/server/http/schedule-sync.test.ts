import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { BACKUP_CHILDREN_KEY } from '../../../src/api/constants.js';
import { at, backup, childNames, condition, schedule, syncRequest } from '../../helpers/builders.js';
import { postJson, startServer, type RunningServer } from '../../helpers/server.js';

const NOW = at('2026-01-15T12:00:01Z');
const children = [
  backup('2026-01-14T18:00:00Z', 'succeeded'),
  backup('2026-01-15T00:00:00Z', 'failed'),
  backup('2026-01-15T06:00:00Z', 'succeeded'),
];

describe('POST /hooks/schedule/sync', () => {
  let server: RunningServer;
  let hook: string;
  before(async () => {
    server = await startServer({ clock: () => NOW });
    hook = `${server.url}/hooks/schedule/sync`;
  });
  after(() => server.close());

  it('answers a Metacontroller request with children and status', async () => {
    const { status, body } = await postJson(hook, syncRequest(schedule({ spec: { retention: 1 } }), children));
    assert.equal(status, 200);
    assert.deepEqual(
      childNames(body),
      [children[1]!.metadata.name, children[2]!.metadata.name, 'daily-backup-schedule-1768478400'].sort(),
    );
    assert.equal(body.status.nextScheduleTime, '2026-01-15T18:00:00Z');
    assert.equal(typeof body.resyncAfterSeconds, 'number');
  });

  it('an invalid cron with existing children keeps them all and reports Failed', async () => {
    const { status, body } = await postJson(
      hook,
      syncRequest(schedule({ spec: { schedule: '0 0 * * * *', retention: 1 } }), children),
    );
    assert.equal(status, 200);
    assert.deepEqual(childNames(body), children.map((c) => c.metadata.name).sort());
    assert.equal(condition(body.status, 'Failed')?.reason, 'InvalidSchedule');
  });

  it('a mislabelled content type is still parsed as JSON (curl -d)', async () => {
    const { status } = await postJson(hook, syncRequest(schedule(), []), {
      'content-type': 'application/x-www-form-urlencoded',
    });
    assert.equal(status, 200);
  });

  const valid = syncRequest(schedule(), children);
  const withoutKey = (object: Record<string, unknown>, key: string) => {
    const { [key]: _removed, ...rest } = object;
    return rest;
  };
  const garbage: { name: string; body: unknown; message: RegExp }[] = [
    { name: 'not JSON', body: 'this is not json', message: /not valid JSON/ },
    { name: 'truncated JSON', body: JSON.stringify(valid).slice(0, 100), message: /not valid JSON/ },
    { name: 'an empty body', body: '', message: /empty|JSON/i },
    { name: 'a JSON array', body: '[]', message: /body must be object/ },
    { name: 'JSON null', body: 'null', message: /body must be object/ },
    { name: 'an empty object', body: {}, message: /required property 'parent'/ },
    {
      name: 'no children',
      body: withoutKey(valid as unknown as Record<string, unknown>, 'children'),
      message: /required property 'children'/,
    },
    {
      name: 'children without the TalosEtcdBackup entry',
      body: { ...valid, children: {} },
      message: new RegExp(`required property '${BACKUP_CHILDREN_KEY.replace(/[./]/g, '\\$&')}'`),
    },
    {
      name: 'a child that is not an object',
      body: { ...valid, children: { [BACKUP_CHILDREN_KEY]: { x: 'y' } } },
      message: /must be object/,
    },
    {
      name: 'a child without a name',
      body: { ...valid, children: { [BACKUP_CHILDREN_KEY]: { x: { apiVersion: 'a', kind: 'k', metadata: {} } } } },
      message: /required property 'name'/,
    },
    {
      name: 'a parent of another kind',
      body: { ...valid, parent: { ...valid.parent, kind: 'CronJob' } },
      message: /parent\/kind must be equal to constant/,
    },
    {
      name: 'a parent without metadata',
      body: { ...valid, parent: withoutKey(valid.parent as unknown as Record<string, unknown>, 'metadata') },
      message: /required property 'metadata'/,
    },
    {
      name: 'a parent without a creation time',
      body: { ...valid, parent: { ...valid.parent, metadata: { name: 'x' } } },
      message: /creationTimestamp/,
    },
    {
      name: 'a creation time that is not a time',
      body: {
        ...valid,
        parent: { ...valid.parent, metadata: { ...valid.parent.metadata, creationTimestamp: 'yesterday' } },
      },
      message: /date-time/,
    },
    {
      name: 'labels that are not strings',
      body: { ...valid, parent: { ...valid.parent, metadata: { ...valid.parent.metadata, labels: { a: 1 } } } },
      message: /must be string/,
    },
    { name: 'a prototype-poisoning body', body: '{"__proto__": {"polluted": true}, "parent": {}}', message: /./ },
  ];
  for (const g of garbage) {
    it(`rejects ${g.name} with 400 and a JSON error`, async () => {
      const { status, body } = await postJson(hook, g.body);
      assert.equal(status, 400, JSON.stringify(body));
      assert.equal(body.statusCode, 400);
      assert.match(body.message, g.message);
    });
  }

  it('answers an 8 MiB body (full objects with managedFields and last-applied annotations)', async () => {
    const many = Array.from({ length: 400 }, (_, i) => {
      const b = backup(new Date(Date.parse('2025-06-01T00:00:00Z') + i * 6 * 3600 * 1000), 'succeeded');
      (b.metadata.annotations as Record<string, string>)['example.com/padding'] = 'x'.repeat(20_000);
      return b;
    });
    const body = JSON.stringify(syncRequest(schedule({ spec: { retention: 500 } }), many));
    assert.ok(body.length > 8 * 1024 * 1024, `body is ${body.length} bytes`);
    const { status, body: answer } = await postJson(hook, body);
    assert.equal(status, 200);
    assert.equal(answer.children.length, 401);
  });

  it('a body over the limit gets 413, not a crash', async () => {
    const small = await startServer({ clock: () => NOW, bodyLimit: 64 * 1024 });
    try {
      const { status, body } = await postJson(
        `${small.url}/hooks/schedule/sync`,
        JSON.stringify(syncRequest(schedule(), [])) + ' '.repeat(70 * 1024),
      );
      assert.equal(status, 413);
      assert.equal(body.statusCode, 413);
    } finally {
      await small.close();
    }
  });

  it('never answers 5xx, whatever the body', async () => {
    // Random mutations of a valid request, and random JSON values: every answer is 200 or 400.
    const base = syncRequest(schedule(), children.slice(0, 1)) as unknown as Record<string, unknown>;
    const paths = [
      ['parent'],
      ['parent', 'spec'],
      ['parent', 'metadata'],
      ['parent', 'status'],
      ['children'],
      ['children', BACKUP_CHILDREN_KEY],
      ['parent', 'spec', 'backupTemplate'],
      ['parent', 'spec', 'retention'],
      ['parent', 'spec', 'schedule'],
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...paths), fc.jsonValue(), async (path, value) => {
        const body = structuredClone(base);
        let node = body as Record<string, unknown>;
        for (const key of path.slice(0, -1)) node = node[key] as Record<string, unknown>;
        node[path.at(-1)!] = value;
        const { status } = await postJson(hook, body);
        assert.ok(
          status === 200 || status === 400,
          `status ${status} for ${path.join('.')} = ${JSON.stringify(value)}`,
        );
      }),
      { numRuns: 200 },
    );
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (value) => {
        const { status } = await postJson(hook, JSON.stringify(value));
        assert.equal(status, 400);
      }),
      { numRuns: 100 },
    );
  });
});

describe('probes, metrics and unknown paths', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer({ clock: () => NOW });
  });
  after(() => server.close());

  it('/healthz and /readyz answer 200', async () => {
    assert.deepEqual(await (await fetch(`${server.url}/healthz`)).json(), { status: 'ok' });
    assert.deepEqual(await (await fetch(`${server.url}/readyz`)).json(), { status: 'ready' });
  });

  it('/metrics counts hook requests by code', async () => {
    await postJson(`${server.url}/hooks/schedule/sync`, syncRequest(schedule(), []));
    await postJson(`${server.url}/hooks/schedule/sync`, 'nope');
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /talos_etcd_backup_hook_requests_total\{hook="schedule\/sync",code="200"\} 1/);
    assert.match(text, /talos_etcd_backup_hook_requests_total\{hook="schedule\/sync",code="400"\} 1/);
    assert.match(text, /talos_etcd_backup_schedule_syncs_total\{result="created"\} 1/);
  });

  it('an unknown path is a 404', async () => {
    assert.equal((await postJson(`${server.url}/hooks/nope`, {})).status, 404);
  });
});
