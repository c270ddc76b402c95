import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inClusterApi, KubernetesApiError } from '../../../src/job/kubernetes/in-cluster.js';

describe('inClusterApi', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'in-cluster-test-'));
    await writeFile(join(dir, 'ca.crt'), 'not a certificate, never used: nothing listens');
    await writeFile(join(dir, 'token'), 'token');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** A loopback port nothing listens on. */
  async function closedPort(host: string): Promise<number> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }

  it('dials an IPv6 service address as an address (IPv6-only clusters), not as a host name', async () => {
    const port = await closedPort('::1');
    const api = inClusterApi({
      KUBERNETES_SERVICE_HOST: '::1',
      KUBERNETES_SERVICE_PORT: String(port),
      KUBERNETES_SERVICE_ACCOUNT_DIR: dir,
    });
    await assert.rejects(api.mergePatch('/apis/x', {}), (error: unknown) => {
      assert.ok(error instanceof KubernetesApiError);
      assert.match(error.message, /ECONNREFUSED/, 'the connection was attempted: the name was not looked up');
      assert.doesNotMatch(error.message, /ENOTFOUND/);
      return true;
    });
  });

  it('a token that cannot be read rejects the call (it never throws into the caller)', async () => {
    const api = inClusterApi({
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: '1',
      KUBERNETES_SERVICE_ACCOUNT_DIR: dir,
    });
    await rm(join(dir, 'token'));
    const call = api.mergePatch('/apis/x', {});
    assert.ok(call instanceof Promise);
    await assert.rejects(call, /ENOENT/);
  });

  it('outside a pod it says so', () => {
    assert.throws(() => inClusterApi({}), /not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST is not set/);
  });
});
