// The one command-line entry: `talos-etcd-backup <command>`. Parses arguments and maps failures to exit codes.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../api/crds.js';
import { ConfigError, DEFAULTS, HOST_ENV, PORT_ENV, parseServerConfig } from '../config.js';
import { serve } from './serve.js';

export const USAGE = `Usage: talos-etcd-backup <command> [options]

Commands:
  serve        Run the Metacontroller hook server (HTTP)

Options for serve (flags override environment variables):
  --host HOST  Address to listen on (env ${HOST_ENV}, default ${DEFAULTS.host})
  --port PORT  Port to listen on (env ${PORT_ENV}, default ${DEFAULTS.port})

Other environment variables for serve:
  LOG_LEVEL                   fatal|error|warn|info|debug|trace|silent (default ${DEFAULTS.logLevel})
  BODY_LIMIT_BYTES            largest hook request body (default ${DEFAULTS.bodyLimit})
  KEEP_ALIVE_TIMEOUT_SECONDS  idle keep-alive timeout (default ${DEFAULTS.keepAliveTimeoutMs / 1000})

  -h, --help     Show this help
  -v, --version  Show the version
`;

function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/** Runs the CLI; resolves to the process exit code (serve keeps running and resolves once listening). */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (error) {
    process.stderr.write(`talos-etcd-backup: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const [command, ...extra] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return values.help || command === 'help' ? 0 : 2;
  }
  if (command !== 'serve' || extra.length > 0) {
    process.stderr.write(`talos-etcd-backup: unknown command ${JSON.stringify([command, ...extra].join(' '))}\n\n${USAGE}`);
    return 2;
  }
  try {
    const config = parseServerConfig({
      ...env,
      ...(values.host !== undefined && { [HOST_ENV]: values.host }),
      ...(values.port !== undefined && { [PORT_ENV]: values.port }),
    });
    await serve(config);
    return 0;
  } catch (error) {
    const message = error instanceof ConfigError ? error.message : `failed to start: ${(error as Error).message}`;
    process.stderr.write(`talos-etcd-backup: ${message}\n`);
    return 1;
  }
}
