// The `talos-etcd-backup` command as a user runs it: a real process, real signals.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { packageRoot } from '../../src/api/crds.js';
import { schedule, syncRequest } from '../helpers/builders.js';
import { postJson } from '../helpers/server.js';

const MAIN = join(packageRoot(), 'dist', 'src', 'main.js');

function run(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [MAIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 20_000,
  });
}

/** Starts `serve` on a free port and resolves once it logs its address. */
async function startServe(): Promise<{ child: ChildProcess; url: string; logs: () => string }> {
  // No drain delay: this test is about the logs and the exit code (serve-shutdown.test.ts drains).
  const child = spawn(process.execPath, [MAIN, 'serve', '--host', '127.0.0.1', '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SHUTDOWN_DELAY_SECONDS: '0' },
  });
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${output}`)), 15_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}:\n${output}`)));
  });
  return { child, url, logs: () => output };
}

describe('talos-etcd-backup serve', () => {
  it('serves the hooks with structured logs and stops cleanly on SIGTERM', async () => {
    const { child, url, logs } = await startServe();
    try {
      assert.deepEqual(await (await fetch(`${url}/healthz`)).json(), { status: 'ok' });
      const { status } = await postJson(`${url}/hooks/schedule/sync`, syncRequest(schedule(), []));
      assert.equal(status, 200);
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = await exited;
      assert.equal(code, 0);
      const lines = logs()
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { msg: string; signal?: string });
      assert.ok(lines.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM'));
      assert.ok(lines.some((l) => l.msg === 'request completed'));
      assert.ok(!lines.some((l) => JSON.stringify(l).includes('/healthz')), 'probes are not logged');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('talos-etcd-backup arguments', () => {
  it('--help prints the usage and exits 0', () => {
    const result = run(['--help']);
    assert.equal(result.status, 0);
    assert.match(result.stdout, /Usage: talos-etcd-backup <command>/);
    assert.match(result.stdout, /serve/);
  });

  it('--version prints the package version', () => {
    const result = run(['--version']);
    assert.equal(result.status, 0);
    assert.match(result.stdout, /^\d+\.\d+\.\d+/);
  });

  it('no command prints the usage and exits 2', () => {
    const result = run([]);
    assert.equal(result.status, 2);
    assert.match(result.stdout, /Usage/);
  });

  it('an unknown command or flag exits 2 with a message', () => {
    assert.equal(run(['backup-everything']).status, 2);
    assert.match(run(['backup-everything']).stderr, /unknown command "backup-everything"/);
    assert.equal(run(['serve', '--colour']).status, 2);
  });

  it('an invalid environment exits 1 naming every problem', () => {
    const result = run(['serve'], { PORT: 'eighty', LOG_LEVEL: 'loud' });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /PORT must be an integer from 0 to 65535, got "eighty"/);
    assert.match(result.stderr, /LOG_LEVEL must be one of/);
  });
});
