// REQUIRED_SECRETS: the Secret and ConfigMap keys the hook server mounts into a Job, and where each one lands.
// The Job's inputs are mounted with `optional: true`, so that a missing one cannot hold the pod in
// CreateContainerConfigError (which no status would ever show); the Job checks this list on start and names what
// did not arrive (src/job/required-inputs.ts).

/**
 * One entry: an input Kubernetes fills from a Secret or ConfigMap key, and where it lands: in the variable `env`,
 * or in the file whose path the variable `pathEnv` holds. Without `key`, the whole Secret: a volume of all its keys
 * in the directory `pathEnv` holds (a missing optional Secret leaves it empty).
 */
export interface RequiredSecret {
  kind: 'Secret' | 'ConfigMap';
  name: string;
  key?: string;
  env?: string;
  pathEnv?: string;
}

export class RequiredInputsFormatError extends Error {
  override name = 'RequiredInputsFormatError';
}

export function formatRequiredInputs(inputs: readonly RequiredSecret[]): string {
  return JSON.stringify(inputs);
}

/** Reads REQUIRED_SECRETS; throws a RequiredInputsFormatError when it is not such a list. */
export function parseRequiredInputs(json: string): RequiredSecret[] {
  let list: unknown;
  try {
    list = JSON.parse(json);
  } catch {
    throw new RequiredInputsFormatError('REQUIRED_SECRETS is not valid JSON');
  }
  const valid = (e: unknown): e is RequiredSecret => {
    const r = e as RequiredSecret;
    return (
      typeof r === 'object' &&
      r !== null &&
      (r.kind === 'Secret' || r.kind === 'ConfigMap') &&
      typeof r.name === 'string' &&
      (typeof r.key === 'string' || (r.key === undefined && typeof r.pathEnv === 'string')) &&
      (typeof r.env === 'string' || typeof r.pathEnv === 'string')
    );
  };
  if (!Array.isArray(list) || !list.every(valid))
    throw new RequiredInputsFormatError(
      'REQUIRED_SECRETS must be a list of {kind: Secret|ConfigMap, name, key, env|pathEnv} or {kind, name, pathEnv} (a whole Secret)',
    );
  return list;
}
