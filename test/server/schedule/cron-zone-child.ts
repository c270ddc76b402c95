// Child process of cron.test.ts: parses a schedule in `count` spellings of real time zones (case variants of each
// zone and of aliases, the issue's `aFrIca/ABidjAN`) and prints the RSS growth it caused, after garbage collection.
// Run with --expose-gc: node --expose-gc dist/test/server/schedule/cron-zone-child.js <count>

import { parseSchedule } from '../../../src/server/schedule/cron.js';

const count = Number(process.argv[2] ?? 10_000);
const zones = [...Intl.supportedValuesOf('timeZone'), 'Asia/Kolkata', 'US/Eastern', 'Etc/UTC', 'Europe/Kyiv'];

/** The `n`-th case variant of `zone`: bit k of n says whether letter k is upper case. */
function variant(zone: string, n: number): string {
  let out = '';
  let bit = 0;
  for (const c of zone) {
    if (/[a-z]/i.test(c)) {
      out += (n >> bit) & 1 ? c.toUpperCase() : c.toLowerCase();
      bit = (bit + 1) % 24;
    } else out += c;
  }
  return out;
}

const gc = (globalThis as { gc?: () => void }).gc!;
const rss = () => process.memoryUsage().rss / 1024 / 1024;
const probe = new Date('2026-01-15T12:00:00Z');
// Warm up: one valid parse per zone, so what follows measures spellings, not first uses.
for (const zone of zones) parseSchedule('0 3 * * *', zone);
gc();
const before = rss();
let accepted = 0;
let made = 0;
for (let n = 1; made < count; n += 1) {
  for (const zone of zones) {
    if (made >= count) break;
    const result = parseSchedule('0 3 * * *', variant(zone, n * 7919));
    made += 1;
    if (result.ok) {
      accepted += 1;
      result.schedule.mostRecentSlot(probe);
    }
  }
}
gc();
await new Promise((resolve) => setTimeout(resolve, 100));
gc();
process.stdout.write(`${JSON.stringify({ spellings: made, accepted, growthMiB: rss() - before })}\n`);
