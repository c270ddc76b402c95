// The user-facing examples in examples/: every resource is complete, valid against our CRDs, asks for no feature
// this release rejects, and the Secrets and keys it references exist in the example Secrets.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { API_VERSION, BACKUP_KIND, SCHEDULE_KIND } from '../src/api/constants.js';
import { packageRoot } from '../src/api/crds.js';
import { specProblems } from '../src/api/spec-checks.js';
import type { BackupSpec } from '../src/api/types.js';
import { validateBackupSpec, validateSchedule } from '../src/api/validation.js';

interface Example {
  file: string;
  index: number;
  object: {
    apiVersion?: unknown;
    kind?: unknown;
    metadata?: { name?: unknown; namespace?: unknown; [key: string]: unknown };
    spec?: unknown;
    stringData?: Record<string, unknown>;
    data?: Record<string, unknown>;
    [key: string]: unknown;
  };
}

const root = packageRoot();
const examplesDir = join(root, 'examples');

function loadExamples(): Example[] {
  const files = readdirSync(examplesDir)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort();
  return files.flatMap((f) => {
    const file = join(examplesDir, f);
    const parsed = parseAllDocuments(readFileSync(file, 'utf8'));
    const documents = Array.isArray(parsed) ? parsed : [];
    const out: Example[] = [];
    documents.forEach((doc, index) => {
      assert.deepEqual(doc.errors.map(String), [], `${f}: YAML errors`);
      assert.deepEqual(doc.warnings.map(String), [], `${f}: YAML warnings`);
      const object: unknown = doc.toJS();
      if (object === null || object === undefined) return; // an empty document (stray `---`)
      assert.ok(typeof object === 'object' && !Array.isArray(object), `${f} document ${index} is not a mapping`);
      out.push({ file: f, index, object: object as Example['object'] });
    });
    return out;
  });
}

const examples = loadExamples();
const label = (e: Example): string =>
  `${e.file}#${e.index} ${String(e.object.kind)} ${String(e.object.metadata?.name)}`;
const ofKind = (apiVersion: string, kind: string): Example[] =>
  examples.filter((e) => e.object.apiVersion === apiVersion && e.object.kind === kind);

const schedules = ofKind(API_VERSION, SCHEDULE_KIND);
const backups = ofKind(API_VERSION, BACKUP_KIND);
const secrets = ofKind('v1', 'Secret');
const talosServiceAccounts = ofKind('talos.dev/v1alpha1', 'ServiceAccount');

/** The keys a Secret example defines (stringData or data). */
function secretKeys(secret: Example): string[] {
  return [...Object.keys(secret.object.stringData ?? {}), ...Object.keys(secret.object.data ?? {})];
}

/** Every backup spec in the examples, with the namespace it is used in: the backups' own and the schedules' templates. */
function backupSpecs(): { where: string; namespace: unknown; spec: BackupSpec }[] {
  const specs: { where: string; namespace: unknown; spec: BackupSpec }[] = [];
  for (const s of schedules) {
    const result = validateSchedule({ metadata: s.object.metadata, spec: s.object.spec });
    assert.ok(result.ok, `${label(s)}: ${result.ok ? '' : result.problems.join('; ')}`);
    specs.push({
      where: `${label(s)} backupTemplate.spec`,
      namespace: s.object.metadata?.namespace,
      spec: result.value.backupTemplate.spec,
    });
  }
  for (const b of backups) {
    const result = validateBackupSpec(b.object.spec);
    assert.ok(result.ok, `${label(b)}: ${result.ok ? '' : result.problems.join('; ')}`);
    specs.push({ where: label(b), namespace: b.object.metadata?.namespace, spec: result.value });
  }
  return specs;
}

describe('examples/*.yaml', () => {
  it('holds a schedule, a one-off backup, the S3 Secret and the Talos ServiceAccount', () => {
    assert.ok(schedules.length >= 1, 'no TalosEtcdBackupSchedule example');
    assert.ok(backups.length >= 1, 'no TalosEtcdBackup example');
    assert.ok(secrets.length >= 1, 'no Secret example');
    assert.ok(talosServiceAccounts.length >= 1, 'no Talos ServiceAccount example');
  });

  for (const e of examples) {
    it(`${label(e)} has apiVersion, kind, metadata.name and metadata.namespace`, () => {
      for (const field of [e.object.apiVersion, e.object.kind, e.object.metadata?.name, e.object.metadata?.namespace]) {
        assert.equal(typeof field, 'string');
        assert.notEqual(field, '');
      }
    });
  }

  for (const s of schedules) {
    it(`${label(s)} passes validateSchedule and asks for no unsupported feature`, () => {
      const result = validateSchedule({ metadata: s.object.metadata, spec: s.object.spec });
      assert.ok(result.ok, result.ok ? '' : result.problems.join('\n'));
      assert.deepEqual(specProblems(result.value.backupTemplate.spec, 'spec.backupTemplate.spec'), []);
    });
  }

  for (const b of backups) {
    it(`${label(b)} passes validateBackupSpec and asks for no unsupported feature`, () => {
      const result = validateBackupSpec(b.object.spec);
      assert.ok(result.ok, result.ok ? '' : result.problems.join('\n'));
      assert.deepEqual(specProblems(result.value), []);
    });
  }

  it('the S3 credentials every backup spec references exist as keys of an example Secret in its namespace', () => {
    const specs = backupSpecs();
    let checked = 0;
    for (const { where, namespace, spec } of specs) {
      const s3 = spec.backupStorage.s3;
      for (const ref of [s3.accessKeyID, s3.secretAccessKey]) {
        if (!ref) continue;
        const secret = secrets.find(
          (x) => x.object.metadata?.name === ref.name && x.object.metadata?.namespace === namespace,
        );
        assert.ok(secret, `${where}: no example Secret ${String(namespace)}/${ref.name}`);
        assert.ok(
          secretKeys(secret).includes(ref.key),
          `${where}: Secret ${ref.name} has no key ${ref.key} (has ${secretKeys(secret).join(', ')})`,
        );
        checked++;
      }
    }
    assert.ok(checked > 0, 'no example references S3 credentials');
  });

  it('a referenced talosconfig Secret is the one a Talos ServiceAccount of the same name produces (key "config")', () => {
    let checked = 0;
    for (const { where, namespace, spec } of backupSpecs()) {
      const ref = spec.talosConfigSecretRef;
      if (!ref) continue;
      const account = talosServiceAccounts.find(
        (a) => a.object.metadata?.name === ref.name && a.object.metadata?.namespace === namespace,
      );
      assert.ok(
        account,
        `${where}: talosConfigSecretRef ${ref.name} matches no Talos ServiceAccount in ${String(namespace)}`,
      );
      // Talos writes the talosconfig under the key `config`; the defaulted spec must read that key.
      assert.equal(ref.key, 'config');
      checked++;
    }
    assert.ok(checked > 0, 'no example references a talosconfig Secret');
  });

  for (const a of talosServiceAccounts) {
    it(`${label(a)} asks for the os:etcd:backup role`, () => {
      assert.deepEqual((a.object.spec as { roles?: unknown }).roles, ['os:etcd:backup']);
    });
  }

  for (const s of secrets) {
    it(`${label(s)} has only string values`, () => {
      for (const [key, value] of Object.entries({ ...s.object.stringData, ...s.object.data }))
        assert.equal(typeof value, 'string', `key ${key}`);
    });
  }
});

describe('examples/hooks/*.json', () => {
  const hooksDir = join(examplesDir, 'hooks');
  // Recursive, so a file in a subfolder is checked too; a missing directory simply means no files.
  const files = existsSync(hooksDir)
    ? readdirSync(hooksDir, { recursive: true, encoding: 'utf8' })
        .filter((f) => f.endsWith('.json'))
        .sort()
    : [];
  for (const f of files) {
    it(`${f} parses as JSON`, () => {
      assert.doesNotThrow(() => JSON.parse(readFileSync(join(hooksDir, f), 'utf8')) as unknown);
    });
  }
});
