// BodyBudget (src/server/http/body-budget.ts): large request bodies take turns, in arrival order; small ones never wait.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BodyBudget, LARGE_BODY_BYTES } from '../../../src/server/http/body-budget.js';
import { buildApp } from '../../../src/server/app.js';
import { schedule, syncRequest } from '../../helpers/builders.js';

describe('BodyBudget', () => {
  it('admits what fits, queues the rest in order, and a release frees its bytes once', async () => {
    const budget = new BodyBudget(100);
    const started: string[] = [];
    const a = await budget.acquire(60);
    const b = budget.acquire(60).then((release) => (started.push('b'), release));
    const c = budget.acquire(30).then((release) => (started.push('c'), release));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(started, [], 'c waits behind b although it would fit: arrival order');
    a();
    a();
    const releaseB = await b;
    const releaseC = await c;
    assert.deepEqual(started, ['b', 'c']);
    assert.equal(budget.bytesInFlight, 90);
    releaseB();
    releaseC();
    assert.equal(budget.bytesInFlight, 0);
  });

  it('a body larger than the capacity is admitted alone', async () => {
    const budget = new BodyBudget(100);
    const release = await budget.acquire(1_000);
    assert.equal(budget.bytesInFlight, 100);
    release();
  });

  it(
    'the server serves concurrent large and small requests, and gives every turn back',
    { timeout: 20_000 },
    async () => {
      const app = await buildApp({ clock: () => new Date('2026-01-15T12:00:01Z'), bodyLimit: 256 * 1024 });
      try {
        const large = JSON.stringify({ ...syncRequest(schedule(), []), pad: 'x'.repeat(200 * 1024) });
        assert.ok(large.length > LARGE_BODY_BYTES);
        const small = JSON.stringify(syncRequest(schedule(), []));
        const answers = await Promise.all(
          [large, small, large, small, large].map((payload) =>
            app.inject({
              method: 'POST',
              url: '/hooks/schedule/sync',
              headers: { 'content-type': 'application/json' },
              payload,
            }),
          ),
        );
        assert.deepEqual(
          answers.map((a) => a.statusCode),
          [200, 200, 200, 200, 200],
        );
        // All turns returned: one more large body is served at once.
        const again = await app.inject({
          method: 'POST',
          url: '/hooks/schedule/sync',
          headers: { 'content-type': 'application/json' },
          payload: large,
        });
        assert.equal(again.statusCode, 200);
      } finally {
        await app.close();
      }
    },
  );
});
