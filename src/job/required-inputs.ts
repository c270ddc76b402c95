// The Job's Secret and ConfigMap inputs are mounted with `optional: true`, so that a missing one cannot hold
// the pod in CreateContainerConfigError (which no status would ever show). REQUIRED_SECRETS lists what should
// have arrived; anything absent fails the backup at once, naming the Secret and key to fix.

import { existsSync, statSync } from 'node:fs';
import type { RequiredSecret } from '../server/backup/job.js';

export class MissingInputError extends Error {
  override name = 'MissingInputError';
}

function parse(json: string): RequiredSecret[] {
  let list: unknown;
  try {
    list = JSON.parse(json);
  } catch {
    throw new MissingInputError('REQUIRED_SECRETS is not valid JSON');
  }
  const valid = (e: unknown): e is RequiredSecret => {
    const r = e as RequiredSecret;
    return typeof r === 'object' && r !== null && (r.kind === 'Secret' || r.kind === 'ConfigMap') && typeof r.name === 'string' && typeof r.key === 'string' && (typeof r.env === 'string' || typeof r.pathEnv === 'string');
  };
  if (!Array.isArray(list) || !list.every(valid)) throw new MissingInputError('REQUIRED_SECRETS must be a list of {kind: Secret|ConfigMap, name, key, env|pathEnv}');
  return list;
}

function present(input: RequiredSecret, env: NodeJS.ProcessEnv): boolean {
  if (input.env !== undefined) return Boolean(env[input.env]);
  const path = env[input.pathEnv!];
  return path !== undefined && existsSync(path) && statSync(path).size > 0;
}

/** Throws a MissingInputError naming every expected Secret/ConfigMap key that did not arrive. */
export function checkRequiredInputs(json: string | undefined, namespace: string, env: NodeJS.ProcessEnv): void {
  if (!json) return;
  const missing = parse(json).filter((input) => !present(input, env));
  if (missing.length === 0) return;
  const described = missing.map((m) => `${m.kind === 'Secret' ? 'secret' : 'configmap'} ${namespace ? `${namespace}/` : ''}${m.name} key ${m.key} (the ${m.kind} does not exist or has no key ${JSON.stringify(m.key)})`);
  const kind = missing.every((m) => m.kind === 'ConfigMap') ? 'configmap' : 'secret';
  throw new MissingInputError(`Failed to get ${kind}: ${described.join('; ')}`);
}
