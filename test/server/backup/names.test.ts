// Names of a backup's Jobs and helpers (src/server/backup/names.ts): valid DNS labels of at most 63 characters, label
// values Kubernetes accepts, and never the same for two backups (or two components of one backup).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  APP_NAME,
  BACKUP_LABEL,
  BACKUP_UID_LABEL,
  COMPONENT_LABEL,
  MANAGED_BY_LABEL,
  NAME_LABEL,
} from '../../../src/api/constants.js';
import { attachmentLabels, attachmentName, fitName, type Component } from '../../../src/server/backup/names.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const COMPONENTS: Component[] = ['snapshot', 'delete'];

/** A DNS-1123 label: 1 to 63 of [a-z0-9-], starting and ending alphanumeric (dashes drawn often, to stress the cuts). */
const label = fc
  .array(fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789', '-', '-', '-'), { minLength: 1, maxLength: 63 })
  .map((chars) => chars.join('').replace(/^-+|-+$/g, '') || 'a');

/** A backup name: a DNS-1123 subdomain of at most 253 characters (labels joined by dots). */
const backupName = fc
  .array(label, { minLength: 1, maxLength: 6 })
  .map((labels) => labels.join('.'))
  .filter((name) => name.length <= 253);

/**
 * Names that crowd the thresholds: a shared stem cut to every length around 54 and 63, with and without a suffix
 * taken from another name's attachment name (the collision the issue found: a 59-character name and a 54-character
 * name equal to its shortened form).
 */
const crowded = fc
  .tuple(
    fc.string({ unit: fc.constantFrom(...'abc-'), minLength: 40, maxLength: 80 }),
    fc.integer({ min: 40, max: 75 }),
  )
  .map(([stem, cut]) => {
    const name = `x${stem}`.slice(0, cut).replace(/-+$/, '');
    return name || 'x';
  });

describe('attachmentName', () => {
  it("the issue's case: a 59-character name and the 54-character name equal to its old shortened form differ", () => {
    const long = `daily-etcd-backup-of-the-production-cluster-${'1'.repeat(15)}`;
    assert.equal(long.length, 59);
    // The old scheme shortened a name to 45 characters + '-' + 8 hex of its hash, then added '-snapshot':
    // that 54-character form is itself a valid backup name, which kept as it is gave the same Job name.
    const oldShortened = `${long.slice(0, 45)}-${createHash('sha256').update(long).digest('hex').slice(0, 8)}`;
    assert.equal(oldShortened.length, 54);
    for (const component of COMPONENTS)
      assert.notEqual(attachmentName(long, component), attachmentName(oldShortened, component));
  });

  it('keeps `<backup>-<component>` for a DNS-label name that fits (names of existing Jobs do not change)', () => {
    assert.equal(
      attachmentName('daily-backup-schedule-1704153600', 'snapshot'),
      'daily-backup-schedule-1704153600-snapshot',
    );
    assert.equal(attachmentName('a'.repeat(54), 'snapshot'), `${'a'.repeat(54)}-snapshot`);
    assert.equal(attachmentName('a'.repeat(56), 'delete'), `${'a'.repeat(56)}-delete`);
  });

  it('shortens with the component and a hash of the whole name at the end, and drops dots', () => {
    const name = attachmentName('a'.repeat(55), 'snapshot');
    assert.match(name, /^a{45}-snapshot-[0-9a-f]{8}$/);
    assert.match(attachmentName('prod.cluster-backup', 'delete'), /^prod-cluster-backup-delete-[0-9a-f]{8}$/);
  });

  it('is a DNS label of at most 63 characters for every backup name (property)', () => {
    fc.assert(
      fc.property(fc.oneof(backupName, crowded), fc.constantFrom(...COMPONENTS), (name, component) => {
        const result = attachmentName(name, component);
        assert.ok(result.length <= 63, `${result} (${result.length})`);
        assert.match(result, DNS_LABEL);
      }),
      { numRuns: 2000 },
    );
  });

  it('never gives two backups, or two components, the same name (property)', () => {
    fc.assert(
      fc.property(
        fc.oneof(backupName, crowded),
        fc.oneof(backupName, crowded),
        fc.constantFrom(...COMPONENTS),
        fc.constantFrom(...COMPONENTS),
        (a, b, ca, cb) => {
          if (a === b && ca === cb) return;
          assert.notEqual(attachmentName(a, ca), attachmentName(b, cb), `${a}/${ca} and ${b}/${cb}`);
        },
      ),
      { numRuns: 5000 },
    );
    // The pair random names rarely hit: a name against the name whose kept-as-is form equals its result. A shortened
    // result that ended in `-<component>` would be exactly that name's result.
    fc.assert(
      fc.property(fc.oneof(backupName, crowded), fc.constantFrom(...COMPONENTS), (name, component) => {
        const result = attachmentName(name, component);
        if (result === `${name}-${component}` || !result.endsWith(`-${component}`)) return;
        const twin = result.slice(0, result.length - component.length - 1);
        assert.notEqual(attachmentName(twin, component), result, `${name} and ${twin}`);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('fitName (label values)', () => {
  it('keeps a name of at most 63 characters, shortens a longer one with `_` and a hash', () => {
    assert.equal(fitName('a'.repeat(63)), 'a'.repeat(63));
    assert.match(fitName('a'.repeat(64)), /^a{54}_[0-9a-f]{8}$/);
  });

  it('is a valid label value and never the same for two backup names (property)', () => {
    fc.assert(
      fc.property(fc.oneof(backupName, crowded), fc.oneof(backupName, crowded), (a, b) => {
        assert.ok(fitName(a).length <= 63);
        assert.match(fitName(a), LABEL_VALUE);
        if (a !== b) assert.notEqual(fitName(a), fitName(b), `${a} and ${b}`);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('names as a table', () => {
  const hash8 = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 8);
  const a = (n: number) => 'a'.repeat(n);
  const cutAtDot = `${a(44)}.-b${'c'.repeat(20)}`;
  const attachments: { name: string; backup: string; component: Component; expected: string }[] = [
    { name: 'a short name: <backup>-snapshot', backup: 'n-1', component: 'snapshot', expected: 'n-1-snapshot' },
    { name: 'a short name: <backup>-delete', backup: 'n-1', component: 'delete', expected: 'n-1-delete' },
    {
      name: '63 characters with the component: kept',
      backup: a(54),
      component: 'snapshot',
      expected: `${a(54)}-snapshot`,
    },
    {
      name: 'one more: shortened, the hash last',
      backup: a(55),
      component: 'snapshot',
      expected: `${a(45)}-snapshot-${hash8(a(55))}`,
    },
    {
      name: 'a dotted name: dots as dashes, the hash last',
      backup: 'prod.eu',
      component: 'delete',
      expected: `prod-eu-delete-${hash8('prod.eu')}`,
    },
    {
      name: 'a cut that ends in a dash or dot: trimmed to end alphanumeric',
      backup: cutAtDot,
      component: 'snapshot',
      expected: `${a(44)}-snapshot-${hash8(cutAtDot)}`,
    },
  ];
  for (const c of attachments) {
    it(`attachmentName: ${c.name}`, () => assert.equal(attachmentName(c.backup, c.component), c.expected));
  }

  const cutAfter53 = `${a(53)}.${a(20)}`;
  const fits: { name: string; text: string; max?: number; expected: string }[] = [
    { name: 'a name that fits: as it is', text: 'nightly-1', expected: 'nightly-1' },
    { name: '64 characters: 54 of them, `_`, the hash', text: a(64), expected: `${a(54)}_${hash8(a(64))}` },
    { name: 'a smaller maximum', text: 'abcdefghijklmnop', max: 12, expected: `abc_${hash8('abcdefghijklmnop')}` },
    { name: 'a cut ending in a dot: trimmed', text: cutAfter53, expected: `${a(53)}_${hash8(cutAfter53)}` },
  ];
  for (const c of fits) it(`fitName: ${c.name}`, () => assert.equal(fitName(c.text, c.max), c.expected));

  it('attachmentLabels: the app, the component, the manager, the backup (fitted) and its uid', () => {
    const long = 'e'.repeat(100);
    assert.deepEqual(attachmentLabels({ name: long, uid: 'u-1' }, 'delete'), {
      [NAME_LABEL]: APP_NAME,
      [COMPONENT_LABEL]: 'delete',
      [MANAGED_BY_LABEL]: APP_NAME,
      [BACKUP_LABEL]: fitName(long),
      [BACKUP_UID_LABEL]: 'u-1',
    });
  });
});
