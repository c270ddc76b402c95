// Streams an etcd snapshot from the Talos API (machine.MachineService/EtcdSnapshot) over mutual TLS.
// The server certificate is verified against the talosconfig's CA and the endpoint's name; there is no skip.

import { Transform, type TransformCallback } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { loadMachineService } from './protos.js';
import type { TalosContext } from './talosconfig.js';

export interface SnapshotStreamOptions {
  /** Pin the snapshot to one control-plane node (gRPC metadata `node`, proxied by the endpoint's apid). */
  node?: string | undefined;
  /** Give up on an endpoint that has not sent its first bytes within this time. */
  connectTimeoutMs: number;
  /** Give up on a stream that sends nothing for this long (a stalled node or a dead connection). */
  idleTimeoutMs: number;
}

/**
 * A failure talking to one endpoint. `failover` says whether another endpoint may do better (unreachable,
 * broken stream, not a control-plane node) or whether every endpoint would fail the same way (the
 * talosconfig's role lacks permission, bad request).
 */
export class TalosError extends Error {
  override name = 'TalosError';
  constructor(
    message: string,
    readonly endpoint: string,
    readonly failover: boolean,
    readonly code?: grpc.status,
  ) {
    super(message);
  }
}

// Talos' own limit for one message (GRPCMaxMessageSize); snapshot messages are 1 KiB.
const MAX_MESSAGE_BYTES = 32 * 1024 * 1024;
// Keepalive pings no more often than grpc-go servers tolerate by default (5 min; more often earns a GOAWAY
// "too_many_pings"). Stalls are caught sooner by the idle timeout, which needs no cooperation from the server.
const KEEPALIVE_MS = 5 * 60 * 1000;

let machineService: grpc.ServiceClientConstructor | undefined;

function describeStatus(error: grpc.ServiceError, endpoint: string, node: string | undefined): TalosError {
  const where = node ? `node ${node} via ${endpoint}` : endpoint;
  const detail = error.details || error.message;
  switch (error.code) {
    case grpc.status.UNIMPLEMENTED:
      return new TalosError(`${where} is not a control-plane node: etcd snapshots are only available on control-plane nodes (Unimplemented: ${detail})`, endpoint, true, error.code);
    case grpc.status.PERMISSION_DENIED:
      return new TalosError(`${where} refused the snapshot: the talosconfig's role needs os:etcd:backup, os:operator or os:admin (PermissionDenied: ${detail})`, endpoint, false, error.code);
    case grpc.status.UNAUTHENTICATED:
      return new TalosError(`${where} did not accept the talosconfig's client certificate (Unauthenticated: ${detail})`, endpoint, false, error.code);
    case grpc.status.INVALID_ARGUMENT:
      return new TalosError(`${where} rejected the request (InvalidArgument: ${detail})`, endpoint, false, error.code);
    case grpc.status.UNAVAILABLE:
      return new TalosError(`cannot reach the Talos API at ${where} (Unavailable: ${detail})`, endpoint, true, error.code);
    default:
      return new TalosError(`the snapshot stream from ${where} failed (${grpc.status[error.code] ?? error.code}: ${detail})`, endpoint, true, error.code);
  }
}

/**
 * Opens EtcdSnapshot on one endpoint (`host:port`) and returns the snapshot's bytes as a stream. The stream
 * errors with a TalosError if the call fails, a message carries `metadata.error` (apid's way to report a failed
 * upstream inside a stream), nothing arrives within `connectTimeoutMs`, or nothing more within `idleTimeoutMs`.
 * Destroying the stream cancels the call and closes the connection.
 */
export function openEtcdSnapshot(context: TalosContext, endpoint: string, opts: SnapshotStreamOptions): Transform {
  machineService ??= loadMachineService();
  const credentials = grpc.credentials.createSsl(Buffer.from(context.caPem), Buffer.from(context.keyPem), Buffer.from(context.certPem));
  const client = new machineService(endpoint, credentials, {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': KEEPALIVE_MS,
    'grpc.keepalive_timeout_ms': 20_000,
  });
  const metadata = new grpc.Metadata();
  if (opts.node) metadata.set('node', opts.node);
  const call = (client as unknown as { EtcdSnapshot(request: object, metadata: grpc.Metadata): grpc.ClientReadableStream<{ metadata?: { error?: string }; bytes: Buffer }> }).EtcdSnapshot({}, metadata);

  let timer: NodeJS.Timeout | undefined;
  const where = opts.node ? `node ${opts.node} via ${endpoint}` : endpoint;
  const arm = (ms: number, what: string) => {
    clearTimeout(timer);
    timer = setTimeout(() => out.destroy(new TalosError(`${what} from ${where} within ${ms / 1000}s`, endpoint, true)), ms);
  };

  const out = new Transform({
    writableObjectMode: true,
    transform(message: { metadata?: { error?: string }; bytes: Buffer }, _encoding, callback: TransformCallback) {
      arm(opts.idleTimeoutMs, 'no more snapshot data');
      if (message.metadata?.error) return callback(new TalosError(`${where} reported an error inside the stream: ${message.metadata.error}`, endpoint, true));
      callback(null, message.bytes);
    },
    flush(callback: TransformCallback) {
      clearTimeout(timer);
      callback();
    },
  });
  arm(opts.connectTimeoutMs, 'no snapshot data');
  call.on('error', (error: grpc.ServiceError) => out.destroy(describeStatus(error, endpoint, opts.node)));
  out.on('close', () => {
    clearTimeout(timer);
    call.cancel();
    client.close();
  });
  call.pipe(out);
  return out;
}
