// restore's progress bar: drawn only on a terminal, throttled, and readable.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatProgress, progressBar } from '../../src/job/progress.js';

const MIB = 1024 * 1024;

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  return { stream: { isTTY, write: (s: string) => writes.push(s) > 0 } as unknown as NodeJS.WriteStream, writes };
}

describe('progress bar', () => {
  it('shows the fraction, the amounts and the rate', () => {
    assert.equal(
      formatProgress('restoring k', 25 * MIB, 100 * MIB, 5),
      `restoring k [########......................]  25%  25.0/100.0 MiB  5.0 MiB/s`,
    );
    assert.equal(
      formatProgress('restoring k', 100 * MIB, 100 * MIB, 10),
      `restoring k [##############################] 100%  100.0/100.0 MiB  10.0 MiB/s`,
    );
    // Without a known size: amounts only.
    assert.equal(formatProgress('restoring k', 3 * MIB, undefined, 0), 'restoring k  3.0 MiB  0.0 MiB/s');
  });

  it('draws nothing when the stream is not a terminal (a pipe, a file, CI logs)', () => {
    const { stream, writes } = fakeStream(false);
    const bar = progressBar(stream, 'x');
    bar.update(1, 2);
    bar.finish();
    assert.deepEqual(writes, []);
  });

  it('redraws one line in place at most every 100 ms, and ends it with a newline', () => {
    const { stream, writes } = fakeStream(true);
    let now = 1_000;
    const bar = progressBar(stream, 'x', () => now);
    now += 200;
    bar.update(1 * MIB, 4 * MIB);
    bar.update(2 * MIB, 4 * MIB); // same instant: throttled
    now += 150;
    bar.update(3 * MIB, 4 * MIB);
    bar.finish();
    assert.equal(writes.length, 4);
    assert.ok(writes.slice(0, 3).every((w) => w.startsWith('\r') && w.endsWith('\x1b[K')));
    assert.match(writes[2]!, / 75% {2}3\.0\/4\.0 MiB/);
    assert.equal(writes[3], '\n');
  });
});
