// Run by compression.test.ts under the image's Node.js (test/harness/node22.ts), where zstd is node:zlib's:
//   node dist/test/job/codec/zstd-child.js DIR
// DIR holds plain.bin and from-parent.zst (compressed by the parent's Node). Writes from-child.zst (plain.bin
// compressed here) and prints one JSON line: which zstd this Node uses, sha256s of from-parent.zst decompressed
// here (alone; twice in a row in one write; between skippable frames), and the errors this Node's path gives for
// that file truncated and followed by garbage: the cases node:zlib's decoder gets wrong by itself.

import { createReadStream, createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createCompressor, createDecompressor, zstdImplementation } from '../../../src/job/codec/compression.js';

async function sha256OfDecompressed(input: Readable): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(
    input,
    await createDecompressor('zstd'),
    new Writable({ write: (chunk: Buffer, _encoding, callback) => (hash.update(chunk), callback()) }),
  );
  return hash.digest('hex');
}

async function sha256Of(bytes: Buffer): Promise<string> {
  return sha256OfDecompressed(Readable.from([bytes]));
}

async function errorOf(bytes: Buffer): Promise<string> {
  try {
    await sha256OfDecompressed(Readable.from([bytes]));
    return 'no error';
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
}

const dir = process.argv[2]!;
await pipeline(
  createReadStream(join(dir, 'plain.bin'), { highWaterMark: 16 * 1024 }),
  await createCompressor('zstd'),
  createWriteStream(join(dir, 'from-child.zst')),
);
const fromParent = await readFile(join(dir, 'from-parent.zst'));
const skippable = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
console.log(
  JSON.stringify({
    node: process.version,
    implementation: zstdImplementation(),
    decodedSha256: await sha256OfDecompressed(createReadStream(join(dir, 'from-parent.zst'))),
    twoFramesInOneWriteSha256: await sha256Of(Buffer.concat([fromParent, fromParent])),
    betweenSkippableFramesSha256: await sha256Of(Buffer.concat([skippable, fromParent, skippable])),
    truncated: await errorOf(fromParent.subarray(0, fromParent.length - 100)),
    trailingGarbage: await errorOf(Buffer.concat([fromParent, Buffer.from('not zstd')])),
  }),
);
