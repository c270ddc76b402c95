// A Dockerfile build without a Docker engine: reads the Dockerfile and its .dockerignore, and performs the build's
// file steps for real: the context as .dockerignore filters it, then per stage WORKDIR, COPY (also --from another
// stage), ENV, ARG, and RUN through a callback (the caller decides what may run on this machine). Each stage's
// filesystem is a directory (`<root>/stage-<n>-<name>`) holding only what the Dockerfile put there: the base image
// is not reproduced, so whatever the base provides (node itself) comes from this machine.
//
// Also: running a command the way the image's pod runs it (`confine`): as the image's numeric user, in its own
// mount and PID namespaces (the command is PID 1) with every writable mount remounted read-only, as
// readOnlyRootFilesystem does, when this machine allows it (root with unshare and setpriv); else as that user
// without the namespaces (root), else as the current user.
//
// Instructions it does not emulate (ADD, VOLUME, SHELL, ONBUILD, COPY wildcards, --chown, FROM another stage, ...)
// throw, so a Dockerfile change that this file cannot follow fails loudly instead of being tested half.

import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { cp, lstat, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';

export interface Instruction {
  /** Upper case: FROM, COPY, RUN, ... */
  keyword: string;
  /** `--name=value` options before the arguments (COPY, RUN); a bare `--name` is 'true'. */
  flags: Record<string, string>;
  /** The arguments, as written (continuations joined), after the flags. */
  args: string;
  /** The exec (JSON) form, when the arguments are one. */
  json?: string[];
  /** 1-based line where the instruction starts. */
  line: number;
}

export interface Stage {
  index: number;
  name?: string;
  /** The base image, with the global ARGs substituted. */
  from: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Record<string, string | undefined>;
  stages: Stage[];
}

const FLAGGED = new Set(['COPY', 'ADD', 'RUN']);
const EXEC_FORM = new Set(['RUN', 'CMD', 'ENTRYPOINT', 'COPY', 'ADD']);

/** Parses a Dockerfile: comments (also inside continuations), line continuations, flags, exec forms, stages. */
export function parseDockerfile(text: string): Dockerfile {
  const logical: { text: string; line: number }[] = [];
  let current: string | undefined;
  let start = 0;
  text.split('\n').forEach((rawLine, i) => {
    const raw = rawLine.replace(/\r$/, '');
    if (/^\s*#/.test(raw)) return;
    if (raw.trim() === '') return;
    if (current === undefined) {
      current = '';
      start = i + 1;
    }
    if (/\\\s*$/.test(raw)) {
      current += raw.replace(/\\\s*$/, '');
      return;
    }
    logical.push({ text: current + raw, line: start });
    current = undefined;
  });
  if (current !== undefined) logical.push({ text: current, line: start });

  const globalArgs: Record<string, string | undefined> = {};
  const stages: Stage[] = [];
  for (const { text: line, line: number } of logical) {
    const match = /^\s*([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(line);
    if (!match) throw new Error(`Dockerfile line ${number}: cannot parse ${JSON.stringify(line)}`);
    const keyword = match[1]!.toUpperCase();
    let args = (match[2] ?? '').trim();
    const flags: Record<string, string> = {};
    if (FLAGGED.has(keyword)) {
      for (let flag = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(args); flag; flag = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(args)) {
        flags[flag[1]!] = flag[2] ?? 'true';
        args = args.slice(flag[0].length);
      }
    }
    const instruction: Instruction = { keyword, flags, args, line: number };
    if (EXEC_FORM.has(keyword) && args.startsWith('[')) {
      const json: unknown = JSON.parse(args);
      if (!Array.isArray(json) || !json.every((a) => typeof a === 'string'))
        throw new Error(`Dockerfile line ${number}: ${keyword} needs a JSON array of strings`);
      instruction.json = json;
    }
    if (keyword === 'FROM') {
      const words = expand(args, globalArgs).split(/\s+/);
      if (!(words.length === 1 || (words.length === 3 && words[1]!.toUpperCase() === 'AS')))
        throw new Error(`Dockerfile line ${number}: FROM ${args}`);
      stages.push({ index: stages.length, ...(words[2] && { name: words[2] }), from: words[0]!, instructions: [] });
    } else if (stages.length === 0) {
      if (keyword !== 'ARG') throw new Error(`Dockerfile line ${number}: only ARG may come before the first FROM`);
      const [name, value] = splitArg(args);
      globalArgs[name] = value;
    } else {
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  if (stages.length === 0) throw new Error('Dockerfile: no FROM');
  return { globalArgs, stages };
}

function splitArg(args: string): [string, string | undefined] {
  const eq = args.indexOf('=');
  return eq < 0 ? [args.trim(), undefined] : [args.slice(0, eq).trim(), unquote(args.slice(eq + 1).trim())];
}

function unquote(value: string): string {
  return /^"[\s\S]*"$/.test(value) || /^'[\s\S]*'$/.test(value) ? value.slice(1, -1) : value;
}

/** `$NAME` and `${NAME}` substitution, as Docker does in FROM, COPY, ENV, LABEL, WORKDIR, USER and EXPOSE. */
export function expand(text: string, vars: Record<string, string | undefined>): string {
  return text.replace(
    /\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (_, braced: string | undefined, bare: string | undefined) => {
      const name = braced ?? bare!;
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
        throw new Error(`Dockerfile: substitution \${${name}} is not emulated`);
      return vars[name] ?? '';
    },
  );
}

/** `key=value` pairs of LABEL and ENV (values may be quoted; `ENV KEY value` too). */
export function keyValues(args: string): [string, string][] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const ch = args[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === '\\' && quote === '"' && i + 1 < args.length) word += args[++i];
      else word += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < args.length) {
      word += args[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  if (words.length > 0 && !words[0]!.includes('=')) return [[words[0]!, words.slice(1).join(' ')]];
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new Error(`Dockerfile: expected key=value, got ${JSON.stringify(w)}`);
    return [w.slice(0, eq), w.slice(eq + 1)];
  });
}

// ---------------------------------------------------------------------------------------------------------------
// .dockerignore

export interface IgnoreRule {
  source: string;
  negate: boolean;
  regex: RegExp;
}

/** Parses .dockerignore: one pattern a line, `#` comments, `!` exceptions, `**`, `*`, `?` and classes. */
export function parseDockerignore(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const rawLine of text.split('\n')) {
    let line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negate = line.startsWith('!');
    if (negate) line = line.slice(1).trim();
    const source = posix.normalize(line).replace(/^\/+/, '').replace(/\/+$/, '');
    rules.push({ source, negate, regex: globToRegex(source) });
  }
  return rules;
}

function globToRegex(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === '*' && glob[i + 1] === '*') {
      i++;
      if (glob[i + 1] === '/') {
        i++;
        out += '(?:.*/)?';
      } else out += '.*';
    } else if (ch === '*') out += '[^/]*';
    else if (ch === '?') out += '[^/]';
    else if (ch === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) throw new Error(`.dockerignore: unclosed [ in ${glob}`);
      out += `[${glob.slice(i + 1, end).replace(/^!/, '^')}]`;
      i = end;
    } else if (ch === '\\' && i + 1 < glob.length) out += `\\${glob[++i]}`;
    else out += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** Whether .dockerignore keeps `path` (relative, `/`-separated) out of the context: the last rule matching it or a parent decides. */
export function isIgnored(rules: IgnoreRule[], path: string): boolean {
  const parts = path.split('/');
  const selfAndParents = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const rule of rules) if (selfAndParents.some((p) => rule.regex.test(p))) ignored = !rule.negate;
  return ignored;
}

/** Copies the build context: every file of `from` that .dockerignore lets through, to `to`. Returns the files copied. */
export async function copyContext(from: string, rules: IgnoreRule[], to: string): Promise<string[]> {
  const copied: string[] = [];
  // An ignored folder is skipped unless an exception could bring back something inside it.
  const mayReinclude = (dir: string) =>
    rules.some((r) => r.negate && (/[*?[]/.test(r.source) || r.source.startsWith(`${dir}/`)));
  const walk = async (rel: string): Promise<void> => {
    await mkdir(join(to, rel), { recursive: true });
    for (const entry of await readdir(join(from, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      const ignored = isIgnored(rules, path);
      if (entry.isDirectory()) {
        if (!ignored || mayReinclude(path)) await walk(path);
      } else if (!ignored) {
        await cp(join(from, path), join(to, path), { verbatimSymlinks: true });
        copied.push(path);
      }
    }
  };
  await walk('');
  return copied.sort();
}

// ---------------------------------------------------------------------------------------------------------------
// Build

export interface RunStep {
  stage: Stage;
  /** The last stage: the image itself. */
  final: boolean;
  command: string;
  flags: Record<string, string>;
  /** The stage's WORKDIR, as a local directory. */
  cwd: string;
  /** ARG and ENV values in force. */
  env: Record<string, string>;
}

export interface BuildOptions {
  dockerfile: Dockerfile;
  /** The build context, already filtered (copyContext). */
  context: string;
  /** Each stage's filesystem goes into a directory under this one. */
  root: string;
  buildArgs?: Record<string, string>;
  /** Performs a RUN (or refuses it by throwing). */
  run(step: RunStep): Promise<void>;
  /** Only work out the image's configuration: no files, no RUN. */
  configOnly?: boolean;
}

/** A stage while it is being built: the image's state plus the ARG values in scope. */
interface StageState {
  /** Local directory standing for the image's `/`. */
  root: string;
  /** Absolute path inside the image. */
  workdir: string;
  vars: Record<string, string | undefined>;
  /** ENV set by the Dockerfile (not the base image's). */
  env: Record<string, string>;
  /** Undefined when the Dockerfile does not set it (the base image's then applies). */
  user?: string;
  entrypoint?: string[];
  cmd?: string[];
  exposed: string[];
  labels: Record<string, string>;
}

/** The resulting image: its filesystem (what the Dockerfile put there) and its configuration. */
export interface ImageConfig extends Omit<StageState, 'vars'> {
  /** Where an absolute image path is on this machine. */
  localPath(path: string): string;
}

function stageRef(dockerfile: Dockerfile, ref: string): Stage {
  const stage =
    dockerfile.stages.find((s) => s.name === ref) ?? (/^\d+$/.test(ref) ? dockerfile.stages[Number(ref)] : undefined);
  if (!stage)
    throw new Error(`Dockerfile: COPY --from=${ref} names no earlier stage (copying from an image is not emulated)`);
  return stage;
}

/** Builds the last stage and the stages it copies from (those concurrently, as BuildKit does). */
export async function buildImage(opts: BuildOptions): Promise<ImageConfig> {
  const { dockerfile } = opts;
  const started = new Map<Stage, Promise<StageState>>();
  const final = dockerfile.stages.at(-1)!;
  const ensure = (stage: Stage): Promise<StageState> => {
    let promise = started.get(stage);
    if (!promise) {
      promise = buildStage(stage, stage === final, opts, ensure);
      started.set(stage, promise);
    }
    return promise;
  };
  const needed = new Set<Stage>([final]);
  for (let grew = true; grew;) {
    grew = false;
    for (const stage of [...needed]) {
      for (const i of stage.instructions) {
        if (i.keyword === 'COPY' && i.flags.from !== undefined) {
          const dep = stageRef(dockerfile, i.flags.from);
          if (!needed.has(dep)) {
            needed.add(dep);
            grew = true;
          }
        }
      }
    }
  }
  // Like BuildKit, a failing stage does not stop the others: wait for every one before reporting it.
  const settled = await Promise.allSettled([...needed].map(ensure));
  for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
  const state = (settled[[...needed].indexOf(final)] as PromiseFulfilledResult<StageState>).value;
  const { root, workdir, env, user, entrypoint, cmd, exposed, labels } = state;
  return {
    root,
    workdir,
    env,
    ...(user !== undefined && { user }),
    ...(entrypoint && { entrypoint }),
    ...(cmd && { cmd }),
    exposed,
    labels,
    localPath: (path) => join(root, posix.resolve('/', path)),
  };
}

async function buildStage(
  stage: Stage,
  final: boolean,
  opts: BuildOptions,
  ensure: (s: Stage) => Promise<StageState>,
): Promise<StageState> {
  const { dockerfile } = opts;
  if (dockerfile.stages.some((s) => s.name !== undefined && s.name === stage.from))
    throw new Error(`Dockerfile: FROM ${stage.from} (another stage) is not emulated`);
  const root = join(opts.root, `stage-${stage.index}${stage.name ? `-${stage.name}` : ''}`);
  const files = !opts.configOnly;
  if (files) await mkdir(root, { recursive: true });
  const state: StageState = { root, workdir: '/', vars: {}, env: {}, exposed: [], labels: {} };
  const local = (path: string) => join(root, posix.resolve(state.workdir, path));
  for (const ins of stage.instructions) {
    const where = `Dockerfile line ${ins.line} (${ins.keyword})`;
    const unknownFlags = Object.keys(ins.flags).filter(
      (f) => !(ins.keyword === 'COPY' ? ['from', 'link'] : ins.keyword === 'RUN' ? ['mount'] : []).includes(f),
    );
    if (unknownFlags.length > 0) throw new Error(`${where}: --${unknownFlags.join(', --')} is not emulated`);
    switch (ins.keyword) {
      case 'ARG': {
        const [name, fallback] = splitArg(ins.args);
        state.vars[name] =
          opts.buildArgs?.[name] ??
          (fallback !== undefined ? expand(fallback, state.vars) : dockerfile.globalArgs[name]);
        break;
      }
      case 'ENV':
        for (const [k, v] of keyValues(expand(ins.args, state.vars))) state.vars[k] = state.env[k] = v;
        break;
      case 'LABEL':
        for (const [k, v] of keyValues(expand(ins.args, state.vars))) state.labels[k] = v;
        break;
      case 'WORKDIR':
        state.workdir = posix.resolve(state.workdir, expand(ins.args, state.vars));
        if (files) await mkdir(local('.'), { recursive: true });
        break;
      case 'USER':
        state.user = expand(ins.args, state.vars);
        break;
      case 'EXPOSE':
        state.exposed.push(...expand(ins.args, state.vars).split(/\s+/));
        break;
      case 'ENTRYPOINT':
        state.entrypoint = ins.json ?? ['/bin/sh', '-c', ins.args];
        state.cmd = undefined; // as Docker does: a new ENTRYPOINT drops the CMD set before it (the base image's too)
        break;
      case 'CMD':
        state.cmd = ins.json ?? ['/bin/sh', '-c', ins.args];
        break;
      case 'RUN': {
        const mount = ins.flags.mount;
        if (mount !== undefined && !/^type=cache(,|$)/.test(mount))
          throw new Error(`${where}: --mount=${mount} is not emulated (cache mounts are: they only speed up a build)`);
        const env = Object.fromEntries(
          Object.entries(state.vars).filter((e): e is [string, string] => e[1] !== undefined),
        );
        if (files)
          await opts.run({
            stage,
            final,
            command: ins.json ? ins.json.join(' ') : ins.args,
            flags: ins.flags,
            cwd: local('.'),
            env,
          });
        break;
      }
      case 'COPY': {
        const words = ins.json ?? expand(ins.args, state.vars).split(/\s+/).filter(Boolean);
        if (words.length < 2) throw new Error(`${where}: COPY needs a source and a destination`);
        const dest = words.at(-1)!;
        const sources = words.slice(0, -1);
        if (sources.length > 1 && !dest.endsWith('/'))
          throw new Error(`${where}: with several sources the destination must end with /`);
        if (!files) break;
        const from = ins.flags.from === undefined ? undefined : await ensure(stageRef(dockerfile, ins.flags.from));
        const localDest = local(dest);
        const destIsDir =
          dest.endsWith('/') ||
          (await stat(localDest).then(
            (s) => s.isDirectory(),
            () => false,
          ));
        for (const source of sources) {
          if (/[*?[]/.test(source)) throw new Error(`${where}: wildcards in COPY sources are not emulated`);
          const rel = posix.resolve('/', source);
          const localSource = from ? join(from.root, rel) : join(opts.context, rel);
          const info = await lstat(localSource).catch(() => undefined);
          if (!info)
            throw new Error(
              `${where}: COPY failed: ${source} not found in ${from ? `stage ${ins.flags.from}` : 'the build context (.dockerignore?)'}`,
            );
          if (info.isDirectory()) {
            // The folder's contents go into the destination, as Docker copies a directory.
            await mkdir(localDest, { recursive: true });
            await cp(localSource, localDest, { recursive: true, verbatimSymlinks: true });
          } else {
            const target = destIsDir ? join(localDest, basename(localSource)) : localDest;
            await mkdir(dirname(target), { recursive: true });
            await cp(localSource, target, { verbatimSymlinks: true });
          }
        }
        break;
      }
      default:
        throw new Error(`${where}: ${ins.keyword} is not emulated`);
    }
  }
  return state;
}

/** Runs `command` with `sh -c` in `cwd`; rejects with the output's tail when it fails. */
export function sh(command: string, cwd: string, env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0
        ? resolve(output)
        : reject(new Error(`\`${command}\` in ${cwd} exited with ${code}:\n${output.slice(-4000)}`)),
    );
  });
}

/** Lines `path mode size mtime` for everything under `dir`: a fingerprint to prove nothing changed. */
export async function treeFingerprint(dir: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(dir, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      const info = await lstat(join(dir, path));
      lines.push(`${path} ${info.mode.toString(8)} ${info.size} ${info.mtimeMs}`);
      if (entry.isDirectory()) await walk(path);
    }
  };
  await walk('');
  return lines.sort();
}

/** Bytes of the regular files under `dir`. */
export async function diskUsage(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await diskUsage(path);
    else if (entry.isFile()) total += (await lstat(path)).size;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------------------------
// Running as the image's user, on a read-only filesystem

export interface Confinement {
  /** namespaces: own mount + PID namespaces, every writable mount read-only, the user's uid/gid, no privileges. */
  mode: 'namespaces' | 'uid' | 'none';
  uid?: number;
  gid?: number;
  /** One line for the test log. */
  description: string;
}

// Remount read-only every writable mount but the kernel's (/proc, /sys, /dev: a pod keeps those too), then
// become the image's user with no capabilities and no way to gain any (allowPrivilegeEscalation: false).
const CONFINE_SCRIPT = `set -e
awk '$6 ~ /(^|,)rw(,|$)/ && $5 !~ /^\\/(proc|sys|dev)(\\/|$)/ { print $5 }' /proc/self/mountinfo | while read -r mp; do
  mount -o remount,bind,ro "$mp"
done
uid=$1 gid=$2; shift 2
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@"`;

// --kill-child: if unshare dies (a test kills it), the command dies with it.
const UNSHARE = ['--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '--mount-proc'];

/** How this machine can run a command as `uid:gid` on a read-only filesystem (see Confinement). */
export function confinement(uid: number, gid: number): Confinement {
  if (process.getuid?.() !== 0)
    return {
      mode: 'none',
      description: `as the current user ${process.getuid?.()} (not root: cannot become ${uid}:${gid}); the image directory is read-only by its modes`,
    };
  const probe = spawnSync('unshare', [...UNSHARE, 'sh', '-c', CONFINE_SCRIPT, 'sh', String(uid), String(gid), 'true'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (probe.status === 0)
    return {
      mode: 'namespaces',
      uid,
      gid,
      description: `as ${uid}:${gid}, PID 1 of its own PID namespace, in a mount namespace where every writable mount is read-only (unshare + setpriv)`,
    };
  return {
    mode: 'uid',
    uid,
    gid,
    description: `as ${uid}:${gid} (unshare unavailable: ${(probe.error?.message ?? probe.stderr).trim()}); the image directory is read-only by its modes`,
  };
}

export interface Confined {
  child: ChildProcess;
  /** This machine's PID of the command itself (under unshare, the namespace's PID 1), to signal it. */
  pid(): Promise<number>;
}

/** Starts argv under the confinement; stdio piped (stdin ignored). */
export function spawnConfined(
  c: Confinement,
  argv: string[],
  opts: { cwd: string; env: Record<string, string> },
): Confined {
  const base: SpawnOptions = { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] };
  if (c.mode === 'namespaces') {
    const child = spawn(
      'unshare',
      [...UNSHARE, 'sh', '-c', CONFINE_SCRIPT, 'sh', String(c.uid), String(c.gid), ...argv],
      base,
    );
    return { child, pid: () => childOf(child.pid!) };
  }
  const [file, ...args] = argv;
  const child = spawn(file!, args, { ...base, ...(c.mode === 'uid' && { uid: c.uid!, gid: c.gid! }) });
  return { child, pid: async () => child.pid! };
}

/** The one child process of `parent` (unshare --fork's), once it exists. */
async function childOf(parent: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const status = await readFile(`/proc/${entry}/status`, 'utf8').catch(() => '');
      if (new RegExp(`^PPid:\\s+${parent}$`, 'm').test(status)) return Number(entry);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no child of process ${parent}`);
}

/** Collects a confined process's output and exit. */
export function completion(
  child: ChildProcess,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
