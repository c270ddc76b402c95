import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TalosError } from '../../../src/job/talos/client.js';
import { IntegrityError } from '../../../src/job/etcd/trailer.js';
import { withFailover } from '../../../src/job/pipeline/failover.js';

const unreachable = (endpoint: string) => new TalosError(`cannot reach the Talos API at ${endpoint}`, endpoint, true);

describe('withFailover', () => {
  it('uses the first endpoint that succeeds and reports the ones that failed', async () => {
    const tried: string[] = [];
    const result = await withFailover(['a:50000', 'b:50000', 'c:50000'], async (endpoint) => {
      tried.push(endpoint);
      if (endpoint === 'a:50000') throw unreachable(endpoint);
      return `snapshot from ${endpoint}`;
    });
    assert.deepEqual(tried, ['a:50000', 'b:50000']);
    assert.equal(result.value, 'snapshot from b:50000');
    assert.equal(result.endpoint, 'b:50000');
    assert.deepEqual(result.failures, [{ endpoint: 'a:50000', message: 'cannot reach the Talos API at a:50000' }]);
  });

  it('starts over on the next endpoint after a broken or corrupt stream', async () => {
    const result = await withFailover(['a', 'b'], async (endpoint) => {
      if (endpoint === 'a') throw new IntegrityError('the stream ended after 9000 bytes');
      return endpoint;
    });
    assert.equal(result.endpoint, 'b');
  });

  it('stops at once on an error every endpoint would repeat', async () => {
    const tried: string[] = [];
    await assert.rejects(
      withFailover(['a', 'b'], async (endpoint) => {
        tried.push(endpoint);
        throw new TalosError('refused: role', endpoint, false);
      }),
      /refused: role/,
    );
    await assert.rejects(
      withFailover(['a', 'b'], async () => {
        throw new Error('Failed to upload snapshot to S3: NoSuchBucket');
      }),
      /NoSuchBucket/,
    );
    assert.deepEqual(tried, ['a']);
  });

  it('when every endpoint fails, throws the last error (keeping its wording) and lists them all', async () => {
    await assert.rejects(
      withFailover(['a', 'b'], async (endpoint) => {
        throw endpoint === 'a' ? unreachable(endpoint) : new IntegrityError('sha256 mismatch');
      }),
      (error: unknown) => {
        assert.ok(error instanceof IntegrityError);
        assert.match(
          error.message,
          /^Snapshot integrity check failed: sha256 mismatch \(all 2 endpoints failed: a: cannot reach the Talos API at a; b: Snapshot integrity check failed: sha256 mismatch\)$/,
        );
        return true;
      },
    );
  });

  it('needs at least one endpoint', async () => {
    await assert.rejects(
      withFailover([], async () => 1),
      /no Talos API endpoint/,
    );
  });
});
