// The snapshot Job's Kubernetes API calls, as the pod's service account over the in-cluster endpoint: a JSON merge
// patch on its backup's status subresource, and the create of an Event about it (events.ts).
//
// Why not @kubernetes/client-node: importing it adds ~75 MiB of RSS (measured: `node -e` before/after
// `import('@kubernetes/client-node')`, v1.4.0), half the Job's whole memory budget, for one PATCH request.
// The in-cluster contract is small and stable: KUBERNETES_SERVICE_HOST/PORT, and the token, CA and namespace
// the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount. The token is re-read for every request
// because bound service-account tokens are rotated while the pod runs.

import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { JobError } from '../errors.js';

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const REQUEST_TIMEOUT_MS = 10_000;

/** Permanent when the Job's identity may not write its backup's status (a broken Role), not a passing fault. */
export class KubernetesApiError extends JobError {
  override name = 'KubernetesApiError';
  constructor(
    message: string,
    /** HTTP status, or undefined for a network failure. */
    readonly status?: number,
    options: { cause?: unknown } = {},
  ) {
    super(undefined, message, { permanent: status === 401 || status === 403 || status === 404, cause: options.cause });
  }
}

export interface KubernetesApi {
  /** PATCH `path` with a JSON merge patch; resolves when the API server accepted it. */
  mergePatch(path: string, body: unknown): Promise<void>;
  /** POST `body` (JSON) to the collection `path`; resolves when the API server created it. */
  create(path: string, body: unknown): Promise<void>;
}

/**
 * The API as the pod's service account sees it. KUBERNETES_SERVICE_ACCOUNT_DIR overrides where the token and
 * CA are read from (tests run the Job's command outside a pod).
 */
export function inClusterApi(env: NodeJS.ProcessEnv): KubernetesApi {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT || '443';
  if (!host) throw new KubernetesApiError('not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST is not set');
  const dir = env.KUBERNETES_SERVICE_ACCOUNT_DIR || SERVICE_ACCOUNT_DIR;
  const ca = readFileSync(join(dir, 'ca.crt'));
  const send = (method: 'PATCH' | 'POST', path: string, contentType: string, body: unknown): Promise<void> => {
    const token = readFileSync(join(dir, 'token'), 'utf8').trim();
    const payload = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host, // an IPv6 service address goes as it is: Node would resolve "[fd00::1]" as a name
          port,
          path,
          method,
          ca,
          timeout: REQUEST_TIMEOUT_MS,
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': contentType,
            accept: 'application/json',
            'content-length': Buffer.byteLength(payload),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk.length < 4096 ? chunk : chunk.slice(0, 4096)));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve();
            // The API server's Status message names the resource and the missing permission; it holds no secret.
            let message = text.slice(0, 500);
            try {
              message = (JSON.parse(text) as { message?: string }).message ?? message;
            } catch {
              // not JSON: keep the text
            }
            reject(new KubernetesApiError(`the Kubernetes API answered ${status}: ${message}`, status));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000}s`)));
      req.on('error', (error) =>
        reject(new KubernetesApiError(`cannot reach the Kubernetes API at ${host}:${port}: ${error.message}`)),
      );
      req.end(payload);
    });
  };
  return {
    // async: a token that cannot be read rejects the call instead of throwing into the caller.
    mergePatch: async (path, body) => send('PATCH', path, 'application/merge-patch+json', body),
    create: async (path, body) => send('POST', path, 'application/json', body),
  };
}
