// JSON Schemas for the envelope of Metacontroller's hook requests. They check only what the hooks rely on and
// let everything else through (Metacontroller may add fields); the resources' own specs are checked against
// the CRDs (src/api/validation.ts), where a bad spec becomes a Failed condition instead of an HTTP error.

const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;

const objectMeta = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1 },
    namespace: { type: 'string' },
    uid: { type: 'string' },
    generation: { type: 'integer' },
    creationTimestamp: { type: 'string', format: 'date-time' },
    deletionTimestamp: { type: ['string', 'null'] },
    labels: stringMap,
    annotations: stringMap,
  },
} as const;

const kubernetesObject = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata'],
  properties: {
    apiVersion: { type: 'string', minLength: 1 },
    kind: { type: 'string', minLength: 1 },
    metadata: objectMeta,
  },
} as const;

/** `children`, `attachments`, `related`: `{"<Kind>.<group>/<version>": {"<name or namespace/name>": object}}`. */
const objectMap = {
  type: 'object',
  additionalProperties: { type: 'object', additionalProperties: kubernetesObject },
} as const;

/**
 * A CompositeController sync request for `parentKind` whose children are keyed `childrenKey`. The children
 * entry is required: Metacontroller always sends one per child resource, and an answer computed without it
 * would make Metacontroller delete every child it knows of.
 */
export function compositeSyncRequestSchema(parentApiVersion: string, parentKind: string, childrenKey: string) {
  return {
    type: 'object',
    required: ['parent', 'children'],
    properties: {
      controller: { type: 'object' },
      parent: {
        ...kubernetesObject,
        properties: {
          apiVersion: { const: parentApiVersion },
          kind: { const: parentKind },
          metadata: { ...objectMeta, required: ['name', 'creationTimestamp'] },
        },
      },
      children: { ...objectMap, required: [childrenKey] },
      related: objectMap,
      finalizing: { type: 'boolean' },
    },
  } as const;
}

/** The decorated object of a DecoratorController request: ours are namespaced backups with a uid. */
function decoratedObject(apiVersion: string, kind: string) {
  return {
    ...kubernetesObject,
    properties: {
      apiVersion: { const: apiVersion },
      kind: { const: kind },
      metadata: { ...objectMeta, required: ['name', 'namespace', 'uid', 'creationTimestamp'] },
    },
  } as const;
}

/**
 * A DecoratorController sync or finalize request for `kind`. `attachments` may be absent (a hand-written request):
 * the answer then attaches what a new backup needs, which is never destructive.
 */
export function decoratorSyncRequestSchema(apiVersion: string, kind: string) {
  return {
    type: 'object',
    required: ['object'],
    properties: {
      controller: { type: 'object' },
      object: decoratedObject(apiVersion, kind),
      attachments: objectMap,
      related: objectMap,
      finalizing: { type: 'boolean' },
    },
  } as const;
}

/** A customize hook request; `parent` is the decorated object. */
export function customizeRequestSchema(apiVersion: string, kind: string) {
  return {
    type: 'object',
    required: ['parent'],
    properties: { controller: { type: 'object' }, parent: decoratedObject(apiVersion, kind) },
  } as const;
}
