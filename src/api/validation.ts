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

function newAjv(useDefaults: boolean): Ajv {
  // strictTypes off: Kubernetes' int-or-string idiom (`anyOf` + `pattern` without `type`) is valid OpenAPI.
  const ajv = new Ajv({ allErrors: true, useDefaults, strictTypes: false, messages: true });
  formats.default(ajv, { mode: 'fast', formats: ['date-time'] }); // regex only: the API server has checked the calendar
  // OpenAPI's integer widths; `type: integer` already rejects fractions.
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat('int64', { type: 'number', validate: () => true });
  ajv.addVocabulary(STRUCTURAL_KEYWORDS);
  ajv.addKeyword({
    keyword: 'x-kubernetes-validations',
    schemaType: 'array',
    errors: true,
    compile(rules: CelRule[]) {
      const checks = rules.map((r) => ({ rule: r.rule, message: r.message ?? `failed rule: ${r.rule}`, evaluate: parseCel(r.rule) }));
      const validate: SchemaValidateFunction = (data: unknown) => {
        const errors: Partial<ErrorObject>[] = [];
        for (const check of checks) {
          let passed = false;
          try {
            passed = check.evaluate({ self: data }) === true;
          } catch {
            passed = false; // a rule that cannot be evaluated on this value fails, as in the API server
          }
          if (!passed) errors.push({ keyword: 'x-kubernetes-validations', message: check.message, params: { rule: check.rule } });
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

interface Validators {
  schedule: ValidateFunction; // whole object (the root rules read metadata.name), defaults applied
  scheduleStatus: ValidateFunction;
  backupSpec: ValidateFunction; // defaults applied
  backupSpecAsIs: ValidateFunction;
  backupStatus: ValidateFunction;
}

let validators: Validators | undefined;

function compiled(): Validators {
  if (validators) return validators;
  const scheduleSchema = crdSchema(loadCrd(SCHEDULE_PLURAL));
  const backupSchema = crdSchema(loadCrd(BACKUP_PLURAL));
  const defaulting = newAjv(true);
  const checking = newAjv(false);
  validators = {
    schedule: defaulting.compile(scheduleSchema),
    scheduleStatus: checking.compile(subschema(scheduleSchema, 'status')),
    backupSpec: defaulting.compile(subschema(backupSchema, 'spec')),
    backupSpecAsIs: checking.compile(subschema(backupSchema, 'spec')),
    backupStatus: checking.compile(subschema(backupSchema, 'status')),
  };
  return validators;
}

/** Compiles every schema now, so a broken CRD file stops the server at start, not at the first hook call. */
export function compileSchemas(): void {
  compiled();
}

/** One line per problem, e.g. `spec.concurrencyPolicy: must be one of Forbid, Allow, Replace`. */
export function describeProblems(errors: ErrorObject[] | null | undefined, root: string): string[] {
  const lines = (errors ?? []).map((e) => {
    const path = [root, ...e.instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))]
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
  return [...new Set(lines)];
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

/**
 * Checks a TalosEtcdBackupSchedule as the API server would (the root rules see `metadata.name`).
 * Returns the spec with the CRD's defaults applied; the input is not modified.
 */
export function validateSchedule(object: { metadata: unknown; spec?: unknown }): Validated<ScheduleSpec> {
  const candidate = clone({ apiVersion: 'x', kind: 'x', metadata: object.metadata, spec: object.spec });
  const validate = compiled().schedule;
  if (!validate(candidate)) return { ok: false, problems: describeProblems(validate.errors, '') };
  return { ok: true, value: candidate.spec as ScheduleSpec };
}

/** Checks a TalosEtcdBackup spec; returns it with the CRD's defaults applied. The input is not modified. */
export function validateBackupSpec(spec: unknown, root = 'spec'): Validated<BackupSpec> {
  const candidate = clone(spec);
  const validate = compiled().backupSpec;
  if (!validate(candidate)) return { ok: false, problems: describeProblems(validate.errors, root) };
  return { ok: true, value: candidate as BackupSpec };
}

/** A schedule's observed status, or `{}` when it is absent or does not match the CRD (then nothing in it is trusted). */
export function readScheduleStatus(status: unknown): ScheduleStatus {
  if (status === undefined || status === null) return {};
  return compiled().scheduleStatus(status) ? (status as ScheduleStatus) : {};
}

/** A backup's observed status, or `{}` when it is absent or does not match the CRD (then nothing in it is trusted). */
export function readBackupStatus(status: unknown): BackupStatus {
  if (status === undefined || status === null) return {};
  return compiled().backupStatus(status) ? (status as BackupStatus) : {};
}

/** Whether an observed TalosEtcdBackup's spec and status match the CRD, so what it says can be trusted. */
export function isReadableBackup(object: { spec?: unknown; status?: unknown }): boolean {
  const { backupSpecAsIs, backupStatus } = compiled();
  return backupSpecAsIs(object.spec) && (object.status === undefined || backupStatus(object.status));
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
    const sub = properties[key] ?? (typeof additional === 'object' && additional !== null ? (additional as JsonSchema) : undefined);
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
