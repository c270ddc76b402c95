// A real S3 for tests: a throwaway single-node Ceph (one mon, one memstore OSD, one radosgw) on 127.0.0.1.
//
// Debian's ceph packages, started by hand as a vstart-like cluster. Everything lives in one fresh temporary directory (config,
// monmap, mon/OSD data, logs, pid files, admin sockets); every daemon listens on 127.0.0.1 only, on ports found
// free at start, so several instances (and several test processes) can run side by side. Up in about a second.
//
// The daemons detach (setsid), so killing the test process does not stop them: stop() must run, and a process
// 'exit' handler (plus SIGINT/SIGTERM) SIGKILLs whatever is left of every instance this process started.
//
// Needs the Debian packages radosgw, ceph-mon and ceph-osd (./scripts/install-test-deps.sh).

import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, openSync, closeSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, ListBucketsCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { Agent as HttpsAgent } from 'node:https';

/** A running RADOS Gateway. */
export interface Rgw {
  /** `http://127.0.0.1:<port>` — use path-style addressing. */
  endpoint: string;
  /** Always `'us-east-1'`. */
  region: string;
  /** Keys of an S3 user created at start. */
  accessKeyId: string;
  secretAccessKey: string;
  /** The run directory holding everything of this instance (logs in `<dir>/log`); removed by stop(). */
  dir: string;
  /**
   * A new client for this gateway: path style, `WHEN_REQUIRED` checksums (RGW rejects the SDK's default aws-chunked
   * stream uploads with 411), the user's credentials; `overrides` are applied last. stop() destroys it.
   */
  client(overrides?: Partial<S3ClientConfig>): S3Client;
  /** Creates a bucket, with Object Lock (and so versioning) enabled when `objectLock` is true. */
  createBucket(name: string, opts?: { objectLock?: boolean }): Promise<void>;
  /**
   * Creates another S3 user (its own keys: another trust domain, which cannot see the first user's buckets), and
   * returns its keys, a client with them, and createBucket as that user.
   */
  createUser(uid: string): Promise<RgwUser>;
  /** Idempotent. Kills radosgw, then the OSD, then the mon (SIGTERM, SIGKILL after a short grace) and removes `dir`. */
  stop(): Promise<void>;
}

/** A further S3 user of the gateway (createUser). */
export interface RgwUser {
  accessKeyId: string;
  secretAccessKey: string;
  client(overrides?: Partial<S3ClientConfig>): S3Client;
  createBucket(name: string, opts?: { objectLock?: boolean }): Promise<void>;
}

export interface StartRgwOptions {
  /** Capacity of the in-memory OSD (`memstore device bytes`); data is held in RAM. Default 1 GiB. */
  memstoreBytes?: number;
  /**
   * Keep the data on disk instead: a BlueStore OSD on a sparse file of this many bytes in the gateway's directory
   * (for objects RAM cannot hold: memstore needs ~2.5× an object's size, and a multipart copy doubles it).
   */
  diskBytes?: number;
  /** Serve HTTPS (beast's own TLS) with this certificate instead of HTTP; the clients trust `caPem`. */
  tls?: { certPem: string; keyPem: string; caPem: string };
}

const REGION = 'us-east-1';
/** The one key RGW's test KMS knows: SSE-KMS uploads naming it work, any other key id is refused. */
export const RGW_TEST_KMS_KEY_ID = 'talos-etcd-backup-test';
const START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 1_500;
const OSD_PORT_RANGE = 16; // an OSD binds up to 8 ports (public, cluster, 2 heartbeat; v1 + v2 each); slack for races
const BINARIES = ['monmaptool', 'ceph-mon', 'ceph-osd', 'ceph', 'radosgw-admin', 'radosgw'] as const;
type Binary = (typeof BINARIES)[number];

/** Daemons in stop order; `name` is the Ceph entity name, which names the pid file and the log. */
const DAEMONS = [
  { name: 'client.rgw.a', bin: 'radosgw' },
  { name: 'osd.0', bin: 'ceph-osd' },
  { name: 'mon.a', bin: 'ceph-mon' },
] as const;

/**
 * Starts a fresh single-node Ceph with a RADOS Gateway and returns once a signed ListBuckets answers 200.
 * Throws, after cleaning up, if the binaries are missing or it is not up within 30 s (with the logs' tails).
 */
export async function startRgw(opts: StartRgwOptions = {}): Promise<Rgw> {
  const bins = findBinaries();
  const memstoreBytes = opts.memstoreBytes ?? 1024 ** 3;
  if (!Number.isSafeInteger(memstoreBytes) || memstoreBytes <= 0)
    throw new RangeError(`memstoreBytes must be a positive integer, got ${memstoreBytes}`);

  const deadline = Date.now() + START_TIMEOUT_MS;
  const dir = await mkdtemp(join(tmpdir(), 'ceph-rgw-'));
  const instance = new Instance(dir);
  live.add(instance);
  installExitHandlers();
  try {
    return await bringUp(instance, bins, memstoreBytes, deadline, opts.tls, opts.diskBytes);
  } catch (err) {
    const logs = await tailLogs(dir);
    await instance.stop();
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`Ceph RGW did not start: ${message}\n${logs}`, { cause: err });
  }
}

/**
 * For node:test: starts an RGW in before() and stops it in after() of the enclosing suite (or file).
 * Returns a getter that throws if called before the gateway is up.
 */
export function useRgw(opts?: StartRgwOptions): () => Rgw {
  let rgw: Rgw | undefined;
  before(async () => {
    rgw = await startRgw(opts);
  });
  after(async () => {
    await rgw?.stop();
  });
  return () => {
    if (!rgw) throw new Error('useRgw(): the gateway is not running (called outside a test, or start-up failed)');
    return rgw;
  };
}

// ---------------------------------------------------------------------------------------------------------------

async function bringUp(
  instance: Instance,
  bins: Record<Binary, string>,
  memstoreBytes: number,
  deadline: number,
  tls?: StartRgwOptions['tls'],
  diskBytes?: number,
): Promise<Rgw> {
  const { dir } = instance;
  const [monV1, monV2, rgwPort, osdPortMin] = await reservePorts();
  const osdPortMax = osdPortMin + OSD_PORT_RANGE - 1;
  const monHost = `[v2:127.0.0.1:${monV2},v1:127.0.0.1:${monV1}]`;
  const conf = join(dir, 'ceph.conf');
  const fsid = randomUUID();

  for (const sub of ['mon-a', 'osd-0', 'rgw', 'run', 'log', 'crash']) await mkdir(join(dir, sub));
  if (tls) {
    await writeFile(join(dir, 'rgw.crt'), tls.certPem);
    await writeFile(join(dir, 'rgw.key'), tls.keyPem, { mode: 0o600 });
  }
  await writeFile(join(dir, 'keyring'), '');
  await writeFile(
    conf,
    [
      '[global]',
      `fsid = ${fsid}`,
      `mon host = ${monHost}`,
      'public addr = 127.0.0.1',
      'cluster addr = 127.0.0.1',
      'ms bind ipv6 = false',
      `ms bind port min = ${osdPortMin}`,
      `ms bind port max = ${osdPortMax}`,
      'auth cluster required = none',
      'auth service required = none',
      'auth client required = none',
      'osd pool default size = 1',
      'osd pool default min size = 1',
      'mon allow pool size one = true',
      'osd crush chooseleaf type = 0',
      'osd pool default pg num = 8',
      'osd pool default pg autoscale mode = off',
      'mon max pg per osd = 1000',
      'mon warn on pool no redundancy = false',
      'paxos propose interval = 0.01',
      'paxos min wait = 0.001',
      `run dir = ${dir}/run`,
      `pid file = ${dir}/run/$name.pid`,
      `admin socket = ${dir}/run/$name.asok`,
      `log file = ${dir}/log/$name.log`,
      `keyring = ${dir}/keyring`,
      `crash dir = ${dir}/crash`,
      `mon cluster log file = ${dir}/log/cluster.log`,
      '',
      '[mon]',
      `mon data = ${dir}/mon-$id`,
      '',
      '[osd]',
      `osd data = ${dir}/osd-$id`,
      ...(diskBytes
        ? [
            'osd objectstore = bluestore',
            'bluestore block create = true',
            `bluestore block size = ${diskBytes}`,
            'bluestore fsck on mkfs = false',
            // Its cache would otherwise grow to 4 GiB of RAM.
            'osd memory target = 1073741824',
          ]
        : ['osd objectstore = memstore', `memstore device bytes = ${memstoreBytes}`]),
      '',
      '[client.rgw.a]',
      `rgw data = ${dir}/rgw`,
      tls
        ? `rgw frontends = beast ssl_endpoint=127.0.0.1:${rgwPort} ssl_certificate=${dir}/rgw.crt ssl_private_key=${dir}/rgw.key tcp_nodelay=1`
        : `rgw frontends = beast endpoint=127.0.0.1:${rgwPort} tcp_nodelay=1`,
      // Required: with auth off, radosgw otherwise loops on "get_initial_auth_request returned -13".
      'ms mon client mode = crc secure',
      // Server-side encryption over plain HTTP on loopback, with RGW's built-in test KMS holding one key, so
      // SSE-KMS requests are carried out for real (RGW 16 has no SSE-S3, so AES256 is refused: InvalidRequest).
      'rgw crypt require ssl = false',
      'rgw crypt s3 kms backend = testing',
      `rgw crypt s3 kms encryption keys = ${RGW_TEST_KMS_KEY_ID}=${Buffer.alloc(32, 7).toString('base64')}`,
      '',
    ].join('\n'),
  );

  // Monitor.
  const monmap = join(dir, 'monmap');
  await run(bins.monmaptool, ['--create', '--fsid', fsid, '--addv', 'a', monHost, monmap], deadline);
  await run(bins['ceph-mon'], ['-c', conf, '--mkfs', '-i', 'a', '--monmap', monmap], deadline);
  await launch(bins['ceph-mon'], ['-c', conf, '-i', 'a'], dir, 'mon.a', deadline);

  // OSD.
  const osdUuid = randomUUID();
  const connectTimeout = String(Math.max(1, Math.ceil((deadline - Date.now()) / 1000)));
  const osdId = (
    await run(bins.ceph, ['-c', conf, '--connect-timeout', connectTimeout, 'osd', 'new', osdUuid], deadline)
  ).trim();
  if (osdId !== '0') throw new Error(`'ceph osd new' returned id '${osdId}', expected 0`);
  await run(bins['ceph-osd'], ['-c', conf, '-i', osdId, '--mkfs', '--osd-uuid', osdUuid], deadline);
  await launch(bins['ceph-osd'], ['-c', conf, '-i', osdId], dir, 'osd.0', deadline);

  // S3 user (also creates the default zone and the pools), then the gateway.
  const accessKeyId = randomKey(20, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789');
  const secretAccessKey = randomKey(40, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789');
  await run(
    bins['radosgw-admin'],
    [
      '-c',
      conf,
      'user',
      'create',
      '--uid=test',
      '--display-name=test',
      `--access-key=${accessKeyId}`,
      `--secret-key=${secretAccessKey}`,
    ],
    deadline,
  );
  await launch(bins.radosgw, ['-c', conf, '-n', 'client.rgw.a'], dir, 'client.rgw.a', deadline);

  const endpoint = `${tls ? 'https' : 'http'}://127.0.0.1:${rgwPort}`;
  const clientConfig = (overrides: Partial<S3ClientConfig> = {}): S3ClientConfig => ({
    region: REGION,
    endpoint,
    ...(tls && {
      requestHandler: new NodeHttpHandler({ httpsAgent: new HttpsAgent({ ca: tls.caPem, keepAlive: true }) }),
    }),
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...overrides,
  });
  await waitForGateway(instance, clientConfig, deadline, tls?.caPem);

  let admin: S3Client | undefined;
  return {
    endpoint,
    region: REGION,
    accessKeyId,
    secretAccessKey,
    dir,
    client(overrides) {
      return instance.track(new S3Client(clientConfig(overrides)));
    },
    async createBucket(name, opts = {}) {
      admin ??= instance.track(new S3Client(clientConfig()));
      await admin.send(
        new CreateBucketCommand({ Bucket: name, ...(opts.objectLock ? { ObjectLockEnabledForBucket: true } : {}) }),
      );
    },
    async createUser(uid) {
      const user = {
        accessKeyId: randomKey(20, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'),
        secretAccessKey: randomKey(40, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'),
      };
      await run(
        bins['radosgw-admin'],
        [
          '-c',
          conf,
          'user',
          'create',
          `--uid=${uid}`,
          `--display-name=${uid}`,
          `--access-key=${user.accessKeyId}`,
          `--secret-key=${user.secretAccessKey}`,
        ],
        Date.now() + START_TIMEOUT_MS,
      );
      const client = (overrides: Partial<S3ClientConfig> = {}) =>
        instance.track(new S3Client(clientConfig({ credentials: user, ...overrides })));
      let own: S3Client | undefined;
      return {
        ...user,
        client,
        async createBucket(name, opts = {}) {
          own ??= client();
          await own.send(
            new CreateBucketCommand({ Bucket: name, ...(opts.objectLock ? { ObjectLockEnabledForBucket: true } : {}) }),
          );
        },
      };
    },
    stop: () => instance.stop(),
  };
}

/** Polls a signed ListBuckets until it answers 200; fails early if radosgw has exited. */
async function waitForGateway(
  instance: Instance,
  clientConfig: (o?: Partial<S3ClientConfig>) => S3ClientConfig,
  deadline: number,
  caPem?: string,
): Promise<void> {
  const probe = new S3Client(
    clientConfig({
      maxAttempts: 1,
      requestHandler: new NodeHttpHandler({
        connectionTimeout: 1_000,
        requestTimeout: 2_000,
        ...(caPem && { httpsAgent: new HttpsAgent({ ca: caPem }) }),
      }),
    }),
  );
  let last: unknown;
  try {
    while (Date.now() < deadline) {
      try {
        const out = await probe.send(new ListBucketsCommand({}));
        if (out.$metadata.httpStatusCode === 200) return;
        last = new Error(`ListBuckets answered ${out.$metadata.httpStatusCode}`);
      } catch (err) {
        last = err;
      }
      const pid = readPid(instance.dir, 'client.rgw.a');
      if (pid !== undefined && !isRunning(pid)) throw new Error('radosgw exited during start-up');
      await sleep(25);
    }
  } finally {
    probe.destroy();
  }
  const why = last instanceof Error ? `${last.name}: ${last.message}` : String(last);
  throw new Error(
    `radosgw did not answer a signed ListBuckets with 200 within ${START_TIMEOUT_MS / 1000} s (last: ${why})`,
  );
}

// --- one instance's processes and clean-up -------------------------------------------------------------------

const live = new Set<Instance>();

class Instance {
  private stopping: Promise<void> | undefined;
  private readonly clients: S3Client[] = [];

  constructor(readonly dir: string) {}

  track(client: S3Client): S3Client {
    this.clients.push(client);
    return client;
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    for (const client of this.clients.splice(0)) client.destroy();
    try {
      for (const { name } of DAEMONS) {
        const pid = readPid(this.dir, name);
        if (pid !== undefined && ownedBy(pid, this.dir)) await terminate(pid);
      }
      // Safety net: anything else still running from this directory (e.g. a daemon whose pid file was not written yet).
      for (const pid of pidsUsing(this.dir)) await terminate(pid);
    } finally {
      await rm(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
      live.delete(this);
    }
  }

  /** Synchronous last resort for process exit: SIGKILL everything, remove the directory. */
  killSync(): void {
    const pids = new Set<number>(pidsUsing(this.dir));
    for (const { name } of DAEMONS) {
      const pid = readPid(this.dir, name);
      if (pid !== undefined && ownedBy(pid, this.dir)) pids.add(pid);
    }
    for (const pid of pids) signal(pid, 'SIGKILL');
    try {
      rmSync(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    } catch {
      // exiting anyway
    }
    live.delete(this);
  }
}

let exitHandlersInstalled = false;
function installExitHandlers(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  const killAll = (): void => {
    for (const instance of [...live]) instance.killSync();
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      killAll();
      process.removeListener(sig, onSignal);
      // Keep the default behaviour (die by the signal) unless someone else handles it.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** SIGTERM, wait up to the grace period, then SIGKILL; a zombie counts as stopped. */
async function terminate(pid: number): Promise<void> {
  if (!isRunning(pid)) return;
  signal(pid, 'SIGTERM');
  if (await waitGone(pid, STOP_GRACE_MS)) return;
  signal(pid, 'SIGKILL');
  if (!(await waitGone(pid, 5_000))) throw new Error(`pid ${pid} survived SIGKILL`);
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (isRunning(pid)) {
    if (Date.now() >= until) return false;
    await sleep(10);
  }
  return true;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Alive and not a zombie (PID 1 here reaps exited daemons about 2 s late). */
function isRunning(pid: number): boolean {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return false;
  }
  const state = /^State:\s+(\S)/m.exec(status)?.[1];
  return state !== 'Z' && state !== 'X';
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/** Guards against a recycled pid: our daemons all run with `-c <dir>/ceph.conf`. */
function ownedBy(pid: number, dir: string): boolean {
  return cmdline(pid).includes(`${dir}/`);
}

function pidsUsing(dir: string): number[] {
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid !== process.pid && ownedBy(pid, dir) && isRunning(pid)) pids.push(pid);
  }
  return pids;
}

function readPid(dir: string, name: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(join(dir, 'run', `${name}.pid`), 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

// --- processes ---------------------------------------------------------------------------------------------------

function findBinaries(): Record<Binary, string> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/bin', '/usr/sbin', '/bin', '/sbin'];
  const found: Partial<Record<Binary, string>> = {};
  const missing: string[] = [];
  for (const bin of BINARIES) {
    const path = dirs.map((d) => join(d, bin)).find(isExecutableFile);
    if (path) found[bin] = path;
    else missing.push(bin);
  }
  if (missing.length > 0) {
    throw new Error(
      `Ceph RGW test harness: ${missing.join(', ')} not found. Install the test dependencies (Debian packages radosgw, ceph-mon, ceph-osd) with ./scripts/install-test-deps.sh`,
    );
  }
  return found as Record<Binary, string>;
}

function isExecutableFile(path: string): boolean {
  try {
    const stat = statSync(path);
    return stat.isFile() && (stat.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.CEPH_ARGS;
  delete env.CEPH_CONF;
  return env;
}

/** Runs a short command to completion; returns stdout, throws with its output on failure or at the deadline. */
function run(bin: string, args: string[], deadline: number): Promise<string> {
  const timeout = Math.max(1, deadline - Date.now());
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      args,
      { env: childEnv(), timeout, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const what = err.killed ? `timed out` : `failed (${err.code ?? err.signal})`;
          reject(
            new Error(`${[bin, ...args].join(' ')} ${what}\n${String(stderr).trim()}\n${String(stdout).trim()}`.trim()),
          );
        } else {
          resolve(String(stdout));
        }
      },
    );
  });
}

/**
 * Starts a daemon, which forks, detaches and writes `<dir>/run/<name>.pid`. The launcher's output goes to a file
 * (never to our pipes: the detached daemon would hold them open and keep the test runner waiting).
 */
async function launch(bin: string, args: string[], dir: string, name: string, deadline: number): Promise<void> {
  const outPath = join(dir, 'log', `${name}.launch.out`);
  const fd = openSync(outPath, 'a');
  try {
    const child = spawn(bin, args, { env: childEnv(), stdio: ['ignore', fd, fd] });
    const timer = setTimeout(() => child.kill('SIGKILL'), Math.max(1, deadline - Date.now()));
    const [code, sig] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c, s) => resolve([c, s]));
    }).finally(() => clearTimeout(timer));
    if (code !== 0) {
      const out = await readFile(outPath, 'utf8').catch(() => '');
      throw new Error(`${[bin, ...args].join(' ')} exited with ${code ?? sig}\n${out.trim()}`);
    }
  } finally {
    closeSync(fd);
  }
}

// --- ports and odds and ends ---------------------------------------------------------------------------------------

function listen(port: number): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(server));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function portOf(server: Server): number {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('unexpected server address');
  return address.port;
}

/**
 * Three free loopback ports (mon v1, mon v2, rgw) and the first of OSD_PORT_RANGE consecutive free ones, found by
 * binding 127.0.0.1 (port 0, i.e. kernel-chosen) and held until all are found so they are distinct.
 */
async function reservePorts(): Promise<[number, number, number, number]> {
  const held: Server[] = [];
  try {
    const single = async (): Promise<number> => {
      const server = await listen(0);
      if (!server) throw new Error('cannot bind 127.0.0.1:0');
      held.push(server);
      return portOf(server);
    };
    const monV1 = await single();
    const monV2 = await single();
    const rgw = await single();
    for (let attempt = 0; attempt < 100; attempt++) {
      const first = await listen(0);
      if (!first) throw new Error('cannot bind 127.0.0.1:0');
      const base = portOf(first);
      const range = [first];
      for (let port = base + 1; port < base + OSD_PORT_RANGE && port <= 65535; port++) {
        const server = await listen(port);
        if (!server) break;
        range.push(server);
      }
      if (range.length === OSD_PORT_RANGE) {
        held.push(...range);
        return [monV1, monV2, rgw, base];
      }
      await Promise.all(range.map(close));
    }
    throw new Error(`no ${OSD_PORT_RANGE} consecutive free ports on 127.0.0.1`);
  } finally {
    await Promise.all(held.map(close));
  }
}

function randomKey(length: number, alphabet: string): string {
  const bytes = randomBytes(length);
  let key = '';
  for (const byte of bytes) key += alphabet[byte % alphabet.length];
  return key;
}

/** The last lines of every log in the run directory, for start-up errors. */
async function tailLogs(dir: string, lines = 25): Promise<string> {
  const logDir = join(dir, 'log');
  if (!existsSync(logDir)) return '';
  const parts: string[] = [];
  const rank = (file: string): number => {
    const i = ['client.rgw.a', 'osd.', 'mon.'].findIndex((prefix) => file.startsWith(prefix));
    return i === -1 ? 9 : i;
  };
  const files = (await readdir(logDir)).sort((x, y) => rank(x) - rank(y) || x.localeCompare(y));
  for (const file of files) {
    const text = await readFile(join(logDir, file), 'utf8').catch(() => '');
    if (!text.trim()) continue;
    const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
    parts.push(`--- ${file} (last ${lines} lines) ---\n${tail}`);
  }
  return parts.join('\n');
}
