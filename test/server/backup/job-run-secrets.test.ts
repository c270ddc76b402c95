// The cluster secrets beside the snapshot, through the Job the hook emits, on a real control plane: the kubelet (the
// test kubelet) mounts the Secret as a volume, the Job's ServiceAccount reads no Secret, the secrets object is
// stored, verified and recorded in the status the CRD keeps, the delete Job removes it with the snapshot, and no
// value of the Secret is in the Job's output, the status, the report or the Events.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { Decrypter, generateIdentity, identityToRecipient } from 'age-encryption';
import { parse } from 'yaml';
import { BACKUP_PLURAL, GROUP, VERSION } from '../../../src/api/constants.js';
import type { BackupStatus } from '../../../src/api/types.js';
import { finalizeBackup } from '../../../src/server/backup/finalize.js';
import { BUCKET, IMAGE, NAMESPACE, useJobCluster, type AuditEvent, type JobCluster, type Obj } from './job-cluster.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const b64 = (text: string) => Buffer.from(text).toString('base64');
const SECRET_VALUES = ['NEVER-PRINT-bundle-9c41d2', 'NEVER-PRINT-config-1e77fa'];

describe('the snapshot Job with cluster secrets on a real control plane', () => {
  const cluster = useJobCluster();
  let c: JobCluster;

  const noSecretIn = (text: string, where: string) => {
    for (const value of SECRET_VALUES) {
      assert.ok(!text.includes(value), `a secret value in ${where}`);
      assert.ok(!text.includes(b64(value).slice(0, 12)), `a secret value (base64) in ${where}`);
    }
  };
  const exists = (key: string) =>
    c.rgw
      .client()
      .send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))
      .then(
        () => true,
        () => false,
      );

  it('stores the referenced Secret beside the snapshot, verifies it, records it, deletes it with the snapshot; its values are nowhere else', async () => {
    c = cluster();
    const identity = await generateIdentity();
    const recipient = await identityToRecipient(identity);
    await c.core.createNamespacedSecret({
      namespace: NAMESPACE,
      body: { metadata: { name: 'secrets-age' }, data: { 'identity.txt': b64(`${identity}\n`) } },
    });
    await c.core.createNamespacedSecret({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'prod-talos-secrets' },
        data: {
          'secrets.yaml': b64(`secrets:\n  secretboxencryptionsecret: ${SECRET_VALUES[0]}\n`),
          'controlplane.yaml': b64(`machine:\n  token: ${SECRET_VALUES[1]}\n`),
        },
      },
    });
    const backup = await c.createBackup({
      finalizer: true,
      spec: (s) => ({
        ...s,
        clusterSecretsRef: { name: 'prod-talos-secrets' },
        encryption: {
          age: { recipients: [recipient], identitySecretRef: { name: 'secrets-age', key: 'identity.txt' } },
        },
        verify: true,
        deletionPolicy: 'Delete',
      }),
    });
    const name = backup.metadata.name;
    const { jobName, run } = await c.runJob(backup);
    assert.equal(run.exitCode, 0, run.stderr);
    noSecretIn(run.stdout + run.stderr, "the Job's output");
    await c.jobFinished(jobName);
    const { response } = await c.sync(name);
    const status = response.status as BackupStatus;
    assert.equal(status.phase, 'Succeeded');
    assert.equal(status.snapshot!.verified, true);
    const secrets = status.snapshot!.secrets!;
    assert.deepEqual(
      { source: secrets.source, secretName: secrets.secretName, key: secrets.key },
      {
        source: 'clusterSecretsRef',
        secretName: 'prod-talos-secrets',
        key: status.snapshot!.key.replace(/\.db\.age$/, '.secrets.yaml.age'),
      },
    );
    assert.match(secrets.sha256!, /^[0-9a-f]{64}$/);
    const ready = status.conditions!.find((x) => x.type === 'Ready')!;
    assert.match(
      ready.message,
      /; cluster secrets \(Secret prod-talos-secrets\) stored at s3:\/\/.*\.secrets\.yaml\.age$/,
    );
    const kept = await c.writeStatus(name, status as Record<string, unknown>);
    assert.deepEqual(kept.status, status, 'the CRD keeps status.snapshot.secrets as written');
    noSecretIn(JSON.stringify(kept), 'the backup (spec and status, report included)');

    // The object decrypts (independent age) to the Secret's keys.
    const object = await c.rgw.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: secrets.key }));
    const decrypter = new Decrypter();
    decrypter.addIdentity(identity);
    const manifest = parse(
      Buffer.from(await decrypter.decrypt(await object.Body!.transformToByteArray())).toString('utf8'),
    ) as { metadata: { name: string }; data: Record<string, string> };
    assert.equal(manifest.metadata.name, 'prod-talos-secrets');
    assert.match(Buffer.from(manifest.data['secrets.yaml']!, 'base64').toString(), new RegExp(SECRET_VALUES[0]!));

    // The kubelet read the Secret, not the Job: its ServiceAccount made no call about Secrets.
    const calls = (await c.audit(jobName)).map((e: AuditEvent) => `${e.verb} ${e.objectRef?.resource}`);
    assert.ok(
      calls.length > 0 && calls.every((x) => /^(patch talosetcdbackups|create events)$/.test(x)),
      calls.join(', '),
    );
    // Its Events: the success note says where the secrets went, with no value.
    const listed = await c.cp.kubectl(['get', 'events.events.k8s.io', '-n', NAMESPACE, '-o', 'json']);
    const events = (JSON.parse(listed.stdout) as { items: Obj[] }).items.filter((e) => e.regarding?.name === name);
    const succeeded = events.find((e) => e.reason === 'BackupSucceeded');
    assert.match(
      succeeded?.note ?? '',
      /; cluster secrets \(Secret prod-talos-secrets\) stored at s3:\/\/.*\.secrets\.yaml\.age$/,
    );
    noSecretIn(JSON.stringify(events), 'the Events');

    // deletionPolicy Delete: the delete Job deletes both objects.
    await c.deleteAttachments(backup);
    await c.kubelet.waitFor('the snapshot Job to be gone', async () => (await c.jobNow(jobName)) === undefined, 30_000);
    await c.custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NAMESPACE,
      plural: BACKUP_PLURAL,
      name,
    });
    const deleting = await c.backupNow(name);
    const held = finalizeBackup({ object: deleting, attachments: {}, related: {}, finalizing: true }, IMAGE);
    const deleteJob = held.response.attachments[0]!;
    await c.applyAttachments(deleting, held.response.attachments);
    const del = await c.kubelet.waitForPod({ namespace: NAMESPACE, job: deleteJob.metadata.name }, 'Terminated');
    assert.equal(del.exitCode, 0, del.stderr);
    assert.deepEqual(JSON.parse(del.stdout), {
      bucket: BUCKET,
      key: status.snapshot!.key,
      deleted: true,
      secrets: { key: secrets.key, deleted: true },
    });
    assert.equal(await exists(status.snapshot!.key), false);
    assert.equal(await exists(secrets.key!), false);
  });

  it('a clusterSecretsRef Secret that does not exist fails the backup at once: "Failed to get secret", exit 2, no secrets stored', async () => {
    const recipient = await identityToRecipient(await generateIdentity());
    const backup = await c.createBackup({
      spec: (s) => ({
        ...s,
        clusterSecretsRef: { name: 'no-such-bundle' },
        encryption: { age: { recipients: [recipient] } },
      }),
    });
    const { run } = await c.runJob(backup);
    assert.equal(run.exitCode, 2, run.stderr);
    assert.equal(
      run.stderr.trim(),
      'Failed to get secret: secret talos-backup/no-such-bundle (the Secret does not exist or has no keys)',
    );
    const report = ((await c.backupNow(backup.metadata.name)).status as BackupStatus).report!;
    assert.deepEqual([report.state, report.retryable], ['Failed', false]);
  });
});
