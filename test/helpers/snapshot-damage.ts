// Damaged etcd snapshots for tests: each helper takes a valid snapshot (or database), breaks one thing in its
// bbolt structure and recomputes etcd's sha256 trailer, so only a structural check can tell.
//
//   const damaged = damageSnapshot(await etcd.snapshot(), 'key-order');  // db' || sha256(db')
//
// A small in-memory bbolt reader finds the pages to break (tests hold whole snapshots; production never does).

import { createHash } from 'node:crypto';

export type DamageKind =
  | 'branch-child' // a branch element of the "key" bucket points to its sibling's page
  | 'leaf-page-id' // a leaf of the "key" bucket carries the next page's id in its header
  | 'key-order' // two keys of a "key" leaf swapped
  | 'element-bounds' // a "key" leaf element's key points past the end of its node
  | 'meta-checksums' // both meta pages' checksums wrong
  | 'truncated-pages' // the last two pages cut off (still whole pages)
  | 'missing-key-bucket'; // the root bucket's "key" entry renamed "kez"

export const DAMAGE_KINDS: readonly DamageKind[] = [
  'branch-child',
  'leaf-page-id',
  'key-order',
  'element-bounds',
  'meta-checksums',
  'truncated-pages',
  'missing-key-bucket',
];

const TRAILER_BYTES = 32;
const PAGE_HEADER = 16;
const ELEMENT = 16;
const BRANCH = 0x01;
const LEAF = 0x02;
const FREELIST = 0x10;
const NO_FREELIST = 0xffffffffffffffffn;

/** db || sha256(db): what etcd streams. */
export function withRecomputedTrailer(db: Buffer): Buffer {
  return Buffer.concat([db, createHash('sha256').update(db).digest()]);
}

/** The database part of a snapshot (a copy). */
export function databaseOf(snapshot: Buffer): Buffer {
  return Buffer.from(snapshot.subarray(0, snapshot.length - TRAILER_BYTES));
}

interface MetaFields {
  pageSize: number;
  root: number;
  freelist: bigint;
  pages: number;
  txid: number;
}

function readMeta(db: Buffer, slot: 0 | 1, pageSize: number): MetaFields {
  const m = slot * pageSize + PAGE_HEADER;
  return {
    pageSize: db.readUInt32LE(m + 8),
    root: Number(db.readBigUInt64LE(m + 16)),
    freelist: db.readBigUInt64LE(m + 32),
    pages: Number(db.readBigUInt64LE(m + 40)),
    txid: Number(db.readBigUInt64LE(m + 48)),
  };
}

/** Meta checksum: FNV-1a 64 over the 56 bytes before it. */
function metaChecksum(db: Buffer, offset: number): bigint {
  let h = 0xcbf29ce484222325n;
  for (let i = offset; i < offset + 56; i++) h = ((h ^ BigInt(db[i]!)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h;
}

function rewriteMetaChecksums(db: Buffer, pageSize: number): void {
  for (const slot of [0, 1]) {
    const m = slot * pageSize + PAGE_HEADER;
    db.writeBigUInt64LE(metaChecksum(db, m), m + 56);
  }
}

interface LeafElement {
  index: number;
  /** Byte offset of the element header in the db. */
  at: number;
  flags: number;
  keyAt: number;
  key: Buffer;
  valueAt: number;
  value: Buffer;
}

interface BranchElement {
  index: number;
  at: number;
  key: Buffer;
  child: number;
}

/** A node's bytes start at its page; a leaf's key sits at (element address + pos). */
function leafElements(db: Buffer, nodeAt: number): LeafElement[] {
  const count = db.readUInt16LE(nodeAt + 10);
  return Array.from({ length: count }, (_, index) => {
    const at = nodeAt + PAGE_HEADER + index * ELEMENT;
    const keyAt = at + db.readUInt32LE(at + 4);
    const ksize = db.readUInt32LE(at + 8);
    const vsize = db.readUInt32LE(at + 12);
    return {
      index,
      at,
      flags: db.readUInt32LE(at),
      keyAt,
      key: db.subarray(keyAt, keyAt + ksize),
      valueAt: keyAt + ksize,
      value: db.subarray(keyAt + ksize, keyAt + ksize + vsize),
    };
  });
}

function branchElements(db: Buffer, nodeAt: number): BranchElement[] {
  const count = db.readUInt16LE(nodeAt + 10);
  return Array.from({ length: count }, (_, index) => {
    const at = nodeAt + PAGE_HEADER + index * ELEMENT;
    const keyAt = at + db.readUInt32LE(at);
    return {
      index,
      at,
      key: db.subarray(keyAt, keyAt + db.readUInt32LE(at + 4)),
      child: Number(db.readBigUInt64LE(at + 8)),
    };
  });
}

export interface BucketPages {
  name: string;
  /** 0 for an inline bucket. */
  root: number;
  /** Pages in key order. */
  branches: number[];
  leaves: number[];
  /** Page → its overflow count. */
  overflow: Map<number, number>;
}

export interface BoltLayout {
  pageSize: number;
  pages: number;
  /** The meta page in use (the higher txid). */
  meta: 0 | 1;
  root: number;
  freelist: number | undefined;
  /** The root bucket's own pages, then each top-level bucket's. */
  rootBucket: BucketPages;
  buckets: BucketPages[];
  /** Every page in use: metas, freelist, every bucket's pages with their overflow. */
  reachable: Set<number>;
}

function bucketPages(db: Buffer, pageSize: number, name: string, root: number): BucketPages {
  const result: BucketPages = { name, root, branches: [], leaves: [], overflow: new Map() };
  if (root === 0) return result;
  const visit = (pgid: number): void => {
    const at = pgid * pageSize;
    const flags = db.readUInt16LE(at + 8);
    result.overflow.set(pgid, db.readUInt32LE(at + 12));
    if (flags === BRANCH) {
      result.branches.push(pgid);
      for (const e of branchElements(db, at)) visit(e.child);
    } else if (flags === LEAF) {
      result.leaves.push(pgid);
    } else {
      throw new Error(`bucket ${name}: page ${pgid} has flags ${flags}: the snapshot is not valid to begin with`);
    }
  };
  visit(root);
  return result;
}

/** Reads the layout of a valid database (no trailer). Top-level buckets only: etcd nests none. */
export function boltLayout(db: Buffer): BoltLayout {
  const pageSize = db.readUInt32LE(PAGE_HEADER + 8);
  const metas = [readMeta(db, 0, pageSize), readMeta(db, 1, pageSize)] as const;
  const meta = metas[1].txid > metas[0].txid ? 1 : 0;
  const { root, freelist, pages } = metas[meta];
  const rootBucket = bucketPages(db, pageSize, '', root);
  const buckets = rootBucket.leaves.flatMap((leaf) =>
    leafElements(db, leaf * pageSize).map((e) =>
      bucketPages(db, pageSize, e.key.toString('utf8'), Number(e.value.readBigUInt64LE(0))),
    ),
  );
  const reachable = new Set<number>([0, 1]);
  const freelistPage = freelist === NO_FREELIST ? undefined : Number(freelist);
  if (freelistPage !== undefined)
    for (let p = freelistPage; p <= freelistPage + db.readUInt32LE(freelistPage * pageSize + 12); p++) reachable.add(p);
  for (const bucket of [rootBucket, ...buckets]) {
    for (const [page, overflow] of bucket.overflow) for (let p = page; p <= page + overflow; p++) reachable.add(p);
  }
  return { pageSize, pages, meta, root, freelist: freelistPage, rootBucket, buckets, reachable };
}

/** The pages below the high-water mark that no tree uses (stale or free). */
export function unreachablePages(db: Buffer): number[] {
  const layout = boltLayout(db);
  const free: number[] = [];
  for (let p = 0; p < layout.pages; p++) if (!layout.reachable.has(p)) free.push(p);
  return free;
}

function keyBucket(layout: BoltLayout): BucketPages {
  const bucket = layout.buckets.find((b) => b.name === 'key');
  if (!bucket) throw new Error('the snapshot has no "key" bucket');
  if (bucket.root === 0) throw new Error('the "key" bucket is inline: put some keys into etcd first');
  return bucket;
}

/**
 * A damaged copy of a valid snapshot (db || trailer), with the trailer recomputed so that sha256 checks pass and
 * only the bbolt structure is wrong. The snapshot must have a few hundred keys (the "key" bucket needs a branch).
 */
export function damageSnapshot(snapshot: Buffer, kind: DamageKind): Buffer {
  const db = databaseOf(snapshot);
  const layout = boltLayout(db);
  const ps = layout.pageSize;
  switch (kind) {
    case 'branch-child': {
      const branch = keyBucket(layout).branches[0];
      if (branch === undefined) throw new Error('the "key" bucket has no branch page: put more keys into etcd first');
      const [first, second] = branchElements(db, branch * ps);
      if (!first || !second) throw new Error(`branch page ${branch} has fewer than 2 elements`);
      db.writeBigUInt64LE(BigInt(second.child), first.at + 8);
      break;
    }
    case 'leaf-page-id': {
      const leaf = keyBucket(layout).leaves[0]!;
      db.writeBigUInt64LE(BigInt(leaf + 1), leaf * ps);
      break;
    }
    case 'key-order': {
      const leaf = keyBucket(layout).leaves.find((p) => db.readUInt16LE(p * ps + 10) >= 3);
      if (leaf === undefined) throw new Error('no "key" leaf has 3 elements');
      // Elements 1 and 2, so that the leaf's first key (which its parent names) stays.
      const [, a, b] = leafElements(db, leaf * ps);
      if (a!.key.length !== b!.key.length) throw new Error('keys of different sizes');
      const keyA = Buffer.from(a!.key);
      b!.key.copy(db, a!.keyAt);
      keyA.copy(db, b!.keyAt);
      break;
    }
    case 'element-bounds': {
      const leaf = keyBucket(layout).leaves[0]!;
      const elements = leafElements(db, leaf * ps);
      const last = elements[elements.length - 1]!;
      const overflow = db.readUInt32LE(leaf * ps + 12);
      db.writeUInt32LE(db.readUInt32LE(last.at + 4) + (overflow + 1) * ps, last.at + 4);
      break;
    }
    case 'meta-checksums':
      for (const slot of [0, 1]) db[slot * ps + PAGE_HEADER + 56]! ^= 0x01;
      break;
    case 'truncated-pages':
      return withRecomputedTrailer(db.subarray(0, db.length - 2 * ps));
    case 'missing-key-bucket': {
      const entry = layout.rootBucket.leaves
        .flatMap((leaf) => leafElements(db, leaf * ps))
        .find((e) => e.key.toString('utf8') === 'key');
      if (!entry) throw new Error('the snapshot has no "key" bucket');
      db[entry.keyAt + 2] = 'z'.charCodeAt(0); // "kez" still sorts between "cluster" and "lease"
      break;
    }
  }
  return withRecomputedTrailer(db);
}

/**
 * A copy of a valid database (no trailer) as bbolt writes it with the freelist synced (etcd turns that off): a
 * freelist page appended after the last page, listing the unreachable pages, with both metas pointing to it.
 * `edit` may change the listed ids, to make the freelist wrong; `wideCount` writes the count the way bbolt does for
 * 65535 ids or more, whatever their number.
 */
export function withSyncedFreelist(
  db: Buffer,
  edit: (ids: number[]) => number[] = (ids) => ids,
  options: { wideCount?: boolean } = {},
): Buffer {
  const layout = boltLayout(db);
  if (layout.freelist !== undefined) throw new Error('the database already has a freelist');
  const ps = layout.pageSize;
  const ids = edit(unreachablePages(db));
  // Past 0xfffe ids the count no longer fits the header: 0xffff there, and the count first, as a u64.
  const wide = ids.length >= 0xffff || options.wideCount === true;
  const bytes = PAGE_HEADER + (ids.length + (wide ? 1 : 0)) * 8;
  const pages = Math.ceil(bytes / ps);
  const at = layout.pages;
  const out = Buffer.alloc((layout.pages + pages) * ps);
  db.copy(out, 0, 0, layout.pages * ps);
  const page = at * ps;
  out.writeBigUInt64LE(BigInt(at), page);
  out.writeUInt16LE(FREELIST, page + 8);
  out.writeUInt16LE(wide ? 0xffff : ids.length, page + 10);
  out.writeUInt32LE(pages - 1, page + 12);
  let o = page + PAGE_HEADER;
  if (wide) {
    out.writeBigUInt64LE(BigInt(ids.length), o);
    o += 8;
  }
  for (const id of ids) {
    out.writeBigUInt64LE(BigInt(id), o);
    o += 8;
  }
  for (const slot of [0, 1]) {
    const m = slot * ps + PAGE_HEADER;
    out.writeBigUInt64LE(BigInt(at), m + 32);
    out.writeBigUInt64LE(BigInt(layout.pages + pages), m + 40);
  }
  rewriteMetaChecksums(out, ps);
  return out;
}
