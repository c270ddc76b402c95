// Loads the CustomResourceDefinitions in crds/: the one source of truth for every schema the hooks check.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { GROUP, VERSION } from './constants.js';

export type JsonSchema = Record<string, unknown>;

export interface CustomResourceDefinition {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    names: { kind: string; plural: string; shortNames?: string[]; categories?: string[] };
    versions: { name: string; schema: { openAPIV3Schema: JsonSchema }; [key: string]: unknown }[];
    [key: string]: unknown;
  };
}

let cachedRoot: string | undefined;

/** The directory holding this package's package.json, found from this file (works from src/ and dist/). */
export function packageRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error('talos-etcd-backup: cannot find the package root (no package.json above the code)');
    dir = parent;
  }
  cachedRoot = dir;
  return dir;
}

/** Path of the CRD manifest for a plural resource name, e.g. `talosetcdbackups`. */
export function crdPath(plural: string): string {
  return join(packageRoot(), 'crds', `${plural}.${GROUP}.yaml`);
}

export function loadCrd(plural: string): CustomResourceDefinition {
  return parse(readFileSync(crdPath(plural), 'utf8')) as CustomResourceDefinition;
}

/** The `openAPIV3Schema` of the served version of a CRD. */
export function crdSchema(crd: CustomResourceDefinition, version = VERSION): JsonSchema {
  const served = crd.spec.versions.find((v) => v.name === version);
  if (!served) throw new Error(`CRD ${crd.metadata.name} has no version ${version}`);
  return served.schema.openAPIV3Schema;
}

/** This package's version (package.json). */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
