// Mistakes on the command line, through the real `talos-etcd-backup` process: one line on stderr that names the
// setting, and exit 2 (a retry cannot help: the Job's podFailurePolicy fails at once instead of spending retries).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { MAIN } from '../../bench/serve-process.js';

function run(args: string[], env: Record<string, string> = {}) {
  // No ambient AWS or Talos settings from the machine running the tests.
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(AWS_|S3_|TALOS|BACKUP_|COMPRESSION|REPORT_STATUS)/.test(name)),
  );
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...clean, ...env }, timeout: 20_000 });
}

function assertOneLine(result: ReturnType<typeof run>, code: number, pattern: RegExp): void {
  assert.equal(result.status, code, result.stderr);
  const lines = result.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `one line on stderr, got ${lines.length}:\n${result.stderr}`);
  assert.match(lines[0]!, pattern);
}

const S3 = ['--bucket', 'etcd-backups', '--region', 'eu-central-1'];

describe('usage errors: one line and a pointer to --help, exit 2', () => {
  const cases: [string, string[], RegExp][] = [
    [
      'an unknown flag of serve',
      ['serve', '--colour'],
      /^talos-etcd-backup: Unknown option '--colour'.* \(see talos-etcd-backup --help\)$/,
    ],
    ['an unknown flag of snapshot', ['snapshot', '--nope'], /Unknown option '--nope'.*--help/],
    ['a flag without its value', ['verify', '--bucket'], /Option '--bucket <value>' argument missing.*--help/],
    [
      'an unknown command',
      ['backup-everything'],
      /^talos-etcd-backup: unknown command "backup-everything" \(see talos-etcd-backup --help\)$/,
    ],
  ];
  for (const [name, args, pattern] of cases) {
    it(name, () => {
      const result = run(args);
      assertOneLine(result, 2, pattern);
      assert.equal(result.stdout, '');
    });
  }
});

describe('bad settings: one line naming the setting, exit 2', () => {
  it('an invalid --time', () => {
    const result = run(['snapshot', ...S3, '--cluster', 'prod', '--time', 'yesterday']);
    assertOneLine(
      result,
      2,
      /BACKUP_TIME \(--time\) must be an RFC 3339 time such as 2026-01-15T02:00:00Z, got "yesterday"/,
    );
    assert.doesNotMatch(result.stderr, /Invalid time value/);
  });

  it("a --time without a zone (read in the machine's zone otherwise)", () => {
    assertOneLine(
      run(['snapshot', ...S3, '--cluster', 'prod', '--time', '2026-01-15T02:00:00']),
      2,
      /BACKUP_TIME \(--time\) must be an RFC 3339 time/,
    );
  });

  it('an unknown --compression with a --key', () => {
    const result = run(['snapshot', ...S3, '--key', 'prod/etcd-snapshot.db', '--compression', 'lz4']);
    assertOneLine(result, 2, /COMPRESSION \(--compression\) must be none, gzip or zstd, got "lz4"/);
    assert.doesNotMatch(result.stderr, /undefined/);
  });

  for (const [command, extra] of [
    ['verify', ['--key', 'k.db']],
    ['delete', ['--key', 'k.db', '--backup-uid', 'u']],
    ['restore', ['--key', 'k.db']],
    ['snapshot', ['--cluster', 'prod']],
  ] as const) {
    it(`${command}: an S3 endpoint that is not an http(s) URL`, () => {
      for (const endpoint of ['not a url', 'ftp://minio.example.com', 'minio.example.com:9000']) {
        assertOneLine(
          run([command, ...S3, ...extra, '--endpoint', endpoint]),
          2,
          /S3_ENDPOINT \(--endpoint\) must be an http:\/\/ or https:\/\/ URL/,
        );
      }
    });
  }

  it('an S3 endpoint with credentials in it is refused without echoing them', () => {
    const result = run([
      'verify',
      ...S3,
      '--key',
      'k.db',
      '--endpoint',
      'https://minio:hunter2secret@minio.example.com',
    ]);
    assertOneLine(result, 2, /S3_ENDPOINT \(--endpoint\) must not carry credentials/);
    assert.doesNotMatch(result.stderr, /hunter2secret/);
  });
});
