// What one request may cost: every worst body the limits admit (bench/worst-bodies.ts), sent to `talos-etcd-backup
// serve` in a child process running as in the chart's pod (its heap sized for 384 MiB, the chart's malloc settings),
// one after the other and four at once, while /healthz is probed as the kubelet does. Before the limits, 16 MiB of such bodies took
// the server to 391–417 MiB (32 MiB of `[]` in the template: 2,225 MiB and 39 s) and probes timed out. The precise
// figures are in `npm run bench` ("worst bodies"); this asserts a bound with a wide margin.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { POD_ENV, POD_MEMORY_LIMIT_MIB, post, probeDuring, startServe } from '../../../bench/serve-process.js';
import { worstBodies } from '../../../bench/worst-bodies.js';
import { DEFAULTS } from '../../../src/server/config.js';

// Measured 271–273 MiB for all of them in a row (npm run bench): 85% of the limit leaves ~50 MiB for noise.
const BOUND_MIB = Math.round(0.85 * POD_MEMORY_LIMIT_MIB);

describe('the worst bodies the limits admit', () => {
  it(`keep the server's peak RSS below ${BOUND_MIB} MiB (85% of the pod's ${POD_MEMORY_LIMIT_MIB} MiB), its probes answered within 2 s, and get no 5xx`, async () => {
    const server = await startServe({ ...POD_ENV });
    try {
      const answers: { name: string; status: number }[] = [];
      const bodies = worstBodies(DEFAULTS.bodyLimit);
      const work = (async () => {
        for (const body of bodies) {
          const text = body.build();
          assert.ok(Buffer.byteLength(text) > DEFAULTS.bodyLimit - 1024, `${body.name}: at the byte limit`);
          answers.push({ name: body.name, status: (await post(`${server.url}${body.path}`, text)).status });
        }
        // Metacontroller calls with several workers: four of the heaviest at once take turns (http/body-budget.ts).
        const heaviest = bodies.filter((b) => /keys|shapes/.test(b.name)).slice(0, 4);
        const texts = heaviest.map((b) => b.build());
        const statuses = await Promise.all(heaviest.map((b, i) => post(`${server.url}${b.path}`, texts[i]!)));
        statuses.forEach((r, i) => answers.push({ name: `${heaviest[i]!.name} (4 at once)`, status: r.status }));
      })();
      const { probes } = await probeDuring(`${server.url}/healthz`, work, 100, 2_000);
      for (const answer of answers) assert.ok(answer.status < 500, `${answer.name}: HTTP ${answer.status}`);
      assert.equal(answers.length, bodies.length + 4);
      assert.ok(probes.probes >= bodies.length, `${probes.probes} probes`);
      assert.equal(
        probes.failed,
        0,
        `${probes.failed} of ${probes.probes} probes got no answer within 2 s (slowest ${Math.round(probes.slowestMs)} ms)`,
      );
      const { peakMiB } = server.memory();
      assert.ok(peakMiB < BOUND_MIB, `peak RSS ${peakMiB.toFixed(0)} MiB`);
      assert.equal(server.child.exitCode, null, 'the server is still running');
    } finally {
      await server.stop();
    }
  });
});
