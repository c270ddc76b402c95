import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { API_VERSION, SCHEDULE_KIND } from '../../src/api/constants.js';
import { owningSchedule } from '../../src/api/ownership.js';
import type { KubernetesObject } from '../../src/server/metacontroller/types.js';

describe('owningSchedule', () => {
  const owner = { apiVersion: API_VERSION, kind: SCHEDULE_KIND, name: 'nightly', uid: 'u', controller: true };
  const object = (ownerReferences?: unknown[], labels?: Record<string, string>): KubernetesObject => ({
    apiVersion: API_VERSION,
    kind: 'TalosEtcdBackup',
    metadata: { name: 'b', namespace: 'ns', ...(ownerReferences && { ownerReferences }), ...(labels && { labels }) },
  });

  it("is the controller ownerReference's name when it is a schedule of this API", () => {
    assert.equal(owningSchedule(object([owner])), 'nightly');
    assert.equal(owningSchedule(object([{ kind: 'Other', name: 'x', controller: true }, owner])), 'nightly');
  });

  it('is empty for a backup made by hand, whatever its labels say, or owned by something else', () => {
    assert.equal(owningSchedule(object(undefined, { 'talos.alperen.cloud/backup-schedule': 'nightly' })), '');
    assert.equal(owningSchedule(object([{ ...owner, controller: false }])), '');
    assert.equal(owningSchedule(object([{ ...owner, apiVersion: 'other.example/v1' }])), '');
    assert.equal(owningSchedule(object([null, 'junk', { ...owner, name: 7 }])), '');
  });
});
