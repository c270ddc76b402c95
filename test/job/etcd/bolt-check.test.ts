import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  BoltChecker,
  BoltStructureError,
  crc32c,
  crc32cCombine,
  type BoltCheckOptions,
  type BoltSummary,
} from '../../../src/job/etcd/bolt-check.js';
import { EtcdSnapshotVerifier } from '../../../src/job/etcd/trailer.js';
import { snapshotStatus, useEtcd } from '../../harness/etcd.js';
import {
  boltLayout,
  DAMAGE_KINDS,
  damageSnapshot,
  databaseOf,
  unreachablePages,
  withRecomputedTrailer,
  withSyncedFreelist,
  type DamageKind,
} from '../../helpers/snapshot-damage.js';

const PAGE = 4096;

/** Feeds `db` in pieces of the given sizes (cycled) and returns the summary. */
function check(db: Uint8Array, sizes: number[] = [64 * 1024], options?: BoltCheckOptions): BoltSummary {
  const checker = new BoltChecker(options);
  for (let at = 0, i = 0; at < db.length; i++) {
    const size = Math.max(1, sizes[i % sizes.length]!);
    checker.push(db.subarray(at, at + size));
    at += size;
  }
  return checker.finish();
}

/** Asserts that checking `db` fails with a BoltStructureError matching `message`. */
function rejects(db: Uint8Array, message: RegExp, options?: BoltCheckOptions): void {
  assert.throws(
    () => check(db, undefined, options),
    (error: unknown) => {
      assert.ok(error instanceof BoltStructureError, `expected a BoltStructureError, got ${String(error)}`);
      assert.match(error.message, message);
      return true;
    },
  );
}

const execFileAsync = promisify(execFile);

/** etcdctl v3 against one endpoint, without inherited ETCD* settings. */
async function etcdctl(endpoint: string, ...args: string[]): Promise<string> {
  const env: NodeJS.ProcessEnv = { ETCDCTL_API: '3' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ETCD')) env[k] = v;
  const { stdout } = await execFileAsync('etcdctl', ['--endpoints', endpoint, ...args], { env });
  return stdout;
}

type Shape = 'fresh' | 'small keys' | 'large values' | 'compacted';

describe('BoltChecker', () => {
  const etcd = useEtcd();
  const snapshots = new Map<Shape, Buffer>();
  let dir: string;
  let files = 0;
  /** Writes a snapshot where etcdctl can read it. */
  const file = async (snapshot: Buffer): Promise<string> => {
    const path = join(dir, `snapshot-${files++}.db`);
    await writeFile(path, snapshot);
    return path;
  };
  const db = (shape: Shape): Buffer => databaseOf(snapshots.get(shape)!);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bolt-check-'));
    // One etcd, growing: each snapshot is a shape of the database.
    snapshots.set('fresh', await etcd.snapshot());
    await etcd.putMany(3000, 'registry/small/', 100);
    snapshots.set('small keys', await etcd.snapshot());
    await etcd.putMany(12, 'registry/large/', 200 * 1024);
    snapshots.set('large values', await etcd.snapshot());
    await etcdctl(etcd.clientUrl, 'del', '--prefix', 'registry/small/');
    await etcd.putMany(500, 'registry/small/', 100);
    const revision = (
      JSON.parse(await etcdctl(etcd.clientUrl, 'get', 'x', '-w', 'json')) as { header: { revision: number } }
    ).header.revision;
    await etcdctl(etcd.clientUrl, 'compact', String(revision), '--physical');
    snapshots.set('compacted', await etcd.snapshot());
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('real snapshots: the figures etcdctl snapshot status reports', () => {
    const shapes: { shape: Shape; keys: number; shaped: (d: Buffer) => void }[] = [
      // Every bucket of a fresh etcd is inline, "key" too.
      {
        shape: 'fresh',
        keys: 0,
        shaped: (d) => assert.equal(boltLayout(d).buckets.find((b) => b.name === 'key')?.root, 0),
      },
      {
        shape: 'small keys',
        keys: 3000,
        shaped: (d) =>
          assert.ok(boltLayout(d).buckets.find((b) => b.name === 'key')!.branches.length > 0, 'branch pages'),
      },
      {
        shape: 'large values',
        keys: 3012,
        shaped: (d) =>
          assert.ok(
            Math.max(
              ...boltLayout(d)
                .buckets.find((b) => b.name === 'key')!
                .overflow.values(),
            ) > 20,
            'multi-page nodes',
          ),
      },
      // All 3000 small keys deleted, 500 put again, then compacted: only the latest revisions stay, and free pages.
      { shape: 'compacted', keys: 512, shaped: (d) => assert.ok(unreachablePages(d).length > 100, 'free pages') },
    ];
    for (const { shape, keys, shaped } of shapes) {
      it(`${shape}`, async () => {
        const snapshot = snapshots.get(shape)!;
        shaped(db(shape)); // the database really has this shape
        const summary = check(db(shape));
        const status = await snapshotStatus(await file(snapshot));
        assert.equal(summary.keys, keys);
        assert.equal(summary.totalKeys, status.totalKey);
        assert.equal(summary.revision, status.revision);
        assert.equal(summary.hash, status.hash);
        assert.equal(summary.pageSize, PAGE);
        assert.equal(summary.pages * PAGE, status.totalSize);
        assert.ok(summary.txid > 0);
        assert.ok(summary.buckets.includes('key') && summary.buckets.includes('meta'), summary.buckets.join());
        assert.deepEqual(
          summary.buckets,
          [...summary.buckets].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
        );
      });
    }

    it('a database with a synced freelist (bbolt writes one unless NoFreelistSync, which etcd sets)', async () => {
      const plain = check(db('compacted'));
      const synced = withSyncedFreelist(db('compacted'));
      assert.deepEqual(check(synced), { ...plain, pages: plain.pages + 1 });
      // bbolt agrees that the crafted freelist is right.
      assert.equal((await snapshotStatus(await file(withRecomputedTrailer(synced)))).hash, plain.hash);
      // A freelist of 65535 ids or more has its count in front of them.
      const wide = withSyncedFreelist(db('compacted'), undefined, { wideCount: true });
      assert.deepEqual(check(wide), { ...plain, pages: plain.pages + 1 });
      assert.equal((await snapshotStatus(await file(withRecomputedTrailer(wide)))).hash, plain.hash);
    });

    it('a copied db file longer than its high-water mark', () => {
      assert.deepEqual(check(Buffer.concat([db('small keys'), Buffer.alloc(3 * PAGE, 0xaa)])), check(db('small keys')));
    });
  });

  describe('chunking never changes the result', () => {
    it('1-byte pieces', () => {
      for (const shape of ['fresh', 'small keys'] as const)
        assert.deepEqual(check(db(shape), [1]), check(db(shape), [db(shape).length]));
    });

    it('random pieces', () => {
      const data = db('large values');
      const whole = check(data, [data.length]);
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 1, max: 300_000 }), { minLength: 1, maxLength: 30 }), (sizes) => {
          assert.deepEqual(check(data, sizes), whole);
        }),
        { numRuns: 25 },
      );
    });
  });

  describe('damaged snapshots whose trailer was recomputed', () => {
    const expected: Record<DamageKind, { message: RegExp; etcdctlRejects: boolean }> = {
      'branch-child': {
        message:
          /^branch page \d+ element 0 \(bucket "key"\) points to page \d+, whose first key differs from the element's key/,
        etcdctlRejects: true,
      },
      'leaf-page-id': {
        message: /^page (\d+) \(reached from bucket "key"\) has id \d+ in its header$/,
        etcdctlRejects: true,
      },
      'key-order': {
        message:
          /^page \d+ \(reached from bucket "key"\) is malformed: element 2's key is not greater than element 1's: keys must be strictly increasing$/,
        etcdctlRejects: false,
      },
      'element-bounds': {
        message:
          /^page \d+ \(reached from bucket "key"\) is malformed: element \d+'s key \(bytes \d+\.\.\d+\) runs past the node's 4096 bytes$/,
        etcdctlRejects: false,
      },
      'meta-checksums': {
        message: /^both meta pages are invalid \(meta 0: bad checksum; meta 1: bad checksum\): not a bolt database$/,
        etcdctlRejects: true,
      },
      'truncated-pages': {
        message: /^the database ends after (\d+) pages but its meta page says it has \d+: truncated$/,
        etcdctlRejects: true,
      },
      'missing-key-bucket': {
        message: /^the root bucket has no "key" bucket \(it has .*"kez".*\): not an etcd database$/,
        etcdctlRejects: false,
      },
    };
    for (const kind of DAMAGE_KINDS) {
      it(kind, async () => {
        const damaged = damageSnapshot(snapshots.get('small keys')!, kind);
        // The trailer still matches: only the structure can tell.
        const trailer = new EtcdSnapshotVerifier();
        trailer.push(damaged);
        assert.doesNotThrow(() => trailer.finish());
        rejects(databaseOf(damaged), expected[kind].message);
        // bbolt's own check (etcdctl runs it) catches some of these, by a panic or an error.
        if (expected[kind].etcdctlRejects)
          await assert.rejects(snapshotStatus(await file(damaged)), /etcdctl snapshot status .* failed/);
      });
    }

    it('page ids in the messages are the damaged pages', () => {
      const snapshot = snapshots.get('small keys')!;
      const leaf = boltLayout(db('small keys')).buckets.find((b) => b.name === 'key')!.leaves[0]!;
      rejects(
        databaseOf(damageSnapshot(snapshot, 'leaf-page-id')),
        new RegExp(`^page ${leaf} \\(reached from bucket "key"\\) has id ${leaf + 1} in its header$`),
      );
      const pages = boltLayout(db('small keys')).pages;
      rejects(
        databaseOf(damageSnapshot(snapshot, 'truncated-pages')),
        new RegExp(`ends after ${pages - 2} pages but its meta page says it has ${pages}: truncated`),
      );
    });

    it('a wrong freelist: a page neither reachable nor free, a page both, a page freed twice', async () => {
      const data = db('compacted');
      const live = boltLayout(data).buckets.find((b) => b.name === 'key')!.leaves[0]!;
      // Which pages etcd left unreachable depends on the run: leave the first of them out of the freelist.
      let lost: number | undefined;
      const leaked = withSyncedFreelist(data, (ids) => {
        lost = ids[0];
        return ids.slice(1);
      });
      assert.ok(lost !== undefined, 'the compacted database should have unreachable pages');
      rejects(
        leaked,
        new RegExp(`^page ${lost} is neither reachable nor free: a tree lost a branch, or the freelist lost pages$`),
      );
      await assert.rejects(snapshotStatus(await file(withRecomputedTrailer(leaked))), /unreachable unfreed/);
      rejects(
        withSyncedFreelist(data, (ids) => [...ids, live].sort((a, b) => a - b)),
        new RegExp(
          `^page ${live} \\(reached from bucket "key"\\) is listed in the freelist: it is both free and in use$`,
        ),
      );
      rejects(
        withSyncedFreelist(data, (ids) => [ids[0]!, ...ids]),
        /^the freelist \(page \d+\) lists page \d+ twice$/,
      );
      rejects(
        withSyncedFreelist(data, (ids) => [...ids, 1]),
        /^the freelist \(page \d+\) lists meta page 1 as free$/,
      );
    });

    it('one bad meta page, the database size, garbage', () => {
      const data = db('small keys');
      const meta1 = Buffer.from(data);
      meta1[PAGE + 16 + 56]! ^= 1;
      rejects(
        meta1,
        /^meta page 1 is invalid \(bad checksum\) although meta page 0 is valid: the database is damaged$/,
      );
      rejects(
        Buffer.concat([data, Buffer.alloc(100)]),
        /^the database is \d+ bytes, not a whole number of 4096-byte pages: truncated, or not a bolt database$/,
      );
      rejects(
        data.subarray(0, 3 * PAGE + 10),
        /^the database ends after 3 pages and 10 bytes but its meta page says it has \d+: truncated$/,
      );
      rejects(
        data.subarray(0, 3000),
        /^the database ends after 3000 bytes, before its second meta page \(meta page 0 says it has \d+ pages of 4096 bytes\): truncated$/,
      );
      rejects(Buffer.alloc(0), /^the database is only 0 bytes, too short for a meta page: not a bolt database$/);
      rejects(
        Buffer.alloc(5 * PAGE),
        /^both meta pages are invalid \(meta 0: bad magic 0x00000000; meta 1: bad magic 0x00000000\): not a bolt database$/,
      );
    });
  });

  describe('garbage in, BoltStructureError out', () => {
    /** Succeeds or throws a BoltStructureError that is not the internal-error safety net. */
    const survives = (data: Uint8Array, sizes: number[], options?: BoltCheckOptions): void => {
      try {
        check(data, sizes, options);
      } catch (error) {
        assert.ok(error instanceof BoltStructureError, `not a BoltStructureError: ${String(error)}`);
        assert.doesNotMatch(error.message, /internal error/);
      }
    };
    const position = fc.record({
      page: fc.nat(),
      offset: fc.oneof(fc.integer({ min: 0, max: 127 }), fc.integer({ min: 0, max: PAGE - 1 })),
    });
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({
        kind: fc.constant('overwrite' as const),
        at: position,
        bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }),
      }),
      fc.record({
        kind: fc.constant('fill' as const),
        at: position,
        byte: fc.constantFrom(0x00, 0xff),
        length: fc.integer({ min: 1, max: 64 }),
      }),
      fc.record({ kind: fc.constant('truncate' as const), at: position }),
    );
    type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;
    const mutate = (source: Buffer, mutations: Mutation[]): Buffer => {
      let data = Buffer.from(source);
      for (const m of mutations) {
        const pages = Math.max(1, Math.ceil(data.length / PAGE));
        const at = Math.min(data.length, (m.at.page % pages) * PAGE + m.at.offset);
        if (m.kind === 'truncate') data = data.subarray(0, at);
        else if (m.kind === 'flip') {
          if (at < data.length) data[at]! ^= 1 << m.bit;
        } else if (m.kind === 'overwrite') data.set(m.bytes.subarray(0, data.length - at), at);
        else data.fill(m.byte, at, Math.min(data.length, at + m.length));
      }
      return data;
    };

    it('random flips, overwrites and truncations of real databases', { timeout: 60_000 }, () => {
      const sources = [db('fresh'), db('small keys'), withSyncedFreelist(db('compacted'))];
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: sources.length - 1 }),
          fc.array(mutation, { minLength: 1, maxLength: 4 }),
          fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 8 }),
          fc.constantFrom(undefined, PAGE, 64 * 1024),
          (source, mutations, sizes, maxNodeBytes) =>
            survives(mutate(sources[source]!, mutations), sizes, maxNodeBytes ? { maxNodeBytes } : {}),
        ),
        { numRuns: 300 },
      );
    });

    it('random bytes', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 3 * PAGE }), (data) => {
          assert.throws(() => check(data), BoltStructureError);
        }),
        { numRuns: 100 },
      );
    });
  });

  describe('bounded memory', () => {
    it('a reached node larger than maxNodeBytes is rejected, naming the limit', () => {
      rejects(
        db('large values'),
        /^page \d+ \(reached from bucket "key"\) is a node of \d+ pages \(\d+ bytes\), more than the 65536 bytes the checker assembles \(maxNodeBytes\)$/,
        { maxNodeBytes: 64 * 1024 },
      );
    });

    it('stale free pages may claim any overflow, over live pages or past the end', () => {
      const data = Buffer.from(db('compacted'));
      const reference = check(data);
      const stale = unreachablePages(data).filter((p) => p >= 2 && p + 151 < reference.pages);
      assert.ok(stale.length >= 3);
      const claim = (page: number, flags: number, overflow: number): void => {
        data.writeUInt16LE(flags, page * PAGE + 8);
        data.writeUInt32LE(overflow, page * PAGE + 12);
      };
      claim(stale[0]!, 0x02, 0xfffffff0); // a leaf of 2^32 pages: past the end
      claim(stale[1]!, 0x01, 40); // a branch over the next 40 pages, live or not: assembled, parsed, never reached
      claim(stale[2]!, 0x02, 150); // 604 KiB: too large for 512 KiB, assembled under the default
      // The live tree's largest node has 101 pages (404 KiB).
      for (const maxNodeBytes of [512 * 1024, undefined])
        assert.deepEqual(check(data, [8192], maxNodeBytes ? { maxNodeBytes } : {}), reference);
    });
  });

  describe('etcdctl hash arithmetic', () => {
    const crc = (bytes: Uint8Array): number =>
      crc32c(0, bytes, new DataView(bytes.buffer, bytes.byteOffset, bytes.length), 0, bytes.length);

    it('CRC-32C of the check string, and of pieces joined', () => {
      assert.equal(crc(Buffer.from('123456789')), 0xe3069283);
      const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7919) & 0xff));
      for (const cut of [0, 1, 15, 16, 17, 500, 999, 1000])
        assert.equal(crc32cCombine(crc(data.subarray(0, cut)), crc(data.subarray(cut)), data.length - cut), crc(data));
    });

    it('joins pieces of 512 MiB and more (a big "key" bucket) the same way as smaller ones', () => {
      // crc(A B C) two ways: B and C below 2^29 bytes each, then B+C above. zlib's 32-entry table is wrong here.
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 2 ** 32 - 1 }),
          fc.integer({ min: 0, max: 2 ** 32 - 1 }),
          fc.integer({ min: 0, max: 2 ** 32 - 1 }),
          fc.integer({ min: 2 ** 28, max: 2 ** 29 - 1 }),
          fc.integer({ min: 2 ** 28, max: 2 ** 33 }),
          (a, b, c, lengthB, lengthC) => {
            assert.equal(
              crc32cCombine(crc32cCombine(a, b, lengthB), c, lengthC),
              crc32cCombine(a, crc32cCombine(b, c, lengthC), lengthB + lengthC),
            );
          },
        ),
        { numRuns: 50 },
      );
    });
  });

  describe('usage', () => {
    it('finish() returns the same summary again; push() after it is a programming error', () => {
      const checker = new BoltChecker();
      checker.push(db('fresh'));
      const summary = checker.finish();
      assert.equal(checker.finish(), summary);
      assert.throws(() => checker.push(new Uint8Array(1)), /push\(\) after finish\(\)/);
    });

    it('after a failure, push() and finish() repeat it', () => {
      const checker = new BoltChecker();
      assert.throws(() => checker.push(Buffer.alloc(70_000)), BoltStructureError);
      assert.throws(() => checker.push(Buffer.alloc(1)), /both meta pages are invalid/);
      assert.throws(() => checker.finish(), /both meta pages are invalid/);
    });
  });
});
