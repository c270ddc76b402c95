// The README is part of the product: every curl command in it runs against the real server, and its cron
// table lists exactly the examples the cron tests check.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { packageRoot } from '../src/api/crds.js';
import { README_EXAMPLES } from './fixtures/cron-examples.js';
import { startServer, type RunningServer } from './helpers/server.js';

const root = packageRoot();
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The curl commands of the README's `sh` blocks, continuation lines joined. */
function curlCommands(markdown: string): string[] {
  const blocks = [...markdown.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks
    .flatMap((block) => block.replace(/\\\n\s*/g, ' ').split('\n'))
    .filter((line) => line.startsWith('curl '));
}

/** The JSON block that follows a command in the README, if any. */
function documentedOutput(command: string): string | undefined {
  const at = readme.indexOf(command.slice(-40)); // the command's tail is on one line in the README
  const next = /```json\n([\s\S]*?)```/.exec(readme.slice(at));
  return next?.[1]?.trim();
}

describe('README', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer(); // the real clock, as for a reader running `npm start`
  });
  after(() => server.close());

  const commands = curlCommands(readme);
  // Asynchronous: the server answers from this same process, so a blocking exec would deadlock it.
  const run = async (command: string): Promise<string> =>
    (
      await promisify(execFile)('bash', ['-c', command.replaceAll('http://localhost:8080', server.url)], {
        cwd: root,
        encoding: 'utf8',
        timeout: 10_000,
      })
    ).stdout;
  const requestBody = (file: string) =>
    JSON.parse(readFileSync(join(root, 'examples/hooks', file), 'utf8')) as {
      children: Record<string, Record<string, unknown>>;
    };

  it('shows a curl command for every hook and probe', () => {
    const paths = commands.map((c) => /http:\/\/localhost:8080(\/\S*)/.exec(c)?.[1]);
    assert.deepEqual([...new Set(paths)].sort(), [
      '/healthz',
      '/hooks/backup/customize',
      '/hooks/backup/finalize',
      '/hooks/backup/sync',
      '/hooks/schedule/sync',
      '/metrics',
      '/readyz',
    ]);
  });

  for (const command of commands) {
    it(`runs: ${command.slice(0, 110)}`, async () => {
      const output = await run(command);
      if (command.includes('schedule-sync.json')) {
        const answer = JSON.parse(output);
        const observed = Object.keys(
          requestBody('schedule-sync.json').children['TalosEtcdBackup.talos.alperen.cloud/v1alpha1']!,
        );
        const names: string[] = answer.children.map((c: { metadata: { name: string } }) => c.metadata.name);
        assert.equal(names.length, 3);
        assert.equal(
          names.filter((n) => !observed.includes(n)).length,
          1,
          'one new backup for the most recent 02:00 slot',
        );
        assert.ok(!names.includes(observed.sort()[0]!), 'the oldest backup is left out (retention 2)');
        assert.equal(answer.status.conditions[0].reason, 'Scheduled');
        assert.ok(answer.resyncAfterSeconds > 0);
      } else if (command.includes('schedule-sync-invalid-cron.json')) {
        const answer = JSON.parse(output);
        assert.equal(answer.children.length, 3);
        assert.equal(answer.status.conditions[1].reason, 'InvalidSchedule');
        assert.ok(
          documentedOutput(command)!.includes(JSON.stringify(answer.status.conditions[1].message).slice(1, -1)),
        );
      } else if (command.includes('backup-customize.json')) {
        assert.deepEqual(JSON.parse(output), JSON.parse(documentedOutput(command)!));
      } else if (command.includes('backup-sync.json')) {
        const answer = JSON.parse(output);
        assert.equal(answer.status.phase, 'Pending');
        assert.deepEqual(
          answer.attachments.map((a: { kind: string }) => a.kind),
          ['ServiceAccount', 'Role', 'RoleBinding', 'Job'],
        );
        const env = answer.attachments[3].spec.template.spec.containers[0].env as { name: string; value?: string }[];
        assert.equal(env.find((e) => e.name === 'TALOS_ENDPOINTS')?.value, '10.0.0.1,10.0.0.2,10.0.0.3');
        assert.ok(documentedOutput(command)!.includes(JSON.stringify(answer.attachments[1].rules)));
      } else if (command.includes('backup-sync-running.json')) {
        const answer = JSON.parse(output);
        assert.equal(answer.status.phase, 'Running');
        assert.deepEqual(answer.status.progress, { bytesUploaded: 52428800 });
        assert.ok(documentedOutput(command)!.includes(answer.status.conditions[0].message));
      } else if (command.includes('backup-finalize.json')) {
        const answer = JSON.parse(output);
        assert.equal(answer.finalized, false);
        assert.deepEqual(
          answer.attachments.map((a: { metadata: { name: string } }) => a.metadata.name),
          ['manual-backup-delete'],
        );
        assert.ok(documentedOutput(command)!.includes(answer.status.deletion.message));
      } else if (command.includes('/hooks/')) {
        assert.deepEqual(JSON.parse(output), JSON.parse(documentedOutput(command)!));
      } else if (command.endsWith('/metrics')) {
        assert.match(output, /talos_etcd_backup_hook_requests_total\{hook="schedule\/sync",code="200"\}/);
      } else {
        assert.match(output, /^\{"status":"(ok|ready)"\}$/);
      }
    });
  }

  it('lists in its cron table exactly the examples the cron tests check', () => {
    const start = readme.indexOf('| schedule | runs |');
    const table = readme.slice(start, readme.indexOf('\n\n', start));
    const rows = [...table.matchAll(/^\| `([^`]+)` \| (.+) \|$/gm)].map((m) => [m[1], m[2]!.replaceAll('`', '')]);
    assert.deepEqual(
      rows,
      README_EXAMPLES.map((e) => [e.expression, e.meaning]),
    );
  });
});
