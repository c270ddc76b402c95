// Reading a Secret volume that holds all of a Secret's keys: one file per key. The kubelet also writes its own
// entries there (`..data`, `..2026_01_01_00_00_00.123`), which no Secret key can be: keys never start with `..`.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The keys in a Secret volume's directory, sorted; none when it is missing or empty (an optional, absent Secret). */
export function secretVolumeKeys(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((name) => !name.startsWith('..') && statSync(join(dir, name), { throwIfNoEntry: false })?.isFile())
    .sort();
}

/** The keys and values of a Secret volume (values as bytes: a Secret's data is binary). */
export function readSecretVolume(dir: string): Map<string, Buffer> {
  return new Map(secretVolumeKeys(dir).map((key) => [key, readFileSync(join(dir, key))]));
}
