// The snapshot Job's first report against an API that refuses it (403) for a while: Metacontroller creates the
// RoleBinding after the Job (ServiceAccount, Job, Role, RoleBinding, at 5 requests per second), so the pod may ask
// before its permission exists. The first report waits for it (a shortened wait here; the real order and rate on the
// real API server are in test/server/backup/first-report.test.ts); a permission that never comes is a clear, permanent
// failure; later reports do not wait.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KubernetesApiError, type KubernetesApi } from '../../../src/job/kubernetes/in-cluster.js';
import { isPermanentFailure } from '../../../src/job/errors.js';
import { FIRST_REPORT_PERMISSION_WAIT_MS, statusReporter } from '../../../src/job/kubernetes/status-report.js';

const FORBIDDEN =
  'talosetcdbackups.talos.alperen.cloud "b" is forbidden: User "system:serviceaccount:ns:b-snapshot" cannot patch resource "talosetcdbackups/status" in API group "talos.alperen.cloud" in the namespace "ns"';

/** An API that answers 403 until `allowAfter` calls were refused (Infinity: forever), then accepts. */
function api(allowAfter: number, other?: { status: number; times: number }) {
  const calls: { body: any }[] = [];
  let otherLeft = other?.times ?? 0;
  const fake: KubernetesApi = {
    create: async () => undefined,
    async mergePatch(_path, body) {
      calls.push({ body });
      if (otherLeft > 0) {
        otherLeft -= 1;
        throw new KubernetesApiError(`the Kubernetes API answered ${other!.status}: try again`, other!.status);
      }
      if (calls.length <= allowAfter)
        throw new KubernetesApiError(`the Kubernetes API answered 403: ${FORBIDDEN}`, 403);
    },
  };
  return { fake, calls };
}

const reporter = (fake: KubernetesApi, permissionWaitMs?: number) =>
  statusReporter({
    api: fake,
    namespace: 'ns',
    name: 'b',
    pod: 'b-snapshot-x',
    intervalMs: 1000,
    warn: () => undefined,
    ...(permissionWaitMs !== undefined && { permissionWaitMs }),
  });

describe('the first report waits for its RoleBinding', () => {
  it('by default the wait is a minute: far longer than the old ~6 s of retries', () => {
    assert.equal(FIRST_REPORT_PERMISSION_WAIT_MS, 60_000);
  });

  it('403s before the RoleBinding exists are retried until the report is accepted', async () => {
    const { fake, calls } = api(4);
    await reporter(fake, 20_000).running();
    assert.equal(calls.length, 5, 'four refusals, then the accepted report');
    assert.equal(calls.at(-1)!.body.status.report.state, 'Running');
  });

  it("a permission that never comes fails once the wait is over: the API server's 403 wording, permanent (exit 2), no second report", async () => {
    const { fake, calls } = api(Infinity);
    const r = reporter(fake, 1_500);
    const error = await r.running().then(
      () => assert.fail('the report was refused'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof KubernetesApiError);
    assert.equal(error.status, 403);
    assert.equal(
      error.message,
      `the Kubernetes API answered 403: ${FORBIDDEN} (still refused after 2s: the backup's Role or RoleBinding is missing or was changed)`,
    );
    assert.ok(!error.message.includes('\n'), 'one line');
    assert.equal(isPermanentFailure(error), true, 'the Job exits 2: no retry would help');
    const tries = calls.length;
    assert.ok(tries >= 3, `${tries} tries`);
    // The CLI reports the failure next: this identity may not write the status, so it is not tried again.
    await r.failed(error.message, false);
    assert.equal(calls.length, tries);
  });

  it('other failures of the first report are retried as before (4 attempts), not for the whole wait', async () => {
    const { fake, calls } = api(0, { status: 500, times: 4 });
    const error = await reporter(fake, 60_000)
      .running()
      .then(
        () => assert.fail('4 failures in a row'),
        (e: unknown) => e,
      );
    assert.ok(error instanceof KubernetesApiError);
    assert.equal(error.status, 500);
    assert.equal(calls.length, 4);
  });

  it('a 403 after the first report was accepted is not waited for (the Role was taken away)', async () => {
    let refuse = false;
    const calls: unknown[] = [];
    const fake: KubernetesApi = {
      create: async () => undefined,
      async mergePatch(_path, body) {
        calls.push(body);
        if (refuse) throw new KubernetesApiError(`the Kubernetes API answered 403: ${FORBIDDEN}`, 403);
      },
    };
    const r = reporter(fake, 60_000);
    await r.running();
    refuse = true;
    await assert.rejects(
      r.failed('Failed to upload snapshot to S3: SlowDown', true),
      (e: unknown) => e instanceof KubernetesApiError && !e.message.includes('still refused'),
    );
    assert.equal(calls.length, 1 + 4, 'the general retries only');
  });
});
