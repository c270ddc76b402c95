// The one JSON body parser of the hook server. It measures a body's nesting, its number of values and the variety of
// its keys with a linear scan of the text before JSON.parse builds anything, so the work (and memory) a request can
// cause is bounded by what Metacontroller really sends, not by what fits in the byte limit.

import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';

export interface JsonLimits {
  /** Deepest nesting of objects and arrays accepted. */
  maxDepth: number;
  /** Most values (array elements, object members, the root) accepted. */
  maxValues: number;
  /** Most distinct keys accepted in objects of fewer than SMALL_OBJECT_MEMBERS members, in bodies of KEY_CHECK_MIN_BYTES or more (default MAX_SMALL_OBJECT_KEYS). */
  maxSmallObjectKeys?: number;
}

// A Metacontroller request nests 13 levels (request → children → kind → name → object → metadata → managedFields →
// fieldsV1 → ...; measured on bench/fixtures.ts and examples/hooks/). 100 leaves room for deep related objects
// (a TalosControlPlane's config patches) and stays far below the ~2,200 levels at which recursive code (ajv, CEL,
// structuredClone, JSON.stringify) overflows its stack and answered 500.
export const MAX_JSON_DEPTH = 100;

// Real requests carry one value per ~20 bytes (bench/fixtures.ts: 1,000 children with managedFields and last-applied
// annotations are 5.4 MiB and 276,169 values). The worst case per byte is 3 bytes per value (`[],[],...`), and each
// value costs ~100 bytes once parsed and as much again for every copy: 32 MiB of `[],[],...` took the server to
// 894 MiB. One value per 40 bytes of the body limit (419,430 at 16 MiB) admits ~1,500 such
// children, more than the CRD lets a schedule keep (retention 1,000 + failedBackupsHistoryLimit 100 + the running
// ones), and keeps the heap a worst body needs below 120 MiB (each passes with --max-old-space-size=120; at 32
// bytes per value one did not): Node gives a pod with a 384 MiB limit a 192 MiB old space.
export const BYTES_PER_VALUE = 40;

// V8 gives every object shape (a sequence of keys) a hidden class, and a hidden class has room for 1,536 transitions
// to the next key (kMaxNumberOfTransitions). Objects of fewer than 128 members (past that V8 uses a hash table) whose
// keys overflow that room each get hidden classes of their own, with quadratic descriptor arrays: 4.5 MiB of objects
// of ~100 keys drawn from 30,000 made JSON.parse hold 476 MiB for 1.9 s. Real requests use a few hundred distinct
// keys in small objects (field names, labels, annotations; 154 for 1,000 children, whose names are keys of one big
// map): 1,536 keeps every shape shared. Below 1 MiB the worst case measured 55 MiB, so smaller bodies (the usual
// ones) skip the key check, which costs about a third of a JSON.parse.
export const MAX_SMALL_OBJECT_KEYS = 1536;
export const SMALL_OBJECT_MEMBERS = 128;
export const KEY_CHECK_MIN_BYTES = 1024 * 1024;

export function jsonLimitsFor(bodyLimit: number): JsonLimits {
  return {
    maxDepth: MAX_JSON_DEPTH,
    maxValues: Math.max(1024, Math.floor(bodyLimit / BYTES_PER_VALUE)),
    maxSmallObjectKeys: MAX_SMALL_OBJECT_KEYS,
  };
}

export type JsonShapeProblem = { kind: 'depth' | 'values' | 'keys'; message: string };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

// Distinct keys are counted by a seeded 32-bit hash, so that no body can be built to make many keys collide.
const HASH_SEED = randomBytes(4).readInt32LE(0);
const TABLE_BITS = 12; // 4,096 slots for at most 1,537 keys: short probe sequences

function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Checks the nesting depth, the number of values and (for bodies of KEY_CHECK_MIN_BYTES or more) the distinct keys
 * of small objects of a JSON text, without parsing it: one pass over the characters outside strings (strings are
 * skipped with indexOf). Malformed JSON is not this function's business: JSON.parse reports it afterwards. The value
 * count is an upper bound: each value is the root, the first element of a container, or follows a comma. Returns
 * the first limit exceeded, or `undefined`.
 */
export function jsonShapeProblem(text: string, limits: JsonLimits): JsonShapeProblem | undefined {
  const maxKeys = limits.maxSmallObjectKeys ?? MAX_SMALL_OBJECT_KEYS;
  const checkKeys = text.length >= KEY_CHECK_MIN_BYTES && maxKeys < Number.MAX_SAFE_INTEGER;
  const isObject = new Uint8Array(limits.maxDepth + 2);
  const firstKey = new Int32Array(limits.maxDepth + 2); // where each open object's keys start in `keys`
  let keys = new Int32Array(checkKeys ? 4096 : 0); // hashes of the keys of the objects still open
  let openKeys = 0;
  const table = new Int32Array(checkKeys ? 1 << TABLE_BITS : 0); // distinct key hashes (0 = empty; hashes are odd)
  let distinct = 0;
  let depth = 0;
  let values = 1;
  const length = text.length;
  for (let i = 0; i < length; i += 1) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Skip to the closing quote: one that is not escaped by an odd number of backslashes.
      let end = i;
      for (;;) {
        end = text.indexOf('"', end + 1);
        if (end === -1) return undefined; // unterminated: JSON.parse says so
        let slashes = 0;
        while (text.charCodeAt(end - 1 - slashes) === BACKSLASH) slashes += 1;
        if (slashes % 2 === 0) break;
      }
      if (checkKeys && isObject[depth] === 1) {
        let next = end + 1;
        while (isWhitespace(text.charCodeAt(next))) next += 1;
        if (text.charCodeAt(next) === COLON) {
          let hash = HASH_SEED ^ 0x811c9dc5; // FNV-1a
          for (let k = i + 1; k < end; k += 1) hash = Math.imul(hash ^ text.charCodeAt(k), 0x01000193);
          if (openKeys === keys.length) {
            const grown = new Int32Array(keys.length * 2);
            grown.set(keys);
            keys = grown;
          }
          keys[openKeys] = hash | 1;
          openKeys += 1;
        }
      }
      i = end;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth += 1;
      values += 1;
      if (depth > limits.maxDepth) {
        return {
          kind: 'depth',
          message: `the request body nests deeper than ${limits.maxDepth} levels; a Metacontroller request nests about 15`,
        };
      }
      if (values > limits.maxValues) return tooManyValues(limits);
      isObject[depth] = c === OPEN_BRACE ? 1 : 0;
      firstKey[depth] = openKeys;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      if (checkKeys && isObject[depth] === 1 && depth > 0) {
        const first = firstKey[depth]!;
        if (openKeys - first < SMALL_OBJECT_MEMBERS) {
          for (let k = first; k < openKeys; k += 1) {
            const hash = keys[k]!;
            let slot = hash & ((1 << TABLE_BITS) - 1);
            for (;;) {
              const held = table[slot]!;
              if (held === hash) break;
              if (held === 0) {
                table[slot] = hash;
                distinct += 1;
                if (distinct > maxKeys) {
                  return {
                    kind: 'keys',
                    message: `the request body uses more than ${maxKeys} distinct keys in objects of fewer than ${SMALL_OBJECT_MEMBERS} members; a Metacontroller request uses a few hundred`,
                  };
                }
                break;
              }
              slot = (slot + 1) & ((1 << TABLE_BITS) - 1);
            }
          }
        }
        openKeys = first;
      }
      if (depth > 0) depth -= 1;
    } else if (c === COMMA) {
      values += 1;
      if (values > limits.maxValues) return tooManyValues(limits);
    }
  }
  return undefined;
}

function tooManyValues(limits: JsonLimits): JsonShapeProblem {
  return {
    kind: 'values',
    message: `the request body has more than ${limits.maxValues} values (array elements and object members); BODY_LIMIT_BYTES raises this limit with the byte limit`,
  };
}

class JsonShapeError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const SHAPE_ERRORS: Record<JsonShapeProblem['kind'], (message: string) => JsonShapeError> = {
  depth: (message) => new JsonShapeError(400, 'TEB_JSON_TOO_DEEP', message),
  keys: (message) => new JsonShapeError(400, 'TEB_JSON_TOO_MANY_KEYS', message),
  values: (message) => new JsonShapeError(413, 'TEB_JSON_TOO_MANY_VALUES', message),
};

/**
 * Replaces Fastify's body parsers with one for every content type (Metacontroller sends application/json; a
 * hand-written `curl -d @body.json` sends a form type): the shape check, then Fastify's own JSON parser (which
 * refuses `__proto__` and `constructor.prototype` keys). Too deep or too many keys is a 400; too many values is a 413, like too many bytes.
 */
export function registerJsonBodyParser(
  app: FastifyInstance,
  bodyLimit: number,
  limits: JsonLimits = jsonLimitsFor(bodyLimit),
): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    '*',
    { parseAs: 'string', bodyLimit },
    (request: FastifyRequest, body: string | Buffer, done) => {
      const text = typeof body === 'string' ? body : body.toString('utf8');
      const problem = jsonShapeProblem(text, limits);
      if (problem) {
        done(SHAPE_ERRORS[problem.kind](problem.message), undefined);
        return;
      }
      parseJson(request, text, done);
    },
  );
}
