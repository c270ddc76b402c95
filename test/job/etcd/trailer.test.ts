import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  EtcdSnapshotVerifier,
  IntegrityError,
  verifyingStream,
  type VerifiedSnapshot,
} from '../../../src/job/etcd/trailer.js';

/** A synthetic etcd snapshot: `pages` 4 KiB bbolt pages, then sha256 of them. */
function snapshot(pages: number): Buffer {
  const db = randomBytes(pages * 4096);
  return Buffer.concat([db, createHash('sha256').update(db).digest()]);
}

function chunks(data: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < data.length; i += 1) {
    const size = Math.max(1, sizes[i % sizes.length]!);
    out.push(data.subarray(at, at + size));
    at += size;
  }
  return out;
}

function verify(parts: Buffer[]): { passed: Buffer; result: VerifiedSnapshot } {
  const verifier = new EtcdSnapshotVerifier();
  const passed = Buffer.concat(parts.flatMap((p) => verifier.push(p)));
  const { trailer, result } = verifier.finish();
  return { passed: Buffer.concat([passed, trailer]), result };
}

describe('EtcdSnapshotVerifier', () => {
  it('accepts a whole snapshot in any chunking, passes every byte through, and reports both hashes', () => {
    const data = snapshot(5);
    const expected = {
      size: data.length,
      etcdSha256: data.subarray(-32).toString('hex'),
      sha256: createHash('sha256').update(data).digest('hex'),
    };
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 20 }), (sizes) => {
        const { passed, result } = verify(chunks(data, sizes));
        assert.ok(passed.equals(data));
        assert.deepEqual(result, expected);
      }),
      { numRuns: 200 },
    );
  });

  it('holds back exactly the last 32 bytes until the end', () => {
    const data = snapshot(1);
    const verifier = new EtcdSnapshotVerifier();
    const released = verifier.push(data).reduce((n, b) => n + b.length, 0);
    assert.equal(released, data.length - 32);
  });

  const broken: { name: string; data: () => Buffer; message: RegExp }[] = [
    { name: 'an empty stream', data: () => Buffer.alloc(0), message: /the stream was empty/ },
    {
      name: 'a stream truncated mid-page (Talos ends it with status OK)',
      data: () => snapshot(3).subarray(0, 9000),
      message: /ended after 9000 bytes.*size % 512 = 296, expected 32/,
    },
    {
      name: 'a stream truncated at a page boundary plus 32 bytes',
      data: () => snapshot(3).subarray(0, 8192 + 32),
      message: /does not match the snapshot's trailer/,
    },
    {
      name: 'one flipped bit in the database',
      data: () => {
        const d = snapshot(3);
        d[5000]! ^= 1;
        return d;
      },
      message: /does not match the snapshot's trailer.*corrupted/,
    },
    {
      name: 'one flipped bit in the trailer',
      data: () => {
        const d = snapshot(3);
        d[d.length - 1]! ^= 0x80;
        return d;
      },
      message: /does not match/,
    },
    {
      name: 'a database without its trailer',
      data: () => snapshot(3).subarray(0, 3 * 4096),
      message: /size % 512 = 0/,
    },
  ];
  for (const b of broken) {
    it(`rejects ${b.name}`, () => {
      assert.throws(
        () => verify(chunks(b.data(), [1024])),
        (error: unknown) => {
          assert.ok(error instanceof IntegrityError);
          assert.match(error.message, /^Snapshot integrity check failed: /);
          assert.match(error.message, b.message);
          return true;
        },
      );
    });
  }
});

describe('verifyingStream', () => {
  async function collect(
    parts: Buffer[],
  ): Promise<{ received: Buffer; ended: boolean; result?: VerifiedSnapshot; error?: Error }> {
    const received: Buffer[] = [];
    let ended = false;
    let result: VerifiedSnapshot | undefined;
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        received.push(chunk);
        callback();
      },
      final(callback) {
        ended = true;
        callback();
      },
    });
    try {
      await pipeline(
        Readable.from(parts),
        verifyingStream((r) => (result = r)),
        sink,
      );
      return { received: Buffer.concat(received), ended, ...(result && { result }) };
    } catch (error) {
      return { received: Buffer.concat(received), ended, error: error as Error };
    }
  }

  it('passes a good snapshot through unchanged and reports it before the end', async () => {
    const data = snapshot(4);
    const out = await collect(chunks(data, [1024]));
    assert.ok(out.received.equals(data));
    assert.equal(out.ended, true);
    assert.equal(out.result?.size, data.length);
  });

  it('never ends a broken snapshot: the consumer sees an error, never the trailer or the end', async () => {
    const data = snapshot(4);
    data[100]! ^= 1;
    const out = await collect(chunks(data, [1024]));
    assert.ok(out.error instanceof IntegrityError);
    assert.equal(out.ended, false);
    assert.equal(out.received.length, data.length - 32);
  });
});
