// The Job's error model: a message composed once from the prefix table, and the one line and exit code a failed
// command ends with.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AgeError } from '../../src/api/age-keys.js';
import { EXIT_CODE } from '../../src/contract/exit-codes.js';
import { SettingsError } from '../../src/contract/settings.js';
import { IntegrityError } from '../../src/job/etcd/trailer.js';
import { JobError, renderFailure } from '../../src/job/errors.js';
import { withFailover } from '../../src/job/pipeline/failover.js';
import { checkRequiredInputs } from '../../src/job/required-inputs.js';
import { TalosError } from '../../src/job/talos/client.js';

describe('JobError', () => {
  it('composes its message from the prefix, the subject and the detail, and keeps its cause', () => {
    const cause = new Error('talosconfig has no contexts');
    const error = new JobError('talosconfig', 'talosconfig has no contexts', {
      subject: '/etc/talos/config',
      permanent: true,
      cause,
    });
    assert.equal(error.message, 'Failed to read talosconfig /etc/talos/config: talosconfig has no contexts');
    assert.equal(error.detail, 'talosconfig has no contexts');
    assert.equal(error.cause, cause);
  });

  it('without a failure, the detail is the message', () => {
    assert.equal(
      new JobError(undefined, 'REQUIRED_SECRETS is not valid JSON', { permanent: true }).message,
      'REQUIRED_SECRETS is not valid JSON',
    );
  });
});

describe('renderFailure', () => {
  const env = { AWS_SECRET_ACCESS_KEY: 'hunter2hunter2' };
  const cases: { name: string; error: unknown; message: string; exitCode: number }[] = [
    {
      name: 'a permanent JobError exits 2',
      error: new JobError('restore', 'no backups', { permanent: true }),
      message: 'Restore failed: no backups',
      exitCode: EXIT_CODE.permanent,
    },
    {
      name: 'a passing one exits 1',
      error: new IntegrityError('the stream was empty'),
      message: 'Snapshot integrity check failed: the stream was empty',
      exitCode: EXIT_CODE.retryable,
    },
    {
      name: 'bad settings (src/contract) exit 2',
      error: new SettingsError('invalid configuration: S3_BUCKET (--bucket) is required'),
      message: 'invalid configuration: S3_BUCKET (--bucket) is required',
      exitCode: EXIT_CODE.permanent,
    },
    {
      name: 'a key that is not an age key exits 2',
      error: new AgeError('recipient 0 is empty'),
      message: 'recipient 0 is empty',
      exitCode: EXIT_CODE.permanent,
    },
    {
      name: 'an unforeseen error exits 1',
      error: new TypeError('x is not a function'),
      message: 'x is not a function',
      exitCode: EXIT_CODE.retryable,
    },
    {
      name: 'a secret and line breaks never get out',
      error: new Error('signed with hunter2hunter2\nand more'),
      message: 'signed with [AWS_SECRET_ACCESS_KEY redacted] and more',
      exitCode: EXIT_CODE.retryable,
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(renderFailure(c.error, env), { message: c.message, exitCode: c.exitCode }));
  }

  it('a Secret that did not arrive exits 2', () => {
    const required = JSON.stringify([{ kind: 'Secret', name: 'talosconfig', key: 'config', env: 'TALOSCONFIG_TEXT' }]);
    const error = (() => {
      try {
        checkRequiredInputs(required, 'ns', {});
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.deepEqual(renderFailure(error, {}), {
      message:
        'Failed to get secret: secret ns/talosconfig key config (the Secret does not exist or has no key "config")',
      exitCode: EXIT_CODE.permanent,
    });
  });

  it("the Talos stage's failure names the snapshot, is caused by the endpoint's, and keeps its permanence", async () => {
    const refused = new TalosError('a:50000 refused the snapshot', 'a:50000', false);
    const error = await withFailover(['a:50000'], async () => {
      throw refused;
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof TalosError);
    assert.equal(error.cause, refused);
    assert.deepEqual(renderFailure(error, {}), {
      message: 'Failed to take etcd snapshot: a:50000 refused the snapshot',
      exitCode: EXIT_CODE.permanent,
    });
  });
});
