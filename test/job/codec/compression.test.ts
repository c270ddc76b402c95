// gzip and zstd streams: roundtrips over a real etcd snapshot and random inputs with arbitrary chunk boundaries,
// interop with the gzip and zstd CLIs both ways, the image's Node 22 (node:zlib zstd) against this Node's, damage
// reported as CompressionError, and bounded buffering under a slow consumer.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  CompressionError,
  WASM_ZSTD_BATCH_BYTES,
  createCompressor,
  createDecompressor,
  zstdImplementation,
} from '../../../src/job/codec/compression.js';
import { startEtcd } from '../../harness/etcd.js';
import { sniffFormat } from '../../helpers/stored-format.js';
import { imageNodeBinary } from '../../harness/node22.js';
import { cut, failure, inputTakenWhileSinkPaused, sha256, through } from './stream-helpers.js';

const KINDS = ['gzip', 'zstd'] as const;

/** Runs a CLI with `input` on stdin; returns stdout, failing the test on a non-zero exit. */
function cli(command: string, args: string[], input: Buffer): Buffer {
  const run = spawnSync(command, args, { input, maxBuffer: 256 * 1024 * 1024 });
  if (run.error) throw new Error(`${command} is not usable (${run.error.message}); run ./scripts/install-test-deps.sh`);
  assert.equal(run.status, 0, `${command} ${args.join(' ')} failed: ${run.stderr.toString()}`);
  return run.stdout;
}

async function compress(kind: 'gzip' | 'zstd', bytes: Buffer, sizes = [64 * 1024]): Promise<Buffer> {
  return through(cut(bytes, sizes), await createCompressor(kind));
}

async function decompress(kind: 'gzip' | 'zstd', bytes: Buffer, sizes = [64 * 1024]): Promise<Buffer> {
  return through(cut(bytes, sizes), await createDecompressor(kind));
}

/** Bytes that compress somewhat, like etcd values: random runs and repeated runs, interleaved. */
const mixedBytes = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 4096 }),
      fc.record({ byte: fc.integer({ min: 0, max: 255 }), length: fc.integer({ min: 1, max: 50_000 }) }),
    ),
    { maxLength: 12 },
  )
  .map((parts) =>
    Buffer.concat(parts.map((p) => (p instanceof Uint8Array ? Buffer.from(p) : Buffer.alloc(p.length, p.byte)))),
  );
/** Chunk sizes to cycle through; the 4 KiB one keeps a run of 1-byte pieces from taking all the test's time. */
const chunkSizes = fc
  .array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 8 })
  .map((sizes) => [...sizes, 4096]);

describe('compression', () => {
  let snapshot: Buffer;

  before(async () => {
    const etcd = await startEtcd();
    try {
      await etcd.putMany(3000, 'registry/configmaps/default/cm-', 700);
      snapshot = await etcd.snapshot();
    } finally {
      await etcd.stop();
    }
    assert.equal(snapshot.length % 512, 32, 'an etcd snapshot: bbolt pages plus the 32-byte trailer');
  });

  it('uses node:zlib zstd exactly when this Node has it', () => {
    const native = typeof (zlib as unknown as { createZstdCompress?: unknown }).createZstdCompress === 'function';
    assert.equal(zstdImplementation(), native ? 'node:zlib' : 'wasm');
  });

  it('sniffs age, gzip, zstd and raw from the first bytes', async () => {
    assert.equal(sniffFormat(Buffer.from('age-encryption.org/v1\n-> X25519 abc\n')), 'age');
    assert.equal(sniffFormat(await compress('gzip', Buffer.from('x'))), 'gzip');
    assert.equal(sniffFormat(await compress('zstd', Buffer.from('x'))), 'zstd');
    assert.equal(sniffFormat(snapshot.subarray(0, 64)), 'raw');
    assert.equal(sniffFormat(new Uint8Array([0x28, 0xb5, 0x2f])), 'raw', 'too short to tell');
    assert.equal(sniffFormat(new Uint8Array(0)), 'raw');
    // A view into a larger buffer is read at its own offset.
    const inside = Buffer.concat([Buffer.from('xx'), Buffer.from([0x1f, 0x8b, 8])]).subarray(2);
    assert.equal(sniffFormat(new Uint8Array(inside.buffer, inside.byteOffset, inside.length)), 'gzip');
  });

  for (const kind of KINDS) {
    it(`${kind}: a real etcd snapshot roundtrips with arbitrary chunk boundaries on both sides`, async () => {
      const compressed = await compress(kind, snapshot, [1, 1000, 65_536, 7, 300_000, 4096]);
      assert.ok(
        compressed.length < snapshot.length,
        `${kind} compresses the snapshot (${compressed.length} of ${snapshot.length})`,
      );
      assert.equal(sha256(await decompress(kind, compressed, [3, 65_536, 1, 200_000, 17])), sha256(snapshot));
    });

    it(`${kind}: random inputs roundtrip whatever the chunking`, async () => {
      await fc.assert(
        fc.asyncProperty(mixedBytes, chunkSizes, chunkSizes, async (bytes, inSizes, outSizes) => {
          const compressed = await compress(kind, bytes, inSizes);
          assert.equal(sha256(await decompress(kind, compressed, outSizes)), sha256(bytes));
        }),
        { numRuns: 40 },
      );
    });

    it(`${kind}: our output decodes with the ${kind} CLI, and the CLI's output decodes with ours`, async () => {
      const ours = await compress(kind, snapshot);
      assert.equal(sha256(cli(kind, ['-d', '-c', ...(kind === 'zstd' ? ['-q'] : [])], ours)), sha256(snapshot));
      const theirs = cli(kind, ['-c', ...(kind === 'zstd' ? ['-q', '-3'] : ['-6'])], snapshot);
      assert.equal(sha256(await decompress(kind, theirs, [5000])), sha256(snapshot));
      // Several members/frames one after another, as `cat a.gz b.gz` makes them.
      const two = Buffer.concat([
        theirs,
        cli(kind, ['-c', ...(kind === 'zstd' ? ['-q'] : [])], Buffer.from('and more')),
      ]);
      for (const sizes of [[777], [two.length]])
        assert.equal(
          sha256(await decompress(kind, two, sizes)),
          sha256(Buffer.concat([snapshot, Buffer.from('and more')])),
        );
    });

    it(`${kind}: an empty stream roundtrips`, async () => {
      assert.equal((await decompress(kind, await compress(kind, Buffer.alloc(0)))).length, 0);
    });

    it(`${kind}: a paused consumer stops the compressor from taking input`, async () => {
      const stalled = await inputTakenWhileSinkPaused(await createCompressor(kind));
      // Stream buffers (16 KiB each side), zlib's or the WASM batch, the source's read-ahead: a few 64 KiB chunks.
      assert.ok(stalled.produced <= 2 * 1024 * 1024, `took ${stalled.produced} bytes while the sink was paused`);
      assert.ok(stalled.stageBuffered <= 1024 * 1024, `the compressor buffered ${stalled.stageBuffered} bytes`);
    });

    it(`${kind}: a paused consumer stops the decompressor from taking input`, async () => {
      // Compressed random data: output about as large as input, so what it takes is what it buffers.
      const plain = randomBytes(8 * 1024 * 1024);
      const compressed = await compress(kind, plain);
      let produced = 0;
      const decompressor = await createDecompressor(kind);
      const pieces = cut(compressed, [64 * 1024]);
      // Write until the decompressor refuses (write() false) with nobody reading its output.
      for (const piece of pieces) {
        produced += piece.length;
        if (!decompressor.write(piece)) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(produced <= 1024 * 1024, `took ${produced} bytes with no reader`);
      assert.ok(decompressor.readableLength <= 1024 * 1024, `buffered ${decompressor.readableLength} bytes of output`);
      decompressor.destroy();
    });
  }

  it('zstd: the compressor batches small writes (few, large output chunks) and takes a steady input', async () => {
    const plain = randomBytes(4 * 1024 * 1024);
    const compressor = await createCompressor('zstd');
    const chunks: Buffer[] = [];
    compressor.on('data', (chunk: Buffer) => chunks.push(chunk));
    const ended = new Promise((resolve) => compressor.once('end', resolve));
    for (const piece of cut(plain, [1024]))
      if (!compressor.write(piece)) await new Promise((resolve) => compressor.once('drain', resolve));
    compressor.end();
    await ended;
    // 1 KiB writes, yet output comes per batch (WASM) or per zstd block (node:zlib): >= 16 KiB on average.
    const average = Buffer.concat(chunks).length / chunks.length;
    assert.ok(average >= 16 * 1024, `average output chunk ${Math.round(average)} bytes over ${chunks.length} chunks`);
    if (zstdImplementation() === 'wasm')
      assert.ok(chunks.length <= Math.ceil(plain.length / WASM_ZSTD_BATCH_BYTES) + 1, `${chunks.length} output chunks`);
    assert.equal(sha256(await decompress('zstd', Buffer.concat(chunks))), sha256(plain));
  });

  it('zstd: concurrent compressions in one process do not mix their streams', async () => {
    const inputs = [randomBytes(3 * 1024 * 1024), Buffer.alloc(3 * 1024 * 1024, 'etcd'), randomBytes(1024 * 1024)];
    const compressors = await Promise.all(inputs.map(() => createCompressor('zstd')));
    const outputs = compressors.map((compressor) => {
      const chunks: Buffer[] = [];
      compressor.on('data', (chunk: Buffer) => chunks.push(chunk));
      return new Promise<Buffer>((resolve, reject) =>
        compressor.once('end', () => resolve(Buffer.concat(chunks))).once('error', reject),
      );
    });
    // Interleave 100 KiB writes across the three streams, so every batch of one happens between batches of others.
    const pieces = inputs.map((input) => cut(input, [100 * 1024]));
    for (let i = 0; i < Math.max(...pieces.map((p) => p.length)); i++) {
      for (const [n, compressor] of compressors.entries()) {
        const piece = pieces[n]![i];
        if (piece) compressor.write(piece);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    for (const compressor of compressors) compressor.end();
    const compressed = await Promise.all(outputs);
    for (const [n, bytes] of compressed.entries()) {
      assert.equal(sha256(await decompress('zstd', bytes)), sha256(inputs[n]!), `stream ${n}`);
      assert.equal(sha256(cli('zstd', ['-d', '-c', '-q'], bytes)), sha256(inputs[n]!), `stream ${n} with the zstd CLI`);
    }
  });

  it('zstd: a compressor destroyed midway frees its state and the next ones still work', async () => {
    for (let i = 0; i < 20; i++) {
      const compressor = await createCompressor('zstd');
      compressor.write(randomBytes(300 * 1024));
      compressor.destroy();
    }
    const plain = randomBytes(500 * 1024);
    assert.equal(sha256(await decompress('zstd', await compress('zstd', plain))), sha256(plain));
  });

  describe('damaged or foreign data', () => {
    let gz: Buffer;
    let zst: Buffer;
    before(async () => {
      gz = await compress('gzip', snapshot);
      zst = await compress('zstd', snapshot);
    });

    const expectDamage = async (kind: 'gzip' | 'zstd', bytes: Buffer, message: string): Promise<void> => {
      const error = await failure(cut(bytes, [50_000]), await createDecompressor(kind));
      assert.ok(error instanceof CompressionError, `${error.name}: ${error.message}`);
      assert.equal(error.message, message);
    };

    it('gzip: foreign bytes, a damaged header, a truncated stream, a flipped byte, an empty stream', async () => {
      await expectDamage('gzip', snapshot, 'gzip data is damaged: incorrect header check');
      const badHeader = Buffer.from(gz);
      badHeader[3] = 0xe0; // reserved flag bits
      await expectDamage('gzip', badHeader, 'gzip data is damaged: unknown header flags set');
      await expectDamage(
        'gzip',
        gz.subarray(0, gz.length - 1000),
        'gzip data is damaged: unexpected end of file (truncated?)',
      );
      const flipped = Buffer.from(gz);
      flipped[flipped.length - 6] = flipped[flipped.length - 6]! ^ 0x01; // inside the CRC-32 of the trailer
      await expectDamage('gzip', flipped, 'gzip data is damaged: incorrect data check');
      await expectDamage('gzip', Buffer.alloc(0), 'gzip data is damaged: unexpected end of file (truncated?)');
    });

    it('zstd: foreign bytes, a truncated stream, garbage after the frame, an empty stream, absurd headers', async () => {
      await expectDamage('zstd', snapshot, 'zstd data is damaged: it does not start with a zstd frame');
      await expectDamage('zstd', gz, 'zstd data is damaged: it does not start with a zstd frame');
      await expectDamage(
        'zstd',
        zst.subarray(0, zst.length - 1000),
        'zstd data is damaged: unexpected end of file (truncated?)',
      );
      await expectDamage('zstd', zst.subarray(0, 6), 'zstd data is damaged: unexpected end of file (truncated?)');
      await expectDamage(
        'zstd',
        Buffer.concat([zst, Buffer.from('trailing garbage')]),
        'zstd data is damaged: the bytes after frame 1 are not a zstd frame',
      );
      await expectDamage('zstd', Buffer.alloc(0), 'zstd data is damaged: unexpected end of file (truncated?)');
      // Frame header asking for a 2 GiB window (exponent 21): refused before any decoder allocates it.
      const hugeWindow = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3, 0x01, 0x00, 0x00]);
      await expectDamage(
        'zstd',
        hugeWindow,
        'zstd data is damaged: a frame asks for a 2048 MiB window, over the 128 MiB limit',
      );
      // Single-segment frame claiming 4 GiB of content (its window).
      const hugeContent = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0xff, 0xff, 0xff, 0xff]);
      await expectDamage(
        'zstd',
        hugeContent,
        'zstd data is damaged: a frame asks for a 4096 MiB window, over the 128 MiB limit',
      );
      const reservedBlock = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50, 0x07, 0x00, 0x00]);
      await expectDamage('zstd', reservedBlock, 'zstd data is damaged: a block has the reserved block type');
    });

    it('zstd: skippable frames are passed over', async () => {
      const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 5, 0, 0, 0]), Buffer.from('12345')]);
      const both = Buffer.concat([skippable, await compress('zstd', Buffer.from('hello')), skippable]);
      assert.equal((await decompress('zstd', both, [3])).toString(), 'hello');
    });
  });

  it("the image's Node 22 (node:zlib zstd) and this Node read each other's zstd", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'talos-etcd-backup-zstd-'));
    try {
      await writeFile(join(dir, 'plain.bin'), snapshot);
      await writeFile(join(dir, 'from-parent.zst'), await compress('zstd', snapshot));
      const child = fileURLToPath(new URL('./zstd-child.js', import.meta.url));
      const run = spawnSync(imageNodeBinary(), [child, dir], { encoding: 'utf8' });
      assert.equal(run.status, 0, `the Node 22 child failed: ${run.stderr}`);
      const report = JSON.parse(run.stdout) as Record<
        | 'node'
        | 'implementation'
        | 'decodedSha256'
        | 'twoFramesInOneWriteSha256'
        | 'betweenSkippableFramesSha256'
        | 'truncated'
        | 'trailingGarbage',
        string
      >;
      assert.match(report.node, /^v22\./);
      assert.equal(report.implementation, 'node:zlib');
      assert.equal(report.decodedSha256, sha256(snapshot), 'Node 22 decodes what this Node compressed');
      // node:zlib alone drops a second frame in the same write, and accepts truncation and garbage (nodejs/node#64592).
      assert.equal(report.twoFramesInOneWriteSha256, sha256(Buffer.concat([snapshot, snapshot])));
      assert.equal(report.betweenSkippableFramesSha256, sha256(snapshot));
      assert.equal(report.truncated, 'CompressionError: zstd data is damaged: unexpected end of file (truncated?)');
      assert.equal(
        report.trailingGarbage,
        'CompressionError: zstd data is damaged: the bytes after frame 1 are not a zstd frame',
      );
      const fromChild = await readFile(join(dir, 'from-child.zst'));
      assert.equal(
        sha256(await decompress('zstd', fromChild, [9999])),
        sha256(snapshot),
        'this Node decodes what Node 22 compressed',
      );
      assert.equal(sha256(cli('zstd', ['-d', '-c', '-q'], fromChild)), sha256(snapshot));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
