// Streaming gzip and zstd for snapshots on their way to S3, with memory bounded by stream backpressure.
//
// gzip is node:zlib everywhere. zstd is node:zlib's where the running Node has it (>= 22.15: the image's Node 22)
// and otherwise (Node 20) a WASM build of libzstd to compress (@hpcc-js/wasm-zstd) and a pure-JS decoder to
// decompress (fzstd): the same format either way, so a backup written by one decodes with the other.
//
// Levels: gzip 6 and zstd 3, the defaults of gzip(1) and zstd(1). Measured on three real etcd snapshots (ratio, then
// MB/s of input compressed in 64 KiB writes, 2 cores; gzip on Node 20, zstd native on Node 22 | WASM on Node 20):
//
//   snapshot                                  gzip 1     gzip 6     zstd 1            zstd 3
//   79 MiB, 60k random base64 1 KiB values    1.72  38   1.72  33   1.71  156 | 186   1.71   72 |  73
//   118 MiB, 60k Kubernetes-like JSON pods    12.9 211   16.1 128   18.6  281 | 457   16.6  216 | 287
//   47 MiB, 11k real text files (ConfigMaps)  5.33 111   6.54  48   6.72  203 | 301   7.97  158 | 239
//
// zstd 3 stores 16% less than zstd 1 on real text (zstd 1 wins only on the synthetic pods), and at >= 72 MB/s it
// keeps up with age (75-90 MB/s). gzip 6 stores ~20% less than gzip 1 where data compresses; where it does not, gzip
// is slow at either level. Whoever wants speed picks zstd, which beats gzip 1 on both counts in every row: gzip is
// for readers without zstd, and they get its usual ratio.

import { Transform, type Duplex, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { Decompress as FzstdDecompress } from 'fzstd';
import { Zstd } from '@hpcc-js/wasm-zstd';
import type { Compression } from '../../api/types.js';

export const GZIP_LEVEL = 6;
export const ZSTD_LEVEL = 3;

/**
 * Input bytes handed to the WASM compressor per call. Each call ends in a zstd flush (the library compresses
 * with ZSTD_e_flush), so gRPC's 1-64 KiB chunks fed one by one would cost a block boundary and a JS/WASM round
 * trip each; 256 KiB batches give ~the native ratio and output chunks of 256 KiB / ratio.
 */
export const WASM_ZSTD_BATCH_BYTES = 256 * 1024;

/** Output chunk size of node:zlib streams: 64 KiB instead of the 16 KiB default, fewer pushes per MiB. */
const ZLIB_CHUNK_BYTES = 64 * 1024;

export class CompressionError extends Error {
  override name = 'CompressionError';
}

// ---------------------------------------------------------------------------------------------------------------
// Which zstd

// @types/node is pinned to 20 (the oldest Node we run), which does not declare Node 22's zstd.
interface NodeZstd {
  createZstdCompress(options: { params: Record<number, number>; chunkSize?: number }): Transform;
  createZstdDecompress(options?: { chunkSize?: number }): Transform;
  constants: Record<string, number>;
}

function nodeZstd(): NodeZstd | undefined {
  const candidate = zlib as unknown as Partial<NodeZstd>;
  if (typeof candidate.createZstdCompress !== 'function' || typeof candidate.createZstdDecompress !== 'function')
    return undefined;
  return candidate as NodeZstd;
}

/** Which zstd implementation this process uses. */
export function zstdImplementation(): 'node:zlib' | 'wasm' {
  return nodeZstd() ? 'node:zlib' : 'wasm';
}

// ---------------------------------------------------------------------------------------------------------------
// Streams

/** A Transform (Duplex) that compresses; async because the WASM module loads asynchronously. */
export async function createCompressor(kind: 'gzip' | 'zstd'): Promise<Duplex> {
  if (kind === 'gzip') return zlib.createGzip({ level: GZIP_LEVEL, chunkSize: ZLIB_CHUNK_BYTES });
  if (kind !== 'zstd') throw new TypeError(`unknown compression ${String(kind)}`);
  const native = nodeZstd();
  if (native) {
    // The checksum costs little (xxh64) and lets `zstd -t` and node:zlib's decoder tell damaged content (fzstd and
    // the WASM compressor have none: the etcd trailer's sha256 still does).
    const params = {
      [native.constants.ZSTD_c_compressionLevel!]: ZSTD_LEVEL,
      [native.constants.ZSTD_c_checksumFlag!]: 1,
    };
    return native.createZstdCompress({ params, chunkSize: ZLIB_CHUNK_BYTES });
  }
  return new WasmZstdCompressor(await loadWasmZstd());
}

/** A Transform (Duplex) that decompresses; damaged or foreign input fails it with a CompressionError. */
export async function createDecompressor(kind: 'gzip' | 'zstd'): Promise<Duplex> {
  if (kind === 'gzip') return withCompressionErrors('gzip', zlib.createGunzip({ chunkSize: ZLIB_CHUNK_BYTES }));
  if (kind !== 'zstd') throw new TypeError(`unknown compression ${String(kind)}`);
  const native = nodeZstd();
  if (native)
    return withFrameCheck(withCompressionErrors('zstd', native.createZstdDecompress({ chunkSize: ZLIB_CHUNK_BYTES })));
  return new FzstdDecompressor();
}

function damaged(kind: 'gzip' | 'zstd', detail: string): CompressionError {
  return new CompressionError(`${kind} data is damaged: ${detail}`);
}

const TRUNCATED = 'unexpected end of file (truncated?)';

/** Errors that node:zlib raises about its input carry a Z_* / ZSTD_* code; anything else is not ours to rename. */
function isCodecError(error: Error): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^(Z|ZSTD)_/.test(code);
}

/**
 * node:zlib fails a stream by destroying it with the codec's error; renaming it in _destroy makes every path
 * ('error' event, pipeline's rejection) see the CompressionError.
 */
function withCompressionErrors<T extends Transform>(kind: 'gzip' | 'zstd', stream: T): T {
  const destroyImpl = stream._destroy.bind(stream);
  stream._destroy = (error: Error | null, callback: (error?: Error | null) => void): void => {
    destroyImpl(error, (result) => {
      callback(result && isCodecError(result) ? damaged(kind, describeZlibError(result)) : result);
    });
  };
  return stream;
}

function describeZlibError(error: Error): string {
  if (/unexpected end of file/i.test(error.message)) return TRUNCATED;
  const message = error.message.trim() || String((error as { code?: unknown }).code);
  return message.charAt(0).toLowerCase() + message.slice(1); // libzstd capitalizes ("Restored data doesn't match checksum")
}

/**
 * Node 22's zstd decoder (through at least 22.23) drops whatever follows the end of a frame in the same write: the
 * next frame of a multi-frame file, or garbage; and it reports success on input that stops mid-frame
 * (nodejs/node#64592), decoding a truncated backup to a shorter one without a word. The frame check follows the
 * frames alongside: it fails the stream on truncation or garbage, and hands the decoder each frame's end as the end
 * of a write, which it does handle.
 */
function withFrameCheck<T extends Transform>(stream: T): T {
  const check = new ZstdFrameCheck();
  const transformImpl = stream._transform.bind(stream);
  const flushImpl = stream._flush.bind(stream);
  stream._transform = (chunk: Buffer, encoding: BufferEncoding, callback: TransformCallback): void => {
    const { problem, frameEnds } = check.push(chunk);
    if (problem) return callback(damaged('zstd', problem));
    const cuts = frameEnds.filter((end) => end > 0 && end < chunk.length);
    if (cuts.length === 0) return transformImpl(chunk, encoding, callback);
    const pieces = [0, ...cuts].map((start, i) => chunk.subarray(start, cuts[i] ?? chunk.length));
    const next = (error?: Error | null): void => {
      const piece = pieces.shift();
      if (error || !piece) return callback(error);
      transformImpl(piece, encoding, next);
    };
    next();
  };
  stream._flush = (callback: TransformCallback): void => {
    const problem = check.end();
    if (problem) return callback(damaged('zstd', problem));
    flushImpl(callback);
  };
  return stream;
}

// ---------------------------------------------------------------------------------------------------------------
// zstd frame structure (RFC 8878 section 3.1)

const ZSTD_FRAME_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
const MAX_BLOCK_BYTES = 128 * 1024;
/** libzstd's default decoder limit (windowLogMax 27): beyond it `zstd -d` refuses too, without --memory. */
const ZSTD_MAX_WINDOW_BYTES = 128 * 1024 * 1024;

/** The header field being read; then its size in bytes comes from `wanted`. */
type Field = 'magic' | 'skippable size' | 'descriptor' | 'header rest' | 'block header';

/**
 * Follows a zstd stream's frames without decoding them: frame headers, block headers, checksums, skippable frames.
 * It tells when the input ends inside a frame, when bytes after a frame are not a frame, and when a frame asks for
 * a window beyond ZSTD_MAX_WINDOW_BYTES (fzstd would allocate whatever a damaged header says). Block contents are
 * the decoder's business.
 */
class ZstdFrameCheck {
  private field: Field = 'magic';
  private readonly bytes = Buffer.alloc(16);
  private wanted = 4;
  private have = 0;
  /** Bytes to pass over (block contents, checksums, skippable frames) before reading `afterSkip`. */
  private skipping = 0;
  private afterSkip: Field = 'magic';
  private descriptor = 0;
  private inFrame = false;
  private frames = 0;
  /** Position in the chunk being followed, and where frames ended in it. */
  private at = 0;
  private frameEnds: number[] = [];

  /**
   * Follows `chunk`; returns what is wrong, if anything, and the offsets in `chunk` where a frame ended (a frame
   * ending exactly at the chunk's end included).
   */
  push(chunk: Uint8Array): { problem?: string; frameEnds: number[] } {
    this.frameEnds = [];
    this.at = 0;
    while (this.at < chunk.length) {
      if (this.skipping > 0) {
        const n = Math.min(this.skipping, chunk.length - this.at);
        this.skipping -= n;
        this.at += n;
        if (this.skipping === 0) this.read(this.afterSkip);
        continue;
      }
      const n = Math.min(this.wanted - this.have, chunk.length - this.at);
      this.bytes.set(chunk.subarray(this.at, this.at + n), this.have);
      this.have += n;
      this.at += n;
      if (this.have === this.wanted) {
        const problem = this.complete();
        if (problem) return { problem, frameEnds: this.frameEnds };
      }
    }
    return { frameEnds: this.frameEnds };
  }

  /** Returns what is wrong with the stream ending here, or undefined. */
  end(): string | undefined {
    if (this.inFrame || this.have > 0 || this.skipping > 0 || this.frames === 0) return TRUNCATED;
    return undefined;
  }

  private read(field: Field, wanted = FIELD_BYTES[field]): void {
    if (field === 'magic' && this.inFrame) {
      this.inFrame = false;
      this.frames++;
      this.frameEnds.push(this.at);
    }
    this.field = field;
    this.wanted = wanted;
    this.have = 0;
  }

  private skipThenRead(count: number, field: Field): void {
    if (count === 0) return this.read(field);
    this.skipping = count;
    this.afterSkip = field;
    this.have = 0;
  }

  private complete(): string | undefined {
    const b = this.bytes;
    switch (this.field) {
      case 'magic': {
        const magic = b.readUInt32LE(0);
        this.inFrame = true;
        if (magic === ZSTD_FRAME_MAGIC) this.read('descriptor');
        else if ((magic & SKIPPABLE_MAGIC_MASK) >>> 0 === SKIPPABLE_MAGIC) this.read('skippable size');
        else
          return this.frames === 0
            ? 'it does not start with a zstd frame'
            : `the bytes after frame ${this.frames} are not a zstd frame`;
        return undefined;
      }
      case 'skippable size':
        this.skipThenRead(b.readUInt32LE(0), 'magic');
        return undefined;
      case 'descriptor': {
        const descriptor = b[0]!;
        if (descriptor & 0x08) return 'a frame header has its reserved bit set';
        this.descriptor = descriptor;
        const singleSegment = (descriptor >> 5) & 1;
        // Window descriptor (absent in single-segment frames), dictionary id, content size.
        this.read(
          'header rest',
          (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]! + [singleSegment, 2, 4, 8][descriptor >> 6]!,
        );
        return undefined;
      }
      case 'header rest': {
        const window = this.windowBytes();
        if (window > ZSTD_MAX_WINDOW_BYTES)
          return `a frame asks for a ${Math.ceil(window / 2 ** 20)} MiB window, over the ${ZSTD_MAX_WINDOW_BYTES / 2 ** 20} MiB limit`;
        this.read('block header');
        return undefined;
      }
      case 'block header': {
        const header = b[0]! | (b[1]! << 8) | (b[2]! << 16);
        const last = header & 1;
        const type = (header >> 1) & 3;
        const size = header >>> 3;
        if (type === 3) return 'a block has the reserved block type';
        if (size > MAX_BLOCK_BYTES) return `a block claims ${size} bytes, over zstd's maximum of ${MAX_BLOCK_BYTES}`;
        const content = type === 1 ? 1 : size; // an RLE block stores its one byte
        const checksum = last && (this.descriptor >> 2) & 1 ? 4 : 0;
        this.skipThenRead(content + checksum, last ? 'magic' : 'block header');
        return undefined;
      }
    }
  }

  private windowBytes(): number {
    const b = this.bytes;
    if (!((this.descriptor >> 5) & 1)) {
      const exponent = b[0]! >> 3;
      const base = 2 ** (10 + exponent);
      return base + (base / 8) * (b[0]! & 7);
    }
    // Single segment: the window is the content size, the header's last field.
    const sizeBytes = [1, 2, 4, 8][this.descriptor >> 6]!;
    const at = this.wanted - sizeBytes;
    if (sizeBytes === 1) return b[at]!;
    if (sizeBytes === 2) return b.readUInt16LE(at) + 256;
    if (sizeBytes === 4) return b.readUInt32LE(at);
    return b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 2 ** 32;
  }
}

const FIELD_BYTES: Record<Field, number> = {
  magic: 4,
  'skippable size': 4,
  descriptor: 1,
  'header rest': 0,
  'block header': 3,
};

// ---------------------------------------------------------------------------------------------------------------
// WASM zstd (Node < 22.15)

/**
 * The embind class inside @hpcc-js/wasm-zstd (see its types/zstdlib.d.ts): each instance is one libzstd
 * compression context. The package's public Zstd object wraps a single such context shared by the whole process
 * (two concurrent streams would interleave their frames) and copies every output byte through a JS array
 * (~20 MB/s), so we make one context per stream and copy to and from the WASM heap ourselves (~100 MB/s).
 * These are private members of the pinned version; loadWasmZstd checks their shape and tests cover them.
 */
interface ZstdContext {
  reset(): void;
  setCompressionLevel(level: number): void;
  compressChunk(dst: number, dstCapacity: number, src: number, srcSize: number): number;
  compressEnd(dst: number, dstCapacity: number): number;
  delete(): void;
}

interface ZstdClass {
  new (): ZstdContext;
  malloc(size: number): number;
  free(ptr: number): void;
  compressBound(size: number): number;
  CStreamOutSize(): number;
  isError(code: number): number | boolean;
  getErrorName(code: number): string;
}

interface WasmZstd {
  zstdClass: ZstdClass;
  /** The module's current heap view; replaced whenever the heap grows, so read it again after every malloc. */
  heap(): Uint8Array;
}

let wasmZstd: Promise<WasmZstd> | undefined;

function loadWasmZstd(): Promise<WasmZstd> {
  wasmZstd ??= Zstd.load().then((zstd) => {
    const internals = zstd as unknown as {
      _zstdClass?: ZstdClass;
      _mainModule?: { _module?: { HEAPU8?: Uint8Array } };
    };
    const zstdClass = internals._zstdClass;
    const module = internals._mainModule?._module;
    if (
      typeof zstdClass !== 'function' ||
      typeof zstdClass.malloc !== 'function' ||
      !(module?.HEAPU8 instanceof Uint8Array)
    ) {
      throw new Error(
        '@hpcc-js/wasm-zstd no longer has the internals src/job/codec/compression.ts uses (written for 1.12.5)',
      );
    }
    return { zstdClass, heap: () => module.HEAPU8! };
  });
  return wasmZstd;
}

class WasmZstdCompressor extends Transform {
  private readonly wasm: WasmZstd;
  private context: ZstdContext | undefined;
  private readonly input: number;
  private readonly output: number;
  private readonly outputCapacity: number;
  private filled = 0;

  constructor(wasm: WasmZstd) {
    super();
    this.wasm = wasm;
    const { zstdClass } = wasm;
    this.context = new zstdClass();
    this.context.setCompressionLevel(ZSTD_LEVEL);
    this.context.reset();
    // A flush of n input bytes writes at most compressBound(n) plus the stream's own buffered block.
    this.outputCapacity = zstdClass.compressBound(WASM_ZSTD_BATCH_BYTES) + zstdClass.CStreamOutSize();
    this.input = zstdClass.malloc(WASM_ZSTD_BATCH_BYTES);
    this.output = zstdClass.malloc(this.outputCapacity);
    if (this.input === 0 || this.output === 0) {
      this.release();
      throw new Error('zstd (WASM): out of memory');
    }
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      let offset = 0;
      while (offset < chunk.length) {
        const n = Math.min(WASM_ZSTD_BATCH_BYTES - this.filled, chunk.length - offset);
        this.wasm.heap().set(chunk.subarray(offset, offset + n), this.input + this.filled);
        this.filled += n;
        offset += n;
        if (this.filled === WASM_ZSTD_BATCH_BYTES) this.compressBatch();
      }
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (this.filled > 0) this.compressBatch();
      const written = this.checked(this.context!.compressEnd(this.output, this.outputCapacity));
      if (written > 0) this.push(this.wasm.heap().slice(this.output, this.output + written));
      this.release();
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.release();
    callback(error);
  }

  private compressBatch(): void {
    const written = this.checked(
      this.context!.compressChunk(this.output, this.outputCapacity, this.input, this.filled),
    );
    this.filled = 0;
    // slice() copies out of the heap: the next batch overwrites this region.
    if (written > 0) this.push(this.wasm.heap().slice(this.output, this.output + written));
  }

  private checked(result: number): number {
    if (this.wasm.zstdClass.isError(result))
      throw new Error(`zstd (WASM) compression failed: ${this.wasm.zstdClass.getErrorName(result)}`);
    return result;
  }

  /** Frees the context and buffers once: the WASM heap is the process's, and it never shrinks. */
  private release(): void {
    if (!this.context) return;
    this.context.delete();
    this.context = undefined;
    if (this.input !== 0) this.wasm.zstdClass.free(this.input);
    if (this.output !== 0) this.wasm.zstdClass.free(this.output);
  }
}

/**
 * fzstd's streaming decoder: output per zstd block (<= 128 KiB), input held back only up to one block; the frame
 * check goes first so that a damaged header cannot make it allocate a huge window.
 */
class FzstdDecompressor extends Transform {
  private readonly check = new ZstdFrameCheck();
  private readonly decoder = new FzstdDecompress((data) => {
    if (data.length > 0) this.push(data);
  });

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const { problem } = this.check.push(chunk);
    callback(problem ? damaged('zstd', problem) : this.feed(chunk, false));
  }

  override _flush(callback: TransformCallback): void {
    const problem = this.check.end();
    callback(problem ? damaged('zstd', problem) : this.feed(new Uint8Array(0), true));
  }

  private feed(chunk: Uint8Array, final: boolean): CompressionError | undefined {
    try {
      this.decoder.push(chunk, final);
      return undefined;
    } catch (error) {
      const message = (error as Error).message;
      return damaged('zstd', message === 'unexpected EOF' ? TRUNCATED : message);
    }
  }
}
