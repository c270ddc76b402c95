// The one command-line entry: `talos-etcd-backup <command>`. Parses arguments and maps failures to exit codes.

import { parseArgs } from 'node:util';
import { packageVersion } from './api/crds.js';
import type { Setting } from './api/settings.js';
import { helpLines } from './api/settings.js';
import { COMMAND_SETTINGS, resolveSettings, SETTINGS, type JobCommand } from './contract/settings.js';
import type { RestoreHooks } from './job/commands.js';
import type { ProgressBar } from './job/progress.js';
import { EXIT_CODE } from './contract/exit-codes.js';

function settingLines(command: JobCommand): string {
  return helpLines(COMMAND_SETTINGS[command].map((name) => SETTINGS[name]));
}

/** The whole `--help`; the hook server's settings are passed in, so that the Job's commands never load them. */
export function usage(serverSettings: readonly Setting[]): string {
  return `Usage: talos-etcd-backup <command> [options]

Commands:
  serve        Run the Metacontroller hook server (HTTP)
  snapshot     Stream one etcd snapshot from the Talos API into S3; prints one JSON line
  verify       Read a stored snapshot back from S3 and check it; prints one JSON line
  delete       Delete a backup's object from S3, only if that backup (BACKUP_UID) wrote it; prints one JSON line
  restore      Download a backup (a key, or the newest of a cluster), decrypt, decompress and verify it into a
               snapshot file for etcdctl snapshot restore / talosctl bootstrap --recover-from; prints one JSON line.
               restore --backup NAME takes all it needs from that TalosEtcdBackup in the cluster
  restore-test-fetch, restore-test-check
               The restore-test Job's steps in this image (download and verify into RESTORE_TEST_DIR; question
               the etcd restored from it); a restore test is asked for with spec.restoreTest (see the README)
  list         List the TalosEtcdBackups in the cluster, newest first (name, schedule, phase, time, size,
               format, verified)
  backup       backup --from-schedule SCHEDULE [NAME]: create an on-demand TalosEtcdBackup from the schedule's
               template (its retention neither counts nor deletes it); prints one JSON line
  restore-test restore-test BACKUP [--wait [--timeout SECONDS]]: ask for a restore test of that backup now
               (spec.restoreTest.requestedAt); --wait waits for its outcome (at most 1800 s by default) and exits 2
               if it failed

Options for serve (flag, environment variable, meaning [default]; flags win):
${helpLines(serverSettings)}

Options for snapshot (flag, environment variable, meaning [default]):
${settingLines('snapshot')}
  S3 keys come from the AWS SDK's default chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, web identity
  (IRSA), or an instance profile.

Options for verify:
${settingLines('verify')}

Options for delete:
${settingLines('delete')}

Options for restore:
${settingLines('restore')}

Options for restore-test-fetch:
${settingLines('restore-test-fetch')}

Options for restore-test-check:
${settingLines('restore-test-check')}

Options of list, backup and restore --backup (the cluster, as kubectl takes it):
  --kubeconfig PATH       the kubeconfig (default: $KUBECONFIG, else ~/.kube/config)
  --context NAME          the kubeconfig context (default: its current context)
  -n, --namespace NS      the namespace (default: the context's, else default)
  list: --schedule NAME (only its backups), -o, --output table|json|yaml [table], -A, --all-namespaces
  restore-test: needs patch on talosetcdbackups (and get to wait)
  restore --backup NAME: the S3 options above override what the backup records (e.g. an --endpoint reachable from
    here); S3 keys from the AWS SDK's default chain, or with --s3-credentials-from-cluster from the Secrets the
    backup's spec names (needs get on them); with copies, the primary then each stored copy while one cannot be
    read or holds other bytes, or --copy N (keys S3_COPY_<N>_ACCESS_KEY_ID/_SECRET_ACCESS_KEY, else the chain)

Exit codes of every command but serve: 0 done; 1 failed, a retry may succeed; 2 failed, a retry cannot
help (bad settings, a missing Secret, a refused object, denied access, a damaged backup).

  -h, --help     Show this help
  -v, --version  Show the version
`;
}

async function printUsage(): Promise<void> {
  const { SERVER_SETTINGS } = await import('./server/config.js');
  process.stdout.write(usage(Object.values(SERVER_SETTINGS)));
}

const HELP_POINTER = '(see talos-etcd-backup --help)';

/** Whether `--name` (or `--name=value`) is among the arguments. */
const hasFlag = (args: string[], name: string): boolean =>
  args.some((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`));

function fail(message: string, code: number): number {
  process.stderr.write(`talos-etcd-backup: ${message}\n`);
  return code;
}

async function runServe(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({ args, options: { host: { type: 'string' }, port: { type: 'string' } } });
  // Each command loads only its own modules: the Job's memory budget has no room for the web server's.
  const [{ serve, ListenError }, { ConfigError, parseServerConfig, SERVER_SETTINGS }] = await Promise.all([
    import('./server/serve.js'),
    import('./server/config.js'),
  ]);
  try {
    await serve(
      parseServerConfig({
        ...env,
        ...(values.host !== undefined && { [SERVER_SETTINGS.host.env]: values.host }),
        ...(values.port !== undefined && { [SERVER_SETTINGS.port.env]: values.port }),
      }),
    );
    return 0;
  } catch (error) {
    return fail(
      error instanceof ConfigError || error instanceof ListenError
        ? error.message
        : `failed to start: ${(error as Error).message}`,
      1,
    );
  }
}

/**
 * The SDK is pinned (package.json) to releases that support Node 20, and the image runs Node 22; its multi-line
 * "Node 20 support ends" warning would break the one-line error contract on Node 20 machines.
 */
function silenceSdkNodeWarning(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}

/** SIGTERM (a deleted Job's pod) or SIGINT (Ctrl-C) aborts `signal`: streams stop, uploads abort, no file stays. */
function stopOnSignals(): { signal: AbortSignal; release(): void } {
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => stop.abort(signal);
  process.once('SIGTERM', onSignal).once('SIGINT', onSignal);
  return {
    signal: stop.signal,
    release: () => process.removeListener('SIGTERM', onSignal).removeListener('SIGINT', onSignal),
  };
}

/** restore's hooks for a terminal: unfinished uploads it skipped named on stderr, then a progress bar. */
async function restoreProgress(signal: AbortSignal): Promise<{ hooks: RestoreHooks; finish(): void }> {
  const { progressBar } = await import('./job/progress.js');
  let bar: ProgressBar | undefined;
  return {
    hooks: {
      onKey: (key, skipped) => {
        for (const incomplete of skipped)
          process.stderr.write(`skipping ${incomplete}: its upload did not finish (no recorded sha256)\n`);
        bar = progressBar(process.stderr, `restoring ${key}`);
      },
      onProgress: (done, total) => bar?.update(done, total),
      signal,
    },
    // Once: a later call (after a failure, or in a finally) draws nothing more.
    finish: () => {
      bar?.finish();
      bar = undefined;
    },
  };
}

async function runJobCommand(command: JobCommand, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  silenceSdkNodeWarning();
  const { values } = parseArgs({
    args,
    options: Object.fromEntries(
      COMMAND_SETTINGS[command].map((name) => [SETTINGS[name].flag, { type: 'string' as const }]),
    ),
  });
  const raw = resolveSettings(env, values as Record<string, string | undefined>);
  const [commands, { redact, renderFailure }] = await Promise.all([
    import('./job/commands.js'),
    import('./job/errors.js'),
  ]);
  const { snapshotCommand, verifyCommand, deleteCommand, restoreCommand, statusReporterFor } = commands;
  if (command === 'restore-test-fetch' || command === 'restore-test-check') {
    return runRestoreTestStep(command, raw, env, commands, { redact, renderFailure });
  }
  const stop = stopOnSignals();
  let reporter: Awaited<ReturnType<typeof statusReporterFor>>;
  let progress: Awaited<ReturnType<typeof restoreProgress>> | undefined;
  try {
    let result: object;
    if (command === 'snapshot') {
      reporter = await statusReporterFor(raw, env);
      await reporter?.running();
      const snapshot = await snapshotCommand(raw, env, undefined, {
        signal: stop.signal,
        ...(reporter && { onProgress: (bytes: number) => reporter!.progress(bytes) }),
      });
      // The object is complete in S3; if the report cannot be written, a retry finds it and reports again.
      await reporter?.succeeded(snapshot);
      result = snapshot;
    } else if (command === 'restore') {
      progress = await restoreProgress(stop.signal);
      result = await restoreCommand(raw, progress.hooks);
      progress.finish();
    } else {
      result =
        command === 'verify'
          ? { ...(await verifyCommand(raw, stop.signal)), verified: true }
          : await deleteCommand(raw, env);
    }
    process.stdout.write(`${redact(JSON.stringify(result), env)}\n`);
    return 0;
  } catch (error) {
    // One line, worded for the backup's status ("Failed to upload snapshot to S3: ...", ...), no secret.
    progress?.finish();
    const { message, exitCode } = renderFailure(error, env);
    process.stderr.write(`${message}\n`);
    await reporter
      ?.failed(message, exitCode !== EXIT_CODE.permanent)
      .catch((e: Error) =>
        process.stderr.write(`could not report the failure to the TalosEtcdBackup: ${redact(e.message, env)}\n`),
      );
    return exitCode;
  } finally {
    stop.release();
  }
}

/** One step of the restore-test Job: its outcome reported on the backup (status.restoreTestReport and an Event). */
async function runRestoreTestStep(
  command: 'restore-test-fetch' | 'restore-test-check',
  raw: ReturnType<typeof resolveSettings>,
  env: NodeJS.ProcessEnv,
  commands: typeof import('./job/commands.js'),
  errors: Pick<typeof import('./job/errors.js'), 'redact' | 'renderFailure'>,
): Promise<number> {
  const step = command === 'restore-test-fetch' ? 'fetch' : 'check';
  const stop = stopOnSignals();
  let reporter: Awaited<ReturnType<typeof commands.restoreTestReporterFor>>;
  try {
    const startedAt = await commands.restoreTestStart(raw, step, new Date());
    reporter = await commands.restoreTestReporterFor(raw, env, startedAt);
    let result: object;
    if (step === 'fetch') {
      await reporter?.started();
      result = await commands.restoreTestFetchCommand(raw, env, startedAt, stop.signal);
    } else {
      await reporter?.checking();
      const figures = await commands.restoreTestCheckCommand(raw);
      await reporter?.succeeded(figures);
      result = figures;
    }
    process.stdout.write(`${errors.redact(JSON.stringify(result), env)}\n`);
    return 0;
  } catch (error) {
    const { message, exitCode } = errors.renderFailure(error, env);
    process.stderr.write(`${message}\n`);
    await reporter
      ?.failed(step, message)
      .catch((e: Error) =>
        process.stderr.write(`could not report the failure to the TalosEtcdBackup: ${errors.redact(e.message, env)}\n`),
      );
    return exitCode;
  } finally {
    stop.release();
  }
}

const CLUSTER_OPTIONS = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
} as const;

const LIST_FORMATS = ['table', 'json', 'yaml'] as const;

/** `list`, `backup --from-schedule` and `restore --backup`: the commands that read the cluster (src/workstation/). */
async function runWorkstationCommand(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let workstation: typeof import('./workstation/commands.js');
  try {
    workstation = await import('./workstation/commands.js');
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND';
    if (!missing || !(error as Error).message.includes('@kubernetes/client-node')) throw error;
    return fail(
      `${command} reads the cluster with @kubernetes/client-node, an optional dependency this installation left out (the image does): run it where talos-etcd-backup is installed with it (npm install -g, see the README)`,
      EXIT_CODE.permanent,
    );
  }
  const { connect, listCommand, backupFromScheduleCommand, restoreFromBackupCommand, restoreTestCommand } = workstation;
  const { redact, renderFailure } = await import('./job/errors.js');
  const secrets: string[] = [];
  // Keys read from the cluster are redacted like the environment's (as copy keys: redact() knows their names).
  const redactionEnv = () => ({
    ...env,
    ...Object.fromEntries(secrets.map((secret, i) => [`S3_COPY_${1000 + i}_ACCESS_KEY_ID`, secret])),
  });
  try {
    if (command === 'list') {
      const { values } = parseArgs({
        args,
        options: {
          ...CLUSTER_OPTIONS,
          schedule: { type: 'string' },
          output: { type: 'string', short: 'o', default: 'table' },
          'all-namespaces': { type: 'boolean', short: 'A', default: false },
        },
      });
      const format = values.output as (typeof LIST_FORMATS)[number];
      if (!LIST_FORMATS.includes(format))
        return fail(`--output must be table, json or yaml, got ${JSON.stringify(values.output)}`, EXIT_CODE.permanent);
      const cluster = connect(values);
      const text = await listCommand(cluster, {
        schedule: values.schedule,
        format,
        allNamespaces: values['all-namespaces'],
      });
      process.stdout.write(`${text}\n`);
      return 0;
    }
    if (command === 'backup') {
      const { values, positionals } = parseArgs({
        args,
        allowPositionals: true,
        options: { ...CLUSTER_OPTIONS, 'from-schedule': { type: 'string' } },
      });
      const schedule = values['from-schedule'];
      if (!schedule || positionals.length > 1)
        return fail(`usage: backup --from-schedule SCHEDULE [NAME] ${HELP_POINTER}`, EXIT_CODE.permanent);
      const created = await backupFromScheduleCommand(connect(values), schedule, positionals[0]);
      process.stdout.write(`${JSON.stringify(created)}\n`);
      return 0;
    }
    if (command === 'restore-test') {
      const { values, positionals } = parseArgs({
        args,
        allowPositionals: true,
        options: { ...CLUSTER_OPTIONS, wait: { type: 'boolean', default: false }, timeout: { type: 'string' } },
      });
      const timeout = values.timeout === undefined ? 1800 : Number(values.timeout);
      if (positionals.length !== 1 || !Number.isFinite(timeout) || timeout <= 0)
        return fail(`usage: restore-test BACKUP [--wait [--timeout SECONDS]] ${HELP_POINTER}`, EXIT_CODE.permanent);
      const outcome = await restoreTestCommand(connect(values), positionals[0]!, {
        ...(values.wait && { waitMs: timeout * 1000 }),
      });
      process.stdout.write(`${JSON.stringify(outcome)}\n`);
      return 0;
    }
    // restore --backup NAME
    const { values } = parseArgs({
      args,
      options: {
        ...CLUSTER_OPTIONS,
        ...Object.fromEntries(
          COMMAND_SETTINGS.restore.map((name) => [SETTINGS[name].flag, { type: 'string' as const }]),
        ),
        backup: { type: 'string' },
        's3-credentials-from-cluster': { type: 'boolean', default: false },
      },
    });
    const { 's3-credentials-from-cluster': fromCluster, ...flags } = values as Record<
      string,
      string | boolean | undefined
    >;
    const given = flags as Record<string, string | undefined>;
    for (const name of ['key', 'bucket', 'cluster', 'prefix', 'copies'] as const)
      if (given[SETTINGS[name].flag] !== undefined)
        return fail(
          `--${SETTINGS[name].flag} cannot be used with --backup: the backup says which object it is`,
          EXIT_CODE.permanent,
        );
    silenceSdkNodeWarning();
    const stop = stopOnSignals();
    const progress = await restoreProgress(stop.signal);
    try {
      const result = await restoreFromBackupCommand(connect(values), values.backup!, {
        local: resolveSettings(env, given, { explicit: true }),
        defaults: resolveSettings({}, {}),
        credentialsFromCluster: fromCluster === true,
        secrets,
        hooks: progress.hooks,
        env,
        onFallback: (message) => process.stderr.write(`${redact(message, redactionEnv())}\n`),
      });
      progress.finish();
      process.stdout.write(`${redact(JSON.stringify(result), redactionEnv())}\n`);
      return 0;
    } finally {
      progress.finish();
      stop.release();
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) throw error;
    const { message, exitCode } = renderFailure(error, redactionEnv());
    process.stderr.write(`${message}\n`);
    return exitCode;
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
    await printUsage();
    return command === undefined ? 2 : 0;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    await printUsage();
    return 0;
  }
  try {
    if (command === 'serve') return await runServe(rest, env);
    if (
      command === 'list' ||
      command === 'backup' ||
      command === 'restore-test' ||
      (command === 'restore' && hasFlag(rest, 'backup'))
    )
      return await runWorkstationCommand(command, rest, env);
    if (Object.hasOwn(COMMAND_SETTINGS, command)) return await runJobCommand(command as JobCommand, rest, env);
  } catch (error) {
    // parseArgs: an unknown option or a missing value. One line: the usage is 80 lines, and a Job's log or a
    // terminal should show the mistake, not bury it.
    if ((error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS'))
      return fail(`${(error as Error).message} ${HELP_POINTER}`, EXIT_CODE.permanent);
    return fail((error as Error).message.replace(/[\r\n]+/g, ' '), 1);
  }
  return fail(`unknown command ${JSON.stringify(command)} ${HELP_POINTER}`, EXIT_CODE.permanent);
}
