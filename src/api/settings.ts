// How both processes describe their settings: a table of environment variables (with a flag where a person may
// type one), each with its default, its help and a typed parser. The parsing, `--help` and the README's tables are
// derived from the tables (src/contract/settings.ts: the Job's; src/server/config.ts: the hook server's).

/** What a parser makes of a setting's text: its value, or what is wrong (the text after the setting's name). */
export type Parsed<T> = { value: T } | { problem: string };
export type Parser<T> = (text: string) => Parsed<T>;

export interface Setting<T = unknown> {
  env: string;
  /** The command-line flag of the same meaning (the Job's commands; serve's --host and --port). */
  flag?: string;
  /** One line; `code` in backticks (kept in the README, dropped in `--help`). */
  help: string;
  default?: string;
  /** Read as text when absent. */
  parse?: Parser<T>;
  /** More for the README's row only. */
  details?: string;
}

/** The value a setting's parser yields (text for a setting without parser). */
export type ValueOf<S> = S extends { parse: Parser<infer T> } ? T : string;

const got = (text: string): string => `got ${JSON.stringify(text)}`;

export const text: Parser<string> = (value) => ({ value });

export const positiveNumber: Parser<number> = (value) => {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? { value: n } : { problem: `must be a positive number, ${got(value)}` };
};

export const boolean: Parser<boolean> = (value) =>
  value === 'true' || value === 'false'
    ? { value: value === 'true' }
    : { problem: `must be true or false, ${got(value)}` };

/** One of a few values, said as a sentence: "must be none, gzip or zstd". */
export function choice<const T extends string>(values: readonly T[]): Parser<T> {
  const said = values.length === 1 ? values[0]! : `${values.slice(0, -1).join(', ')} or ${values.at(-1)!}`;
  return (value) =>
    (values as readonly string[]).includes(value)
      ? { value: value as T }
      : { problem: `must be ${said}, ${got(value)}` };
}

/** One of a list of values, said as a list: "must be one of fatal, error, warn". */
export function oneOf<const T extends string>(values: readonly T[]): Parser<T> {
  return (value) =>
    (values as readonly string[]).includes(value)
      ? { value: value as T }
      : { problem: `must be one of ${values.join(', ')}, ${got(value)}` };
}

export function integerFrom(min: number, max: number): Parser<number> {
  return (value) => {
    const n = Number(value);
    return Number.isInteger(n) && n >= min && n <= max
      ? { value: n }
      : { problem: `must be an integer from ${min} to ${max}, ${got(value)}` };
  };
}

export function wholeNumberAtLeast(min: number, unit: string): Parser<number> {
  return (value) => {
    const n = Number(value);
    return Number.isInteger(n) && n >= min
      ? { value: n }
      : { problem: `must be a whole number of ${unit} >= ${min}, ${got(value)}` };
  };
}

export const seconds: Parser<number> = (value) => {
  const n = Number(value);
  return n >= 0 ? { value: n } : { problem: `must be a number of seconds, ${got(value)}` };
};

// RFC 3339 date-time: date, `T` or space, time with optional fraction, and a zone (`Z` or an offset). Date.parse
// alone would also take "2026", "March 1" or a time without zone (read in the machine's own zone).
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export const rfc3339Time: Parser<Date> = (value) => {
  const date = new Date(value);
  return !Number.isNaN(date.getTime()) && RFC3339.test(value)
    ? { value: date }
    : { problem: `must be an RFC 3339 time such as 2026-01-15T02:00:00Z, ${got(value)}` };
};

/** An http:// or https:// URL; its value is echoed only when it carries no credentials. */
export const httpUrl: Parser<string> = (value) => {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (url && (url.username || url.password)) {
    return {
      problem:
        'must not carry credentials (user:password@): S3 keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
    };
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
    return { problem: `must be an http:// or https:// URL such as https://minio.example.com:9000, ${got(value)}` };
  }
  return { value };
};

/** A comma- (or space-) separated list; empty entries dropped. */
export const list: Parser<string[]> = (value) => ({ value: value.split(/[\s,]+/).filter(Boolean) });

/** `--help` lines: flag (if any), variable, help (backticks dropped), [default]. */
export function helpLines(settings: readonly Setting[]): string {
  return settings
    .map(
      (s) =>
        `  ${(s.flag ? `--${s.flag}` : '').padEnd(28)} ${s.env.padEnd(30)} ${s.help.replaceAll('`', '')}${s.default ? ` [${s.default}]` : ''}`,
    )
    .join('\n');
}

const cell = (value: string): string => value.replaceAll('|', '\\|');

/**
 * The README's table of settings: variable, flag (when the table has flags), default, meaning. `defaultCell` may
 * say more than the default's text (a unit, "(none)", a computed default).
 */
export function markdownTable(
  settings: readonly Setting[],
  opts: { flags: boolean; defaultCell?: (s: Setting) => string | undefined },
): string {
  const header = opts.flags
    ? '| variable | flag | default | meaning |\n|---|---|---|---|'
    : '| variable | default | meaning |\n|---|---|---|';
  const rows = settings.map((s) => {
    const def = opts.defaultCell?.(s) ?? (s.default ? `\`${s.default}\`` : '');
    const meaning = cell(s.details ? `${s.help}. ${s.details}` : s.help);
    return opts.flags
      ? `| \`${s.env}\` | \`--${s.flag}\` | ${def} | ${meaning} |`
      : `| \`${s.env}\` | ${def} | ${meaning} |`;
  });
  return [header, ...rows].join('\n');
}

/** Reads a table's settings through their parsers, collecting every problem instead of stopping at the first. */
export class SettingsReader<Table extends Record<string, Setting>> {
  readonly list: string[] = [];
  constructor(
    private readonly table: Table,
    private readonly raw: Partial<Record<keyof Table, string>>,
    /** How a setting is named in a message. */
    private readonly label: (name: keyof Table) => string,
  ) {}

  /** The typed value; undefined when unset (or empty), or when invalid (then the problem is listed). */
  get<N extends keyof Table>(name: N): ValueOf<Table[N]> | undefined {
    const text = this.raw[name];
    if (text === undefined || text === '') return undefined;
    const setting: Setting = this.table[name]!;
    if (!setting.parse) return text as ValueOf<Table[N]>;
    const parsed = setting.parse(text);
    if ('value' in parsed) return parsed.value as ValueOf<Table[N]>;
    this.add(name, parsed.problem);
    return undefined;
  }

  /** A value that must be set: listed as a problem when it is not. */
  required<N extends keyof Table>(name: N): ValueOf<Table[N]> | undefined {
    const text = this.raw[name];
    if (text !== undefined && text !== '') return this.get(name);
    this.list.push(`${this.label(name)} is required`);
    return undefined;
  }

  /** A problem with a setting: its label, then what is wrong (": ..." or a predicate). */
  add(name: keyof Table, problem: string): void {
    this.list.push(`${this.label(name)}${problem.startsWith(':') ? '' : ' '}${problem}`);
  }

  /** The problems as one message ("invalid configuration: a; b"), or undefined when there are none. */
  summary(): string | undefined {
    return this.list.length > 0 ? `invalid configuration: ${this.list.join('; ')}` : undefined;
  }
}
