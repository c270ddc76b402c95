// Checks objects against the CRD schemas, as the API server would: OpenAPI structure, defaults, and the
// CRDs' own CEL rules (`x-kubernetes-validations`). Every schema comes from crds/ (one source of truth).

import { parse as parseCel } from '@marcbachmann/cel-js';
import { Ajv, type ErrorObject, type SchemaValidateFunction, type ValidateFunction } from 'ajv';
import formats from 'ajv-formats';
import { BACKUP_PLURAL, SCHEDULE_PLURAL } from './constants.js';
import { crdSchema, loadCrd, type JsonSchema } from './crds.js';
import type { BackupSpec, BackupStatus, ScheduleSpec, ScheduleStatus } from './types.js';

export type Validated<T> = { ok: true; value: T } | { ok: false; problems: string[] };

interface CelRule {
  rule: string;
  message?: string;
}

// Kubernetes extensions that change how the API server stores or merges, not what is valid.
export const STRUCTURAL_KEYWORDS = [
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-int-or-string',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-embedded-resource',
];

/**
 * A value as CEL sees it in the API server: `type: integer` fields are CEL ints (BigInt for cel-js, which reads a
 * JavaScript number as a double, so that `self.retention + 1` would have no overload), everything else as it is.
 */
function celValue(data: unknown, schema: JsonSchema | undefined): unknown {
  if (!schema) return data;
  if (schema.type === 'integer' && typeof data === 'number' && Number.isInteger(data)) return BigInt(data);
  if (Array.isArray(data)) return data.map((item) => celValue(item, schema.items as JsonSchema | undefined));
  if (data !== null && typeof data === 'object') {
    const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
    const rest =
      typeof schema.additionalProperties === 'object' ? (schema.additionalProperties as JsonSchema) : undefined;
    return Object.fromEntries(
      Object.entries(data).map(([key, value]) => [key, celValue(value, properties[key] ?? rest)]),
    );
  }
  return data;
}

function newAjv(useDefaults: boolean, allErrors = true): Ajv {
  // strictTypes off: Kubernetes' int-or-string idiom (`anyOf` + `pattern` without `type`) is valid OpenAPI.
  const ajv = new Ajv({ allErrors, useDefaults, strictTypes: false, messages: true });
  formats.default(ajv, { mode: 'fast', formats: ['date-time'] }); // regex only: the API server has checked the calendar
  // OpenAPI's integer widths; `type: integer` already rejects fractions.
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat('int64', { type: 'number', validate: () => true });
  ajv.addVocabulary(STRUCTURAL_KEYWORDS);
  ajv.addKeyword({
    keyword: 'x-kubernetes-validations',
    schemaType: 'array',
    errors: true,
    compile(rules: CelRule[], parentSchema: JsonSchema) {
      const checks = rules.map((r) => ({
        rule: r.rule,
        message: r.message ?? `failed rule: ${r.rule}`,
        evaluate: parseCel(r.rule),
      }));
      const validate: SchemaValidateFunction = (data: unknown) => {
        const errors: Partial<ErrorObject>[] = [];
        for (const check of checks) {
          let passed = false;
          try {
            passed = check.evaluate({ self: celValue(data, parentSchema) }) === true;
          } catch {
            passed = false; // a rule that cannot be evaluated on this value fails, as in the API server
          }
          if (!passed)
            errors.push({ keyword: 'x-kubernetes-validations', message: check.message, params: { rule: check.rule } });
        }
        validate.errors = errors;
        return errors.length === 0;
      };
      return validate;
    },
  });
  return ajv;
}

function subschema(schema: JsonSchema, ...path: string[]): JsonSchema {
  let node: JsonSchema = schema;
  for (const key of path) {
    const next = (node.properties as Record<string, JsonSchema> | undefined)?.[key];
    if (!next) throw new Error(`CRD schema has no property ${path.join('.')}`);
    node = next;
  }
  return node;
}

/** Validates a value against one node of a status schema; `salvage` keeps what of a value can be read. */
interface StatusReader {
  schema: JsonSchema;
  validate: (value: unknown) => boolean;
}

interface Validators {
  schedule: ValidateFunction; // whole object (the root rules read metadata.name), defaults applied, every error
  backupSpec: ValidateFunction; // defaults applied, every error
  backupSpecAsIs: ValidateFunction; // first error only: a yes/no answer
  scheduleStatus: StatusReader;
  backupStatus: StatusReader;
}

let validators: Validators | undefined;

function compiled(): Validators {
  if (validators) return validators;
  const scheduleSchema = crdSchema(loadCrd(SCHEDULE_PLURAL));
  const backupSchema = crdSchema(loadCrd(BACKUP_PLURAL));
  const defaulting = newAjv(true);
  // Yes/no checks stop at the first error: a junk status of half a million values costs one error, not half a million.
  const checking = newAjv(false, false);
  const reader = (schema: JsonSchema): StatusReader => ({ schema, validate: checking.compile(schema) });
  validators = {
    schedule: defaulting.compile(scheduleSchema),
    backupSpec: defaulting.compile(subschema(backupSchema, 'spec')),
    backupSpecAsIs: checking.compile(subschema(backupSchema, 'spec')),
    scheduleStatus: reader(subschema(scheduleSchema, 'status')),
    backupStatus: reader(subschema(backupSchema, 'status')),
  };
  statusAjv = checking;
  return validators;
}

/** Compiles every schema now, so a broken CRD file stops the server at start, not at the first hook call. */
export function compileSchemas(): void {
  compiled();
}

// A status message is read by a person (and stored in etcd with the object): the first problems say what to fix.
const MAX_LISTED_PROBLEMS = 20;

/** One line per problem, e.g. `spec.concurrencyPolicy: must be one of Forbid, Allow, Replace`; at most 20, then a count. */
export function describeProblems(errors: ErrorObject[] | null | undefined, root: string): string[] {
  const lines = (errors ?? []).map((e) => {
    const path = [
      root,
      ...e.instancePath
        .split('/')
        .slice(1)
        .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~')),
    ]
      .filter(Boolean)
      .join('.');
    switch (e.keyword) {
      case 'required':
        return `${path ? `${path}.` : ''}${String(e.params.missingProperty)}: is required`;
      case 'enum':
        return `${path}: must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
      default:
        return `${path}: ${e.message ?? 'is invalid'}`;
    }
  });
  const unique = [...new Set(lines)];
  if (unique.length <= MAX_LISTED_PROBLEMS) return unique;
  return [...unique.slice(0, MAX_LISTED_PROBLEMS), `and ${unique.length - MAX_LISTED_PROBLEMS} more problems`];
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

// The largest spec a person writes has a few hundred values (endpoints, recipients, tolerations, resources); the
// API server prunes every undeclared field before it stores one. A spec far bigger than that is junk, and checking
// it costs: ajv lists every error (half a million invalid list items made half a million error objects, 417 MiB),
// and a valid one is copied into every backup the schedule creates. Such a spec is refused before any of that.
export const MAX_SPEC_VALUES = 10_000;

/**
 * The number of values in a JSON-like value (the value itself, every member and element, at any depth), counted
 * only as far as needed: any count above `max` is returned as `max + 1`. No recursion, so any depth is safe.
 */
export function countValues(value: unknown, max: number): number {
  let count = 0;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const next = pending.pop();
    count += 1;
    if (count + pending.length > max) return max + 1;
    if (Array.isArray(next)) {
      if (count + pending.length + next.length > max) return max + 1;
      for (const item of next) pending.push(item);
    } else if (isPlainObject(next)) {
      for (const key in next) {
        if (!Object.hasOwn(next, key)) continue;
        pending.push(next[key]);
        if (count + pending.length > max) return max + 1;
      }
    }
  }
  return count;
}

function tooBig(spec: unknown, root: string): string | undefined {
  return countValues(spec, MAX_SPEC_VALUES) > MAX_SPEC_VALUES
    ? `${root}: has more than ${MAX_SPEC_VALUES} values (fields and list items); a spec has a few dozen`
    : undefined;
}

/**
 * Checks a TalosEtcdBackupSchedule as the API server would (the root rules see `metadata.name`).
 * Returns the spec with the CRD's defaults applied; the input is not modified.
 */
export function validateSchedule(object: { metadata: unknown; spec?: unknown }): Validated<ScheduleSpec> {
  const big = tooBig(object.spec, 'spec');
  if (big) return { ok: false, problems: [big] };
  // Only the name is read from metadata (the root rule on its length): the rest (managedFields, annotations) is not copied.
  const { name, namespace } = (object.metadata ?? {}) as { name?: unknown; namespace?: unknown };
  const candidate = {
    apiVersion: 'x',
    kind: 'x',
    metadata: { name, ...(namespace !== undefined && { namespace }) },
    spec: clone(object.spec),
  };
  const validate = compiled().schedule;
  if (!validate(candidate)) return { ok: false, problems: describeProblems(validate.errors, '') };
  return { ok: true, value: candidate.spec as ScheduleSpec };
}

/** Checks a TalosEtcdBackup spec; returns it with the CRD's defaults applied. The input is not modified. */
export function validateBackupSpec(spec: unknown, root = 'spec'): Validated<BackupSpec> {
  const big = tooBig(spec, root);
  if (big) return { ok: false, problems: [big] };
  const candidate = clone(spec);
  const validate = compiled().backupSpec;
  if (!validate(candidate)) return { ok: false, problems: describeProblems(validate.errors, root) };
  return { ok: true, value: candidate as BackupSpec };
}

let statusAjv: Ajv | undefined;
const nodeValidators = new WeakMap<JsonSchema, (value: unknown) => boolean>();

function validatorOf(schema: JsonSchema): (value: unknown) => boolean {
  let validate = nodeValidators.get(schema);
  if (!validate) {
    validate = statusAjv!.compile(schema);
    nodeValidators.set(schema, validate);
  }
  return validate;
}

/**
 * What of `value` can be read under `schema`: the value itself when it matches; else, for an object, its members
 * that can be read (kept only if the object's required members survive), for a list the elements that can be
 * read; else nothing. A status is written by several hands (the hook, the Job's report, a person with kubectl):
 * one field the checks here reject (a time in a layout the API server accepts and ajv does not) must not make
 * the rest (the Job's report above all) unreadable.
 */
function salvage(schema: JsonSchema, value: unknown, validate = validatorOf(schema)): unknown {
  if (validate(value)) return value;
  const properties = schema.properties as Record<string, JsonSchema> | undefined;
  if (properties && isPlainObject(value)) {
    const kept: Record<string, unknown> = {};
    for (const [key, member] of Object.entries(value)) {
      const sub = Object.hasOwn(properties, key) ? properties[key] : undefined;
      if (!sub) continue; // undeclared: the API server would have pruned it
      const read = salvage(sub, member);
      if (read !== undefined) kept[key] = read;
    }
    return validate(kept) ? kept : undefined;
  }
  const items = schema.items as JsonSchema | undefined;
  if (items && Array.isArray(value)) {
    const validateItem = validatorOf(items);
    const kept = value.flatMap((item) => {
      const read = salvage(items, item, validateItem);
      return read === undefined ? [] : [read];
    });
    return validate(kept) ? kept : undefined;
  }
  return undefined;
}

function readStatus(reader: StatusReader, status: unknown): Record<string, unknown> {
  if (status === undefined || status === null) return {};
  if (reader.validate(status)) return status as Record<string, unknown>;
  return (salvage(reader.schema, status, reader.validate) as Record<string, unknown> | undefined) ?? {};
}

/**
 * A schedule's observed status: as it is when it matches the CRD, else the fields of it that do (a field that does
 * not is left out, so nothing unreadable is trusted), `{}` when absent.
 */
export function readScheduleStatus(status: unknown): ScheduleStatus {
  return readStatus(compiled().scheduleStatus, status) as ScheduleStatus;
}

/**
 * A backup's observed status: as it is when it matches the CRD, else the fields of it that do (a field that does
 * not is left out, so nothing unreadable is trusted; the Job's `report` stays as long as its `state` can be read),
 * `{}` when absent.
 */
export function readBackupStatus(status: unknown): BackupStatus {
  return readStatus(compiled().backupStatus, status) as BackupStatus;
}

/** Whether an observed TalosEtcdBackup's spec and status match the CRD, so what it says can be trusted. */
export function isReadableBackup(object: { spec?: unknown; status?: unknown }): boolean {
  const { backupSpecAsIs, backupStatus } = compiled();
  if (countValues(object.spec, MAX_SPEC_VALUES) > MAX_SPEC_VALUES) return false;
  return backupSpecAsIs(object.spec) && (object.status === undefined || backupStatus.validate(object.status));
}

// ---------------------------------------------------------------------------------------------------------------
// Any structural schema (tests use it to stand in for the API server with any CRD in crds/).

const anySchema = new WeakMap<JsonSchema, ValidateFunction>();
let anyAjv: Ajv | undefined;

/** Paths of fields the schema does not declare: the API server prunes them silently (`metadata` is ObjectMeta's business). */
function undeclaredFields(schema: JsonSchema, value: unknown, path: string, isRoot: boolean): string[] {
  if (Array.isArray(value)) {
    const items = schema.items as JsonSchema | undefined;
    return items ? value.flatMap((v, i) => undeclaredFields(items, v, `${path}[${i}]`, false)) : [];
  }
  if (typeof value !== 'object' || value === null || schema['x-kubernetes-preserve-unknown-fields'] === true) return [];
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const additional = schema.additionalProperties;
  return Object.entries(value).flatMap(([key, v]) => {
    const at = path ? `${path}.${key}` : key;
    if (isRoot && key === 'metadata') return [];
    const sub =
      properties[key] ??
      (typeof additional === 'object' && additional !== null ? (additional as JsonSchema) : undefined);
    if (sub) return undeclaredFields(sub, v, at, false);
    return additional === true ? [] : [`${at}: unknown field (the API server would prune it)`];
  });
}

/**
 * Checks `value` against a CRD's `openAPIV3Schema` (or a part of it, e.g. its status) as the API server checks a
 * write: structure, CEL rules and defaults (applied to the returned copy; the input is not modified). Fields the
 * schema does not declare, which the API server would prune silently, are reported as problems too. `root` prefixes
 * problem paths (e.g. 'status'); with root '' the value is a whole object and its `metadata` is not checked.
 */
export function validateAgainstSchema(schema: JsonSchema, value: unknown, root = ''): Validated<unknown> {
  anyAjv ??= newAjv(true);
  let validate = anySchema.get(schema);
  if (!validate) {
    validate = anyAjv.compile(schema);
    anySchema.set(schema, validate);
  }
  const candidate = clone(value);
  const problems = validate(candidate) ? [] : describeProblems(validate.errors, root);
  problems.push(...undeclaredFields(schema, candidate, root, root === ''));
  return problems.length === 0 ? { ok: true, value: candidate } : { ok: false, problems };
}
