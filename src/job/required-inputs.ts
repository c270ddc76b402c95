// Checks on start that every Secret and ConfigMap key REQUIRED_SECRETS lists has arrived (see
// src/contract/required-inputs.ts for why they are optional mounts), and names each one that did not.

import { existsSync, statSync } from 'node:fs';
import { secretVolumeKeys } from './secret-volume.js';
import { parseRequiredInputs, RequiredInputsFormatError, type RequiredSecret } from '../contract/required-inputs.js';
import { JobError } from './errors.js';

function present(input: RequiredSecret, env: NodeJS.ProcessEnv): boolean {
  if (input.env !== undefined) return Boolean(env[input.env]);
  const path = env[input.pathEnv!];
  if (input.key === undefined) return path !== undefined && secretVolumeKeys(path).length > 0;
  return path !== undefined && existsSync(path) && statSync(path).size > 0;
}

/** Throws a permanent JobError ('input') naming every expected Secret/ConfigMap key that did not arrive. */
export function checkRequiredInputs(json: string | undefined, namespace: string, env: NodeJS.ProcessEnv): void {
  if (!json) return;
  let inputs: RequiredSecret[];
  try {
    inputs = parseRequiredInputs(json);
  } catch (error) {
    if (error instanceof RequiredInputsFormatError)
      throw new JobError(undefined, error.message, { permanent: true, cause: error });
    throw error;
  }
  const missing = inputs.filter((input) => !present(input, env));
  if (missing.length === 0) return;
  const described = missing.map((m) => {
    const what = `${m.kind === 'Secret' ? 'secret' : 'configmap'} ${namespace ? `${namespace}/` : ''}${m.name}`;
    return m.key === undefined
      ? `${what} (the ${m.kind} does not exist or has no keys)`
      : `${what} key ${m.key} (the ${m.kind} does not exist or has no key ${JSON.stringify(m.key)})`;
  });
  const kind = missing.every((m) => m.kind === 'ConfigMap') ? 'configmap' : 'secret';
  throw new JobError('input', described.join('; '), { subject: kind, permanent: true });
}
