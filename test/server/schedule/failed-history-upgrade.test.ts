// failedBackupsHistoryLimit on a real API server (test/harness/control-plane.ts): a schedule written under the CRD
// of before (the field without a default: "failed backups are kept forever") reads as 3 once the new CRD is
// applied, without anyone touching the object (structural defaults apply when an object is read from etcd), so an
// upgraded schedule stops growing at its next sync; an explicit value stays; more than 100 is refused on write.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { API_VERSION, SCHEDULE_KIND, SCHEDULE_PLURAL } from '../../../src/api/constants.js';
import { crdPath } from '../../../src/api/crds.js';
import { validateSchedule } from '../../../src/api/validation.js';
import { DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT } from '../../../src/server/schedule/retention.js';
import { useControlPlane, type ControlPlane } from '../../harness/control-plane.js';
import { backupTemplateSpec } from '../../helpers/builders.js';

type Json = Record<string, any>;

/** The schedule CRD as it was: failedBackupsHistoryLimit with neither default nor maximum. */
function previousCrd(): Json {
  const crd = parse(readFileSync(crdPath(SCHEDULE_PLURAL), 'utf8')) as Json;
  for (const version of crd.spec.versions as Json[]) {
    const field = version.schema.openAPIV3Schema.properties.spec.properties.failedBackupsHistoryLimit as Json;
    delete field.default;
    delete field.maximum;
  }
  return crd;
}

function scheduleObject(name: string, spec: Json = {}): Json {
  return {
    apiVersion: API_VERSION,
    kind: SCHEDULE_KIND,
    metadata: { name, namespace: 'default' },
    spec: { schedule: '*/5 * * * *', backupTemplate: { spec: backupTemplateSpec() }, ...spec },
  };
}

describe('failedBackupsHistoryLimit on a real API server, across the CRD upgrade', () => {
  const controlPlane = useControlPlane();
  let cp: ControlPlane;
  const kubectl = async (args: string[], input?: unknown) => {
    const run = await cp.kubectl(args, input === undefined ? {} : { input: JSON.stringify(input) });
    return run;
  };
  const stored = async (name: string): Promise<Json> => {
    const run = await kubectl(['get', SCHEDULE_PLURAL, name, '-n', 'default', '-o', 'json']);
    assert.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout) as Json;
  };

  before(async () => {
    cp = controlPlane();
    const applied = await kubectl(
      ['apply', '--server-side', '--field-manager=talos-etcd-backup-tests', '-f', '-'],
      previousCrd(),
    );
    assert.equal(applied.code, 0, applied.stderr);
    const established = await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=30s',
      `crd/${SCHEDULE_PLURAL}.talos.alperen.cloud`,
    ]);
    assert.equal(established.code, 0, established.stderr);
    for (const object of [
      scheduleObject('written-before'),
      scheduleObject('explicit', { failedBackupsHistoryLimit: 50 }),
    ]) {
      const created = await kubectl(['create', '-f', '-'], object);
      assert.equal(created.code, 0, created.stderr);
    }
  });

  it('under the old CRD the field stays unset', async () => {
    assert.equal((await stored('written-before')).spec.failedBackupsHistoryLimit, undefined);
  });

  it('after the new CRD is applied, the untouched schedule reads as 3 (as the hook sees it), an explicit 50 stays 50', async () => {
    await cp.installCrds();
    // The API server serves the new schema once its CRD handler is rebuilt: bounded wait for it.
    let limit: unknown;
    for (let i = 0; i < 100 && limit === undefined; i += 1) {
      limit = (await stored('written-before')).spec.failedBackupsHistoryLimit;
      if (limit === undefined) await sleep(100);
    }
    assert.equal(limit, DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT);
    assert.equal((await stored('explicit')).spec.failedBackupsHistoryLimit, 50);
    // The hook's own reading agrees, for the object as read and for one read without the default.
    const read = await stored('written-before');
    const validated = validateSchedule({ metadata: read.metadata, spec: read.spec });
    assert.ok(validated.ok);
    assert.equal(validated.value.failedBackupsHistoryLimit, DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT);
    const { failedBackupsHistoryLimit: _dropped, ...withoutDefault } = read.spec as Json;
    const old = validateSchedule({ metadata: read.metadata, spec: withoutDefault });
    assert.ok(old.ok);
    assert.equal(old.value.failedBackupsHistoryLimit, DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT);
  });

  it('more than 100 is refused on write, naming the field and the bound', async () => {
    const run = await kubectl(['create', '-f', '-'], scheduleObject('too-many', { failedBackupsHistoryLimit: 101 }));
    assert.notEqual(run.code, 0);
    assert.match(
      run.stderr,
      /spec\.failedBackupsHistoryLimit: Invalid value: 101: spec\.failedBackupsHistoryLimit in body should be less than or equal to 100/,
    );
  });
});
