import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { objectKey } from '../../src/contract/object-key.js';

describe('objectKey', () => {
  const time = new Date('2026-01-02T03:04:05.678Z');
  const cases: { name: string; parts: Parameters<typeof objectKey>[0]; key: string }[] = [
    {
      name: 'the default prefix',
      parts: { prefix: 'talos-operator-etcd-backups', cluster: 'prod', time },
      key: 'talos-operator-etcd-backups/prod/etcd-snapshot-2026-01-02T03-04-05Z.db',
    },
    {
      name: 'a nested prefix',
      parts: { prefix: 'backups/etcd', cluster: 'prod', time },
      key: 'backups/etcd/prod/etcd-snapshot-2026-01-02T03-04-05Z.db',
    },
    {
      name: 'gzip',
      parts: { prefix: 'p', cluster: 'c', time, compression: 'gzip' },
      key: 'p/c/etcd-snapshot-2026-01-02T03-04-05Z.db.gz',
    },
    {
      name: 'zstd and age',
      parts: { prefix: 'p', cluster: 'c', time, compression: 'zstd', encrypted: true },
      key: 'p/c/etcd-snapshot-2026-01-02T03-04-05Z.db.zst.age',
    },
    {
      name: 'age alone',
      parts: { prefix: 'p', cluster: 'c', time, encrypted: true },
      key: 'p/c/etcd-snapshot-2026-01-02T03-04-05Z.db.age',
    },
  ];
  for (const c of cases) it(c.name, () => assert.equal(objectKey(c.parts), c.key));
});
