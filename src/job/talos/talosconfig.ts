// Reads a talosconfig (the file talosctl and Talos ServiceAccounts write) into what a client needs.
// Errors name the problem and never echo the file's contents: it holds a private key.

import { parse } from 'yaml';
import { JobError } from '../errors.js';

/** Talos' API port, used for endpoints given without one. */
export const TALOS_API_PORT = 50000;

export interface TalosContext {
  /** The context's name in the file. */
  name: string;
  /** `host:port` addresses of apid, in the file's order. */
  endpoints: string[];
  /** Default target nodes (may be empty). */
  nodes: string[];
  caPem: string;
  certPem: string;
  /** The client key, relabelled so OpenSSL accepts it (see relabelTalosKey). */
  keyPem: string;
}

/** What is wrong with a talosconfig; the command names the file (FAILURE_PREFIX.talosconfig). */
export class TalosconfigError extends JobError {
  override name = 'TalosconfigError';
  constructor(detail: string) {
    super(undefined, detail, { permanent: true });
  }
}

/**
 * Talos writes Ed25519 keys as `-----BEGIN ED25519 PRIVATE KEY-----` around a PKCS#8 body; OpenSSL (and so
 * Node) only accepts that body as `PRIVATE KEY`. EC and RSA keys pass through unchanged.
 */
export function relabelTalosKey(pem: string): string {
  return pem.replace(/-----(BEGIN|END) ED25519 PRIVATE KEY-----/g, '-----$1 PRIVATE KEY-----');
}

/**
 * `host:port` for an endpoint as Talos' client reads it: a bare host gets port 50000, `https://host` gets 443,
 * `scheme://host:port` becomes `host:port`, and IPv6 literals are bracketed.
 */
export function normalizeEndpoint(raw: string): string {
  const endpoint = raw.trim();
  const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? new URL(endpoint) : undefined;
  if (url) {
    const port =
      url.port || (url.protocol === 'https:' ? '443' : url.protocol === 'http:' ? '80' : String(TALOS_API_PORT));
    return `${url.hostname}:${port}`;
  }
  if (endpoint.startsWith('[')) return /\]:\d+$/.test(endpoint) ? endpoint : `${endpoint}:${TALOS_API_PORT}`;
  const colons = endpoint.split(':').length - 1;
  if (colons > 1) return `[${endpoint}]:${TALOS_API_PORT}`; // a bare IPv6 literal
  return colons === 1 ? endpoint : `${endpoint}:${TALOS_API_PORT}`;
}

/** The host of a normalized `host:port` endpoint; an IPv6 literal without its brackets. */
export function endpointHost(endpoint: string): string {
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(endpoint);
  if (bracketed) return bracketed[1]!;
  const colon = endpoint.lastIndexOf(':');
  return colon < 0 ? endpoint : endpoint.slice(0, colon);
}

function stringList(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' && v.length > 0)) return value as string[];
  throw new TalosconfigError(`${field} must be a list of strings`);
}

function pemField(context: Record<string, unknown>, field: 'ca' | 'crt' | 'key', name: string, label: RegExp): string {
  const value = context[field];
  if (typeof value !== 'string' || value.trim() === '') throw new TalosconfigError(`context "${name}" has no ${field}`);
  const pem = Buffer.from(value, 'base64').toString('utf8');
  if (!label.test(pem))
    throw new TalosconfigError(
      `context "${name}": ${field} is not a base64-encoded PEM ${field === 'key' ? 'private key' : 'certificate'}`,
    );
  return pem;
}

/**
 * Parses a talosconfig and returns one context: `contextName`, else the file's current `context`.
 * Throws a TalosconfigError naming what is missing or malformed.
 */
export function parseTalosconfig(text: string, contextName?: string): TalosContext {
  let document: unknown;
  try {
    document = parse(text);
  } catch (error) {
    throw new TalosconfigError(
      `talosconfig is not valid YAML (line ${(error as { linePos?: { line: number }[] }).linePos?.[0]?.line ?? '?'})`,
    );
  }
  if (document === null || typeof document !== 'object' || Array.isArray(document))
    throw new TalosconfigError('talosconfig is not a YAML mapping');
  const config = document as { context?: unknown; contexts?: unknown };
  const contexts = config.contexts;
  if (
    contexts === null ||
    typeof contexts !== 'object' ||
    Array.isArray(contexts) ||
    Object.keys(contexts).length === 0
  ) {
    throw new TalosconfigError('talosconfig has no contexts');
  }
  const name = contextName ?? config.context;
  if (typeof name !== 'string' || name === '')
    throw new TalosconfigError('talosconfig names no current context: set `context:` or choose one');
  const context = (contexts as Record<string, unknown>)[name];
  if (context === null || typeof context !== 'object' || Array.isArray(context)) {
    throw new TalosconfigError(`talosconfig has no context "${name}"; it has: ${Object.keys(contexts).join(', ')}`);
  }
  const fields = context as Record<string, unknown>;
  // `target` is the deprecated single-endpoint spelling of `endpoints`.
  const endpoints = stringList(fields.endpoints ?? fields.target, `context "${name}": endpoints`).map(
    normalizeEndpoint,
  );
  return {
    name,
    endpoints,
    nodes: stringList(fields.nodes, `context "${name}": nodes`),
    caPem: pemField(fields, 'ca', name, /-----BEGIN CERTIFICATE-----/),
    certPem: pemField(fields, 'crt', name, /-----BEGIN CERTIFICATE-----/),
    keyPem: relabelTalosKey(pemField(fields, 'key', name, /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/)),
  };
}
