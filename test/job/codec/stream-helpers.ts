// Shared by the codec tests: feeding bytes through Duplex stages in chosen chunks, and measuring how much input a
// stage takes while its consumer does not read.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** `bytes` cut into pieces whose sizes cycle through `sizes` (each >= 1): arbitrary chunk boundaries. */
export function cut(bytes: Buffer, sizes: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = Math.max(1, sizes[i % sizes.length]!);
    pieces.push(bytes.subarray(at, at + size));
    at += size;
  }
  return pieces;
}

/** Runs `pieces` through `stages` and returns everything that comes out. */
export async function through(pieces: Buffer[], ...stages: Duplex[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(pieces),
    ...(stages as [Duplex]),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        out.push(chunk);
        callback();
      },
    }),
  );
  return Buffer.concat(out);
}

/** The error `pieces` through `stages` fails with (asserting that it fails). */
export async function failure(pieces: Buffer[], ...stages: Duplex[]): Promise<Error> {
  try {
    await through(pieces, ...stages);
  } catch (error) {
    return error as Error;
  }
  assert.fail('expected the stream to fail');
}

/**
 * Pipes `total` bytes (an 8 MiB random pool, cycled: more than any window, so nothing compresses) from a counting
 * source through `stage` into a sink that does not complete its first write until released. Returns how many bytes
 * the source had produced when the flow stopped, and the stage's own buffered bytes then; then releases the sink
 * and checks that all of it gets through.
 */
export async function inputTakenWhileSinkPaused(
  stage: Duplex,
  total = 64 * 1024 * 1024,
): Promise<{ produced: number; stageBuffered: number; pulls: number }> {
  const pool = randomBytes(8 * 1024 * 1024);
  const chunk = 64 * 1024;
  let produced = 0;
  let pulls = 0;
  const source = new Readable({
    read() {
      pulls++;
      if (produced >= total) return void this.push(null);
      const at = produced % pool.length;
      produced += chunk;
      this.push(pool.subarray(at, at + chunk));
    },
  });
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let consumed = 0;
  const sink = new Writable({
    write(piece: Buffer, _encoding, callback) {
      consumed += piece.length;
      void released.then(() => callback());
    },
  });
  const done = pipeline(source, stage, sink);
  // Let the flow run until it stops: the source's count stays put over two looks 100 ms apart.
  let last = -1;
  while (produced !== last) {
    last = produced;
    await sleep(100);
  }
  const stalled = { produced, stageBuffered: stage.writableLength + stage.readableLength, pulls };
  release();
  await done;
  assert.equal(produced, total, 'all input flowed once the sink was released');
  assert.ok(consumed > 0);
  return stalled;
}
