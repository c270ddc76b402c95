// The cluster secrets stored beside the snapshot, as the hooks decide them: which Secret reaches the snapshot Job
// (and how: a whole-Secret volume, never API access), what the status says when none is stored and why, an explicit
// clusterSecretsRef without age refused, and the delete Job told the secrets' key. Pure functions, one answer each.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateBackupSpec } from '../../../src/api/validation.js';
import { secretsKeyOf } from '../../../src/contract/object-key.js';
import { finalizeBackup } from '../../../src/server/backup/finalize.js';
import { secretsPlan } from '../../../src/server/backup/cluster-secrets.js';
import {
  backup,
  cond,
  controlPlane,
  envValue,
  identify,
  IMAGE,
  jobActive,
  jobComplete,
  type J,
  KEY,
  landsWhereSaid,
  observedAttachments,
  protectedSpec,
  RECIPIENTS,
  referencedInputs,
  report,
  request,
  requiredSecrets,
  snapshotJobOf,
  st,
  stored,
  sync,
  tcpSpec,
  withSpec,
} from './fixtures.js';

const AGE = { age: { recipients: RECIPIENTS } };
const metal = controlPlane('my-cluster', { bundleConfig: { clientEndpoint: ['10.0.0.2'] } });
const jobOf = (spec: Record<string, unknown>) => snapshotJobOf(sync(request(backup({ spec }), { related: [metal] })));
const volume = (job: J, name: string): J => (job.spec.template.spec.volumes as J[]).find((v) => v.name === name);
const SECRETS_KEY = KEY.replace(/\.db$/, '.secrets.yaml.age');
const storedSecrets = {
  source: 'clusterSecretsRef' as const,
  secretName: 'prod-talos-secrets',
  key: SECRETS_KEY,
  size: 2345,
  sha256: 'c'.repeat(64),
};
/** A sync of a backup whose Job completed with this report. */
const finishedWith = (spec: Record<string, unknown>, snapshot: J) => {
  const attachments = observedAttachments(backup({ spec }), jobComplete, [metal]);
  const r = report({ state: 'Succeeded', bytesUploaded: stored.size, snapshot, updatedAt: '2026-01-15T12:03:05Z' });
  return sync(request(backup({ spec, status: { report: r } }), { attachments, related: [metal] }));
};

describe('cluster secrets beside the snapshot: the hooks', () => {
  it('the key is the snapshot key with its format suffix replaced, for every format', () => {
    for (const suffix of ['.db', '.db.gz', '.db.zst', '.db.age', '.db.gz.age', '.db.zst.age'])
      assert.equal(
        secretsKeyOf(`p/c/etcd-snapshot-2026-01-15T12-00-00Z${suffix}`),
        'p/c/etcd-snapshot-2026-01-15T12-00-00Z.secrets.yaml.age',
      );
  });

  it('clusterSecretsRef: the whole Secret is a volume the kubelet mounts (optional, listed as required), nothing in the Role', () => {
    const spec = withSpec({ encryption: AGE, clusterSecretsRef: { name: 'prod-talos-secrets' } });
    const result = sync(request(backup({ spec })));
    const job = snapshotJobOf(result);
    assert.deepEqual(volume(job, 'cluster-secrets').secret, { secretName: 'prod-talos-secrets', optional: true });
    assert.equal(envValue(job, 'CLUSTER_SECRETS_DIR'), '/var/run/secrets/cluster-secrets');
    assert.equal(envValue(job, 'CLUSTER_SECRETS_NAME'), 'prod-talos-secrets');
    assert.equal(envValue(job, 'CLUSTER_SECRETS_SOURCE'), 'clusterSecretsRef');
    const required = requiredSecrets(job);
    assert.deepEqual(required.at(-1), {
      kind: 'Secret',
      name: 'prod-talos-secrets',
      pathEnv: 'CLUSTER_SECRETS_DIR',
    });
    assert.deepEqual(required.map(identify).sort(), referencedInputs(job).sort());
    for (const entry of required) assert.ok(landsWhereSaid(job, entry), JSON.stringify(entry));
    // The Job's identity never reads a Secret: the kubelet mounts it.
    const role = result.response.attachments.find((a) => a.kind === 'Role') as J;
    assert.ok(
      (role.rules as J[]).every((r) => !(r.resources as string[]).includes('secrets')),
      JSON.stringify(role.rules),
    );
    const mount = (job.spec.template.spec.containers[0].volumeMounts as J[]).find((m) => m.name === 'cluster-secrets');
    assert.deepEqual(mount, { name: 'cluster-secrets', mountPath: '/var/run/secrets/cluster-secrets', readOnly: true });
  });

  it("talosControlPlaneRef, age-encrypted: talos-operator's <tcp>-state Secret by default, mounted but not required (missing: recorded as not stored)", () => {
    const job = jobOf(tcpSpec({ encryption: AGE }));
    assert.deepEqual(volume(job, 'cluster-secrets').secret, { secretName: 'my-cluster-state', optional: true });
    assert.equal(envValue(job, 'CLUSTER_SECRETS_SOURCE'), 'talosOperatorState');
    assert.equal(envValue(job, 'CLUSTER_SECRETS_NAME'), 'my-cluster-state');
    assert.ok(!requiredSecrets(job).some((r) => r.name === 'my-cluster-state'));
    // An explicit ref wins over the default, and is required.
    const explicit = jobOf(tcpSpec({ encryption: AGE, clusterSecretsRef: { name: 'bundle' } }));
    assert.equal(volume(explicit, 'cluster-secrets').secret.secretName, 'bundle');
    assert.ok(requiredSecrets(explicit).some((r) => r.name === 'bundle' && r.key === undefined));
  });

  it('nothing is mounted without a Secret to store: talosConfigSecretRef alone, or an unencrypted talosControlPlaneRef backup', () => {
    for (const spec of [withSpec({}), protectedSpec(), tcpSpec()]) {
      const job = jobOf(spec);
      assert.equal(volume(job, 'cluster-secrets'), undefined);
      assert.equal(envValue(job, 'CLUSTER_SECRETS_DIR'), undefined);
    }
  });

  it('an unencrypted talosControlPlaneRef backup succeeds as before, and its status says the secrets were not stored, and why', () => {
    const result = finishedWith(tcpSpec(), stored);
    assert.equal(st(result).phase, 'Succeeded');
    assert.deepEqual(st(result).snapshot.secrets, {
      source: 'talosOperatorState',
      secretName: 'my-cluster-state',
      notStored:
        "the backup is not age-encrypted, and talos-operator's state Secret holds the cluster's CA keys: it is stored only age-encrypted (set spec.encryption.age.recipients)",
    });
    assert.match(
      cond(result, 'Ready')!.message,
      /; cluster secrets not stored: the backup is not age-encrypted, .*\(set spec\.encryption\.age\.recipients\)$/,
    );
  });

  it('the secrets a Job reported are in status.snapshot and the Ready message; a state Secret the Job did not find is said so', () => {
    const spec = withSpec({ encryption: AGE, clusterSecretsRef: { name: 'prod-talos-secrets' } });
    const result = finishedWith(spec, { ...stored, encrypted: true, secrets: storedSecrets });
    assert.deepEqual(st(result).snapshot.secrets, storedSecrets);
    assert.match(
      cond(result, 'Ready')!.message,
      new RegExp(
        `; cluster secrets \\(Secret prod-talos-secrets\\) stored at s3://etcd-backups/${SECRETS_KEY.replace(/\./g, '\\.')}$`,
      ),
    );
    const missing = {
      source: 'talosOperatorState',
      secretName: 'my-cluster-state',
      notStored: 'the Secret talos-backup/my-cluster-state does not exist or has no keys',
    };
    const tcp = finishedWith(tcpSpec({ encryption: AGE }), { ...stored, secrets: missing });
    assert.equal(st(tcp).phase, 'Succeeded');
    assert.deepEqual(st(tcp).snapshot.secrets, missing);
    assert.match(
      cond(tcp, 'Ready')!.message,
      /; cluster secrets not stored: the Secret talos-backup\/my-cluster-state does not exist or has no keys$/,
    );
  });

  it('an explicit clusterSecretsRef without encryption.age is Failed, the message saying what to add; the CRD says the same', () => {
    const spec = withSpec({ clusterSecretsRef: { name: 'prod-talos-secrets' } });
    const result = sync(request(backup({ spec })));
    assert.equal(st(result).phase, 'Failed');
    assert.deepEqual(result.response.attachments, []);
    assert.equal(
      st(result).message,
      "Invalid spec: spec: clusterSecretsRef needs encryption.age: the cluster's secrets are stored only age-encrypted; add spec.encryption.age.recipients, or remove clusterSecretsRef",
    );
    assert.equal(cond(result, 'Failed')?.status, 'True');
    assert.ok(validateBackupSpec(withSpec({ encryption: AGE, clusterSecretsRef: { name: 'x' } })).ok);
    assert.deepEqual(secretsPlan((validateBackupSpec(tcpSpec({ encryption: AGE })) as J).value), {
      action: 'store',
      secretName: 'my-cluster-state',
      source: 'talosOperatorState',
      required: false,
    });
  });

  describe('deletionPolicy Delete: the delete Job deletes the secrets too', () => {
    const deleting = (spec: Record<string, unknown>, status: unknown, attachments: J[] = []) => {
      const object = backup({ spec: { ...spec, deletionPolicy: 'Delete' }, status });
      object.metadata.deletionTimestamp = '2026-01-16T00:00:00Z';
      return finalizeBackup({ ...request(object, { attachments, related: [metal] }), finalizing: true }, IMAGE);
    };
    const spec = withSpec({ encryption: AGE, clusterSecretsRef: { name: 'prod-talos-secrets' } });

    it('a finished backup: the key its status records, and only that', () => {
      const done = st(finishedWith(spec, { ...stored, secrets: storedSecrets }));
      const job = deleting(spec, done).response.attachments[0] as J;
      assert.equal(envValue(job, 'S3_KEY'), KEY);
      assert.equal(envValue(job, 'CLUSTER_SECRETS_KEY'), SECRETS_KEY);
      // Stored nothing (the state Secret was missing): nothing to delete beside the snapshot.
      const none = st(
        finishedWith(tcpSpec({ encryption: AGE }), {
          ...stored,
          secrets: { source: 'talosOperatorState', secretName: 'my-cluster-state', notStored: 'x' },
        }),
      );
      const plain = deleting(tcpSpec({ encryption: AGE }), none).response.attachments[0] as J;
      assert.equal(envValue(plain, 'CLUSTER_SECRETS_KEY'), undefined);
      const withoutSecrets = deleting(withSpec({}), st(finishedWith(withSpec({}), stored))).response
        .attachments[0] as J;
      assert.equal(envValue(withoutSecrets, 'CLUSTER_SECRETS_KEY'), undefined);
    });

    it('a backup deleted while it runs: the key beside the one its Job would write', () => {
      const running = { report: report({ state: 'Running', bytesUploaded: 1024 }) };
      const r = deleting(spec, running);
      const job = r.response.attachments[0] as J;
      assert.ok(job, 'a delete Job');
      const key = envValue(job, 'S3_KEY')!;
      assert.match(key, /\.db\.age$/);
      assert.equal(envValue(job, 'CLUSTER_SECRETS_KEY'), secretsKeyOf(key));
      // Not while its snapshot Job is still there: it is removed first.
      const waiting = deleting(spec, running, observedAttachments(backup({ spec }), jobActive, [metal]));
      assert.deepEqual(waiting.response.attachments, []);
    });
  });
});
