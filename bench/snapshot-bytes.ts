// The pipeline benchmark's synthetic etcd snapshot: a database of N × 4096 bytes followed by its SHA-256 (32 bytes),
// so size % 512 == 32 and the trailer verifies, like a real one. The database is the AES-128-CTR keystream of a fixed
// key: the same bytes in every process (the Talos double's and the S3-only upload's), not compressible at all, and
// generated at GB/s, so making the bytes never costs more than a small fraction of moving them.
//
// Layout 'bolt' (the runs with VERIFY=true, whose read-back checks the bbolt structure: src/job/etcd/bolt-check.ts) lays
// the same keystream out as a valid etcd bbolt database: meta pages 0 and 1, the freelist at page 2, the root bucket
// at page 3 holding the bucket "key", whose B+tree has one revision per 4 KiB leaf page (a 17-byte revision key and a
// 4047-byte value of keystream) under branch pages of up to 123 children. 98.8% of its bytes are still keystream:
// as incompressible as 'random', with a database that `verify` can read in full (etcd's real values are protobuf
// and compress several-fold; this is the worst case for compression).

import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';

export const MIB = 1024 * 1024;
export const TRAILER_BYTES = 32;

const KEY = Buffer.from('talos-etcd-bench', 'latin1'); // 16 bytes: AES-128
const IV = Buffer.alloc(16);

export interface SnapshotFacts {
  /** Bytes of the whole snapshot, trailer included. */
  size: number;
  /** SHA-256 of the whole snapshot (what the stored object hashes to). */
  sha256: string;
  /** SHA-256 of the database: the trailer. */
  etcdSha256: string;
  /** Layout 'bolt' only: what a full read-back reports about the database (the "key" bucket). */
  bolt?: { keys: number; revision: number };
}

/** 'random': keystream only (not a bolt database); 'bolt': the keystream inside a valid etcd bbolt database. */
export type DatabaseLayout = 'random' | 'bolt';

function checkDatabaseBytes(dbBytes: number): void {
  if (!Number.isSafeInteger(dbBytes) || dbBytes <= 0 || dbBytes % 4096 !== 0) {
    throw new RangeError(`the synthetic database must be a positive multiple of 4096 bytes, got ${dbBytes}`);
  }
}

// --- layout 'bolt' (bbolt's on-disk format, 64-bit little-endian; see src/job/etcd/bolt-check.ts) ------------------

const PAGE = 4096;
const PAGE_HEADER = 16;
const ELEMENT = 16;
const REVISION_KEY = 17; // 8-byte big-endian main revision, '_', 8-byte big-endian sub revision
const LEAF_VALUE = PAGE - PAGE_HEADER - ELEMENT - REVISION_KEY;
/** Children per branch page: a 16-byte element and a 17-byte key each. */
const FANOUT = Math.floor((PAGE - PAGE_HEADER) / (ELEMENT + REVISION_KEY));
const FLAG_BRANCH = 0x01;
const FLAG_LEAF = 0x02;
const FLAG_META = 0x04;
const FLAG_FREELIST = 0x10;
const FIRST_TREE_PAGE = 4;
/** Main revision of the first leaf's key (etcd's revisions start at 1). */
const FIRST_REVISION = 2;

interface BoltPlan {
  pages: number;
  leaves: number;
  /** Branch levels from the leaves up: first page and node count of each. */
  levels: { first: number; count: number }[];
  /** Pages left over after the tree: free (listed in the freelist), keystream inside. */
  free: number[];
  /** The "key" bucket's root page. */
  treeRoot: number;
}

function branchPages(leaves: number): number {
  let total = 0;
  for (let n = leaves; n > 1;) {
    n = Math.ceil(n / FANOUT);
    total += n;
  }
  return total;
}

/** The most leaves (with their branch pages) that fit the database, the rest free. */
function planBolt(pages: number): BoltPlan {
  if (pages < FIRST_TREE_PAGE + 1)
    throw new RangeError(`a bolt-layout database needs at least ${FIRST_TREE_PAGE + 1} pages, got ${pages}`);
  const room = pages - FIRST_TREE_PAGE;
  let leaves = room - branchPages(room);
  while (leaves + 1 + branchPages(leaves + 1) <= room) leaves += 1;
  const levels: BoltPlan['levels'] = [];
  let next = FIRST_TREE_PAGE + leaves;
  for (let n = leaves; n > 1;) {
    n = Math.ceil(n / FANOUT);
    levels.push({ first: next, count: n });
    next += n;
  }
  const free: number[] = [];
  for (let p = next; p < pages; p++) free.push(p);
  // The freelist lists ids after its 16-byte header in one page.
  if (free.length > (PAGE - PAGE_HEADER) / 8)
    throw new Error(`bolt layout: ${free.length} free pages do not fit one freelist page`);
  const treeRoot = levels.length > 0 ? levels.at(-1)!.first : FIRST_TREE_PAGE;
  return { pages, leaves, levels, free, treeRoot };
}

function pageHeader(page: Buffer, id: number, flags: number, count: number): void {
  page.writeBigUInt64LE(BigInt(id), 0);
  page.writeUInt16LE(flags, 8);
  page.writeUInt16LE(count, 10);
  page.writeUInt32LE(0, 12); // overflow
}

function writeRevisionKey(page: Buffer, at: number, main: number): void {
  page.writeBigUInt64BE(BigInt(main), at);
  page[at + 8] = 0x5f;
  page.writeBigUInt64BE(0n, at + 9);
}

function fnv1a64(bytes: Buffer): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of bytes) h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h;
}

/** Overwrites the page-sized `page` (page number `id`) with its structure; leaf values keep the keystream. */
function layOutPage(plan: BoltPlan, id: number, page: Buffer): void {
  const leaf = id - FIRST_TREE_PAGE;
  if (leaf >= 0 && leaf < plan.leaves) {
    pageHeader(page, id, FLAG_LEAF, 1);
    page.writeUInt32LE(0, PAGE_HEADER); // element flags: a plain entry
    page.writeUInt32LE(ELEMENT, PAGE_HEADER + 4); // pos, from the element: the key follows the element
    page.writeUInt32LE(REVISION_KEY, PAGE_HEADER + 8);
    page.writeUInt32LE(LEAF_VALUE, PAGE_HEADER + 12);
    writeRevisionKey(page, PAGE_HEADER + ELEMENT, FIRST_REVISION + leaf);
    return;
  }
  if (plan.free.includes(id)) return; // stale bytes, like a real free page
  page.fill(0);
  if (id === 0 || id === 1) {
    pageHeader(page, id, FLAG_META, 0);
    const m = PAGE_HEADER;
    page.writeUInt32LE(0xed0cdaed, m); // magic
    page.writeUInt32LE(2, m + 4); // version
    page.writeUInt32LE(PAGE, m + 8);
    page.writeUInt32LE(0, m + 12); // flags
    page.writeBigUInt64LE(3n, m + 16); // root bucket: page 3, sequence 0
    page.writeBigUInt64LE(0n, m + 24);
    page.writeBigUInt64LE(2n, m + 32); // freelist
    page.writeBigUInt64LE(BigInt(plan.pages), m + 40); // high-water mark
    page.writeBigUInt64LE(BigInt(id + 1), m + 48); // txid
    page.writeBigUInt64LE(fnv1a64(page.subarray(m, m + 56)), m + 56);
  } else if (id === 2) {
    pageHeader(page, id, FLAG_FREELIST, plan.free.length);
    plan.free.forEach((free, index) => page.writeBigUInt64LE(BigInt(free), PAGE_HEADER + index * 8));
  } else if (id === 3) {
    // The root bucket: one element, the bucket "key" ({root pgid, sequence}).
    pageHeader(page, id, FLAG_LEAF, 1);
    page.writeUInt32LE(1, PAGE_HEADER); // bucket
    page.writeUInt32LE(ELEMENT, PAGE_HEADER + 4);
    page.writeUInt32LE(3, PAGE_HEADER + 8);
    page.writeUInt32LE(16, PAGE_HEADER + 12);
    page.write('key', PAGE_HEADER + ELEMENT, 'latin1');
    page.writeBigUInt64LE(BigInt(plan.treeRoot), PAGE_HEADER + ELEMENT + 3);
  } else {
    let below = 1; // leaves under one node of the level below
    for (let k = 0; k < plan.levels.length; k++, below *= FANOUT) {
      const level = plan.levels[k]!;
      const node = id - level.first;
      if (node < 0 || node >= level.count) continue;
      const children = k === 0 ? { first: FIRST_TREE_PAGE, count: plan.leaves } : plan.levels[k - 1]!;
      const firstChild = node * FANOUT;
      const count = Math.min(FANOUT, children.count - firstChild);
      pageHeader(page, id, FLAG_BRANCH, count);
      const dataStart = PAGE_HEADER + count * ELEMENT;
      for (let e = 0; e < count; e++) {
        const element = PAGE_HEADER + e * ELEMENT;
        const keyAt = dataStart + e * REVISION_KEY;
        page.writeUInt32LE(keyAt - element, element); // pos
        page.writeUInt32LE(REVISION_KEY, element + 4);
        page.writeBigUInt64LE(BigInt(children.first + firstChild + e), element + 8);
        // A branch element's key is its child's first key: that of the first leaf under it.
        writeRevisionKey(page, keyAt, FIRST_REVISION + (firstChild + e) * below);
      }
      return;
    }
    throw new Error(`bolt layout: page ${id} has no role`);
  }
}

/** What a full read-back of a 'bolt' database reports: revisions in the "key" bucket and the last main revision. */
export function boltFacts(dbBytes: number): { keys: number; revision: number } {
  const plan = planBolt(dbBytes / PAGE);
  return { keys: plan.leaves, revision: FIRST_REVISION + plan.leaves - 1 };
}

/** The database's bytes in chunks of `chunkBytes` (the last may be shorter); each chunk is a fresh Buffer. */
export function* databaseChunks(
  dbBytes: number,
  chunkBytes = MIB,
  layout: DatabaseLayout = 'random',
): Generator<Buffer> {
  checkDatabaseBytes(dbBytes);
  const cipher = createCipheriv('aes-128-ctr', KEY, IV);
  const zeros = Buffer.alloc(chunkBytes);
  if (layout === 'random') {
    for (let at = 0; at < dbBytes; at += chunkBytes)
      yield cipher.update(zeros.subarray(0, Math.min(chunkBytes, dbBytes - at)));
    return;
  }
  if (chunkBytes % PAGE !== 0)
    throw new RangeError(`layout 'bolt' needs chunks of whole ${PAGE}-byte pages, got ${chunkBytes}`);
  const plan = planBolt(dbBytes / PAGE);
  for (let at = 0; at < dbBytes; at += chunkBytes) {
    const chunk = cipher.update(zeros.subarray(0, Math.min(chunkBytes, dbBytes - at)));
    for (let offset = 0; offset < chunk.length; offset += PAGE)
      layOutPage(plan, (at + offset) / PAGE, chunk.subarray(offset, offset + PAGE));
    yield chunk;
  }
}

/** The whole snapshot in one Buffer (for the Talos double), with its hashes. */
export function buildSnapshot(
  dbBytes: number,
  layout: DatabaseLayout = 'random',
): { buffer: Buffer; facts: SnapshotFacts } {
  const buffer = Buffer.allocUnsafe(dbBytes + TRAILER_BYTES);
  const database = createHash('sha256');
  let at = 0;
  for (const chunk of databaseChunks(dbBytes, MIB, layout)) {
    chunk.copy(buffer, at);
    database.update(chunk);
    at += chunk.length;
  }
  const trailer = database.digest();
  trailer.copy(buffer, dbBytes);
  const sha256 = createHash('sha256').update(buffer).digest('hex');
  return {
    buffer,
    facts: {
      size: buffer.length,
      sha256,
      etcdSha256: trailer.toString('hex'),
      ...(layout === 'bolt' && { bolt: boltFacts(dbBytes) }),
    },
  };
}

/**
 * The same snapshot as a stream, generated on the fly (no disk, no whole copy in memory), in chunks of `chunkBytes`
 * like a file stream's. The trailer is given (the double reports it) so this does not hash.
 */
export function snapshotStream(dbBytes: number, etcdSha256: string, chunkBytes = 64 * 1024): Readable {
  const trailer = Buffer.from(etcdSha256, 'hex');
  if (trailer.length !== TRAILER_BYTES)
    throw new Error(`etcdSha256 must be 32 bytes of hex, got ${JSON.stringify(etcdSha256)}`);
  return Readable.from(
    (function* () {
      yield* databaseChunks(dbBytes, chunkBytes);
      yield trailer;
    })(),
    { objectMode: false },
  );
}

/**
 * A 'random' snapshot larger than one Buffer should hold (the 8 GiB run: etcd's largest quota), as segments for the
 * Talos double: one keystream block of `blockBytes`, repeated, then the trailer. Memory stays `blockBytes`; the
 * hashes are of the whole snapshot. Its bytes differ from snapshotStream's past the first block: only the CLI (which
 * reads them from the double) runs at these sizes.
 */
export function buildRepeatedSnapshot(
  dbBytes: number,
  blockBytes: number,
): { segments: Buffer[]; facts: SnapshotFacts } {
  checkDatabaseBytes(dbBytes);
  checkDatabaseBytes(blockBytes);
  if (dbBytes % blockBytes !== 0)
    throw new RangeError(`${dbBytes} database bytes are not a whole number of ${blockBytes}-byte blocks`);
  const block = buildSnapshot(blockBytes).buffer.subarray(0, blockBytes);
  const database = createHash('sha256');
  const whole = createHash('sha256');
  const segments: Buffer[] = [];
  for (let at = 0; at < dbBytes; at += blockBytes) {
    database.update(block);
    whole.update(block);
    segments.push(block);
  }
  const trailer = database.digest();
  segments.push(trailer);
  return {
    segments,
    facts: {
      size: dbBytes + TRAILER_BYTES,
      sha256: whole.update(trailer).digest('hex'),
      etcdSha256: trailer.toString('hex'),
    },
  };
}
