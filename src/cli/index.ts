// The one command-line entry: `talos-etcd-backup <command>`. Parses arguments and maps failures to exit codes.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../api/crds.js';
import { ConfigError, DEFAULTS, HOST_ENV, PORT_ENV, parseServerConfig } from '../config.js';
import { resolveSettings, SETTINGS, SettingsError, type Setting } from '../snapshot/config.js';

const SNAPSHOT_SETTINGS = Object.values(SETTINGS) as Setting[];
const VERIFY_SETTINGS = [SETTINGS.bucket, SETTINGS.key, SETTINGS.region, SETTINGS.endpoint, SETTINGS.forcePathStyle, SETTINGS.insecureSkipTLSVerify, SETTINGS.caBundle];

function settingLines(settings: Setting[]): string {
  return settings.map((s) => `  --${s.flag.padEnd(26)} ${s.env.padEnd(30)} ${s.help}${s.default ? ` [${s.default}]` : ''}`).join('\n');
}

export const USAGE = `Usage: talos-etcd-backup <command> [options]

Commands:
  serve        Run the Metacontroller hook server (HTTP)
  snapshot     Stream one etcd snapshot from the Talos API into S3; prints one JSON line
  verify       Read a stored snapshot back from S3 and check it; prints one JSON line

Options for serve (flags override environment variables):
  --host HOST  Address to listen on (env ${HOST_ENV}, default ${DEFAULTS.host})
  --port PORT  Port to listen on (env ${PORT_ENV}, default ${DEFAULTS.port})
  Environment only: LOG_LEVEL (default ${DEFAULTS.logLevel}), BODY_LIMIT_BYTES (default ${DEFAULTS.bodyLimit}),
  KEEP_ALIVE_TIMEOUT_SECONDS (default ${DEFAULTS.keepAliveTimeoutMs / 1000})

Options for snapshot (flag, environment variable, meaning [default]):
${settingLines(SNAPSHOT_SETTINGS)}
  S3 keys come from the AWS SDK's default chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, web identity
  (IRSA), or an instance profile.

Options for verify:
${settingLines(VERIFY_SETTINGS)}

  -h, --help     Show this help
  -v, --version  Show the version
`;

function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

function fail(message: string, code: number): number {
  process.stderr.write(`talos-etcd-backup: ${message}\n`);
  return code;
}

async function runServe(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({ args, options: { host: { type: 'string' }, port: { type: 'string' } } });
  // Each command loads only its own modules: the Job's memory budget has no room for the web server's.
  const { serve } = await import('./serve.js');
  try {
    await serve(parseServerConfig({ ...env, ...(values.host !== undefined && { [HOST_ENV]: values.host }), ...(values.port !== undefined && { [PORT_ENV]: values.port }) }));
    return 0;
  } catch (error) {
    return fail(error instanceof ConfigError ? error.message : `failed to start: ${(error as Error).message}`, 1);
  }
}

async function runJobCommand(command: 'snapshot' | 'verify', args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  // The SDK is pinned (package.json) to releases that support Node 20, and the image runs Node 22; its
  // multi-line "Node 20 support ends" warning would break the one-line error contract on Node 20 machines.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const settings = command === 'snapshot' ? SNAPSHOT_SETTINGS : VERIFY_SETTINGS;
  const { values } = parseArgs({ args, options: Object.fromEntries(settings.map((s) => [s.flag, { type: 'string' as const }])) });
  const raw = resolveSettings(env, values as Record<string, string | undefined>);
  const { redact, snapshotCommand, verifyCommand } = await import('./snapshot.js');
  try {
    const result = command === 'snapshot' ? await snapshotCommand(raw) : await verifyCommand(raw);
    process.stdout.write(`${redact(JSON.stringify(command === 'verify' ? { ...result, verified: true } : result), env)}\n`);
    return 0;
  } catch (error) {
    // One line, worded for the backup's status ("Failed to upload snapshot to S3: ...", ...), no secret.
    process.stderr.write(`${redact((error as Error).message, env)}\n`);
    return error instanceof SettingsError ? 2 : 1;
  }
}

/** Runs the CLI; resolves to the process exit code (serve keeps running and resolves once listening). */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '-v' || command === '--version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    if (command === 'serve') return await runServe(rest, env);
    if (command === 'snapshot' || command === 'verify') return await runJobCommand(command, rest, env);
  } catch (error) {
    // parseArgs: an unknown option or a missing value.
    return fail(`${(error as Error).message}\n\n${USAGE}`, 2);
  }
  return fail(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`, 2);
}
