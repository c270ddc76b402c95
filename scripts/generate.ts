// Writes the files that are generated from another one in the repository, so that each schema and manifest has
// one source:
//   * crds/talosetcdbackupschedules...yaml: spec.backupTemplate.spec, from the spec schema of
//     crds/talosetcdbackups...yaml (everything but its description, re-indented line by line: the YAML text, comments
//     included, is the backup CRD's).
//   * helm/talos-etcd-backup/templates/metacontroller-*-controller.yaml, from metacontroller/*-controller.yaml: the
//     same objects with the release's name, labels, hook Service, resync period and hook timeout templated.
//   * README.md: the settings tables, from the settings tables in the code (scripts/readme-sections.ts).
// The chart's crds/ holds symlinks to crds/ (test/helm/chart.test.ts checks them), so it needs nothing here.
//
// Run with `npm run generate` (tsc, then node dist/scripts/generate.js); `--check` writes nothing and exits 1 when a
// committed file differs from what this generates. test/api/generated.test.ts runs the same check in memory.
// Deterministic: the output depends on the source files only.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isPair, isScalar, isSeq, parse, parseDocument, type Document, type Pair, type YAMLMap } from 'yaml';
import { packageRoot } from '../src/api/crds.js';
import { withGeneratedSections } from './readme-sections.js';

export const GENERATE_COMMAND = 'npm run generate';
const GENERATOR = 'scripts/generate.ts';

export const BACKUP_CRD = 'crds/talosetcdbackups.talos.alperen.cloud.yaml';
export const SCHEDULE_CRD = 'crds/talosetcdbackupschedules.talos.alperen.cloud.yaml';
const CHART = 'helm/talos-etcd-backup';
export const CHART_VALUES = `${CHART}/values.yaml`;

export interface GeneratedFile {
  /** Relative to the package root. */
  path: string;
  /** The files it is generated from, relative to the package root. */
  sources: string[];
  content: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Line-level helpers. CRD text is copied line by line, not re-serialized: the yaml package would refold the
// folded descriptions, and the committed files are meant to stay as written.

const indentOf = (line: string): number => line.length - line.trimStart().length;
const isBlank = (line: string): boolean => line.trim() === '';

/** The 0-based line of a character offset. */
function lineAt(text: string, offset: number): number {
  let line = 0;
  for (let i = 0; i < offset; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** The pair `key` of the block mapping at `path` (strings are keys, numbers sequence indices) in a parsed document. */
function pairAt(doc: Document, path: (string | number)[], key: string, file: string): Pair {
  const parent = path.length === 0 ? doc.contents : doc.getIn(path, true);
  if (!isMap(parent)) throw new Error(`${file}: ${path.join('.')} is not a mapping`);
  const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === key);
  if (!pair || !isPair(pair)) throw new Error(`${file}: ${[...path, key].join('.')} is missing`);
  return pair;
}

/**
 * The lines of the block-mapping entry whose key is `pair`'s: its `key:` line and every following line indented
 * deeper (blank lines inside included, trailing blank lines not). Returns the index of its first line too.
 */
function entryLines(
  text: string,
  lines: string[],
  pair: Pair,
  file: string,
): { start: number; end: number; indent: number } {
  const key = pair.key as { range?: [number, number, number]; value?: unknown };
  if (!key.range) throw new Error(`${file}: no source range for ${String(key.value)}`);
  const start = lineAt(text, key.range[0]);
  const indent = indentOf(lines[start]!);
  if (lines[start]!.trim() !== `${String(key.value)}:`)
    throw new Error(
      `${file}:${start + 1}: expected "${String(key.value)}:" alone on its line (a block mapping), found ${JSON.stringify(lines[start]!.trim())}`,
    );
  let end = start + 1;
  while (end < lines.length && (isBlank(lines[end]!) || indentOf(lines[end]!) > indent)) end++;
  while (end > start + 1 && isBlank(lines[end - 1]!)) end--;
  return { start, end, indent };
}

/** Splits a mapping's body lines (all indented `indent`, or deeper) into its `description` entry and the rest. */
function splitDescription(body: string[], indent: number, where: string): { description: string[]; rest: string[] } {
  const at = body.findIndex((l) => indentOf(l) === indent && l.trimStart().startsWith('description:'));
  if (at < 0) throw new Error(`${where}: no description`);
  let end = at + 1;
  while (end < body.length && (isBlank(body[end]!) || indentOf(body[end]!) > indent)) end++;
  return { description: body.slice(at, end), rest: [...body.slice(0, at), ...body.slice(end)] };
}

function reindent(lines: string[], by: number): string[] {
  return lines.map((l) => (isBlank(l) ? l : by >= 0 ? ' '.repeat(by) + l : l.slice(-by)));
}

// ---------------------------------------------------------------------------------------------------------------
// The schedule CRD's backupTemplate.spec, from the backup CRD's spec.

function servedVersionIndex(doc: Document, file: string): number {
  const versions = doc.getIn(['spec', 'versions'], true);
  if (!isSeq(versions) || versions.items.length !== 1)
    throw new Error(`${file}: expected exactly one entry in spec.versions`);
  return 0;
}

const schemaPath = (version: number): (string | number)[] => [
  'spec',
  'versions',
  version,
  'schema',
  'openAPIV3Schema',
  'properties',
];

export const BACKUP_TEMPLATE_BEGIN = `# Generated by \`${GENERATE_COMMAND}\` (${GENERATOR}) from the spec schema in`;
const BACKUP_TEMPLATE_BEGIN_2 = `# ${BACKUP_CRD}, all but its description: edit that file, then regenerate.`;
const BACKUP_TEMPLATE_END = '# End of the generated TalosEtcdBackup spec schema.';

type Schema = { description?: unknown; properties?: Record<string, Schema>; [key: string]: unknown };

const specOf = (crdText: string): Schema => {
  const crd = parse(crdText) as { spec: { versions: { schema: { openAPIV3Schema: Schema } }[] } };
  return crd.spec.versions[0]!.schema.openAPIV3Schema.properties!.spec!;
};

/** The backup CRD's `spec` schema and the schedule CRD's `backupTemplate.spec` schema, each without its description. */
export function specSchemas(backupCrdText: string, scheduleCrdText: string): { backup: Schema; template: Schema } {
  const { description: _a, ...backup } = specOf(backupCrdText);
  const { description: _b, ...template } = specOf(scheduleCrdText).properties!.backupTemplate!.properties!.spec!;
  return { backup, template };
}

/** The schedule CRD with its backupTemplate.spec schema (all but the description) replaced by the backup CRD's spec. */
export function generateScheduleCrd(backupCrdText: string, scheduleCrdText: string): string {
  const backupDoc = parseDocument(backupCrdText);
  const scheduleDoc = parseDocument(scheduleCrdText);
  for (const [doc, file] of [
    [backupDoc, BACKUP_CRD],
    [scheduleDoc, SCHEDULE_CRD],
  ] as const) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.join('; ')}`);
  }

  const backupLines = backupCrdText.split('\n');
  const source = entryLines(
    backupCrdText,
    backupLines,
    pairAt(backupDoc, schemaPath(servedVersionIndex(backupDoc, BACKUP_CRD)), 'spec', BACKUP_CRD),
    BACKUP_CRD,
  );
  const { rest: schema } = splitDescription(
    backupLines.slice(source.start + 1, source.end),
    source.indent + 2,
    `${BACKUP_CRD} spec`,
  );
  if (schema.some((l) => l.includes('Generated by')))
    throw new Error(`${BACKUP_CRD}: its spec schema must not hold generated-region markers`);

  const scheduleLines = scheduleCrdText.split('\n');
  const templatePath = [
    ...schemaPath(servedVersionIndex(scheduleDoc, SCHEDULE_CRD)),
    'spec',
    'properties',
    'backupTemplate',
    'properties',
  ];
  const target = entryLines(
    scheduleCrdText,
    scheduleLines,
    pairAt(scheduleDoc, templatePath, 'spec', SCHEDULE_CRD),
    SCHEDULE_CRD,
  );
  const inner = ' '.repeat(target.indent + 2);
  const { description } = splitDescription(
    scheduleLines.slice(target.start + 1, target.end),
    target.indent + 2,
    `${SCHEDULE_CRD} backupTemplate.spec`,
  );

  const out = [
    ...scheduleLines.slice(0, target.start + 1),
    ...description,
    inner + BACKUP_TEMPLATE_BEGIN,
    inner + BACKUP_TEMPLATE_BEGIN_2,
    ...reindent(schema, target.indent - source.indent),
    inner + BACKUP_TEMPLATE_END,
    ...scheduleLines.slice(target.end),
  ].join('\n');

  // What the API server will see: the backup's spec schema, exactly (the description aside).
  const check = specSchemas(backupCrdText, out);
  if (JSON.stringify(check.template) !== JSON.stringify(check.backup))
    throw new Error(`${GENERATOR}: the generated backupTemplate.spec does not parse to the backup spec schema`);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The chart's Metacontroller templates, from metacontroller/*.yaml.

interface ChartDefaults {
  resyncPeriodSeconds: unknown;
  hookTimeout: unknown;
  servicePort: unknown;
}

export function chartDefaults(valuesText: string): ChartDefaults {
  const values = parse(valuesText) as {
    metacontroller?: { resyncPeriodSeconds?: unknown; hookTimeout?: unknown };
    service?: { port?: unknown };
  };
  return {
    resyncPeriodSeconds: values.metacontroller?.resyncPeriodSeconds,
    hookTimeout: values.metacontroller?.hookTimeout,
    servicePort: values.service?.port,
  };
}

interface Controller {
  source: string;
  template: string;
  kind: string;
  /** The name in the static manifest, which the chart renders for the default release. */
  name: string;
  /** The template text for metadata.name. */
  nameTemplate: string;
  /** Template lines before the object (inside `if .Values.metacontroller.enabled`). */
  prelude: string[];
}

export const CONTROLLERS: Controller[] = [
  {
    source: 'metacontroller/backup-controller.yaml',
    template: `${CHART}/templates/metacontroller-backup-controller.yaml`,
    kind: 'DecoratorController',
    name: 'talos-etcd-backup',
    nameTemplate: '{{ $name }}',
    prelude: [
      '{{- /*',
      "The DecoratorController for TalosEtcdBackups, calling this release's Service. Its name makes the finalizer on",
      'every backup, metacontroller.io/decoratorcontroller-<name>: keep the release name (or fullnameOverride) stable.',
      'Deleting it leaves that finalizer on existing backups (Metacontroller issue #1062): delete the backups first.',
      "The snapshot Job's Role grants patch on talosetcdbackups/status and create on events (events.k8s.io), which",
      "Metacontroller's own ClusterRole must hold (its default wildcard does).",
      '*/}}',
      '{{- $name := include "talos-etcd-backup.fullname" . }}',
      '{{- /* The finalizer name after the slash is a qualified name: 63 characters, 20 taken by "decoratorcontroller-". */}}',
      '{{- if gt (len $name) 43 }}',
      '{{- fail (printf "the object name %q is longer than 43 characters, too long for the finalizer metacontroller.io/decoratorcontroller-<name>: choose a shorter release name or set fullnameOverride" $name) }}',
      '{{- end }}',
    ],
  },
  {
    source: 'metacontroller/schedule-controller.yaml',
    template: `${CHART}/templates/metacontroller-schedule-controller.yaml`,
    kind: 'CompositeController',
    name: 'talos-etcd-backup-schedule',
    nameTemplate: '{{ include "talos-etcd-backup.fullname" . }}-schedule',
    prelude: ["{{- /* The CompositeController for TalosEtcdBackupSchedules, calling this release's Service. */}}"],
  },
];

const HOLE = '__TALOS_ETCD_BACKUP_CHART_VALUE__';

function expectEqual(actual: unknown, expected: unknown, what: string): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(
      `${what} is ${JSON.stringify(actual)}, but the chart's default renders ${JSON.stringify(expected)}: the static manifest must be what the chart renders with its default values`,
    );
  }
}

/**
 * The chart template for a static Metacontroller manifest: the same YAML (comments included, the file's header
 * comment aside) with metadata, resyncPeriodSeconds and every hook's webhook service and timeout templated. The
 * static values must be the chart's defaults, so that the default release renders the static manifest.
 */
export function generateControllerTemplate(
  controller: Controller,
  manifestText: string,
  defaults: ChartDefaults,
): string {
  const doc = parseDocument(manifestText);
  if (doc.errors.length > 0) throw new Error(`${controller.source}: ${doc.errors.join('; ')}`);
  if (!isMap(doc.contents)) throw new Error(`${controller.source}: not a mapping`);
  const where = (path: string): string => `${controller.source}: ${path}`;
  expectEqual(doc.get('kind'), controller.kind, where('kind'));

  // The file's header (how to apply it, requirements) is the repository's, not the chart's.
  const first = doc.contents.items[0];
  if (first && isScalar(first.key)) first.key.commentBefore = null;
  doc.commentBefore = null;

  const holes: string[] = [];
  const hole = (path: (string | number)[], replacement: string): void => {
    if (!doc.hasIn(path)) throw new Error(`${where(path.join('.'))} is missing`);
    doc.setIn(path, `${HOLE}${holes.length}`);
    holes.push(replacement);
  };

  // metadata: the release's name and the chart's labels, carrying the static manifest's component label.
  const metadata = doc.get('metadata', true) as YAMLMap;
  metadata.commentBefore = null; // it describes the static name
  expectEqual(doc.getIn(['metadata', 'name']), controller.name, where('metadata.name'));
  const labels = doc.getIn(['metadata', 'labels']) as YAMLMap | undefined;
  const component = labels?.get('app.kubernetes.io/component');
  expectEqual(
    labels?.get('app.kubernetes.io/name'),
    'talos-etcd-backup',
    where('metadata.labels app.kubernetes.io/name'),
  );
  if (typeof component !== 'string' || !/^[a-z-]+$/.test(component))
    throw new Error(`${where('metadata.labels')}: no app.kubernetes.io/component`);
  hole(['metadata', 'name'], controller.nameTemplate);
  hole(
    ['metadata', 'labels'],
    `{{- include "talos-etcd-backup.labels" (dict "context" . "component" "${component}") | nindent INDENT }}`,
  );

  expectEqual(
    doc.getIn(['spec', 'resyncPeriodSeconds']),
    defaults.resyncPeriodSeconds,
    where('spec.resyncPeriodSeconds'),
  );
  hole(['spec', 'resyncPeriodSeconds'], '{{ .Values.metacontroller.resyncPeriodSeconds }}');

  const hooks = doc.getIn(['spec', 'hooks']);
  if (!isMap(hooks) || hooks.items.length === 0) throw new Error(`${where('spec.hooks')}: no hooks`);
  for (const pair of hooks.items) {
    const name = String((pair.key as { value?: unknown }).value);
    const webhook = ['spec', 'hooks', name, 'webhook'];
    expectEqual(
      (doc.getIn([...webhook, 'service']) as YAMLMap | undefined)?.toJSON(),
      { name: 'talos-etcd-backup', namespace: 'talos-etcd-backup', port: defaults.servicePort, protocol: 'http' },
      where(`spec.hooks.${name}.webhook.service`),
    );
    expectEqual(doc.getIn([...webhook, 'timeout']), defaults.hookTimeout, where(`spec.hooks.${name}.webhook.timeout`));
    if (doc.hasIn([...webhook, 'url']))
      throw new Error(`${where(`spec.hooks.${name}.webhook.url`)}: the chart calls its Service, not a URL`);
    hole([...webhook, 'service'], '{{- include "talos-etcd-backup.hookService" . | nindent INDENT }}');
    hole([...webhook, 'timeout'], '{{ .Values.metacontroller.hookTimeout }}');
  }

  const yaml = doc.toString({ lineWidth: 0, flowCollectionPadding: false }).replace(/\n$/, '');
  const filled = yaml.split('\n').flatMap((line) => {
    const m = /^( *)([A-Za-z]+): __TALOS_ETCD_BACKUP_CHART_VALUE__(\d+)$/.exec(line);
    if (!m) {
      if (line.includes(HOLE)) throw new Error(`${GENERATOR}: unexpected placement of a templated value: ${line}`);
      return [line];
    }
    const [, indent, key, n] = m as unknown as [string, string, string, string];
    const replacement = holes[Number(n)]!;
    if (!replacement.includes('nindent INDENT')) return [`${indent}${key}: ${replacement}`];
    // A block from a helper: `labels:` then the helper's lines, or (hookService) the helper's `service:` block itself.
    if (key === 'labels')
      return [`${indent}${key}:`, `${indent}  ${replacement.replace('INDENT', String(indent.length + 2))}`];
    return [`${indent}${replacement.replace('INDENT', String(indent.length))}`];
  });
  if (filled.some((l) => l.includes(HOLE)) || yaml.split(HOLE).length - 1 !== holes.length)
    throw new Error(`${GENERATOR}: not every templated value was placed`);

  return [
    `{{- /* Generated by \`${GENERATE_COMMAND}\` (${GENERATOR}) from ${controller.source}, with the release's`,
    'name, labels, Service, resync period and hook timeout templated: edit that file (or the generator), then',
    'regenerate. */}}',
    '{{- if .Values.metacontroller.enabled }}',
    ...controller.prelude,
    ...filled,
    '{{- end }}',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------------

/** Every generated file, as it should be committed, from the sources under `root`. */
export function generate(root: string = packageRoot()): GeneratedFile[] {
  const read = (path: string): string => readFileSync(join(root, path), 'utf8');
  const defaults = chartDefaults(read(CHART_VALUES));
  return [
    {
      path: SCHEDULE_CRD,
      sources: [BACKUP_CRD, SCHEDULE_CRD],
      content: generateScheduleCrd(read(BACKUP_CRD), read(SCHEDULE_CRD)),
    },
    ...CONTROLLERS.map((c) => ({
      path: c.template,
      sources: [c.source, CHART_VALUES],
      content: generateControllerTemplate(c, read(c.source), defaults),
    })),
    {
      path: 'README.md',
      sources: ['src/contract/settings.ts', 'src/server/config.ts'],
      content: withGeneratedSections(read('README.md')),
    },
  ];
}

/** The generated files whose committed content differs. */
export function stale(root: string = packageRoot()): GeneratedFile[] {
  return generate(root).filter((f) => readFileSync(join(root, f.path), 'utf8') !== f.content);
}

function main(args: string[]): number {
  const root = packageRoot();
  const check = args.includes('--check');
  const unknown = args.filter((a) => a !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(`usage: node dist/scripts/generate.js [--check]\n`);
    return 2;
  }
  const outdated = stale(root);
  for (const f of outdated) {
    if (check)
      process.stderr.write(
        `${f.path} differs from what ${GENERATOR} generates from ${f.sources.join(', ')}: run \`${GENERATE_COMMAND}\`\n`,
      );
    else {
      writeFileSync(join(root, f.path), f.content);
      process.stdout.write(`wrote ${f.path}\n`);
    }
  }
  if (outdated.length === 0) process.stdout.write('generated files are up to date\n');
  return check && outdated.length > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1])
  process.exitCode = main(process.argv.slice(2));
