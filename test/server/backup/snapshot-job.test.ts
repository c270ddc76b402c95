// The snapshot Job and its identity (ServiceAccount, Role, RoleBinding) as the sync hook attaches them
// (src/server/backup/job.ts, names.ts): the pod's security, the settings it is given, where its Secrets land, and the
// names of long backups.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BACKUP_LABEL,
  CONTROLLER_UID_LABEL,
  SCHEDULE_LABEL,
  SCHEDULED_TIME_ANNOTATION,
} from '../../../src/api/constants.js';
import { attachmentName } from '../../../src/server/backup/names.js';
import { syncBackup } from '../../../src/server/backup/sync.js';
import type { KubernetesObject } from '../../../src/server/metacontroller/types.js';
import {
  backup,
  container,
  CREATED,
  DELETE_JOB,
  envOf,
  envValue,
  identify,
  IMAGE,
  type J,
  JOB,
  jobActive,
  LABEL_VALUE,
  landsWhereSaid,
  LATER,
  NAME,
  NOW,
  NS,
  observedAttachments,
  protectedSpec,
  RECIPIENTS,
  referencedInputs,
  request,
  requiredSecrets,
  running,
  snapshotJobOf,
  sync,
  UID,
  withS3,
  withSpec,
} from './fixtures.js';

describe('syncBackup: the snapshot Job', () => {
  const fullSpec = withSpec({
    node: '10.0.0.3',
    backupStorage: {
      s3: {
        bucket: 'etcd-backups',
        region: 'eu-central-1',
        endpoint: 'https://s3.example.internal',
        forcePathStyle: true,
        insecureSkipTLSVerify: false,
        prefix: 'backups/talos',
        accessKeyID: { name: 's3-credentials', key: 'access-key-id' },
        secretAccessKey: { name: 's3-credentials', key: 'secret-access-key' },
        caBundle: { kind: 'ConfigMap', name: 's3-ca', key: 'bundle.pem' },
      },
    },
    job: {
      activeDeadlineSeconds: 900,
      backoffLimit: 5,
      resources: { requests: { cpu: '200m', memory: '300Mi' }, limits: { cpu: 1, memory: '1Gi' } },
      nodeSelector: { 'node-role.kubernetes.io/backup': 'true' },
      tolerations: [
        { key: 'dedicated', operator: 'Equal', value: 'backup', effect: 'NoSchedule' },
        { operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      priorityClassName: 'backup-critical',
    },
  });
  const jobOf = (object: KubernetesObject, image = IMAGE): J => snapshotJobOf(syncBackup(request(object), NOW, image));
  const minimal = jobOf(backup());
  const full = jobOf(backup({ spec: fullSpec }));

  it('runs under the restricted Pod Security Standard', () => {
    for (const job of [minimal, full]) {
      const pod = job.spec.template.spec;
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
      assert.ok(pod.securityContext.runAsUser > 0);
      assert.equal(pod.hostNetwork ?? false, false);
      assert.equal(pod.hostPID ?? false, false);
      for (const c of pod.containers as J[]) {
        assert.equal(c.securityContext.runAsNonRoot, true);
        assert.equal(c.securityContext.readOnlyRootFilesystem, true);
        assert.equal(c.securityContext.allowPrivilegeEscalation, false);
        assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] });
        assert.equal(c.securityContext.privileged ?? false, false);
      }
      for (const v of (pod.volumes ?? []) as J[])
        assert.ok(v.secret || v.configMap, `volume ${v.name} is a Secret or ConfigMap, never hostPath`);
    }
  });

  it('activeDeadlineSeconds and backoffLimit come from spec.job (defaults 3600 and 2)', () => {
    assert.equal(minimal.spec.activeDeadlineSeconds, 3600);
    assert.equal(minimal.spec.backoffLimit, 2);
    assert.equal(full.spec.activeDeadlineSeconds, 900);
    assert.equal(full.spec.backoffLimit, 5);
  });

  it('resources, nodeSelector, tolerations and priorityClassName are passed through', () => {
    const pod = full.spec.template.spec;
    const job = (fullSpec as J).job;
    assert.deepEqual(container(full).resources, job.resources);
    assert.deepEqual(pod.nodeSelector, job.nodeSelector);
    assert.deepEqual(pod.tolerations, job.tolerations);
    assert.equal(pod.priorityClassName, 'backup-critical');
    const bare = minimal.spec.template.spec;
    assert.equal(bare.nodeSelector, undefined);
    assert.equal(bare.tolerations, undefined);
    assert.equal(bare.priorityClassName, undefined);
  });

  it('image, pull policy and pull secrets come from the server configuration', () => {
    assert.equal(container(minimal).image, IMAGE.image);
    assert.equal(container(minimal).imagePullPolicy, 'IfNotPresent');
    assert.equal(minimal.spec.template.spec.imagePullSecrets, undefined);
    const custom = jobOf(backup(), {
      image: 'ghcr.io/acme/teb@sha256:' + 'c'.repeat(64),
      pullPolicy: 'Always',
      pullSecrets: ['regcred', 'mirror'],
    });
    assert.equal(container(custom).image, 'ghcr.io/acme/teb@sha256:' + 'c'.repeat(64));
    assert.equal(container(custom).imagePullPolicy, 'Always');
    assert.deepEqual(custom.spec.template.spec.imagePullSecrets, [{ name: 'regcred' }, { name: 'mirror' }]);
  });

  it('runs the snapshot command of the CLI', () => {
    assert.equal(container(minimal).command.at(-1), 'snapshot');
    assert.equal(container(minimal).command[0], 'node');
    assert.equal(minimal.spec.template.spec.restartPolicy, 'Never');
  });

  it('is labelled with the backup on the Job and on its pods, and copies no controller-uid label', () => {
    const fromSchedule = backup({ labels: { [SCHEDULE_LABEL]: 'nightly', [CONTROLLER_UID_LABEL]: 'schedule-uid' } });
    const observed = observedAttachments(fromSchedule, jobActive);
    const r = sync(request(fromSchedule, { attachments: observed }));
    for (const object of r.response.attachments) {
      assert.equal(object.metadata.labels?.[BACKUP_LABEL], NAME, `${object.kind}`);
      assert.equal(object.metadata.labels?.[CONTROLLER_UID_LABEL], undefined, `${object.kind}`);
      assert.equal(object.metadata.labels?.[SCHEDULE_LABEL], undefined, `${object.kind}`);
      assert.equal(object.metadata.namespace, NS);
    }
    const job = snapshotJobOf(r);
    const podLabels = job.spec.template.metadata.labels as Record<string, string>;
    assert.equal(podLabels[BACKUP_LABEL], NAME);
    for (const k8s of [
      CONTROLLER_UID_LABEL,
      'batch.kubernetes.io/controller-uid',
      'job-name',
      'batch.kubernetes.io/job-name',
    ])
      assert.equal(podLabels[k8s], undefined, k8s);
    assert.equal(job.spec.selector, undefined, 'the Job controller picks the selector');
    assert.equal(job.status, undefined, 'no status in a desired object');
  });

  it('has no ttlSecondsAfterFinished (the Job goes when the backup records its outcome)', () => {
    assert.equal(minimal.spec.ttlSecondsAfterFinished, undefined);
    assert.equal(full.spec.ttlSecondsAfterFinished, undefined);
  });

  it('fails at once (podFailurePolicy FailJob) when the CLI exits with code 2', () => {
    const rules = minimal.spec.podFailurePolicy.rules as J[];
    const failJob = rules.find((rule) => rule.action === 'FailJob');
    assert.ok(failJob);
    assert.deepEqual(failJob.onExitCodes, { containerName: container(minimal).name, operator: 'In', values: [2] });
  });

  it('every Secret and ConfigMap reference is optional (a missing one fails in the CLI, never CreateContainerConfigError)', () => {
    let refs = 0;
    for (const job of [minimal, full]) {
      for (const e of container(job).env as J[]) {
        const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
        if (ref) {
          assert.equal(ref.optional, true, e.name);
          refs++;
        }
      }
      for (const v of (job.spec.template.spec.volumes ?? []) as J[]) {
        assert.equal((v.secret ?? v.configMap).optional, true, v.name);
        refs++;
      }
    }
    assert.ok(refs >= 7, `only ${refs} references seen`);
  });

  it('REQUIRED_SECRETS lists every Secret and ConfigMap key the Job reads, with where it lands', () => {
    for (const job of [minimal, full]) {
      const required = requiredSecrets(job);
      assert.deepEqual(required.map(identify).sort(), referencedInputs(job).sort());
      for (const entry of required)
        assert.ok(landsWhereSaid(job, entry), `${JSON.stringify(entry)} does not land where it says`);
    }
    assert.deepEqual(requiredSecrets(full).map(identify), [
      'Secret/etcd-backup/config',
      'Secret/s3-credentials/access-key-id',
      'Secret/s3-credentials/secret-access-key',
      'ConfigMap/s3-ca/bundle.pem',
    ]);
    assert.deepEqual(envOf(full).AWS_ACCESS_KEY_ID.valueFrom, {
      secretKeyRef: { name: 's3-credentials', key: 'access-key-id', optional: true },
    });
    const ca = (full.spec.template.spec.volumes as J[]).find((v) => v.configMap);
    assert.deepEqual(ca.configMap, { name: 's3-ca', items: [{ key: 'bundle.pem', path: 'ca.crt' }], optional: true });
  });

  it('without S3 keys (ambient AWS credentials) it reads no S3 Secret', () => {
    const ambient = jobOf(backup({ spec: withS3({ accessKeyID: undefined, secretAccessKey: undefined }) }));
    assert.equal(envOf(ambient).AWS_ACCESS_KEY_ID, undefined);
    assert.equal(envOf(ambient).AWS_SECRET_ACCESS_KEY, undefined);
    assert.deepEqual(requiredSecrets(ambient).map(identify), ['Secret/etcd-backup/config']);
  });

  it('a caBundle Secret is mounted from the Secret', () => {
    const job = jobOf(backup({ spec: withS3({ caBundle: { name: 'minio-ca' } }) }));
    const ca = (job.spec.template.spec.volumes as J[]).find((v) => v.name !== 'talosconfig');
    assert.deepEqual(ca.secret, { secretName: 'minio-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }], optional: true });
  });

  it('passes the S3 settings, the node, the prefix and the backup identity', () => {
    assert.equal(envValue(full, 'S3_BUCKET'), 'etcd-backups');
    assert.equal(envValue(full, 'S3_REGION'), 'eu-central-1');
    assert.equal(envValue(full, 'S3_ENDPOINT'), 'https://s3.example.internal');
    assert.equal(envValue(full, 'S3_FORCE_PATH_STYLE'), 'true');
    assert.equal(envValue(full, 'S3_INSECURE_SKIP_TLS_VERIFY'), 'false');
    assert.equal(envValue(full, 'S3_PREFIX'), 'backups/talos');
    assert.equal(envValue(full, 'TALOS_NODE'), '10.0.0.3');
    assert.equal(envValue(full, 'BACKUP_NAMESPACE'), NS);
    assert.equal(envValue(full, 'BACKUP_NAME'), NAME);
    assert.equal(envValue(full, 'BACKUP_UID'), UID);
    assert.equal(envValue(full, 'REPORT_STATUS'), 'true');
    assert.deepEqual(envOf(full).POD_NAME.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } });
    assert.equal(envValue(minimal, 'S3_PREFIX'), 'talos-operator-etcd-backups', 'the CRD default');
    assert.equal(envOf(minimal).S3_FORCE_PATH_STYLE, undefined, 'unset: the CLI decides from the endpoint');
    assert.equal(envOf(minimal).TALOS_NODE, undefined);
  });

  it("BACKUP_TIME is the schedule's slot when annotated, else the creation time", () => {
    assert.equal(envValue(minimal, 'BACKUP_TIME'), CREATED);
    const scheduled = jobOf(backup({ annotations: { [SCHEDULED_TIME_ANNOTATION]: '2026-01-15T06:00:00Z' } }));
    assert.equal(envValue(scheduled, 'BACKUP_TIME'), '2026-01-15T06:00:00Z');
  });

  it('is the same Job at every sync, whatever the clock (an OnDelete attachment must not drift)', () => {
    assert.deepEqual(snapshotJobOf(sync(request(backup()), NOW)), snapshotJobOf(sync(request(backup()), LATER)));
    const runningAnswer = sync(
      request(backup({ status: { report: running(1) } }), { attachments: observedAttachments(backup(), jobActive) }),
      LATER,
    );
    assert.deepEqual(snapshotJobOf(runningAnswer), minimal);
  });
});

describe('syncBackup: the Job identity (ServiceAccount, Role, RoleBinding)', () => {
  const r = sync(request(backup()));
  const of = (kind: string): J => r.response.attachments.find((a) => a.kind === kind);

  it('the Job runs as its own ServiceAccount, with the token mounted by the pod only', () => {
    const pod = snapshotJobOf(r).spec.template.spec;
    assert.equal(pod.serviceAccountName, JOB);
    assert.equal(pod.automountServiceAccountToken, true);
    assert.equal(of('ServiceAccount').metadata.name, JOB);
    assert.equal(of('ServiceAccount').automountServiceAccountToken, false);
  });

  it("the Role grants exactly patch on this backup's status and create on Events (which resourceNames cannot limit)", () => {
    assert.deepEqual(of('Role').rules, [
      {
        apiGroups: ['talos.alperen.cloud'],
        resources: ['talosetcdbackups/status'],
        resourceNames: [NAME],
        verbs: ['patch'],
      },
      { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
    ]);
  });

  it("the RoleBinding binds that Role to the Job's ServiceAccount", () => {
    const binding = of('RoleBinding');
    assert.deepEqual(binding.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'Role',
      name: of('Role').metadata.name,
    });
    assert.deepEqual(binding.subjects, [
      { kind: 'ServiceAccount', name: of('ServiceAccount').metadata.name, namespace: NS },
    ]);
  });
});

describe('names of long backups', () => {
  const long = (prefix: string, fill: string) => (prefix + fill.repeat(253)).slice(0, 253);
  const a = long('x'.repeat(100), 'a');
  const b = long('x'.repeat(100), 'b');
  const dotted = long('', 'ab.cd-'.repeat(3) + 'e').replace(/[-.]+$/, '');

  it('a 253-character name yields Job, ServiceAccount and Role names of at most 63 characters', () => {
    for (const name of [a, dotted]) {
      assert.equal(name.length >= 250, true);
      const r = sync(request(backup({ name })));
      for (const object of r.response.attachments) {
        assert.ok(
          object.metadata.name.length <= 63,
          `${object.kind} ${object.metadata.name} (${object.metadata.name.length})`,
        );
        assert.match(object.metadata.name, /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
      }
      assert.ok(attachmentName(name, 'delete').length <= 63);
    }
  });

  it('two long names sharing a 100-character prefix get distinct names and label values', () => {
    const ra = sync(request(backup({ name: a })));
    const rb = sync(request(backup({ name: b })));
    assert.notEqual(snapshotJobOf(ra).metadata.name, snapshotJobOf(rb).metadata.name);
    assert.notEqual(snapshotJobOf(ra).metadata.labels[BACKUP_LABEL], snapshotJobOf(rb).metadata.labels[BACKUP_LABEL]);
    assert.notEqual(attachmentName(a, 'delete'), attachmentName(b, 'delete'));
  });

  it('every label value is at most 63 characters and valid; the Role still names the whole backup', () => {
    for (const name of [a, b, dotted, NAME, 'a', 'x'.repeat(63), 'x'.repeat(64), 'y'.repeat(54), 'y'.repeat(55)]) {
      const r = sync(request(backup({ name })));
      for (const object of r.response.attachments) {
        const labelSets = [
          object.metadata.labels ?? {},
          ...(object.kind === 'Job' ? [(object as J).spec.template.metadata.labels] : []),
        ];
        for (const labels of labelSets) {
          for (const [key, value] of Object.entries(labels as Record<string, string>)) {
            assert.ok(value.length <= 63, `${name}: ${key}=${value}`);
            assert.match(value, LABEL_VALUE, `${name}: ${key}`);
          }
        }
      }
      assert.deepEqual((r.response.attachments.find((o) => o.kind === 'Role') as J).rules[0].resourceNames, [name]);
      assert.equal(envValue(snapshotJobOf(r), 'BACKUP_NAME'), name);
    }
  });

  it('a short name is used as it is', () => {
    assert.equal(JOB, `${NAME}-snapshot`);
    assert.equal(DELETE_JOB, `${NAME}-delete`);
  });
});

describe('syncBackup: the snapshot Job of a protected backup', () => {
  it('passes compression, recipients, SSE, Object Lock and verify to the Job, and mounts the identity for the read-back', () => {
    const job = snapshotJobOf(sync(request(backup({ spec: protectedSpec() }))));
    assert.equal(envValue(job, 'COMPRESSION'), 'zstd');
    assert.equal(envValue(job, 'AGE_RECIPIENTS'), RECIPIENTS.join(','));
    assert.equal(envValue(job, 'S3_SSE'), 'aws:kms');
    assert.equal(envValue(job, 'S3_SSE_KMS_KEY_ID'), 'alias/etcd');
    assert.equal(envValue(job, 'S3_OBJECT_LOCK_MODE'), 'COMPLIANCE');
    assert.equal(envValue(job, 'S3_OBJECT_LOCK_RETAIN_DAYS'), '30');
    assert.equal(envValue(job, 'VERIFY'), 'true');
    assert.equal(envValue(job, 'AGE_IDENTITY_FILE'), '/var/run/secrets/age/identity.txt');
    const entry = requiredSecrets(job).find((e) => e.name === 'age-identity');
    assert.deepEqual(entry, {
      kind: 'Secret',
      name: 'age-identity',
      key: 'identity.txt',
      pathEnv: 'AGE_IDENTITY_FILE',
    });
    assert.ok(landsWhereSaid(job, entry), 'the identity lands where AGE_IDENTITY_FILE says');
  });

  it('never mounts the identity when nothing verifies: taking a backup does not need it', () => {
    const job = snapshotJobOf(sync(request(backup({ spec: protectedSpec({ verify: false }) }))));
    assert.equal(envValue(job, 'AGE_IDENTITY_FILE'), undefined);
    assert.equal(
      requiredSecrets(job).find((e) => e.name === 'age-identity'),
      undefined,
    );
    assert.ok(!JSON.stringify(job.spec.template.spec.volumes ?? []).includes('age-identity'));
    assert.equal(envValue(job, 'VERIFY'), 'false');
  });
});
