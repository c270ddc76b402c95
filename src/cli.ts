// The one command-line entry: `talos-etcd-backup <command>`. Parses arguments and maps failures to exit codes.

import { parseArgs } from 'node:util';
import { ConfigError, DEFAULTS, HOST_ENV, PORT_ENV, packageVersion, parseServerConfig } from './server/config.js';
import { resolveSettings, SETTINGS, SettingsError, type RawSettings, type Setting } from './contract/settings.js';
import type { ProgressBar } from './job/progress.js';
import { EXIT_CODE } from './contract/exit-codes.js';

const S3_SETTINGS = [SETTINGS.bucket, SETTINGS.key, SETTINGS.region, SETTINGS.endpoint, SETTINGS.forcePathStyle, SETTINGS.insecureSkipTLSVerify, SETTINGS.caBundle];
// restore's own settings; the rest of the snapshot settings are the Job's.
const RESTORE_ONLY = [SETTINGS.output];
const SNAPSHOT_SETTINGS = (Object.values(SETTINGS) as Setting[]).filter((s) => !RESTORE_ONLY.includes(s));
const VERIFY_SETTINGS = [...S3_SETTINGS, SETTINGS.ageIdentity];
// delete takes the S3 settings plus the backup whose object it may remove.
const DELETE_SETTINGS = [...S3_SETTINGS, SETTINGS.backupUid, SETTINGS.backupNamespace, SETTINGS.deleteWait, SETTINGS.requiredSecrets];
const RESTORE_SETTINGS = [...S3_SETTINGS, SETTINGS.prefix, SETTINGS.cluster, SETTINGS.ageIdentity, ...RESTORE_ONLY];

function settingLines(settings: Setting[]): string {
  return settings.map((s) => `  --${s.flag.padEnd(26)} ${s.env.padEnd(30)} ${s.help}${s.default ? ` [${s.default}]` : ''}`).join('\n');
}

export const USAGE = `Usage: talos-etcd-backup <command> [options]

Commands:
  serve        Run the Metacontroller hook server (HTTP)
  snapshot     Stream one etcd snapshot from the Talos API into S3; prints one JSON line
  verify       Read a stored snapshot back from S3 and check it; prints one JSON line
  delete       Delete a backup's object from S3, only if that backup (BACKUP_UID) wrote it; prints one JSON line
  restore      Download a backup (a key, or the newest of a cluster), decrypt, decompress and verify it into a
               snapshot file for etcdctl snapshot restore / talosctl bootstrap --recover-from; prints one JSON line

Options for serve (flags override environment variables):
  --host HOST  Address to listen on (env ${HOST_ENV}, default ${DEFAULTS.host})
  --port PORT  Port to listen on (env ${PORT_ENV}, default ${DEFAULTS.port})
  Environment only: LOG_LEVEL (default ${DEFAULTS.logLevel}), BODY_LIMIT_BYTES (default ${DEFAULTS.bodyLimit}),
  KEEP_ALIVE_TIMEOUT_SECONDS (default ${DEFAULTS.keepAliveTimeoutMs / 1000}), REQUEST_TIMEOUT_SECONDS (default ${DEFAULTS.requestTimeoutMs / 1000}),
  SHUTDOWN_DELAY_SECONDS (default ${DEFAULTS.shutdownDelayMs / 1000}: after SIGTERM, serve on this long before closing)

Options for snapshot (flag, environment variable, meaning [default]):
${settingLines(SNAPSHOT_SETTINGS)}
  S3 keys come from the AWS SDK's default chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, web identity
  (IRSA), or an instance profile.

Options for verify:
${settingLines(VERIFY_SETTINGS)}

Options for delete:
${settingLines(DELETE_SETTINGS)}

Options for restore:
${settingLines(RESTORE_SETTINGS)}

Exit codes of snapshot, verify, delete and restore: 0 done; 1 failed, a retry may succeed; 2 failed, a retry
cannot help (bad settings, a missing Secret, a refused object, denied access, a damaged backup).

  -h, --help     Show this help
  -v, --version  Show the version
`;

const HELP_POINTER = '(see talos-etcd-backup --help)';

function fail(message: string, code: number): number {
  process.stderr.write(`talos-etcd-backup: ${message}\n`);
  return code;
}

async function runServe(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({ args, options: { host: { type: 'string' }, port: { type: 'string' } } });
  // Each command loads only its own modules: the Job's memory budget has no room for the web server's.
  const { serve, ListenError } = await import('./server/serve.js');
  try {
    await serve(parseServerConfig({ ...env, ...(values.host !== undefined && { [HOST_ENV]: values.host }), ...(values.port !== undefined && { [PORT_ENV]: values.port }) }));
    return 0;
  } catch (error) {
    return fail(error instanceof ConfigError || error instanceof ListenError ? error.message : `failed to start: ${(error as Error).message}`, 1);
  }
}

type JobCommand = 'snapshot' | 'verify' | 'delete' | 'restore';

const COMMAND_SETTINGS: Record<JobCommand, Setting[]> = { snapshot: SNAPSHOT_SETTINGS, verify: VERIFY_SETTINGS, delete: DELETE_SETTINGS, restore: RESTORE_SETTINGS };

/** Writes progress and the outcome into the backup's status when REPORT_STATUS=true (the snapshot Job). */
async function reporterFor(raw: RawSettings, env: NodeJS.ProcessEnv) {
  if (raw.reportStatus !== 'true') return undefined;
  const [{ inClusterApi }, { statusReporter }] = await Promise.all([import('./job/kubernetes/in-cluster.js'), import('./job/kubernetes/status-report.js')]);
  const namespace = raw.backupNamespace ?? '';
  const name = raw.backupName ?? '';
  const interval = Number(raw.progressInterval);
  if (!namespace || !name) throw new SettingsError('REPORT_STATUS=true needs BACKUP_NAMESPACE and BACKUP_NAME');
  if (!(interval > 0)) throw new SettingsError(`PROGRESS_INTERVAL_SECONDS (--progress-interval) must be a positive number, got ${JSON.stringify(raw.progressInterval)}`);
  const permissionWait = Number(raw.reportPermissionWait);
  if (!(permissionWait >= 0)) throw new SettingsError(`REPORT_PERMISSION_WAIT_SECONDS (--report-permission-wait) must be a number of seconds, got ${JSON.stringify(raw.reportPermissionWait)}`);
  let api;
  try {
    api = inClusterApi(env);
  } catch (error) {
    throw new SettingsError(`REPORT_STATUS=true, but the Kubernetes API is not usable: ${(error as Error).message}`);
  }
  return statusReporter({
    api,
    namespace,
    name,
    pod: raw.podName,
    intervalMs: interval * 1000,
    permissionWaitMs: permissionWait * 1000,
    warn: (message) => process.stderr.write(`${message}\n`),
  });
}

async function runJobCommand(command: JobCommand, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  // The SDK is pinned (package.json) to releases that support Node 20, and the image runs Node 22; its
  // multi-line "Node 20 support ends" warning would break the one-line error contract on Node 20 machines.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const settings = COMMAND_SETTINGS[command];
  const { values } = parseArgs({ args, options: Object.fromEntries(settings.map((s) => [s.flag, { type: 'string' as const }])) });
  const raw = resolveSettings(env, values as Record<string, string | undefined>);
  const [{ snapshotCommand, verifyCommand, deleteCommand, restoreCommand }, { redact, renderFailure }] = await Promise.all([import('./job/commands.js'), import('./job/errors.js')]);
  // A deleted Job's pod gets SIGTERM: stop streaming and abort the multipart upload, so nothing stays pending.
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => stop.abort(signal);
  process.once('SIGTERM', onSignal).once('SIGINT', onSignal);
  let reporter: Awaited<ReturnType<typeof reporterFor>>;
  let bar: ProgressBar | undefined;
  try {
    let result: object;
    if (command === 'snapshot') {
      reporter = await reporterFor(raw, env);
      await reporter?.running();
      const snapshot = await snapshotCommand(raw, env, undefined, { signal: stop.signal, ...(reporter && { onProgress: (bytes: number) => reporter!.progress(bytes) }) });
      // The object is complete in S3; if the report cannot be written, a retry finds it and reports again.
      await reporter?.succeeded(snapshot);
      result = snapshot;
    } else if (command === 'restore') {
      const { progressBar } = await import('./job/progress.js');
      result = await restoreCommand(raw, {
        onKey: (key, skipped) => {
          for (const incomplete of skipped) process.stderr.write(`skipping ${incomplete}: its upload did not finish (no recorded sha256)\n`);
          bar = progressBar(process.stderr, `restoring ${key}`);
        },
        onProgress: (done, total) => bar?.update(done, total),
        signal: stop.signal,
      });
      bar?.finish();
    } else {
      result = command === 'verify' ? { ...(await verifyCommand(raw, stop.signal)), verified: true } : await deleteCommand(raw, env);
    }
    process.stdout.write(`${redact(JSON.stringify(result), env)}\n`);
    return 0;
  } catch (error) {
    // One line, worded for the backup's status ("Failed to upload snapshot to S3: ...", ...), no secret.
    bar?.finish();
    const { message, exitCode } = renderFailure(error, env);
    process.stderr.write(`${message}\n`);
    await reporter?.failed(message, exitCode !== EXIT_CODE.permanent).catch((e: Error) => process.stderr.write(`could not report the failure to the TalosEtcdBackup: ${redact(e.message, env)}\n`));
    return exitCode;
  } finally {
    process.removeListener('SIGTERM', onSignal).removeListener('SIGINT', onSignal);
  }
}

/** Runs the CLI; resolves to the process exit code (serve keeps running and resolves once listening). */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '-v' || command === '--version') {
    process.stdout.write(`${packageVersion()}\n`);
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
    if (Object.hasOwn(COMMAND_SETTINGS, command)) return await runJobCommand(command as JobCommand, rest, env);
  } catch (error) {
    // parseArgs: an unknown option or a missing value. One line: the usage is 80 lines, and a Job's log or a
    // terminal should show the mistake, not bury it.
    if ((error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) return fail(`${(error as Error).message} ${HELP_POINTER}`, EXIT_CODE.permanent);
    return fail((error as Error).message.replace(/[\r\n]+/g, ' '), 1);
  }
  return fail(`unknown command ${JSON.stringify(command)} ${HELP_POINTER}`, EXIT_CODE.permanent);
}
