// A streaming structural check of the bbolt database inside an etcd snapshot, without etcd and without holding
// the database: what `bbolt check` (tx.Check) proves, plus the etcd facts `etcdctl snapshot status` reports.
//
// Pages arrive in file order, children before or after their parents, and free pages still hold stale nodes
// (which may claim overflow over live pages). So every page-sized block is parsed as a candidate node on its own
// and summarised in a few typed arrays (42 bytes a page, plus 12 per branch element); multi-page nodes are
// assembled in one sliding window, capped by maxNodeBytes. After the last byte the tree is walked from the meta
// page's root bucket over those summaries: only then is it known which candidates are live.
//
// Layout (64-bit little-endian): page header {id u64, flags u16, count u16, overflow u32}; meta at byte 16 of
// pages 0 and 1 {magic, version, pageSize, flags u32; root {pgid, sequence} u64; freelist, pgid, txid, checksum
// u64}; branch element {pos, ksize u32, pgid u64}; leaf element {flags, pos, ksize, vsize u32}, key at the
// element's address + pos and the value right after it; a bucket value is {root pgid, sequence u64} and, when
// root is 0, an inline leaf page.

export class BoltStructureError extends Error {
  override name = 'BoltStructureError';
}

export interface BoltSummary {
  pageSize: number;
  /** The meta page's high-water mark (pages in the database). */
  pages: number;
  txid: number;
  /** Top-level bucket names, sorted as bbolt sorts them (bytewise). */
  buckets: string[];
  /** Entries in the "key" bucket (etcd's MVCC revisions). */
  keys: number;
  /** Entries across all top-level buckets: what `etcdctl snapshot status` calls totalKey. */
  totalKeys: number;
  /** Main revision of the last key in the "key" bucket (etcdctl's `revision`); 0 when empty. */
  revision: number;
  /** etcdctl's `hash`: CRC-32C over each top-level bucket's name, then its keys and values, in bbolt's order. */
  hash: number;
}

export interface BoltCheckOptions {
  /** Largest multi-page node assembled in memory (default 64 MiB). */
  maxNodeBytes?: number;
}

const PAGE_HEADER = 16;
const ELEMENT = 16;
const BUCKET_HEADER = 16;
const META_CHECKSUMMED = 56; // meta bytes before the checksum
const META_END = PAGE_HEADER + META_CHECKSUMMED + 8;

const BRANCH = 0x01;
const LEAF = 0x02;
const META = 0x04;
const FREELIST = 0x10;
const BUCKET_ELEMENT = 0x01;

const MAGIC = 0xed0cdaed;
const VERSION = 2;
const MIN_PAGE_SIZE = 512;
const MAX_PAGE_SIZE = 65536;
const TWO_32 = 2 ** 32;
const DEFAULT_MAX_NODE_BYTES = 64 * 1024 * 1024;
/** Bytes copied into the window at a time, so one huge chunk does not grow it. */
const FEED_SLICE = 1024 * 1024;

// Per-page node state.
const NODE_NONE = 0;
const NODE_OK = 1;
const NODE_BAD = 2;
const NODE_OVERSIZE = 3;
const NODE_PAST_END = 4;
const NODE_PENDING = 5;

// Per-page marks.
const REACHED = 0x01;
const FREE = 0x02;
/** Every key is an etcd revision: 8-byte main, '_', 8-byte sub, and an optional tombstone 't'. */
const REVISION_KEYS = 0x04;
/** A leaf with at least one plain (non-bucket) entry. */
const PLAIN_ENTRIES = 0x08;
/** The page header's id has bits above the low 32 (only its low word is kept). */
const ID_HIGH = 0x10;

interface Meta {
  reason: string | undefined; // why it is invalid
  pageSize: number;
  root: number;
  freelist: number | undefined; // undefined: no freelist (NoFreelistSync)
  pages: number;
  txid: number;
}

interface BucketRef {
  name: Uint8Array;
  /** Root page; 0 for an inline bucket. */
  root: number;
  inline: NodeFacts | undefined;
}

/** What one node (a page's or an inline bucket's) says about itself. */
interface NodeFacts {
  error: string | undefined;
  count: number;
  firstHash: number;
  firstHi: number;
  firstLo: number;
  lastHi: number;
  lastLo: number;
  crc: number;
  crcLen: number;
  marks: number;
  buckets: BucketRef[] | undefined;
}

function newFacts(): NodeFacts {
  return {
    error: undefined,
    count: 0,
    firstHash: 0,
    firstHi: 0,
    firstLo: 0,
    lastHi: 0,
    lastLo: 0,
    crc: 0,
    crcLen: 0,
    marks: 0,
    buckets: undefined,
  };
}

/** One summary per page, grown as pages arrive (never from the meta's claim alone). */
class PageTable {
  capacity = 0;
  idLo = new Uint32Array(0);
  flags = new Uint16Array(0);
  count = new Uint16Array(0);
  overflow = new Uint32Array(0);
  state = new Uint8Array(0);
  marks = new Uint8Array(0);
  firstHash = new Uint32Array(0);
  // First 8 bytes of the first and last keys (big-endian, zero-padded): enough to order neighbouring leaves.
  firstHi = new Uint32Array(0);
  firstLo = new Uint32Array(0);
  lastHi = new Uint32Array(0);
  lastLo = new Uint32Array(0);
  /** A leaf's CRC-32C of its entries; a branch's first element in the edge pool. */
  crcOrEdges = new Uint32Array(0);
  crcLen = new Uint32Array(0);

  ensure(pages: number, limit: number): void {
    if (pages <= this.capacity) return;
    const capacity = Math.min(limit, Math.max(pages, 1024, this.capacity * 2));
    const grow = <T extends Uint8Array | Uint16Array | Uint32Array>(old: T, make: (n: number) => T): T => {
      const next = make(capacity);
      next.set(old);
      return next;
    };
    const u32 = (n: number) => new Uint32Array(n);
    this.idLo = grow(this.idLo, u32);
    this.flags = grow(this.flags, (n) => new Uint16Array(n));
    this.count = grow(this.count, (n) => new Uint16Array(n));
    this.overflow = grow(this.overflow, u32);
    this.state = grow(this.state, (n) => new Uint8Array(n));
    this.marks = grow(this.marks, (n) => new Uint8Array(n));
    this.firstHash = grow(this.firstHash, u32);
    this.firstHi = grow(this.firstHi, u32);
    this.firstLo = grow(this.firstLo, u32);
    this.lastHi = grow(this.lastHi, u32);
    this.lastLo = grow(this.lastLo, u32);
    this.crcOrEdges = grow(this.crcOrEdges, u32);
    this.crcLen = grow(this.crcLen, u32);
    this.capacity = capacity;
  }
}

/** Branch elements of every candidate branch: child pgid and a hash of the element's key. */
class EdgePool {
  length = 0;
  child = new Float64Array(1024);
  keyHash = new Uint32Array(1024);

  push(child: number, keyHash: number): void {
    if (this.length === this.child.length) {
      const child2 = new Float64Array(this.length * 2);
      child2.set(this.child);
      this.child = child2;
      const hash2 = new Uint32Array(this.length * 2);
      hash2.set(this.keyHash);
      this.keyHash = hash2;
    }
    this.child[this.length] = child;
    this.keyHash[this.length] = keyHash;
    this.length += 1;
  }
}

/** Growable list of numbers (free page ids). */
class NumberList {
  length = 0;
  items = new Float64Array(256);
  push(n: number): void {
    if (this.length === this.items.length) {
      const next = new Float64Array(this.length * 2);
      next.set(this.items);
      this.items = next;
    }
    this.items[this.length] = n;
    this.length += 1;
  }
}

interface FreelistScan {
  page: number;
  pages: number;
  /** Node-relative byte range of the ids. */
  idsStart: number;
  idsEnd: number;
}

/**
 * Checks a bbolt database fed chunk by chunk (any sizes). `push` may throw early (no valid meta page, a broken
 * freelist); `finish` checks the whole and returns the summary. Only BoltStructureError escapes, for any input.
 */
export class BoltChecker {
  private readonly maxNodeBytes: number;
  private failure: BoltStructureError | undefined;
  private result: BoltSummary | undefined;

  // Before the page size is known: the first bytes, enough for both meta pages.
  private head: Uint8Array | undefined = new Uint8Array(MAX_PAGE_SIZE + META_END);
  private headLength = 0;
  /** Bytes the next meta decision needs (meta 0, then meta 1 where a page size puts it). */
  private headNeed = META_END;

  private meta: Meta | undefined;
  private pageSize = 0;
  private hwm = 0;

  // The window: stream bytes from windowStart, kept from the oldest node still being assembled (or the current page).
  private window = new Uint8Array(0);
  private view = new DataView(this.window.buffer);
  private windowStart = 0;
  private windowLength = 0;
  private received = 0;
  private nextPage = 0;

  // Multi-page candidates still being assembled: start pages in order, and by the page that completes them.
  private pendingStarts: number[] = [];
  private pendingHead = 0;
  private readonly pendingByEnd = new Map<number, number[]>();

  private table = new PageTable();
  private edges = new EdgePool();
  private errors = new Map<number, string>();
  private buckets = new Map<number, BucketRef[]>();
  private readonly facts = newFacts();

  private freelistScan: FreelistScan | undefined;
  private freelistPages = 0;
  private freeIds = new NumberList();

  constructor(options: BoltCheckOptions = {}) {
    const max = options.maxNodeBytes ?? DEFAULT_MAX_NODE_BYTES;
    if (!Number.isSafeInteger(max) || max < 1 || max > 2 ** 31)
      throw new RangeError(`maxNodeBytes must be an integer from 1 to 2^31, got ${max}`);
    this.maxNodeBytes = max;
  }

  /** Feeds the next database bytes. May throw BoltStructureError early (e.g. no valid meta page). */
  push(chunk: Uint8Array): void {
    if (this.result) throw new Error('BoltChecker.push() after finish()');
    if (this.failure) throw this.failure;
    try {
      this.feed(chunk);
    } catch (error) {
      throw this.fail(error);
    }
  }

  /** After the last byte: checks the whole and returns the summary, or throws BoltStructureError. */
  finish(): BoltSummary {
    if (this.result) return this.result;
    if (this.failure) throw this.failure;
    try {
      this.result = this.check();
      this.release();
      return this.result;
    } catch (error) {
      throw this.fail(error);
    }
  }

  /** Any other exception is a bug meeting malformed input: still a structure error, never a crash. */
  private fail(error: unknown): BoltStructureError {
    this.failure =
      error instanceof BoltStructureError
        ? error
        : new BoltStructureError(
            `internal error on malformed input (${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}): treat the database as damaged`,
          );
    this.release();
    return this.failure;
  }

  /** Drops what the check held: a caller may keep the checker (or its summary) long after. */
  private release(): void {
    this.head = undefined;
    this.window = new Uint8Array(0);
    this.view = new DataView(this.window.buffer);
    this.table = new PageTable();
    this.edges = new EdgePool();
    this.errors = new Map();
    this.buckets = new Map();
    this.freeIds = new NumberList();
    this.pendingStarts = [];
    this.pendingByEnd.clear();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Streaming

  private feed(chunk: Uint8Array): void {
    let data = chunk;
    if (!this.meta) {
      const head = this.head!;
      const take = Math.min(head.length - this.headLength, data.length);
      head.set(data.subarray(0, take), this.headLength);
      this.headLength += take;
      if (!this.decideMeta(false)) return;
      this.head = undefined;
      this.feedPages(head.subarray(0, this.headLength));
      data = data.subarray(take);
    }
    this.feedPages(data);
  }

  private feedPages(data: Uint8Array): void {
    const ps = this.pageSize;
    const end = this.hwm * ps;
    let at = 0;
    while (at < data.length) {
      // Bytes past the high-water mark (a copied db file) are counted, not kept.
      const wanted = Math.max(0, end - this.received);
      if (wanted === 0) {
        this.received += data.length - at;
        return;
      }
      const to = Math.min(data.length, at + FEED_SLICE, at + wanted);
      this.append(data, at, to);
      this.received += to - at;
      at = to;
      while ((this.nextPage + 1) * ps <= this.received) {
        this.page(this.nextPage, this.nextPage * ps - this.windowStart);
        this.nextPage += 1;
      }
    }
  }

  private append(data: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (this.windowLength + n > this.window.length) {
      const keepFrom = this.keepFrom();
      const drop = keepFrom - this.windowStart;
      const keep = this.windowLength - drop;
      if (keep + n > this.window.length) {
        // Never more than the largest node plus a slice: what a pending node can need.
        const cap = this.maxNodeBytes + FEED_SLICE + this.pageSize;
        const next = new Uint8Array(
          Math.max(keep + n, Math.min(cap, Math.max(this.window.length * 2, FEED_SLICE + this.pageSize))),
        );
        next.set(this.window.subarray(drop, this.windowLength));
        this.window = next;
        this.view = new DataView(next.buffer);
      } else {
        this.window.copyWithin(0, drop, this.windowLength);
      }
      this.windowStart = keepFrom;
      this.windowLength = keep;
    }
    this.window.set(data.subarray(from, to), this.windowLength);
    this.windowLength += n;
  }

  /** The first stream byte still needed: the oldest node being assembled, or the current page. */
  private keepFrom(): number {
    const starts = this.pendingStarts;
    while (this.pendingHead < starts.length && this.table.state[starts[this.pendingHead]!] !== NODE_PENDING)
      this.pendingHead += 1;
    if (this.pendingHead === starts.length) {
      this.pendingStarts = [];
      this.pendingHead = 0;
      return this.nextPage * this.pageSize;
    }
    return Math.min(starts[this.pendingHead]! * this.pageSize, this.nextPage * this.pageSize);
  }

  /** Summarises page i, whose bytes are at window offset `off`. */
  private page(i: number, off: number): void {
    const t = this.table;
    const v = this.view;
    t.ensure(i + 1, this.hwm);
    const flags = v.getUint16(off + 8, true);
    const overflow = v.getUint32(off + 12, true);
    t.idLo[i] = v.getUint32(off, true);
    t.marks[i] = v.getUint32(off + 4, true) === 0 ? 0 : ID_HIGH;
    t.flags[i] = flags;
    t.count[i] = v.getUint16(off + 10, true);
    t.overflow[i] = overflow;

    const scan = this.freelistScan;
    if (i === this.meta!.freelist) this.startFreelist(i, off);
    else if (scan && i > scan.page && i < scan.page + scan.pages) this.freelistIds(i, off);

    if (flags === BRANCH || flags === LEAF) {
      if (overflow === 0) this.node(i, off, this.pageSize);
      else if (i + overflow + 1 > this.hwm) t.state[i] = NODE_PAST_END;
      else if ((overflow + 1) * this.pageSize > this.maxNodeBytes) t.state[i] = NODE_OVERSIZE;
      else {
        t.state[i] = NODE_PENDING;
        this.pendingStarts.push(i);
        const end = i + overflow + 1;
        const list = this.pendingByEnd.get(end);
        if (list) list.push(i);
        else this.pendingByEnd.set(end, [i]);
      }
    }
    if (this.pendingByEnd.size > 0) {
      const done = this.pendingByEnd.get(i + 1);
      if (done) {
        this.pendingByEnd.delete(i + 1);
        for (const start of done)
          this.node(start, start * this.pageSize - this.windowStart, (i + 1 - start) * this.pageSize);
      }
    }
  }

  /** Parses the candidate node starting at page i (window offset `off`, `size` bytes) into the table. */
  private node(i: number, off: number, size: number): void {
    const t = this.table;
    const f = this.facts;
    const isBranch = t.flags[i] === BRANCH;
    const edgesBefore = this.edges.length;
    t.crcOrEdges[i] = edgesBefore;
    parseNode(this.window, this.view, off, size, isBranch, false, f, isBranch ? this.edges : undefined);
    if (f.error !== undefined) {
      t.state[i] = NODE_BAD;
      this.errors.set(i, f.error);
      this.edges.length = edgesBefore;
      return;
    }
    t.state[i] = NODE_OK;
    t.marks[i] = (t.marks[i]! & ID_HIGH) | f.marks;
    t.firstHash[i] = f.firstHash;
    t.firstHi[i] = f.firstHi;
    t.firstLo[i] = f.firstLo;
    t.lastHi[i] = f.lastHi;
    t.lastLo[i] = f.lastLo;
    if (!isBranch) t.crcOrEdges[i] = f.crc;
    t.crcLen[i] = f.crcLen;
    if (f.buckets) this.buckets.set(i, f.buckets);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Meta pages

  /** Picks the meta page once enough bytes are in (or at the end, with what there is). Throws if none is valid. */
  private decideMeta(final: boolean): boolean {
    const head = this.head!;
    const length = this.headLength;
    if (!final && length < this.headNeed) return false;
    this.headNeed = META_END;
    if (length < META_END) {
      if (!final) return false;
      throw new BoltStructureError(
        `the database is only ${length} bytes, too short for a meta page: not a bolt database`,
      );
    }
    const view = new DataView(head.buffer, head.byteOffset, length);
    const meta0 = readMeta(view, 0, 0, undefined);
    let meta1: Meta | undefined;
    let meta1Reason: string | undefined;
    if (meta0.reason === undefined) {
      const ps = meta0.pageSize;
      if (length < ps + META_END) {
        this.headNeed = ps + META_END;
        if (!final) return false;
        throw new BoltStructureError(
          `the database ends after ${length} bytes, before its second meta page (meta page 0 says it has ${meta0.pages} pages of ${ps} bytes): truncated`,
        );
      } else {
        meta1 = readMeta(view, ps, 1, ps);
      }
    } else {
      // Meta 0 cannot say the page size: meta 1 is found where its own page size puts it.
      for (let ps = MIN_PAGE_SIZE; ps <= MAX_PAGE_SIZE && !meta1; ps *= 2) {
        if (length < ps + META_END) {
          this.headNeed = ps + META_END;
          if (!final) return false;
          break;
        }
        const candidate = readMeta(view, ps, 1, ps);
        if (candidate.reason === undefined) meta1 = candidate;
      }
      if (!meta1) {
        const guess =
          meta0.pageSize >= MIN_PAGE_SIZE && meta0.pageSize <= MAX_PAGE_SIZE && isPowerOfTwo(meta0.pageSize)
            ? meta0.pageSize
            : 4096;
        meta1Reason =
          length >= guess + META_END ? readMeta(view, guess, 1, guess).reason : 'missing: the database ends before it';
      }
    }
    if (meta1 && meta1.reason !== undefined) {
      meta1Reason = meta1.reason;
      meta1 = undefined;
    }
    if (meta0.reason !== undefined && !meta1) {
      throw new BoltStructureError(
        `both meta pages are invalid (meta 0: ${meta0.reason}; meta 1: ${meta1Reason}): not a bolt database`,
      );
    }
    // bbolt would fall back to the other meta page, but a snapshot carries two good ones: one bad one is damage.
    if (meta0.reason !== undefined)
      throw new BoltStructureError(
        `meta page 0 is invalid (${meta0.reason}) although meta page 1 is valid: the database is damaged`,
      );
    if (!meta1)
      throw new BoltStructureError(
        `meta page 1 is invalid (${meta1Reason}) although meta page 0 is valid: the database is damaged`,
      );
    // bbolt uses the valid meta with the higher txid.
    const meta = meta1.txid > meta0.txid ? meta1 : meta0;
    const which = meta === meta1 ? 1 : 0;
    if (meta.pages < 3)
      throw new BoltStructureError(
        `meta page ${which} says the database has ${meta.pages} pages; a bolt database has at least 3`,
      );
    if (meta.root < 2 || meta.root >= meta.pages) {
      throw new BoltStructureError(
        `meta page ${which} puts the root bucket at page ${meta.root}, outside pages 2..${meta.pages - 1}`,
      );
    }
    if (meta.freelist !== undefined && (meta.freelist < 2 || meta.freelist >= meta.pages)) {
      throw new BoltStructureError(
        `meta page ${which} puts the freelist at page ${meta.freelist}, outside pages 2..${meta.pages - 1}`,
      );
    }
    this.meta = meta;
    this.pageSize = meta.pageSize;
    this.hwm = meta.pages;
    return true;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Freelist: streamed id by id (it can be larger than any node), applied at the end

  private startFreelist(i: number, off: number): void {
    const t = this.table;
    const v = this.view;
    const ps = this.pageSize;
    const id = u64(v.getUint32(off, true), v.getUint32(off + 4, true));
    if (id !== i) throw new BoltStructureError(`the freelist page ${i} has id ${id} in its header`);
    if (t.flags[i] !== FREELIST)
      throw new BoltStructureError(`the freelist page ${i} has flags ${flagsName(t.flags[i]!)}, not a freelist page`);
    const pages = t.overflow[i]! + 1;
    if (i + pages > this.hwm)
      throw new BoltStructureError(`the freelist page ${i} spans ${pages} pages, past the database's ${this.hwm}`);
    let count = t.count[i]!;
    let first = PAGE_HEADER;
    if (count === 0xffff) {
      // More ids than a u16 counts: the real count is the first u64.
      const lo = v.getUint32(off + PAGE_HEADER, true);
      const hi = v.getUint32(off + PAGE_HEADER + 4, true);
      count = u64(lo, hi);
      first += 8;
    }
    const end = first + count * 8;
    if (end > pages * ps)
      throw new BoltStructureError(
        `the freelist page ${i} lists ${count} ids, which need ${end} bytes, but it spans ${pages} pages (${pages * ps} bytes)`,
      );
    this.freelistPages = pages;
    this.freelistScan = { page: i, pages, idsStart: first, idsEnd: end };
    this.freelistIds(i, off);
  }

  private freelistIds(i: number, off: number): void {
    const scan = this.freelistScan!;
    const ps = this.pageSize;
    const pageStart = (i - scan.page) * ps;
    const from = Math.max(scan.idsStart, pageStart);
    const to = Math.min(scan.idsEnd, pageStart + ps);
    const v = this.view;
    for (let at = from; at < to; at += 8) {
      const o = off + at - pageStart;
      const lo = v.getUint32(o, true);
      const hi = v.getUint32(o + 4, true);
      const id = u64(lo, hi);
      if (id >= this.hwm)
        throw new BoltStructureError(
          `the freelist (page ${scan.page}) lists page ${id}, beyond the database's ${this.hwm} pages`,
        );
      if (id < 2) throw new BoltStructureError(`the freelist (page ${scan.page}) lists meta page ${id} as free`);
      this.freeIds.push(id);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // The whole

  private check(): BoltSummary {
    if (!this.meta) {
      const head = this.head!.subarray(0, this.headLength);
      this.decideMeta(true);
      this.head = undefined;
      this.feedPages(head);
    }
    const meta = this.meta!;
    const ps = this.pageSize;
    const hwm = this.hwm;
    if (this.nextPage < hwm) {
      const partial = this.received - this.nextPage * ps;
      throw new BoltStructureError(
        `the database ends after ${this.nextPage} pages${partial > 0 ? ` and ${partial} bytes` : ''} but its meta page says it has ${hwm}: truncated`,
      );
    }
    if (this.received % ps !== 0) {
      throw new BoltStructureError(
        `the database is ${this.received} bytes, not a whole number of ${ps}-byte pages: truncated, or not a bolt database`,
      );
    }
    const t = this.table;
    const marks = t.marks;

    // Free pages, then the pages that are in use without a tree: the metas and the freelist.
    for (let k = 0; k < this.freeIds.length; k++) {
      const id = this.freeIds.items[k]!;
      if (marks[id]! & FREE)
        throw new BoltStructureError(`the freelist (page ${meta.freelist}) lists page ${id} twice`);
      marks[id] = marks[id]! | FREE;
    }
    marks[0] = marks[0]! | REACHED;
    marks[1] = marks[1]! | REACHED;
    if (meta.freelist !== undefined) {
      for (let p = meta.freelist; p < meta.freelist + this.freelistPages; p++) {
        if (marks[p]! & FREE)
          throw new BoltStructureError(`page ${p} holds the freelist, but the freelist lists it as free`);
        marks[p] = marks[p]! | REACHED;
      }
    }

    // The root bucket holds the top-level buckets; each is walked and counted, nested buckets only checked.
    const root = this.walk(meta.root, 'the root bucket');
    const topLevel: { label: string; ref: BucketRef }[] = [];
    for (const ref of root.buckets) topLevel.push({ label: `bucket ${quote(ref.name)}`, ref });
    if (root.plainLeaf >= 0)
      throw new BoltStructureError(
        `leaf page ${root.plainLeaf} of the root bucket holds plain keys; only buckets belong there`,
      );

    let hash = 0;
    let totalKeys = 0;
    let keys = 0;
    let revision = 0;
    let hasKey = false;
    const nested: { label: string; ref: BucketRef }[] = [];
    for (const { label, ref } of topLevel) {
      hash = crc32c(
        hash,
        ref.name,
        new DataView(ref.name.buffer, ref.name.byteOffset, ref.name.length),
        0,
        ref.name.length,
      );
      const tally = this.bucket(label, ref);
      hash = tally.crcLen > 0 ? crc32cCombine(hash, tally.crc, tally.crcLen) : hash;
      totalKeys += tally.count;
      for (const child of tally.buckets) nested.push({ label: `${label}/${quote(child.name)}`, ref: child });
      if (ref.name.length === 3 && ref.name[0] === 0x6b && ref.name[1] === 0x65 && ref.name[2] === 0x79) {
        hasKey = true;
        keys = tally.count;
        if (tally.count > 0) {
          if (!(tally.marks & REVISION_KEYS)) {
            const where = tally.foreignLeaf >= 0 ? `leaf page ${tally.foreignLeaf}` : 'its inline page';
            throw new BoltStructureError(
              `${label} holds keys that are not etcd revisions (8-byte main revision, "_", 8-byte sub revision, optional "t"), in ${where}: not an etcd database`,
            );
          }
          revision = tally.lastHi * TWO_32 + tally.lastLo;
        }
      }
    }
    while (nested.length > 0) {
      const { label, ref } = nested.pop()!;
      const tally = this.bucket(label, ref);
      for (const child of tally.buckets) nested.push({ label: `${label}/${quote(child.name)}`, ref: child });
    }

    if (meta.freelist !== undefined) {
      let first = -1;
      let leaked = 0;
      for (let p = 0; p < hwm; p++) {
        if ((marks[p]! & (REACHED | FREE)) === 0) {
          if (first < 0) first = p;
          leaked += 1;
        }
      }
      if (first >= 0) {
        throw new BoltStructureError(
          `page ${first} is neither reachable nor free${leaked > 1 ? ` (${leaked} such pages)` : ''}: a tree lost a branch, or the freelist lost pages`,
        );
      }
    }
    if (!hasKey) {
      const names = topLevel.map((b) => quote(b.ref.name)).join(', ');
      throw new BoltStructureError(
        `the root bucket has no "key" bucket (it has ${names || 'none'}): not an etcd database`,
      );
    }
    return {
      pageSize: ps,
      pages: hwm,
      txid: meta.txid,
      buckets: topLevel.map((b) => text(b.ref.name)),
      keys,
      totalKeys,
      revision,
      hash,
    };
  }

  /** Walks one bucket (inline or paged); returns its entry count, CRC of its entries, last key and child buckets. */
  private bucket(label: string, ref: BucketRef): Tally {
    if (ref.inline) {
      const f = ref.inline;
      return {
        count: f.count,
        crc: f.crc,
        crcLen: f.crcLen,
        lastHi: f.lastHi,
        lastLo: f.lastLo,
        marks: f.count > 0 ? f.marks : REVISION_KEYS,
        foreignLeaf: -1,
        buckets: [],
        plainLeaf: -1,
      };
    }
    return this.walk(ref.root, label);
  }

  /** Depth-first, in key order, over the summaries of the pages under `root`. */
  private walk(root: number, label: string): Tally {
    const t = this.table;
    const hwm = this.hwm;
    const tally: Tally = {
      count: 0,
      crc: 0,
      crcLen: 0,
      lastHi: 0,
      lastLo: 0,
      marks: REVISION_KEYS,
      foreignLeaf: -1,
      buckets: [],
      plainLeaf: -1,
    };
    // The stack: page, depth, the key hash the parent expects (-1 for the root), parent page, element index.
    const stack: number[] = [root, 0, -1, -1, -1];
    let leafDepth = -1;
    let firstLeaf = -1;
    let prevLeaf = -1;
    let p = 0;
    let parent = 0;
    let element = 0;
    // Messages are built only when something is wrong: this loop runs once per page.
    const via = (): string => (parent < 0 ? `${label}'s root` : `branch page ${parent} element ${element} (${label})`);
    const at = (): string => `page ${p} (reached from ${label})`;
    while (stack.length > 0) {
      element = stack.pop()!;
      parent = stack.pop()!;
      const expected = stack.pop()!;
      const depth = stack.pop()!;
      p = stack.pop()!;
      if (p >= hwm) throw new BoltStructureError(`${via()} points to page ${p}, beyond the database's ${hwm} pages`);
      if (p < 2) throw new BoltStructureError(`${via()} points to page ${p}, a meta page`);
      const marks = t.marks[p]!;
      if (marks & REACHED)
        throw new BoltStructureError(
          `${at()} is reached a second time (via ${via()}): the tree has a cycle or shares a page`,
        );
      if (marks & FREE) throw new BoltStructureError(`${at()} is listed in the freelist: it is both free and in use`);
      if (t.idLo[p] !== p || marks & ID_HIGH) {
        throw new BoltStructureError(
          `${at()} has id ${marks & ID_HIGH ? `2^32 or more (low 32 bits ${t.idLo[p]})` : t.idLo[p]} in its header`,
        );
      }
      const flags = t.flags[p]!;
      if (flags !== BRANCH && flags !== LEAF)
        throw new BoltStructureError(`${at()} has flags ${flagsName(flags)}, not a branch or leaf page`);
      const overflow = t.overflow[p]!;
      const nodeBytes = (overflow + 1) * this.pageSize;
      switch (t.state[p]) {
        case NODE_OK:
          break;
        case NODE_BAD:
          throw new BoltStructureError(`${at()} is malformed: ${this.errors.get(p)}`);
        case NODE_OVERSIZE:
          throw new BoltStructureError(
            `${at()} is a node of ${overflow + 1} pages (${nodeBytes} bytes), more than the ${this.maxNodeBytes} bytes the checker assembles (maxNodeBytes)`,
          );
        case NODE_PAST_END:
          throw new BoltStructureError(`${at()} claims ${overflow} overflow pages, past the database's ${hwm} pages`);
        default:
          throw new BoltStructureError(`${at()} was never parsed`);
      }
      t.marks[p] = marks | REACHED;
      for (let q = p + 1; q <= p + overflow; q++) {
        const m = t.marks[q]!;
        if (m & REACHED)
          throw new BoltStructureError(`page ${q}, overflow of ${at()}, is reached a second time: pages are shared`);
        if (m & FREE)
          throw new BoltStructureError(
            `page ${q}, overflow of ${at()}, is listed in the freelist: it is both free and in use`,
          );
        t.marks[q] = m | REACHED;
      }
      const count = t.count[p]!;
      if (expected >= 0) {
        if (count === 0) throw new BoltStructureError(`${at()} is empty, yet ${via()} points to it`);
        if (t.firstHash[p] !== expected)
          throw new BoltStructureError(
            `${via()} points to page ${p}, whose first key differs from the element's key: the branch points to the wrong page`,
          );
      }
      if (flags === BRANCH) {
        const start = t.crcOrEdges[p]!;
        for (let j = count - 1; j >= 0; j--)
          stack.push(this.edges.child[start + j]!, depth + 1, this.edges.keyHash[start + j]!, p, j);
        continue;
      }
      if (leafDepth < 0) {
        leafDepth = depth;
        firstLeaf = p;
      } else if (depth !== leafDepth) {
        throw new BoltStructureError(
          `${label} is unbalanced: leaf page ${p} is at depth ${depth} but leaf page ${firstLeaf} is at depth ${leafDepth}`,
        );
      }
      if (count === 0) continue;
      if (
        prevLeaf >= 0 &&
        (t.lastHi[prevLeaf]! > t.firstHi[p]! ||
          (t.lastHi[prevLeaf] === t.firstHi[p] && t.lastLo[prevLeaf]! > t.firstLo[p]!))
      ) {
        throw new BoltStructureError(
          `${label}: the last key of leaf page ${prevLeaf} sorts after the first key of the next leaf page ${p}`,
        );
      }
      prevLeaf = p;
      tally.count += count;
      if (t.crcLen[p]! > 0) {
        tally.crc = tally.crcLen > 0 ? crc32cCombine(tally.crc, t.crcOrEdges[p]!, t.crcLen[p]!) : t.crcOrEdges[p]!;
        tally.crcLen += t.crcLen[p]!;
      }
      tally.lastHi = t.lastHi[p]!;
      tally.lastLo = t.lastLo[p]!;
      if (!(t.marks[p]! & REVISION_KEYS) && tally.foreignLeaf < 0) {
        tally.foreignLeaf = p;
        tally.marks &= ~REVISION_KEYS;
      }
      if (t.marks[p]! & PLAIN_ENTRIES && tally.plainLeaf < 0) tally.plainLeaf = p;
      const refs = this.buckets.get(p);
      if (refs) for (const ref of refs) tally.buckets.push(ref);
    }
    return tally;
  }
}

interface Tally {
  count: number;
  crc: number;
  crcLen: number;
  lastHi: number;
  lastLo: number;
  marks: number;
  /** A leaf whose keys are not etcd revisions, or -1. */
  foreignLeaf: number;
  buckets: BucketRef[];
  /** A leaf with plain entries, or -1. */
  plainLeaf: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Nodes

/**
 * Parses a branch or leaf node of `size` bytes at `base`: element bounds, strictly increasing keys, the first
 * key's hash and both end keys' prefixes, and, for a leaf, the CRC of its entries and its bucket elements
 * (inline buckets parsed in full). Branch elements go to `edges`. Stops at the first fault, in `f.error`.
 */
function parseNode(
  buf: Uint8Array,
  v: DataView,
  base: number,
  size: number,
  isBranch: boolean,
  inline: boolean,
  f: NodeFacts,
  edges: EdgePool | undefined,
): void {
  f.error = undefined;
  f.buckets = undefined;
  f.crc = 0;
  f.crcLen = 0;
  f.firstHash = 0;
  f.firstHi = f.firstLo = f.lastHi = f.lastLo = 0;
  const count = v.getUint16(base + 10, true);
  f.count = count;
  const dataStart = PAGE_HEADER + count * ELEMENT;
  if (dataStart > size) {
    f.error = `its ${count} elements need ${dataStart} bytes, more than the node's ${size}`;
    return;
  }
  let dataEnd = dataStart;
  let marks = REVISION_KEYS;
  // The bytes etcdctl hashes (each key, and each value that is not a bucket) usually lie back to back, as bbolt
  // writes them: CRC whole runs of them rather than piece by piece.
  let crc = 0;
  let runStart = 0;
  let runEnd = 0;
  let prev = -1;
  let prevLength = 0;
  for (let j = 0; j < count; j++) {
    const e = base + PAGE_HEADER + j * ELEMENT;
    const elementFlags = isBranch ? 0 : v.getUint32(e, true);
    const pos = v.getUint32(e + (isBranch ? 0 : 4), true);
    const ksize = v.getUint32(e + (isBranch ? 4 : 8), true);
    const vsize = isBranch ? 0 : v.getUint32(e + 12, true);
    const keyAt = PAGE_HEADER + j * ELEMENT + pos;
    const keyEnd = keyAt + ksize;
    if (keyEnd > size) {
      f.error = `element ${j}'s key (bytes ${keyAt}..${keyEnd}) runs past the node's ${size} bytes`;
      return;
    }
    if (keyEnd + vsize > size) {
      f.error = `element ${j}'s value (bytes ${keyEnd}..${keyEnd + vsize}) runs past the node's ${size} bytes`;
      return;
    }
    // bbolt (node.write) lays keys and values out back to back, in element order, right after the elements.
    if (keyAt !== dataEnd) {
      f.error = `element ${j}'s key starts at byte ${keyAt}, but bbolt writes it right after ${j === 0 ? 'the element headers' : `element ${j - 1}'s ${isBranch ? 'key' : 'value'}`}, at byte ${dataEnd}`;
      return;
    }
    dataEnd = keyEnd + vsize;
    if (ksize === 0) {
      f.error = `element ${j} has an empty key`;
      return;
    }
    if (elementFlags & ~BUCKET_ELEMENT) {
      f.error = `element ${j} has flags 0x${elementFlags.toString(16)}; bbolt only writes 0x1 (bucket)`;
      return;
    }
    const k = base + keyAt;
    if (prev >= 0 && compareBytes(buf, prev, prevLength, k, ksize) >= 0) {
      f.error = `element ${j}'s key is not greater than element ${j - 1}'s: keys must be strictly increasing`;
      return;
    }
    const hash = isBranch || j === 0 ? fnv1a32(buf, k, ksize) : 0;
    if (j === 0) {
      f.firstHash = hash;
      f.firstHi = prefixWord(buf, k, ksize, 0);
      f.firstLo = prefixWord(buf, k, ksize, 4);
    }
    prev = k;
    prevLength = ksize;
    if (isBranch) {
      edges!.push(u64(v.getUint32(e + 8, true), v.getUint32(e + 12, true)), hash);
      continue;
    }
    if (!((ksize === 17 || (ksize === 18 && buf[k + 17] === 0x74)) && buf[k + 8] === 0x5f)) marks &= ~REVISION_KEYS;
    const hashedEnd = elementFlags & BUCKET_ELEMENT ? k + ksize : k + ksize + vsize;
    if (k !== runEnd) {
      crc = crc32c(crc, buf, v, runStart, runEnd);
      runStart = k;
    }
    runEnd = hashedEnd;
    f.crcLen += hashedEnd - k;
    if (!(elementFlags & BUCKET_ELEMENT)) {
      marks |= PLAIN_ENTRIES;
      continue;
    }
    // A bucket: its value is {root, sequence}, followed by the page of an inline bucket when root is 0.
    if (inline) {
      f.error = `element ${j} is a bucket inside an inline bucket, which bbolt never writes`;
      return;
    }
    const name = buf.slice(k, k + ksize);
    if (vsize < BUCKET_HEADER) {
      f.error = `element ${j} (bucket ${quote(name)}) has a ${vsize}-byte value, shorter than a bucket header (16)`;
      return;
    }
    const root = u64(v.getUint32(k + ksize, true), v.getUint32(k + ksize + 4, true));
    if (root !== 0 && vsize !== BUCKET_HEADER) {
      f.error = `element ${j} (bucket ${quote(name)}) has a ${vsize}-byte value; a bucket that is not inline has just its 16-byte header`;
      return;
    }
    let inlineFacts: NodeFacts | undefined;
    if (root === 0) {
      if (vsize < BUCKET_HEADER + PAGE_HEADER) {
        f.error = `element ${j} (inline bucket ${quote(name)}) has a ${vsize}-byte value, shorter than a bucket header and a page header (32)`;
        return;
      }
      const pageAt = k + ksize + BUCKET_HEADER;
      const pageFlags = v.getUint16(pageAt + 8, true);
      if (pageFlags !== LEAF) {
        f.error = `element ${j} (inline bucket ${quote(name)}) has page flags ${flagsName(pageFlags)}, not a leaf`;
        return;
      }
      inlineFacts = newFacts();
      parseNode(buf, v, pageAt, vsize - BUCKET_HEADER, false, true, inlineFacts, undefined);
      if (inlineFacts.error !== undefined) {
        f.error = `element ${j} (inline bucket ${quote(name)}): ${inlineFacts.error}`;
        return;
      }
    }
    (f.buckets ??= []).push({ name, root, inline: inlineFacts });
  }
  // An inline bucket's page is exactly as long as what it holds (a page's tail is unused, often stale, bytes).
  if (inline && dataEnd !== size) {
    f.error = `its page holds ${dataEnd} bytes, but the bucket's value leaves ${size} for it`;
    return;
  }
  if (prev >= 0) {
    f.lastHi = prefixWord(buf, prev, prevLength, 0);
    f.lastLo = prefixWord(buf, prev, prevLength, 4);
  }
  f.crc = crc32c(crc, buf, v, runStart, runEnd);
  f.marks = count > 0 ? marks : REVISION_KEYS;
}

/** Reads and validates the meta of page `slot` at `off`, as bbolt does (magic, version, checksum), plus sanity. */
function readMeta(v: DataView, off: number, slot: number, expectedPageSize: number | undefined): Meta {
  const m = off + PAGE_HEADER;
  const magic = v.getUint32(m, true);
  const version = v.getUint32(m + 4, true);
  const pageSize = v.getUint32(m + 8, true);
  const freelistLo = v.getUint32(m + 32, true);
  const freelistHi = v.getUint32(m + 36, true);
  const meta: Meta = {
    reason: undefined,
    pageSize,
    root: u64(v.getUint32(m + 16, true), v.getUint32(m + 20, true)),
    freelist: freelistLo === 0xffffffff && freelistHi === 0xffffffff ? undefined : u64(freelistLo, freelistHi),
    pages: u64(v.getUint32(m + 40, true), v.getUint32(m + 44, true)),
    txid: u64(v.getUint32(m + 48, true), v.getUint32(m + 52, true)),
  };
  const id = u64(v.getUint32(off, true), v.getUint32(off + 4, true));
  const flags = v.getUint16(off + 8, true);
  if (magic !== MAGIC) meta.reason = `bad magic 0x${hex32(magic)}`;
  else if (version !== VERSION) meta.reason = `version ${version}, not ${VERSION}`;
  else if (v.getBigUint64(m + META_CHECKSUMMED, true) !== fnv1a64(v, m, META_CHECKSUMMED)) meta.reason = 'bad checksum';
  else if (!isPowerOfTwo(pageSize) || pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE)
    meta.reason = `unsupported page size ${pageSize}`;
  else if (expectedPageSize !== undefined && pageSize !== expectedPageSize)
    meta.reason = `page size ${pageSize}, but it sits at byte ${expectedPageSize}`;
  else if (flags !== META) meta.reason = `page flags ${flagsName(flags)}, not meta`;
  else if (id !== slot) meta.reason = `page id ${id} in its header`;
  return meta;
}

// ---------------------------------------------------------------------------------------------------------------
// Bytes

function u64(lo: number, hi: number): number {
  return hi * TWO_32 + lo;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function flagsName(flags: number): string {
  const names: Record<number, string> = { [BRANCH]: 'branch', [LEAF]: 'leaf', [META]: 'meta', [FREELIST]: 'freelist' };
  const name = names[flags];
  return `0x${flags.toString(16).padStart(4, '0')}${name ? ` (${name})` : ''}`;
}

const decoder = new TextDecoder('utf-8');

function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** A name for messages: JSON-quoted, long ones cut. */
function quote(bytes: Uint8Array): string {
  const name = text(bytes);
  return JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name);
}

function compareBytes(buf: Uint8Array, a: number, aLength: number, b: number, bLength: number): number {
  const n = aLength < bLength ? aLength : bLength;
  for (let i = 0; i < n; i++) {
    const d = buf[a + i]! - buf[b + i]!;
    if (d !== 0) return d;
  }
  return aLength - bLength;
}

/** Bytes [at+from, at+from+4) of a key as a big-endian word, zero past its end. */
function prefixWord(buf: Uint8Array, at: number, length: number, from: number): number {
  let word = 0;
  for (let i = from; i < from + 4; i++) word = word * 256 + (i < length ? buf[at + i]! : 0);
  return word;
}

function fnv1a32(buf: Uint8Array, at: number, length: number): number {
  let h = 0x811c9dc5;
  for (let i = at; i < at + length; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return h >>> 0;
}

function fnv1a64(v: DataView, at: number, length: number): bigint {
  let h = 0xcbf29ce484222325n;
  for (let i = at; i < at + length; i++) h = ((h ^ BigInt(v.getUint8(i))) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h;
}

// CRC-32C (Castagnoli), slicing by 16, and zlib's crc32_combine to join the per-leaf CRCs in key order.
const CASTAGNOLI = 0x82f63b78;
const CRC_TABLES = (() => {
  const tables = new Int32Array(16 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CASTAGNOLI : c >>> 1;
    tables[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = tables[n]!;
    for (let t = 1; t < 16; t++) {
      c = tables[c & 0xff]! ^ (c >>> 8);
      tables[t * 256 + n] = c;
    }
  }
  return tables;
})();

/** Continues `crc` over buf[from..to) (`v` views the same bytes). Exported for tests. */
export function crc32c(crc: number, buf: Uint8Array, v: DataView, from: number, to: number): number {
  const T = CRC_TABLES;
  let c = ~crc;
  let i = from;
  for (; i + 16 <= to; i += 16) {
    const a = c ^ v.getInt32(i, true);
    const b = v.getInt32(i + 4, true);
    const d = v.getInt32(i + 8, true);
    const e = v.getInt32(i + 12, true);
    c =
      T[3840 + (a & 0xff)]! ^
      T[3584 + ((a >>> 8) & 0xff)]! ^
      T[3328 + ((a >>> 16) & 0xff)]! ^
      T[3072 + (a >>> 24)]! ^
      T[2816 + (b & 0xff)]! ^
      T[2560 + ((b >>> 8) & 0xff)]! ^
      T[2304 + ((b >>> 16) & 0xff)]! ^
      T[2048 + (b >>> 24)]! ^
      T[1792 + (d & 0xff)]! ^
      T[1536 + ((d >>> 8) & 0xff)]! ^
      T[1280 + ((d >>> 16) & 0xff)]! ^
      T[1024 + (d >>> 24)]! ^
      T[768 + (e & 0xff)]! ^
      T[512 + ((e >>> 8) & 0xff)]! ^
      T[256 + ((e >>> 16) & 0xff)]! ^
      T[e >>> 24]!;
  }
  for (; i < to; i++) c = T[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** a(x) * b(x) modulo the polynomial, bit-reflected (zlib's multmodp). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ CASTAGNOLI : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) for k = 0..63. zlib wraps at 32, which holds for CRC-32's polynomial but not Castagnoli's. */
const X2N = (() => {
  const table = new Uint32Array(64);
  let p = 0x40000000; // x^1
  table[0] = p;
  for (let k = 1; k < 64; k++) table[k] = p = multModP(p, p);
  return table;
})();

/** The CRC of A then B, from crc(A), crc(B) and B's length. Exported for tests. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  let p = 0x80000000; // x^0
  let k = 3; // bytes to bits
  for (let n = lengthB; n > 0; n = Math.floor(n / 2), k++) if (n % 2) p = multModP(X2N[k]!, p);
  return (multModP(p, crcA) ^ crcB) >>> 0;
}
