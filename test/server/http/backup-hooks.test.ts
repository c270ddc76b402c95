// POST /hooks/backup/{customize,sync,finalize} through the real server (buildApp + inject), with bodies shaped
// like Metacontroller's: examples/hooks/backup-*.json are such bodies, so they are proven valid here too.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { JOB_KEY, RELATED_CONTROL_PLANE_KEY } from '../../../src/api/constants.js';
import { packageRoot } from '../../../src/api/crds.js';
import { specProblems } from '../../../src/api/spec-checks.js';
import { readBackupStatus, validateBackupSpec } from '../../../src/api/validation.js';
import { buildApp } from '../../../src/server/app.js';
import type { JobImage } from '../../../src/server/backup/job.js';

type J = any;

const NOW = new Date('2026-01-15T12:01:20Z');
const JOB_IMAGE: JobImage = {
  image: 'registry.example.com/talos-etcd-backup:0.1.0',
  pullPolicy: 'Always',
  pullSecrets: ['regcred'],
};
const CUSTOMIZE = '/hooks/backup/customize';
const SYNC = '/hooks/backup/sync';
const FINALIZE = '/hooks/backup/finalize';

const example = (file: string): J => JSON.parse(readFileSync(join(packageRoot(), 'examples', 'hooks', file), 'utf8'));

async function post(app: FastifyInstance, url: string, body: unknown): Promise<{ status: number; body: J }> {
  const response = await app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json' },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
  let parsed: unknown = response.body;
  try {
    parsed = JSON.parse(response.body);
  } catch {
    // left as text: the assertion shows it
  }
  return { status: response.statusCode, body: parsed };
}

const condition = (status: J, type: string): J => (status.conditions as J[]).find((c) => c.type === type);
const kinds = (answer: J): string[] => (answer.attachments as J[]).map((a) => a.kind).sort();
const jobOf = (answer: J): J => (answer.attachments as J[]).find((a) => a.kind === 'Job');
const envOf = (job: J): Record<string, string | undefined> =>
  Object.fromEntries((job.spec.template.spec.containers[0].env as J[]).map((e) => [e.name, e.value]));

/** A Metacontroller-shaped request: the example's envelope around another backup. */
function syncBody(patch: { spec?: J; status?: J; attachments?: J; metadata?: J } = {}): J {
  const body = structuredClone(example('backup-sync.json'));
  if (patch.spec) body.object.spec = patch.spec;
  if (patch.status) body.object.status = patch.status;
  if (patch.metadata) body.object.metadata = { ...body.object.metadata, ...patch.metadata };
  if (patch.attachments) body.attachments = patch.attachments;
  return body;
}

describe('the backup hook examples (examples/hooks/backup-*.json)', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await buildApp({ clock: () => NOW, jobImage: JOB_IMAGE });
  });
  after(() => app.close());

  it('every backup in them has a valid, supported spec and a CRD-valid status, as the API server would store it', () => {
    const files = ['backup-customize.json', 'backup-sync.json', 'backup-sync-running.json', 'backup-finalize.json'];
    for (const file of files) {
      const body = example(file);
      const object = body.object ?? body.parent;
      const spec = validateBackupSpec(object.spec);
      assert.ok(spec.ok, `${file}: ${spec.ok ? '' : spec.problems.join('; ')}`);
      assert.deepEqual(specProblems(spec.value), [], file);
      if (object.status !== undefined)
        assert.deepEqual(readBackupStatus(object.status), object.status, `${file}: status`);
      assert.equal(typeof object.metadata.uid, 'string', file);
      assert.equal(typeof object.metadata.creationTimestamp, 'string', file);
    }
  });

  it('backup-customize.json: asks for its Namespace and the referenced TalosControlPlane only', async () => {
    const { status, body } = await post(app, CUSTOMIZE, example('backup-customize.json'));
    assert.equal(status, 200);
    assert.deepEqual(body, {
      relatedResources: [
        { apiVersion: 'v1', resource: 'namespaces', names: ['talos-backup'] },
        {
          apiVersion: 'talos.alperen.cloud/v1alpha1',
          resource: 'taloscontrolplanes',
          namespace: 'talos-backup',
          names: ['my-cluster'],
        },
      ],
    });
  });

  it('backup-sync.json: a new backup attaches its Job and identity and is Pending', async () => {
    const request = example('backup-sync.json');
    assert.equal(request.object.status, undefined, 'the example is a new backup');
    const { status, body } = await post(app, SYNC, request);
    assert.equal(status, 200);
    assert.equal(body.status.phase, 'Pending');
    assert.equal(condition(body.status, 'Progressing').status, 'True');
    assert.equal(body.status.cluster, 'my-cluster');
    assert.deepEqual(kinds(body), ['Job', 'Role', 'RoleBinding', 'ServiceAccount']);
    const job = jobOf(body);
    assert.equal(envOf(job).TALOS_ENDPOINTS, '10.0.0.1,10.0.0.2,10.0.0.3');
    assert.equal(envOf(job).CLUSTER_NAME, 'my-cluster');
    assert.equal(
      job.spec.template.spec.containers[0].image,
      JOB_IMAGE.image,
      'the server configuration names the image',
    );
    assert.equal(job.spec.template.spec.containers[0].imagePullPolicy, 'Always');
    assert.deepEqual(job.spec.template.spec.imagePullSecrets, [{ name: 'regcred' }]);
    assert.equal(body.resyncAfterSeconds, 600, 'called back when the Job has had 10 minutes to appear');
  });

  it('backup-sync-running.json: its Job runs and reports progress: Running, the same attachments', async () => {
    const request = example('backup-sync-running.json');
    const { status, body } = await post(app, SYNC, request);
    assert.equal(status, 200);
    assert.equal(body.status.phase, 'Running');
    assert.deepEqual(body.status.progress, { bytesUploaded: request.object.status.report.bytesUploaded });
    const job = Object.values(request.attachments['Job.batch/v1'] as Record<string, J>)[0]!;
    assert.equal(body.status.startTime, (job.status as J).startTime, "the Job's start, not the attempt's");
    assert.deepEqual(body.status.report, request.object.status.report, 'the report is carried over');
    // Nothing changed status: every lastTransitionTime is the observed one.
    for (const c of body.status.conditions as J[])
      assert.equal(c.lastTransitionTime, condition(request.object.status, c.type).lastTransitionTime, c.type);
    // The desired attachments are what the first answer asked for: what Kubernetes added is not echoed back.
    const first = await post(app, SYNC, example('backup-sync.json'));
    assert.deepEqual(body.attachments, first.body.attachments);
    const observedJob = Object.values(request.attachments[JOB_KEY] as Record<string, J>)[0];
    assert.equal(observedJob.status.active, 1);
    assert.equal(jobOf(body).spec.selector, undefined);
    assert.equal(jobOf(body).spec.template.metadata.labels['controller-uid'], undefined);
  });

  it('backup-sync-running.json, then a Succeeded report: Succeeded with the Job still attached; then finished, nothing attached', async () => {
    const request = example('backup-sync-running.json');
    const snapshot = {
      bucket: 'etcd-backups',
      key: 'talos-operator-etcd-backups/my-cluster/etcd-snapshot-2026-01-15T12-00-00Z.db',
      size: 73400320,
      sha256: 'c'.repeat(64),
      etcdSha256: 'd'.repeat(64),
      node: '10.0.0.1',
    };
    request.object.status.report = {
      ...request.object.status.report,
      state: 'Succeeded',
      bytesUploaded: snapshot.size,
      snapshot,
      updatedAt: '2026-01-15T12:01:19Z',
    };
    const done = await post(app, SYNC, request);
    assert.equal(done.status, 200);
    assert.equal(done.body.status.phase, 'Succeeded');
    assert.equal(condition(done.body.status, 'Ready').status, 'True');
    assert.equal(condition(done.body.status, 'Failed').status, 'False');
    assert.equal(condition(done.body.status, 'Progressing').status, 'False');
    assert.equal(done.body.status.snapshot.key, snapshot.key);
    assert.equal(done.body.status.completionTime, '2026-01-15T12:01:19Z');
    assert.deepEqual(
      kinds(done.body),
      ['Job', 'Role', 'RoleBinding', 'ServiceAccount'],
      'dropped only once the outcome is recorded',
    );

    request.object.status = done.body.status;
    const finished = await post(app, SYNC, request);
    assert.equal(finished.status, 200);
    assert.deepEqual(finished.body.status, done.body.status);
    assert.deepEqual(finished.body.attachments, []);
  });

  it('backup-finalize.json: deletionPolicy Delete with a stored snapshot attaches the delete Job and holds the backup', async () => {
    const request = example('backup-finalize.json');
    assert.equal(request.finalizing, true);
    const { status, body } = await post(app, FINALIZE, request);
    assert.equal(status, 200);
    assert.equal(body.finalized, false);
    assert.deepEqual(kinds(body), ['Job']);
    const job = jobOf(body);
    assert.equal(job.spec.template.spec.containers[0].command.at(-1), 'delete');
    assert.equal(envOf(job).S3_KEY, request.object.status.snapshot.key);
    assert.equal(envOf(job).BACKUP_UID, request.object.metadata.uid);
    assert.equal(body.status.deletion.message, `Deleting s3://etcd-backups/${request.object.status.snapshot.key}`);
    assert.equal(body.status.phase, 'Succeeded');
  });

  it('backup-finalize.json with the delete Job Complete lets the backup go', async () => {
    const request = example('backup-finalize.json');
    const first = await post(app, FINALIZE, request);
    const job = {
      ...jobOf(first.body),
      status: {
        succeeded: 1,
        completionTime: '2026-02-01T08:00:20Z',
        conditions: [{ type: 'Complete', status: 'True', lastTransitionTime: '2026-02-01T08:00:20Z' }],
      },
    };
    request.attachments[JOB_KEY] = { [job.metadata.name]: job };
    const { status, body } = await post(app, FINALIZE, request);
    assert.equal(status, 200);
    assert.equal(body.finalized, true);
    assert.deepEqual(body.attachments, []);
  });

  it('backup-finalize.json with the delete Job Failed holds the backup and says why', async () => {
    const request = example('backup-finalize.json');
    const first = await post(app, FINALIZE, request);
    const job = {
      ...jobOf(first.body),
      status: {
        failed: 3,
        conditions: [
          {
            type: 'Failed',
            status: 'True',
            reason: 'BackoffLimitExceeded',
            message: 'Job has reached the specified backoff limit',
            lastTransitionTime: '2026-02-01T08:03:00Z',
          },
        ],
      },
    };
    request.attachments[JOB_KEY] = { [job.metadata.name]: job };
    const { status, body } = await post(app, FINALIZE, request);
    assert.equal(status, 200);
    assert.equal(body.finalized, false);
    assert.match(
      body.status.deletion.message,
      /^Failed to delete snapshot from S3.*BackoffLimitExceeded.*deletionPolicy to Retain/,
    );
  });

  it('backup-finalize.json with deletionPolicy Retain lets the backup go at once', async () => {
    const request = example('backup-finalize.json');
    request.object.spec.deletionPolicy = 'Retain';
    const { status, body } = await post(app, FINALIZE, request);
    assert.equal(status, 200);
    assert.equal(body.finalized, true);
    assert.deepEqual(body.attachments, []);
  });
});

describe('POST /hooks/backup/*: specs and bodies', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await buildApp({ clock: () => NOW, jobImage: JOB_IMAGE });
  });
  after(() => app.close());

  it('customize with talosConfigSecretRef asks for its Namespace only', async () => {
    const body = example('backup-customize.json');
    body.parent.spec = { talosConfigSecretRef: { name: 'etcd-backup' }, backupStorage: body.parent.spec.backupStorage };
    const answer = await post(app, CUSTOMIZE, body);
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.body, {
      relatedResources: [{ apiVersion: 'v1', resource: 'namespaces', names: ['talos-backup'] }],
    });
  });

  it('an invalid spec is 200 with Failed and nothing attached', async () => {
    const base = example('backup-sync.json').object.spec;
    for (const spec of [
      { talosControlPlaneRef: { name: 'my-cluster' } },
      { ...base, talosConfigSecretRef: { name: 'x' } },
      { ...base, encryption: { age: { recipients: ['age1' + 'q'.repeat(58)] } } },
      { ...base, backupStorage: { s3: { bucket: 'b', region: 'r' } }, deletionPolicy: 'Sometimes' },
      { ...base, backupStorage: { ...base.backupStorage, copies: [base.backupStorage.s3] } },
    ]) {
      const { status, body } = await post(app, SYNC, syncBody({ spec }));
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.status.phase, 'Failed');
      assert.match(body.status.message, /^Invalid spec: /);
      assert.equal(condition(body.status, 'Failed').status, 'True');
      assert.deepEqual(body.attachments, []);
    }
  });

  it('a TalosControlPlane missing from related: Pending with a resync while young, Failed once 30 s old', async () => {
    const young = syncBody({ metadata: { creationTimestamp: '2026-01-15T12:01:15Z' } });
    young.related = { [RELATED_CONTROL_PLANE_KEY]: {} };
    const waiting = await post(app, SYNC, young);
    assert.equal(waiting.status, 200);
    assert.equal(waiting.body.status.phase, 'Pending');
    assert.equal(waiting.body.resyncAfterSeconds, 25);
    assert.deepEqual(waiting.body.attachments, []);

    const old = syncBody();
    delete old.related;
    const failed = await post(app, SYNC, old);
    assert.equal(failed.body.status.phase, 'Failed');
    assert.match(failed.body.status.message, /^Failed to get TalosControlPlane/);
  });

  it('a request without attachments or related (hand-written) works', async () => {
    const body = syncBody({
      spec: {
        talosConfigSecretRef: { name: 'etcd-backup' },
        backupStorage: { s3: { bucket: 'etcd-backups', region: 'us-east-1' } },
      },
    });
    delete body.attachments;
    delete body.related;
    delete body.controller;
    const { status, body: answer } = await post(app, SYNC, body);
    assert.equal(status, 200);
    assert.equal(answer.status.phase, 'Pending');
    assert.equal(answer.attachments.length, 4);
  });

  const valid = () => syncBody();
  const without = (object: J, key: string): J => {
    const { [key]: _removed, ...rest } = object;
    return rest;
  };
  const garbage: { name: string; body: () => unknown; message: RegExp }[] = [
    { name: 'not JSON', body: () => 'this is not json', message: /not valid JSON/ },
    { name: 'truncated JSON', body: () => JSON.stringify(valid()).slice(0, 120), message: /not valid JSON/ },
    { name: 'a JSON array', body: () => '[]', message: /body must be object/ },
    { name: 'JSON null', body: () => 'null', message: /body must be object/ },
    { name: 'an empty object (no object)', body: () => ({}), message: /required property 'object'/ },
    {
      name: 'a Composite body (parent, not object)',
      body: () => ({ parent: valid().object, children: {} }),
      message: /required property 'object'/,
    },
    {
      name: 'an object of another kind',
      body: () => ({ ...valid(), object: { ...valid().object, kind: 'TalosEtcdBackupSchedule' } }),
      message: /object\/kind must be equal to constant/,
    },
    {
      name: 'an object of another apiVersion',
      body: () => ({ ...valid(), object: { ...valid().object, apiVersion: 'talos.alperen.cloud/v1beta1' } }),
      message: /object\/apiVersion must be equal to constant/,
    },
    {
      name: 'an object without uid',
      body: () => ({ ...valid(), object: { ...valid().object, metadata: without(valid().object.metadata, 'uid') } }),
      message: /required property 'uid'/,
    },
    {
      name: 'an object without namespace',
      body: () => ({
        ...valid(),
        object: { ...valid().object, metadata: without(valid().object.metadata, 'namespace') },
      }),
      message: /required property 'namespace'/,
    },
    {
      name: 'an object without metadata',
      body: () => ({ ...valid(), object: without(valid().object, 'metadata') }),
      message: /required property 'metadata'/,
    },
    {
      name: 'an object with an empty name',
      body: () => ({ ...valid(), object: { ...valid().object, metadata: { ...valid().object.metadata, name: '' } } }),
      message: /name/,
    },
    {
      name: 'a creation time that is not a time',
      body: () => ({
        ...valid(),
        object: { ...valid().object, metadata: { ...valid().object.metadata, creationTimestamp: 'yesterday' } },
      }),
      message: /date-time/,
    },
    {
      name: 'attachments that are not an object',
      body: () => ({ ...valid(), attachments: [] }),
      message: /attachments must be object/,
    },
    {
      name: 'attachments as a string',
      body: () => ({ ...valid(), attachments: 'Job.batch/v1' }),
      message: /attachments must be object/,
    },
    {
      name: 'an attachment group that is not an object',
      body: () => ({ ...valid(), attachments: { [JOB_KEY]: 42 } }),
      message: /must be object/,
    },
    {
      name: 'an attachment without a name',
      body: () => ({
        ...valid(),
        attachments: { [JOB_KEY]: { x: { apiVersion: 'batch/v1', kind: 'Job', metadata: {} } } },
      }),
      message: /required property 'name'/,
    },
    {
      name: 'related that is not an object',
      body: () => ({ ...valid(), related: 'none' }),
      message: /related must be object/,
    },
    {
      name: 'finalizing that is not a boolean',
      body: () => ({ ...valid(), finalizing: 'yes' }),
      message: /finalizing must be boolean/,
    },
  ];
  for (const url of [SYNC, FINALIZE]) {
    for (const g of garbage) {
      it(`${url} rejects ${g.name} with 400 and a JSON message`, async () => {
        const { status, body } = await post(app, url, g.body());
        assert.equal(status, 400, JSON.stringify(body));
        assert.equal(body.statusCode, 400);
        assert.equal(typeof body.message, 'string');
        assert.match(body.message, g.message);
      });
    }
  }

  for (const [name, body, message] of [
    ['no parent', {}, /required property 'parent'/],
    [
      'a decorator body (object, not parent)',
      { object: example('backup-customize.json').parent },
      /required property 'parent'/,
    ],
    [
      'a parent of another kind',
      { parent: { ...example('backup-customize.json').parent, kind: 'Job' } },
      /parent\/kind/,
    ],
    [
      'a parent without uid',
      { parent: { ...example('backup-customize.json').parent, metadata: { name: 'x', namespace: 'y' } } },
      /uid/,
    ],
    ['not JSON', '{"parent":', /not valid JSON/],
  ] as const) {
    it(`${CUSTOMIZE} rejects ${name} with 400 and a JSON message`, async () => {
      const answer = await post(app, CUSTOMIZE, body);
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
      assert.match(answer.body.message, message);
    });
  }

  it('a status with a null condition (not what the CRD allows) is answered, not a 5xx', async () => {
    for (const [url, file] of [
      [SYNC, 'backup-sync-running.json'],
      [FINALIZE, 'backup-finalize.json'],
    ] as const) {
      for (const conditions of [[null], [null, { type: 'Ready', status: 'True' }], [7], 'Ready']) {
        const body = example(file);
        body.object.status.conditions = conditions;
        const answer = await post(app, url, body);
        assert.ok(
          answer.status === 200 || answer.status === 400,
          `${url} conditions ${JSON.stringify(conditions)}: ${answer.status} ${JSON.stringify(answer.body)}`,
        );
      }
    }
  });

  it('an attached Job with a null condition is answered, not a 5xx', async () => {
    const body = example('backup-sync-running.json');
    const job = Object.values(body.attachments[JOB_KEY] as Record<string, J>)[0];
    for (const conditions of [
      [null],
      [null, { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded' }],
      ['Complete'],
    ]) {
      job.status.conditions = conditions;
      const answer = await post(app, SYNC, body);
      assert.ok(
        answer.status === 200 || answer.status === 400,
        `conditions ${JSON.stringify(conditions)}: ${answer.status} ${JSON.stringify(answer.body)}`,
      );
    }
  });

  it('never answers 5xx, whatever the body', async () => {
    const paths: { url: string; path: string[] }[] = [
      ...[SYNC, FINALIZE].flatMap((url) =>
        [
          ['object'],
          ['object', 'spec'],
          ['object', 'status'],
          ['object', 'status', 'report'],
          ['object', 'status', 'conditions'],
          ['object', 'status', 'snapshot'],
          ['object', 'spec', 'talosControlPlaneRef'],
          ['object', 'spec', 'backupStorage'],
          ['object', 'spec', 'deletionPolicy'],
          ['object', 'spec', 'job'],
          ['object', 'metadata'],
          ['object', 'metadata', 'annotations'],
          ['object', 'metadata', 'creationTimestamp'],
          ['attachments'],
          ['attachments', JOB_KEY],
          ['attachments', JOB_KEY, 'manual-backup-snapshot', 'status'],
          ['attachments', JOB_KEY, 'manual-backup-snapshot', 'status', 'conditions'],
          ['related'],
          ['related', RELATED_CONTROL_PLANE_KEY],
          ['related', RELATED_CONTROL_PLANE_KEY, 'my-cluster'],
          ['related', RELATED_CONTROL_PLANE_KEY, 'my-cluster', 'status'],
          ['related', RELATED_CONTROL_PLANE_KEY, 'my-cluster', 'metadata', 'ownerReferences'],
        ].map((path) => ({ url, path })),
      ),
      { url: CUSTOMIZE, path: ['parent', 'spec'] },
      { url: CUSTOMIZE, path: ['parent', 'spec', 'talosControlPlaneRef'] },
    ];
    const base = (url: string): J =>
      url === CUSTOMIZE
        ? example('backup-customize.json')
        : url === FINALIZE
          ? example('backup-finalize.json')
          : example('backup-sync-running.json');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...paths), fc.jsonValue(), async ({ url, path }, value) => {
        const body = base(url);
        let node = body;
        for (const key of path.slice(0, -1)) {
          if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
          node = node[key];
        }
        node[path.at(-1)!] = value;
        const { status } = await post(app, url, body);
        assert.ok(
          status === 200 || status === 400,
          `${status} for ${url} ${path.join('.')} = ${JSON.stringify(value)}`,
        );
      }),
      { numRuns: 300 },
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(SYNC, FINALIZE, CUSTOMIZE), fc.jsonValue(), async (url, value) => {
        const { status } = await post(app, url, JSON.stringify(value));
        assert.equal(status, 400);
      }),
      { numRuns: 100 },
    );
  });
});

describe('backup hook metrics', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await buildApp({ clock: () => NOW, jobImage: JOB_IMAGE });
  });
  after(() => app.close());

  it('counts hook requests by code and backup syncs by result', async () => {
    await post(app, SYNC, example('backup-sync.json'));
    await post(app, SYNC, example('backup-sync.json'));
    await post(app, SYNC, example('backup-sync-running.json'));
    await post(app, SYNC, syncBody({ spec: { talosControlPlaneRef: { name: 'x' } } }));
    await post(app, SYNC, 'nope');
    await post(app, FINALIZE, example('backup-finalize.json'));
    await post(app, CUSTOMIZE, example('backup-customize.json'));
    const response = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(response.statusCode, 200);
    const text = response.body;
    assert.match(text, /talos_etcd_backup_backup_syncs_total\{result="pending"\} 2\n/);
    assert.match(text, /talos_etcd_backup_backup_syncs_total\{result="running"\} 1\n/);
    assert.match(text, /talos_etcd_backup_backup_syncs_total\{result="failed"\} 1\n/);
    assert.match(text, /talos_etcd_backup_hook_requests_total\{hook="backup\/sync",code="200"\} 4\n/);
    assert.match(text, /talos_etcd_backup_hook_requests_total\{hook="backup\/sync",code="400"\} 1\n/);
    assert.match(text, /talos_etcd_backup_hook_requests_total\{hook="backup\/finalize",code="200"\} 1\n/);
    assert.match(text, /talos_etcd_backup_hook_requests_total\{hook="backup\/customize",code="200"\} 1\n/);
    assert.match(text, /talos_etcd_backup_hook_request_duration_seconds_count\{hook="backup\/sync"\} 5\n/);
  });
});
