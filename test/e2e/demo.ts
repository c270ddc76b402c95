// `npm run demo`: the whole loop in about a minute, for real, on a real Kubernetes control plane (see
// test/e2e/rehearsal.ts for what runs). Applies the examples (S3 credentials, the talosconfig Secret, the schedule,
// set to every 5 minutes with retention 3 and deletionPolicy Delete), moves the simulated clock through two hours
// of slots while real snapshots stream into S3, prints what the real kubectl shows and a bucket listing, then
// restores the newest backup with etcdutl and checks that the keys written just before it are there.

import { performance } from 'node:perf_hooks';
import type { BackupStatus } from '../../src/api/types.js';
import { BUCKET, ETCD_VERSION, NAMESPACE, startRehearsal } from './rehearsal.js';

const SLOT_MS = 5 * 60 * 1000;
const HOURS = 2;

function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<void> {
  // The SDK pins Node 20 support (the image runs Node 22); its support notice is not part of the demo.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const started = performance.now();
  say(
    'Starting etcd, the Talos API double, Ceph RGW, kube-apiserver and kube-controller-manager, the hook server, the Metacontroller stand-in and the test kubelet…',
  );
  const r = await startRehearsal({ log: (line) => say(`  ${line}`) });
  try {
    say(
      `kubectl apply -f examples/  (schedule "*/5 * * * *", retention 3, deletionPolicy Delete, S3 endpoint ${r.rgw.endpoint})`,
    );
    await r.applyExamples({
      spec: { schedule: '*/5 * * * *', timeZone: 'UTC', retention: 3, startingDeadlineSeconds: 120 },
      template: { deletionPolicy: 'Delete' },
    });
    await r.settle();
    const start = r.now().getTime();
    let written = 0;
    let lastKeys = new Map<string, string>();
    for (let t = Math.ceil(start / SLOT_MS) * SLOT_MS; t <= start + HOURS * 3600_000; t += SLOT_MS) {
      // The cluster keeps changing between backups; a marker says which slot came next.
      lastKeys = await r.etcd.putMany(50, `registry/demo/${t}/`);
      await r.etcd.put('demo/written-before', new Date(t).toISOString());
      written += 51;
      await r.advanceTo(new Date(t + 1000));
    }
    say();
    say(`After ${HOURS} simulated hours (${written} keys written between the slots):`);
    say();
    // The schedule's times are the simulated clock's, ahead of the real one, so they are shown as timestamps
    // (kubectl's date columns would print a future time as <invalid>); AGE is real time.
    for (const args of [
      [
        'get',
        'tebs',
        '-n',
        NAMESPACE,
        '-o',
        'custom-columns=NAME:.metadata.name,SCHEDULE:.spec.schedule,RETENTION:.spec.retention,LAST-SUCCESS:.status.lastSuccessfulBackupTime,NEXT:.status.nextScheduleTime',
      ],
      ['get', 'teb', '-n', NAMESPACE, '-o', 'wide'],
    ]) {
      const result = await r.cp.kubectl(args);
      if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${result.stderr}`);
      say(`$ kubectl ${args.join(' ')}`);
      say(result.stdout.trimEnd());
      say();
    }
    say(`$ aws s3 ls --recursive s3://${BUCKET}/`);
    for (const o of await r.objects()) say(`${String(o.size).padStart(10)}  ${o.key}`);

    const newest = (await r.backups())
      .map((b) => (b.status as BackupStatus | undefined)?.snapshot)
      .filter((s): s is NonNullable<typeof s> => Boolean(s))
      .sort((a, b) => a.key.localeCompare(b.key))
      .pop();
    if (!newest) throw new Error('no backup succeeded');
    say();
    say(`Restoring the newest backup with etcdutl ${ETCD_VERSION} snapshot restore: ${newest.key}`);
    const restored = await r.restore(newest.key);
    try {
      const last = new Date(Math.floor((r.now().getTime() - 1000) / SLOT_MS) * SLOT_MS).toISOString();
      const value = await restored.get('demo/written-before');
      say(`  $ etcdctl get demo/written-before   (on the restored member)`);
      say(`  ${value}   ← written just before the ${last} slot: the newest backup has the newest data`);
      if (value !== last) throw new Error(`the restored etcd says ${value}, expected ${last}`);
      for (const [key, expected] of lastKeys) {
        if ((await restored.get(key)) !== expected)
          throw new Error(`the restored etcd lacks ${key}, written before the newest slot`);
      }
      say(`  and the ${lastKeys.size} keys written just before that slot read back equal.`);
    } finally {
      await restored.stop();
    }
    say();
    say(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s; everything is stopped and removed.`);
  } finally {
    await r.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
