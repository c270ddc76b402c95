// The snapshot pipeline against each etcd the product meets: Debian's 3.4, and 3.5 and 3.6 (what Talos ships), built
// from the Go module proxy. For each: a real etcd with data and history → Talos API double (mTLS) → Ceph RGW, verified
// by our own read-back (trailer + database structure), restored with our `restore`, checked against that version's
// `snapshot status`, then restored with the same version's tool (`etcdctl` on 3.4, `etcdutl` on 3.5+) into an etcd of
// that version and read back key by key.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { restoreCommand, snapshotCommand } from '../../../src/job/commands.js';
import { ETCD_VERSIONS, restoreSnapshot, snapshotStatus, startEtcd, type Etcd } from '../../harness/etcd.js';
import { createTalosPki, talosconfigYaml } from '../../harness/pki.js';
import { useRgw } from '../../harness/rgw.js';
import { startTalosDouble, type TalosDouble } from '../../doubles/talos.js';

const BUCKET = 'etcd-versions';

describe('snapshots of etcd 3.4, 3.5 and 3.6 are stored, verified and restored by the same version', () => {
  const rgw = useRgw();
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'etcd-versions-test-'));
    await rgw().createBucket(BUCKET);
    // The S3 client's default credential chain (what the Job's secretKeyRef env gives it).
    process.env.AWS_ACCESS_KEY_ID = rgw().accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = rgw().secretAccessKey;
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const version of ETCD_VERSIONS) {
    it(`etcd ${version}`, async () => {
      let etcd: Etcd | undefined;
      let talos: TalosDouble | undefined;
      let restored: Etcd | undefined;
      try {
        etcd = await startEtcd({ version });
        assert.match(
          (await etcd.client.status()).version,
          new RegExp(`^${version.replace('.', '\\.')}\\.`),
          'the etcd under test is the version asked for',
        );
        // Data with history: an overwritten key leaves its older revision in the database.
        const keys = await etcd.putMany(1500, 'registry/versions/');
        const first = [...keys.keys()][0]!;
        await etcd.put(first, 'overwritten');
        keys.set(first, 'overwritten');

        const pki = await createTalosPki();
        const client = await pki.clientCert(['os:etcd:backup']);
        talos = await startTalosDouble({ pki, etcd, hostname: `cp-${version}` });
        const talosconfig = join(dir, `talosconfig-${version}`);
        await writeFile(
          talosconfig,
          talosconfigYaml({
            context: 'prod',
            endpoints: [talos.endpoint],
            caPem: pki.caPem,
            certPem: client.certPem,
            keyPem: client.keyPem,
          }),
        );
        const s3 = { bucket: BUCKET, region: rgw().region, endpoint: rgw().endpoint };
        const key = `talos-operator-etcd-backups/etcd-${version}/etcd-snapshot-2026-12-01T00-00-00Z.db.zst`;
        const result = await snapshotCommand({
          ...s3,
          talosconfig,
          key,
          compression: 'zstd',
          verify: 'true',
          partSize: '5',
          queueSize: '2',
          connectTimeout: '5',
          idleTimeout: '5',
          backupNamespace: 'talos-backup',
          backupName: `etcd-${version}`,
        });
        assert.equal(result.verified, true);
        assert.equal(result.verification, 'Full');

        // Our restore (decompress + every check) writes the plain snapshot; that version's own tool agrees with what
        // our structure check read from it.
        const file = join(dir, `etcd-${version}.db`);
        await restoreCommand({ ...s3, key, output: file });
        const status = await snapshotStatus(file, version);
        assert.equal(result.revision, status.revision, `our revision vs etcd ${version}'s snapshot status`);
        assert.equal(
          status.revision,
          1 + 1500 + 1,
          'an empty store is at revision 1; every put and the overwrite add one',
        );

        restored = await restoreSnapshot(file, { version });
        assert.equal(restored.version, version);
        for (const [k, v] of keys) assert.equal(await restored.get(k), v, k);
      } finally {
        await restored?.stop();
        await talos?.stop();
        await etcd?.stop();
      }
    });
  }
});
