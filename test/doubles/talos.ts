// A Talos apid/machined double for tests: a grpc-js server with mutual TLS serving machine.MachineService
// (protos/, via loadMachineService()) on 127.0.0.1:<free port>, backed by REAL etcds.
//
// - EtcdSnapshot streams etcd's Maintenance.Snapshot as Talos does: the raw bytes (bbolt db || sha256 trailer)
//   re-chunked into common.Data{bytes} messages of at most 1024 bytes (never across an etcd blob boundary, like
//   Talos' 1 KiB chunker reading etcd's pipe), metadata unset, with backpressure. An etcd read error mid-stream ends
//   the stream early with status OK, which is what Talos does.
// - RBAC like Talos: roles = client certificate Subject O; EtcdSnapshot needs os:admin/os:operator/os:etcd:backup,
//   EtcdStatus/EtcdMemberList also accept os:reader. The client certificate's EKU must be exactly clientAuth
//   (apid fails the TLS handshake; the double fails the call with UNAUTHENTICATED and apid's message).
// - `node` metadata selects a node of the "cluster" (name → etcd); unknown node → UNAVAILABLE (apid's failed proxy
//   dial); repeated node → INVALID_ARGUMENT "node metadata must be single-valued"; no metadata → the local node.
// - Fault injection (setFault), call records (calls, servedBy, records) and a fast mode streaming a Buffer
//   (`source`) for benchmarks.
//
//   const pki = await createTalosPki();
//   const talos = await startTalosDouble({ pki, etcd });              // or { pki, source: buf }
//   talos.setFault({ kind: 'truncate', afterBytes: 4096, times: 1 });
//   ...; await talos.stop();

import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadMachineService } from '../../src/job/talos/protos.js';
import { connectEtcd, type Etcd, type EtcdClient, type EtcdSnapshotResponse } from '../harness/etcd.js';

export type MachineMethod = 'EtcdSnapshot' | 'EtcdStatus' | 'EtcdMemberList';

/** Talos' per-method roles (internal/app/machined/pkg/system/services/machined.go). */
export const METHOD_ROLES: Readonly<Record<MachineMethod, readonly string[]>> = {
  EtcdSnapshot: ['os:admin', 'os:operator', 'os:etcd:backup'],
  EtcdStatus: ['os:admin', 'os:operator', 'os:reader', 'os:etcd:backup'],
  EtcdMemberList: ['os:admin', 'os:operator', 'os:reader', 'os:etcd:backup'],
};

/** Largest `bytes` payload of one EtcdSnapshot message (Talos' stream chunker default). */
export const CHUNK_SIZE = 1024;

const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

/**
 * Faults, applied to the next calls (all of them, or the first `times`). Byte offsets count snapshot bytes
 * (the `bytes` payloads) sent by the call.
 */
export type Fault =
  /** Stop after `afterBytes` bytes and end the stream with status OK (Talos on an etcd read error). */
  | { kind: 'truncate'; afterBytes: number; times?: number }
  /** Flip one bit (0x01) of the byte at offset `atByte`; same length. */
  | { kind: 'corrupt'; atByte: number; times?: number }
  /** Stop sending after `afterBytes`: for `ms`, then carry on; without `ms` until the client gives up (or stop()). */
  | { kind: 'stall'; afterBytes: number; ms?: number; times?: number }
  /** After `afterBytes`, end the stream with UNAVAILABLE (apid lost its upstream). */
  | { kind: 'break'; afterBytes: number; times?: number }
  /** Fail at once with UNAVAILABLE. `methods` default: EtcdSnapshot only. */
  | { kind: 'unavailable'; times?: number; methods?: MachineMethod[] }
  /** Fail at once with UNIMPLEMENTED "etcd snapshot is only available on control plane nodes". */
  | { kind: 'unimplemented'; times?: number; methods?: MachineMethod[] }
  /**
   * After `afterBytes`, send one Data message whose metadata.error (and metadata.status) is set, as apid's
   * one-to-many proxy reports a failed upstream, then end with status OK.
   */
  | { kind: 'metadata-error'; afterBytes: number; message?: string; times?: number };

export interface TalosNode {
  /** Reported in servedBy/records and EtcdMemberList. */
  hostname?: string;
  /** The node's etcd: an Etcd or its client URL (`http://127.0.0.1:P`). */
  etcd?: Etcd | string;
  /**
   * Fast mode: stream this buffer as the snapshot instead of asking etcd (should be db || sha256(db)); a list is
   * streamed in order, as one snapshot (a benchmark repeats one block for a database larger than it holds).
   */
  source?: Buffer | readonly Buffer[];
  /** false: a worker; EtcdSnapshot/EtcdStatus answer UNIMPLEMENTED. Default true. */
  controlPlane?: boolean;
}

export interface TalosDoubleTls {
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
}

export interface TalosDoubleOptions extends TalosNode {
  /** CA (to verify clients) and the server certificate; a TalosPki fits. */
  pki: TalosDoubleTls;
  /** The cluster reachable with `node` metadata: name (IP or hostname) → node (or an etcd client URL). */
  nodes?: Record<string, TalosNode | string | Etcd>;
  /** Initial fault. */
  fault?: Fault;
  /** Enforce Talos' RBAC (default true). */
  rbac?: boolean;
  /** Require the client certificate's EKU to be exactly clientAuth (default true). */
  checkClientEku?: boolean;
  /** Port to listen on (default: a free one). */
  port?: number;
}

export interface CallRecord {
  method: MachineMethod;
  /** The `node` metadata, if any. */
  node?: string;
  /** Hostname of the node that served the call (unset when it failed before reaching one). */
  servedBy?: string;
  roles: string[];
  /** The fault applied to this call. */
  fault?: Fault['kind'];
  /** Final gRPC status code (set when the call finishes; undefined while running). */
  code?: grpc.status;
  details?: string;
  /** Snapshot bytes sent (EtcdSnapshot). */
  bytes: number;
  /** Data messages sent (EtcdSnapshot). */
  messages: number;
}

export interface TalosDouble {
  /** `127.0.0.1:<port>` */
  endpoint: string;
  port: number;
  /** The local node's hostname (serves calls without `node` metadata). */
  hostname: string;
  /** Hostnames by `node` name. */
  hostnames: Record<string, string>;
  /** Applies to the next calls; undefined clears it. */
  setFault(fault: Fault | undefined): void;
  /** Adds, replaces or (undefined) removes a cluster node. */
  setNode(name: string, node: TalosNode | string | Etcd | undefined): void;
  /** Number of RPCs received (all methods). */
  readonly calls: number;
  readonly callsByMethod: Readonly<Record<MachineMethod, number>>;
  /** Hostname of the node that served each call, in order. */
  readonly servedBy: string[];
  readonly records: CallRecord[];
  /** Resolves when every call started so far has finished (its record has a code). */
  idle(): Promise<void>;
  /** Force-shuts the server (cancelling running calls) and closes the etcd connections. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------------

interface ResolvedNode {
  hostname: string;
  clientUrl?: string;
  source?: readonly Buffer[];
  controlPlane: boolean;
}

type SurfaceCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'metadata' | 'getAuthContext'>;

function isEtcd(v: unknown): v is Etcd {
  return typeof v === 'object' && v !== null && 'clientUrl' in v && 'putMany' in v;
}

function resolveNode(name: string, spec: TalosNode | string | Etcd): ResolvedNode {
  if (typeof spec === 'string') return { hostname: name, clientUrl: spec, controlPlane: true };
  if (isEtcd(spec)) return { hostname: name, clientUrl: spec.clientUrl, controlPlane: true };
  const clientUrl =
    spec.etcd === undefined ? undefined : typeof spec.etcd === 'string' ? spec.etcd : spec.etcd.clientUrl;
  if (clientUrl === undefined && spec.source === undefined && spec.controlPlane !== false) {
    throw new Error(`talos double: node ${name} needs an etcd, a source buffer, or controlPlane: false`);
  }
  const source = spec.source === undefined ? undefined : Buffer.isBuffer(spec.source) ? [spec.source] : spec.source;
  return { hostname: spec.hostname ?? name, clientUrl, source, controlPlane: spec.controlPlane ?? true };
}

class CallError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(details);
  }
}

function statusError(code: grpc.status, details: string): Partial<grpc.StatusObject> & Error {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** Roles from the client certificate's Subject O, plus the EKU check apid does. */
function authorize(call: SurfaceCall, method: MachineMethod, rbac: boolean, checkEku: boolean): string[] {
  const cert = call.getAuthContext()?.sslPeerCertificate;
  if (!cert) throw new CallError(grpc.status.UNAUTHENTICATED, 'no client certificate');
  const subject = cert.subject as unknown as Record<string, string | string[] | undefined>;
  const o = subject.O;
  const roles = o === undefined ? [] : Array.isArray(o) ? o : [o];
  if (checkEku) {
    const eku = (cert as { ext_key_usage?: string[] }).ext_key_usage ?? [];
    if (eku.length !== 1 || eku[0] !== CLIENT_AUTH_OID) {
      const cn = subject.CN ?? roles.join(',');
      throw new CallError(
        grpc.status.UNAUTHENTICATED,
        `certificate "${String(cn)}" is missing the client auth extended key usage`,
      );
    }
  }
  if (rbac && !roles.some((r) => METHOD_ROLES[method].includes(r))) {
    throw new CallError(grpc.status.PERMISSION_DENIED, 'not authorized');
  }
  return roles;
}

/** A flipped copy of `piece` if it covers `atByte` (stream offset of piece = `offset`). */
function maybeCorrupt(piece: Buffer, offset: number, fault: Fault | undefined): Buffer {
  if (fault?.kind !== 'corrupt') return piece;
  const i = fault.atByte - offset;
  if (i < 0 || i >= piece.length) return piece;
  const copy = Buffer.from(piece);
  copy[i] = copy[i]! ^ 0x01;
  return copy;
}

/** The serialized common.Data{bytes} prefix for a payload of `len` bytes: tag 0x12 + varint(len). */
function dataPrefix(len: number): Buffer {
  const out = [0x12];
  let v = len;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}

const FRAME_BLOCK = 64; // messages serialized per block in the fast path
const FAST_HIGH = 512; // fast path: messages in flight before waiting (~512 KiB)
const FAST_LOW = 256;

export async function startTalosDouble(opts: TalosDoubleOptions): Promise<TalosDouble> {
  if (opts.etcd === undefined && opts.source === undefined && opts.controlPlane !== false) {
    throw new Error('talos double: the local node needs `etcd`, `source`, or controlPlane: false');
  }
  const rbac = opts.rbac ?? true;
  const checkEku = opts.checkClientEku ?? true;

  const cluster = new Map<string, ResolvedNode>();
  for (const [name, spec] of Object.entries(opts.nodes ?? {})) cluster.set(name, resolveNode(name, spec));

  let fault: { fault: Fault; remaining: number } | undefined;
  const setFault = (f: Fault | undefined): void => {
    fault = f ? { fault: f, remaining: f.times ?? Number.POSITIVE_INFINITY } : undefined;
  };
  setFault(opts.fault);

  const callsByMethod: Record<MachineMethod, number> = { EtcdSnapshot: 0, EtcdStatus: 0, EtcdMemberList: 0 };
  const records: CallRecord[] = [];
  const servedBy: string[] = [];
  const running = new Set<Promise<void>>();
  const stallWakers = new Set<() => void>();
  let stopping = false;

  const etcdClients = new Map<string, EtcdClient>();
  const etcdFor = (url: string): EtcdClient => {
    let c = etcdClients.get(url);
    if (!c) etcdClients.set(url, (c = connectEtcd(url)));
    return c;
  };

  // Server, bound first so the default hostname can name the port.
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 32 * 1024 * 1024 });
  const credentials = grpc.ServerCredentials.createSsl(
    Buffer.from(opts.pki.caPem),
    [{ cert_chain: Buffer.from(opts.pki.serverCertPem), private_key: Buffer.from(opts.pki.serverKeyPem) }],
    true,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${opts.port ?? 0}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );

  const localHostname = opts.hostname ?? `talos-double-${port}`;
  const local = resolveNode(localHostname, {
    etcd: opts.etcd,
    source: opts.source,
    controlPlane: opts.controlPlane,
    hostname: localHostname,
  });

  /** Fault for this call (consumes one of `times`). */
  const takeFault = (method: MachineMethod): Fault | undefined => {
    if (!fault || fault.remaining <= 0) return undefined;
    const f = fault.fault;
    const applies =
      f.kind === 'unavailable' || f.kind === 'unimplemented'
        ? (f.methods ?? ['EtcdSnapshot']).includes(method)
        : method === 'EtcdSnapshot';
    if (!applies) return undefined;
    fault.remaining--;
    return f;
  };

  /** node metadata → node (apid's director). */
  const route = (metadata: grpc.Metadata): { node?: string; target: ResolvedNode } => {
    if (metadata.get('nodes').length > 0) {
      throw new CallError(
        grpc.status.INVALID_ARGUMENT,
        'the talos double does not emulate deprecated one-to-many `nodes` proxying; use `node`',
      );
    }
    // A repeated header reaches a Node HTTP/2 server joined with ", " (Go's server sees separate values).
    const values = metadata
      .get('node')
      .flatMap((v) => String(v).split(','))
      .map((v) => v.trim())
      .filter((v) => v !== '');
    if (values.length > 1) throw new CallError(grpc.status.INVALID_ARGUMENT, 'node metadata must be single-valued');
    if (values.length === 0) return { target: local };
    const node = String(values[0]);
    const target = cluster.get(node) ?? (node === localHostname ? local : undefined);
    if (!target) {
      throw new CallError(
        grpc.status.UNAVAILABLE,
        `connection error: desc = "transport: Error while dialing: dial tcp ${node.includes(':') ? node : `${node}:50000`}: connect: connection refused"`,
      );
    }
    return { node, target };
  };

  /** Common prologue: record, auth, route, fault. */
  const begin = (
    method: MachineMethod,
    call: SurfaceCall,
  ): { record: CallRecord; target: ResolvedNode; fault?: Fault } => {
    callsByMethod[method]++;
    const record: CallRecord = { method, roles: [], bytes: 0, messages: 0 };
    records.push(record);
    const node = call.metadata.get('node');
    if (node.length > 0) record.node = node.map(String).join(', ');
    record.roles = authorize(call, method, rbac, checkEku);
    const { target } = route(call.metadata);
    const f = takeFault(method);
    if (f) record.fault = f.kind;
    if (f?.kind === 'unavailable')
      throw new CallError(grpc.status.UNAVAILABLE, `${method}: upstream unavailable (injected fault)`);
    if (f?.kind === 'unimplemented' || (!target.controlPlane && method !== 'EtcdMemberList')) {
      const what =
        method === 'EtcdSnapshot' ? 'etcd snapshot' : method === 'EtcdStatus' ? 'etcd status' : 'etcd members';
      throw new CallError(grpc.status.UNIMPLEMENTED, `${what} is only available on control plane nodes`);
    }
    record.servedBy = target.hostname;
    servedBy.push(target.hostname);
    return { record, target, fault: f };
  };

  const track = (p: Promise<void>): void => {
    running.add(p);
    void p.finally(() => running.delete(p));
  };

  // ---------------------------------------------------------------------------------------------------------
  // EtcdSnapshot

  type DataCall = grpc.ServerWritableStream<unknown, unknown>;

  const gone = (call: DataCall): boolean => call.cancelled || call.destroyed || stopping;

  /** Resolves once the call can take more (drain), or is cancelled/closed. */
  const writable = (call: DataCall): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        call.off('drain', done);
        call.off('cancelled', done);
        call.off('close', done);
        stallWakers.delete(done);
        resolve();
      };
      call.on('drain', done);
      call.on('cancelled', done);
      call.on('close', done);
      stallWakers.add(done);
      if (gone(call)) done();
    });

  const stall = (call: DataCall, ms: number | undefined): Promise<void> =>
    new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        if (timer) clearTimeout(timer);
        call.off('cancelled', done);
        call.off('close', done);
        stallWakers.delete(done);
        resolve();
      };
      if (ms !== undefined) timer = setTimeout(done, ms);
      call.on('cancelled', done);
      call.on('close', done);
      stallWakers.add(done);
      if (gone(call)) done();
    });

  /**
   * Streams `pieces` (chunks of at most CHUNK_SIZE) applying `f`. Returns how the stream should end:
   * 'ok' | 'break' | 'gone' (client went away).
   */
  const pump = async (
    call: DataCall,
    record: CallRecord,
    hostname: string,
    blobs: AsyncIterable<Buffer> | Iterable<Buffer>,
    f: Fault | undefined,
  ): Promise<'ok' | 'break' | 'gone'> => {
    const cut = f && 'afterBytes' in f ? Math.max(0, f.afterBytes) : Number.POSITIVE_INFINITY;
    let stalled = false;
    const send = async (piece: Buffer): Promise<boolean> => {
      if (gone(call)) return false;
      const payload = maybeCorrupt(piece, record.bytes, f);
      record.bytes += payload.length;
      record.messages++;
      if (!call.write({ bytes: payload })) await writable(call);
      return !gone(call);
    };
    /** At the cut: returns the ending, or undefined to carry on (stall with ms). */
    const atCut = async (): Promise<'ok' | 'break' | 'gone' | undefined> => {
      switch (f?.kind) {
        case 'truncate':
          return 'ok';
        case 'break':
          return 'break';
        case 'metadata-error': {
          const message = f.message ?? 'rpc error: code = Unavailable desc = error reading from server: EOF';
          const ok = call.write({
            metadata: { hostname, error: message, status: { code: grpc.status.UNAVAILABLE, message, details: [] } },
          });
          record.messages++;
          if (!ok) await writable(call);
          return 'ok';
        }
        case 'stall':
          stalled = true;
          await stall(call, f.ms);
          return gone(call) ? 'gone' : f.ms === undefined ? 'gone' : undefined;
        default:
          return undefined;
      }
    };

    if (cut === 0) {
      const end = await atCut();
      if (end) return end;
    }
    for await (const blob of blobs) {
      for (let i = 0; i < blob.length; i += CHUNK_SIZE) {
        let piece = blob.subarray(i, Math.min(i + CHUNK_SIZE, blob.length));
        if (!stalled && record.bytes < cut && record.bytes + piece.length >= cut && cut !== Number.POSITIVE_INFINITY) {
          const head = piece.subarray(0, cut - record.bytes);
          if (head.length > 0 && !(await send(head))) return 'gone';
          const end = await atCut();
          if (end) return end;
          piece = piece.subarray(head.length);
          if (piece.length === 0) continue;
        }
        if (!(await send(piece))) return 'gone';
      }
    }
    // A cut at or past the end (e.g. truncate afterBytes >= size) has no effect.
    return 'ok';
  };

  /**
   * etcd's snapshot blobs. An upstream error before the first blob fails the call with UNAVAILABLE (Talos returns
   * clientv3's error); after it, the iteration just ends, and so the stream ends with status OK, as Talos' chunker does.
   */
  async function* etcdBlobs(
    client: EtcdClient,
    record: CallRecord,
    abort: { cancel?: () => void },
  ): AsyncGenerator<Buffer> {
    const upstream = client.snapshotStream();
    upstream.on('error', () => {
      // surfaced through the iterator; this listener keeps a late CANCELLED from being unhandled
    });
    abort.cancel = () => upstream.cancel();
    let received = false;
    try {
      for await (const message of upstream as AsyncIterable<EtcdSnapshotResponse>) {
        received = true;
        yield message.blob;
      }
    } catch (err) {
      if (!received)
        throw new CallError(
          grpc.status.UNAVAILABLE,
          `etcd snapshot failed: ${(err as grpc.ServiceError).details ?? (err as Error).message}`,
        );
      record.details = `etcd read error (stream ended with OK, as Talos does): ${(err as Error).message}`;
    } finally {
      upstream.cancel();
    }
  }

  /**
   * Fast path: `source` without a fault. common.Data messages are pre-serialized in blocks of FRAME_BLOCK (one
   * allocation, subarray views) and handed to grpc-js without waiting for each message's write callback: the public
   * Writable (objectMode, one _write at a time, each waiting for its HTTP/2 write callback) caps a stream of 1 KiB
   * messages at ~50 MB/s, so when the grpc-js call exposes sendMessage(message, callback) (grpc-js 1.10+, used by
   * ServerWritableStreamImpl._write) up to FAST_HIGH messages are kept in flight, which lets Node's HTTP/2 session
   * coalesce them into large socket writes. Falls back to call.write() + 'drain' otherwise.
   */
  const pumpSource = async (
    call: DataCall,
    record: CallRecord,
    segments: readonly Buffer[],
  ): Promise<'ok' | 'gone'> => {
    const prefix = dataPrefix(CHUNK_SIZE);
    const frameLen = prefix.length + CHUNK_SIZE;
    const inner = (call as unknown as { call?: { sendMessage?: (message: unknown, callback: () => void) => void } })
      .call;
    const sendMessage = typeof inner?.sendMessage === 'function' ? inner.sendMessage.bind(inner) : undefined;

    let inFlight = 0;
    let wake: (() => void) | undefined;
    const onSent = (): void => {
      inFlight--;
      wake?.();
    };
    /** Resolves once ready() holds or the call is gone (cancelled, closed, double stopping). */
    const waitUntil = (ready: () => boolean): Promise<void> =>
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (!ready() && !gone(call)) return;
          wake = undefined;
          call.off('cancelled', check);
          call.off('close', check);
          stallWakers.delete(check);
          resolve();
        };
        wake = check;
        call.on('cancelled', check);
        call.on('close', check);
        stallWakers.add(check);
        check();
      });
    const emit = async (frame: Buffer, payloadBytes: number): Promise<void> => {
      record.bytes += payloadBytes;
      record.messages++;
      if (sendMessage) {
        inFlight++;
        sendMessage(frame, onSent);
        if (inFlight >= FAST_HIGH) await waitUntil(() => inFlight <= FAST_LOW);
      } else if (!call.write(frame)) {
        await writable(call);
      }
    };

    for (const source of segments) {
      const full = Math.floor(source.length / CHUNK_SIZE);
      let block: Buffer = Buffer.alloc(0);
      for (let m = 0; m < full; m++) {
        const j = m % FRAME_BLOCK;
        if (j === 0) {
          // serialize the next FRAME_BLOCK messages into one allocation
          const count = Math.min(FRAME_BLOCK, full - m);
          block = Buffer.allocUnsafe(count * frameLen);
          for (let k = 0; k < count; k++) {
            prefix.copy(block, k * frameLen);
            source.copy(block, k * frameLen + prefix.length, (m + k) * CHUNK_SIZE, (m + k + 1) * CHUNK_SIZE);
          }
        }
        if (gone(call)) return 'gone';
        await emit(block.subarray(j * frameLen, (j + 1) * frameLen), CHUNK_SIZE);
      }
      const rest = source.subarray(full * CHUNK_SIZE);
      if (rest.length > 0) {
        if (gone(call)) return 'gone';
        await emit(Buffer.concat([dataPrefix(rest.length), rest]), rest.length);
      }
    }
    // Let every message reach the HTTP/2 stream before the status goes out.
    await waitUntil(() => inFlight === 0);
    return gone(call) ? 'gone' : 'ok';
  };

  const finish = (record: CallRecord, code: grpc.status, details: string): void => {
    record.code = code;
    if (record.details === undefined || code !== grpc.status.OK) record.details = details;
  };

  const etcdSnapshot = (call: DataCall): void => {
    const work = (async () => {
      const index = records.length;
      try {
        const { record, target, fault: f } = begin('EtcdSnapshot', call);
        let ending: 'ok' | 'break' | 'gone';
        if (target.source && !f) {
          ending = await pumpSource(call, record, target.source);
        } else if (target.source) {
          ending = await pump(call, record, target.hostname, target.source, f);
        } else {
          const abort: { cancel?: () => void } = {};
          try {
            ending = await pump(call, record, target.hostname, etcdBlobs(etcdFor(target.clientUrl!), record, abort), f);
          } finally {
            abort.cancel?.();
          }
        }
        if (ending === 'gone') {
          finish(record, grpc.status.CANCELLED, 'client went away');
          if (!call.destroyed) call.end();
        } else if (ending === 'break') {
          const details = 'error reading from server: EOF (injected fault: break)';
          finish(record, grpc.status.UNAVAILABLE, details);
          call.emit('error', statusError(grpc.status.UNAVAILABLE, details));
        } else {
          finish(record, grpc.status.OK, 'OK');
          call.end();
        }
      } catch (err) {
        const e =
          err instanceof CallError
            ? err
            : new CallError(grpc.status.INTERNAL, `talos double: ${(err as Error).message}`);
        const record = records[index];
        if (record) finish(record, e.code, e.details);
        if (!call.destroyed) call.emit('error', statusError(e.code, e.details));
      }
    })();
    track(work);
  };

  // ---------------------------------------------------------------------------------------------------------
  // Unary

  const unaryHandler =
    (method: MachineMethod, answer: (target: ResolvedNode) => Promise<unknown>) =>
    (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>): void => {
      const work = (async () => {
        const index = records.length;
        try {
          const { record, target } = begin(method, call);
          const response = await answer(target);
          finish(record, grpc.status.OK, 'OK');
          callback(null, response);
        } catch (err) {
          const e =
            err instanceof CallError ? err : new CallError(grpc.status.UNAVAILABLE, `etcd: ${(err as Error).message}`);
          const record = records[index];
          if (record) finish(record, e.code, e.details);
          callback(statusError(e.code, e.details), null);
        }
      })();
      track(work);
    };

  /** A stable fake member id for source-mode nodes. */
  const fakeMemberId = (hostname: string): string =>
    createHash('sha256').update(hostname).digest().readBigUInt64BE(0).toString();

  const etcdStatus = unaryHandler('EtcdStatus', async (target) => {
    if (!target.clientUrl) {
      const bytes = (target.source ?? []).reduce((sum, segment) => sum + segment.length, 0);
      const size = String(Math.max(0, (target.source ? bytes : 32) - 32));
      const id = fakeMemberId(target.hostname);
      return {
        messages: [
          {
            member_status: {
              member_id: id,
              protocol_version: '3.6.0',
              db_size: size,
              db_size_in_use: size,
              leader: id,
              raft_index: '1',
              raft_term: '1',
              raft_applied_index: '1',
              errors: [],
              is_learner: false,
              storage_version: '3.6.0',
            },
          },
        ],
      };
    }
    const s = await etcdFor(target.clientUrl).status();
    return {
      messages: [
        {
          member_status: {
            member_id: s.header?.member_id ?? '0',
            protocol_version: s.version,
            db_size: s.dbSize,
            db_size_in_use: s.dbSizeInUse,
            leader: s.leader,
            raft_index: s.raftIndex,
            raft_term: s.raftTerm,
            raft_applied_index: s.raftAppliedIndex,
            errors: s.errors,
            is_learner: s.isLearner,
            storage_version: s.storageVersion,
          },
        },
      ],
    };
  });

  const etcdMemberList = unaryHandler('EtcdMemberList', async (target) => {
    if (!target.clientUrl) {
      return {
        messages: [
          {
            legacy_members: [target.hostname],
            members: [
              {
                id: fakeMemberId(target.hostname),
                hostname: target.hostname,
                peer_urls: ['https://127.0.0.1:2380'],
                client_urls: ['https://127.0.0.1:2379'],
                is_learner: false,
              },
            ],
          },
        ],
      };
    }
    const client = etcdFor(target.clientUrl);
    const [list, status] = await Promise.all([client.memberList(), client.status()]);
    const self = status.header?.member_id;
    // Talos names etcd members after the node hostname: report the serving node's hostname for its own member.
    const members = list.members.map((m) => ({
      id: m.ID,
      hostname: m.ID === self ? target.hostname : m.name,
      peer_urls: m.peerURLs,
      client_urls: m.clientURLs,
      is_learner: m.isLearner,
    }));
    return { messages: [{ legacy_members: members.map((m) => m.hostname), members }] };
  });

  // The service definition with EtcdSnapshot accepting pre-serialized messages (Buffers) for the fast path.
  const service = loadMachineService().service;
  const snapshotDef = service.EtcdSnapshot!;
  const serialize = snapshotDef.responseSerialize;
  const definition: grpc.ServiceDefinition = {
    ...service,
    EtcdSnapshot: {
      ...snapshotDef,
      responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : serialize(value)),
    },
  };
  server.addService(definition, {
    EtcdSnapshot: etcdSnapshot,
    EtcdStatus: etcdStatus,
    EtcdMemberList: etcdMemberList,
  } as grpc.UntypedServiceImplementation);

  let stopped: Promise<void> | undefined;
  return {
    endpoint: `127.0.0.1:${port}`,
    port,
    hostname: localHostname,
    get hostnames() {
      return Object.fromEntries([...cluster].map(([name, n]) => [name, n.hostname]));
    },
    setFault,
    setNode(name, node) {
      if (node === undefined) cluster.delete(name);
      else cluster.set(name, resolveNode(name, node));
    },
    get calls() {
      return records.length;
    },
    get callsByMethod() {
      return { ...callsByMethod };
    },
    get servedBy() {
      return [...servedBy];
    },
    get records() {
      return records;
    },
    async idle() {
      while (running.size > 0) await Promise.allSettled([...running]);
    },
    stop() {
      stopped ??= (async () => {
        stopping = true;
        for (const wake of [...stallWakers]) wake();
        server.forceShutdown();
        await Promise.allSettled([...running]);
        for (const c of etcdClients.values()) c.close();
        etcdClients.clear();
      })();
      return stopped;
    },
  };
}
