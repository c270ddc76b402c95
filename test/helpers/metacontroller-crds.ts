// Validation of Metacontroller objects (CompositeController, DecoratorController) against Metacontroller's own CRDs
// (v4.17.2, a verbatim copy in test/fixtures), as the API server would do it, and stricter in one way: a field the
// schema does not declare is an error instead of being pruned, so a misspelt field fails. Used by the tests of
// metacontroller/*.yaml and of the Helm chart's rendering of them.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import formats from 'ajv-formats';
import { parseAllDocuments } from 'yaml';
import { packageRoot } from '../../src/api/crds.js';
import { STRUCTURAL_KEYWORDS } from '../../src/api/validation.js';

type Json = Record<string, unknown>;

export interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string };
    versions: {
      name: string;
      served?: boolean;
      subresources?: { status?: unknown };
      schema: { openAPIV3Schema: Json };
    }[];
  };
}

/** Every document of a YAML file, failing on YAML errors or warnings; empty documents (a stray `---`) are skipped. */
export function readYamlDocuments(path: string): unknown[] {
  const documents = parseAllDocuments(readFileSync(path, 'utf8'));
  const list = Array.isArray(documents) ? documents : [];
  const objects: unknown[] = [];
  for (const doc of list) {
    assert.deepEqual(doc.errors.map(String), [], `${path}: YAML errors`);
    assert.deepEqual(doc.warnings.map(String), [], `${path}: YAML warnings`);
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) objects.push(value);
  }
  return objects;
}

export const metacontrollerCrds = readYamlDocuments(
  join(packageRoot(), 'test', 'fixtures', 'metacontroller-crds-v1.yaml'),
) as Crd[];

/** Kubernetes extensions to OpenAPI; Metacontroller's CEL rules are not evaluated here (its own schema is not under test). */
const KUBERNETES_KEYWORDS = [...STRUCTURAL_KEYWORDS, 'x-kubernetes-validations'];

// Go's time.ParseDuration syntax, which Metacontroller uses to read `timeout` (e.g. "10s", "1m30s", "500ms").
const GO_DURATION = /^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$/;

function collectFormats(schema: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(schema)) for (const s of schema) collectFormats(s, into);
  else if (schema && typeof schema === 'object') {
    for (const [key, value] of Object.entries(schema)) {
      if (key === 'format' && typeof value === 'string') into.add(value);
      else collectFormats(value, into);
    }
  }
  return into;
}

/**
 * A copy of a structural schema in which every object with declared properties rejects undeclared ones.
 * The API server would silently prune such a field (or reject it under kubectl's strict field validation);
 * either way a misspelt or non-existent field must fail here.
 */
function closeObjects(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closeObjects);
  if (!schema || typeof schema !== 'object') return schema;
  const out: Json = {};
  for (const [key, value] of Object.entries(schema)) {
    // `properties` maps field names to schemas: recurse into each schema, never treat the map itself as one.
    out[key] =
      key === 'properties'
        ? Object.fromEntries(Object.entries(value as Json).map(([k, v]) => [k, closeObjects(v)]))
        : closeObjects(value);
  }
  if (
    out.type === 'object' &&
    out.properties !== undefined &&
    out.additionalProperties === undefined &&
    out['x-kubernetes-preserve-unknown-fields'] !== true
  ) {
    out.additionalProperties = false;
  }
  return out;
}

function kubernetesAjv(schemas: Json[]): Ajv {
  const ajv = new Ajv({ strict: true, allErrors: true, useDefaults: false });
  formats.default(ajv);
  ajv.addVocabulary(KUBERNETES_KEYWORDS);
  // OpenAPI formats Kubernetes knows and ajv-formats does not (or means differently, like `duration`).
  ajv.addFormat('int32', {
    type: 'number',
    validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31,
  });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isInteger(n) });
  ajv.addFormat('duration', { type: 'string', validate: (s: string) => GO_DURATION.test(s) });
  // Any other format the API server does not check: accept it rather than fail compiling.
  const known = new Set(['int32', 'int64', 'duration', ...Object.keys(ajv.formats)]);
  for (const schema of schemas)
    for (const format of collectFormats(schema)) if (!known.has(format)) ajv.addFormat(format, true);
  return ajv;
}

export function metacontrollerCrdFor(object: Json): Crd | undefined {
  return metacontrollerCrds.find(
    (crd) =>
      object.kind === crd.spec.names.kind &&
      crd.spec.versions.some((v) => object.apiVersion === `${crd.spec.group}/${v.name}`),
  );
}

function schemaOf(crd: Crd, apiVersion: string): Json {
  const version = crd.spec.versions.find((v) => apiVersion === `${crd.spec.group}/${v.name}`);
  assert.ok(version, `${crd.metadata.name} has no version for ${apiVersion}`);
  return version.schema.openAPIV3Schema;
}

const validatorCache = new Map<string, ValidateFunction>();
const ajv = kubernetesAjv(metacontrollerCrds.flatMap((crd) => crd.spec.versions.map((v) => v.schema.openAPIV3Schema)));

function validatorFor(object: Json): ValidateFunction {
  const crd = metacontrollerCrdFor(object);
  assert.ok(crd, `not a Metacontroller kind: ${String(object.apiVersion)} ${String(object.kind)}`);
  const key = `${String(object.apiVersion)}/${crd.spec.names.kind}`;
  let validate = validatorCache.get(key);
  if (!validate) {
    validate = ajv.compile(closeObjects(schemaOf(crd, String(object.apiVersion))) as Json);
    validatorCache.set(key, validate);
  }
  return validate;
}

/** Problems with a Metacontroller object as the API server would see them (empty = valid). */
export function metacontrollerProblems(object: Json): string[] {
  const found: string[] = [];
  const validate = validatorFor(object);
  if (!validate(structuredClone(object))) {
    for (const e of validate.errors ?? [])
      found.push(`${e.instancePath || '/'} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
  }
  // ObjectMeta is `type: object` in every CRD schema; check what the API server checks on it.
  const metadata = object.metadata as Json | undefined;
  const name = metadata?.name;
  if (
    typeof name !== 'string' ||
    !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name) ||
    name.length > 253
  ) {
    found.push(`/metadata/name must be a DNS subdomain, got ${JSON.stringify(name)}`);
  }
  const crd = metacontrollerCrdFor(object);
  if (crd?.spec.scope === 'Cluster' && metadata?.namespace !== undefined)
    found.push('/metadata/namespace must not be set on a cluster-scoped object');
  return found;
}
