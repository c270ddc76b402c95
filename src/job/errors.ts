// The Job's one error model. A JobError says what failed (its first words, from FAILURE_PREFIX), what went wrong,
// whether a retry can help, and what caused it; its message is composed once, when it is made, and never edited.
// renderFailure turns any error into what a failed command prints (and reports) and the exit code it ends with.

import { AgeError } from '../api/age-keys.js';
import { EXIT_CODE } from '../contract/exit-codes.js';
import { SettingsError } from '../contract/settings.js';
import { COPY_CREDENTIAL_ENV } from '../contract/copies.js';

/** The first words of each kind of failure's one-line message, as a Failed backup's condition shows them. */
export const FAILURE_PREFIX = {
  snapshot: 'Failed to take etcd snapshot',
  integrity: 'Snapshot integrity check failed',
  upload: 'Failed to upload snapshot to S3',
  verification: 'Snapshot verification failed',
  restore: 'Restore failed',
  restoreTest: 'Restore test failed',
  delete: 'Failed to delete snapshot from S3',
  talosconfig: 'Failed to read talosconfig',
  input: 'Failed to get',
} as const;

export type Failure = keyof typeof FAILURE_PREFIX;

export interface FailureOptions {
  /** true when a retry cannot help: the same settings, object or permission would fail the same way again. */
  permanent: boolean;
  cause?: unknown;
  /** What failed, named between the prefix and the detail: the talosconfig's path, "secret". */
  subject?: string | undefined;
}

export class JobError extends Error {
  override name = 'JobError';
  /** What went wrong, without the prefix. */
  readonly detail: string;
  readonly permanent: boolean;
  /** `failure` undefined: the detail is the whole message (a cause, or a failure that names itself). */
  constructor(failure: Failure | undefined, detail: string, options: FailureOptions) {
    const what = failure && [FAILURE_PREFIX[failure], options.subject].filter(Boolean).join(' ');
    super(what ? `${what}: ${detail}` : detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.detail = detail;
    this.permanent = options.permanent;
  }
}

/**
 * Whether no retry can help; the Job's podFailurePolicy then fails the Job at once (exit 2) instead of spending its
 * retries on the same error. Settings and age keys are read by the hook server too, so their errors are not
 * JobErrors: they are always the configuration's fault.
 */
export function isPermanentFailure(error: unknown): boolean {
  if (error instanceof JobError) return error.permanent;
  return error instanceof SettingsError || error instanceof AgeError;
}

/** Removes the S3 keys' values and anything shaped like an age identity from text about to be printed, on one line. */
export function redact(text: string, env: NodeJS.ProcessEnv): string {
  let out = text.replace(/[\r\n]+/g, ' ');
  // The copies' keys too (S3_COPY_<N>_*): each destination's own, in a trust domain of its own.
  const copyKeys = Object.keys(env).filter((name) => COPY_CREDENTIAL_ENV.test(name));
  for (const name of ['AWS_SECRET_ACCESS_KEY', 'AWS_ACCESS_KEY_ID', 'AWS_SESSION_TOKEN', ...copyKeys]) {
    const value = env[name];
    if (value && value.length >= 4) out = out.split(value).join(`[${name} redacted]`);
  }
  // No message is meant to carry an age identity; should one ever do, it is not printed.
  return out.replace(/AGE-SECRET-KEY-[A-Z0-9-]+/gi, '[age identity redacted]');
}

export interface RenderedFailure {
  /** One line, no secret: printed on stderr and written into the backup's status. */
  message: string;
  exitCode: number;
}

/** How a failed command ends: its one line and its exit code. */
export function renderFailure(error: unknown, env: NodeJS.ProcessEnv): RenderedFailure {
  return {
    message: redact(error instanceof Error ? error.message : String(error), env),
    exitCode: isPermanentFailure(error) ? EXIT_CODE.permanent : EXIT_CODE.retryable,
  };
}
