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
const objectMap = { type: 'object', additionalProperties: { type: 'object', additionalProperties: kubernetesObject } } as const;

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
