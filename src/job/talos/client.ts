// Streams an etcd snapshot from the Talos API (machine.MachineService/EtcdSnapshot) over mutual TLS.
// The server certificate is verified against the talosconfig's CA and the endpoint's name; there is no skip.

import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import { checkServerIdentity } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { JobError } from '../errors.js';
import { decodeDataMessage, type DataMessage } from './data-message.js';
import { loadMachineService } from './protos.js';
import { endpointHost, type TalosContext } from './talosconfig.js';

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
 * talosconfig's role lacks permission, bad request: permanent). One endpoint's failure is a bare detail; the
 * snapshot's, once no endpoint is left to try (see failover.ts), is `failure: 'snapshot'`, caused by the last one.
 */
export class TalosError extends JobError {
  override name = 'TalosError';
  constructor(
    detail: string,
    readonly endpoint: string,
    readonly failover: boolean,
    options: { failure?: 'snapshot'; cause?: unknown } = {},
  ) {
    super(options.failure, detail, { permanent: !failover, cause: options.cause });
  }
}

// Talos' own limit for one message (GRPCMaxMessageSize); snapshot messages are 1 KiB.
const MAX_MESSAGE_BYTES = 32 * 1024 * 1024;
// Keepalive pings no more often than grpc-go servers tolerate by default (5 min; more often earns a GOAWAY
// "too_many_pings"). Stalls are caught sooner by the idle timeout, which needs no cooperation from the server.
const KEEPALIVE_MS = 5 * 60 * 1000;

// Talos' own client uses 2 MiB stream windows; 4 MiB keeps the server streaming while this process is busy.
const FLOW_CONTROL_WINDOW_BYTES = 4 * 1024 * 1024;
// Chunk size handed downstream: large enough that per-chunk costs vanish, small next to a multipart part.
const BATCH_BYTES = 256 * 1024;

// The TLS server name sent to an IP endpoint (the usual Talos case). grpc-js would send the IP itself, which
// RFC 6066 forbids (Node prints DEP0123 for it on every run); talosctl (Go) sends no server name to an IP. grpc-js
// always sends one, so it gets a name under `.invalid` (RFC 6761: never a real name, it can match nothing). apid
// ignores the server name: it serves its one certificate. The certificate is still checked against the IP: see
// serverIdentity().
const IP_ENDPOINT_SERVER_NAME = 'talos-apid.invalid';

let machineService: grpc.ServiceClientConstructor | undefined;

/**
 * How the endpoint's certificate is checked, on top of the chain to the talosconfig's CA (grpc-js refuses an
 * unauthorized peer): a DNS endpoint by grpc-js' default (its name against the DNS SANs); an IP endpoint against
 * its IP SANs, as Node checks an IP host, whatever server name went out.
 */
function serverIdentity(endpoint: string): { credentials: grpc.VerifyOptions; options: grpc.ChannelOptions } {
  const host = endpointHost(endpoint);
  if (isIP(host) === 0) return { credentials: {}, options: {} };
  return {
    credentials: { checkServerIdentity: (_serverName, cert) => checkServerIdentity(host, cert) },
    options: { 'grpc.ssl_target_name_override': IP_ENDPOINT_SERVER_NAME },
  };
}

/** How messages name where a snapshot came from: the endpoint, or the pinned node through it. */
function describeTarget(endpoint: string, node: string | undefined): string {
  return node ? `node ${node} via ${endpoint}` : endpoint;
}

function describeStatus(error: grpc.ServiceError, endpoint: string, node: string | undefined): TalosError {
  const where = describeTarget(endpoint, node);
  const detail = error.details || error.message;
  switch (error.code) {
    case grpc.status.UNIMPLEMENTED:
      return new TalosError(
        `${where} is not a control-plane node: etcd snapshots are only available on control-plane nodes (Unimplemented: ${detail})`,
        endpoint,
        true,
      );
    case grpc.status.PERMISSION_DENIED:
      return new TalosError(
        `${where} refused the snapshot: the talosconfig's role needs os:etcd:backup, os:operator or os:admin (PermissionDenied: ${detail})`,
        endpoint,
        false,
      );
    case grpc.status.UNAUTHENTICATED:
      return new TalosError(
        `${where} did not accept the talosconfig's client certificate (Unauthenticated: ${detail})`,
        endpoint,
        false,
      );
    case grpc.status.INVALID_ARGUMENT:
      return new TalosError(`${where} rejected the request (InvalidArgument: ${detail})`, endpoint, false);
    case grpc.status.UNAVAILABLE:
      return new TalosError(`cannot reach the Talos API at ${where} (Unavailable: ${detail})`, endpoint, true);
    default:
      return new TalosError(
        `the snapshot stream from ${where} failed (${grpc.status[error.code] ?? error.code}: ${detail})`,
        endpoint,
        true,
      );
  }
}

/**
 * Opens EtcdSnapshot on one endpoint (`host:port`) and returns the snapshot's bytes as a stream. The stream
 * errors with a TalosError if the call fails, a message carries `metadata.error` (apid's way to report a failed
 * upstream inside a stream), nothing arrives within `connectTimeoutMs`, or nothing more within `idleTimeoutMs`.
 * Destroying the stream cancels the call and closes the connection.
 */
export function openEtcdSnapshot(context: TalosContext, endpoint: string, opts: SnapshotStreamOptions): Readable {
  machineService ??= loadMachineService();
  const method = machineService.service.EtcdSnapshot!;
  const identity = serverIdentity(endpoint);
  const credentials = grpc.credentials.createSsl(
    Buffer.from(context.caPem),
    Buffer.from(context.keyPem),
    Buffer.from(context.certPem),
    identity.credentials,
  );
  const client = new machineService(endpoint, credentials, {
    ...identity.options,
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': KEEPALIVE_MS,
    'grpc.keepalive_timeout_ms': 20_000,
    // HTTP/2's default 64 KiB window makes the server wait for a window update every 64 messages; measured,
    // a wider one lifts the stream from ~60 to ~85 MiB/s. It bounds what may sit unread in this process.
    'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
  });
  const metadata = new grpc.Metadata();
  if (opts.node) metadata.set('node', opts.node);
  // The loaded definition gives the path and the request encoding; responses use the hand-written decoder.
  const call: grpc.ClientReadableStream<DataMessage> = client.makeServerStreamRequest(
    method.path,
    method.requestSerialize,
    decodeDataMessage,
    {},
    metadata,
  );

  // Messages are 1 KiB: they are gathered into larger chunks, so everything downstream (hashing, the upload's
  // part assembly) handles a few thousand chunks per GiB instead of a million messages.
  let batch: Buffer[] = [];
  let batchBytes = 0;
  const takeBatch = (): Buffer => {
    const chunk = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batchBytes);
    batch = [];
    batchBytes = 0;
    return chunk;
  };

  // One clock check per interval rather than a timer re-armed per message.
  const where = describeTarget(endpoint, opts.node);
  const started = Date.now();
  let lastData: number | undefined;
  const watchdog = setInterval(
    () => {
      const now = Date.now();
      if (lastData === undefined && now - started > opts.connectTimeoutMs) {
        out.destroy(
          new TalosError(`no snapshot data from ${where} within ${opts.connectTimeoutMs / 1000}s`, endpoint, true),
        );
      } else if (lastData !== undefined && !heldBack && now - lastData > opts.idleTimeoutMs) {
        out.destroy(
          new TalosError(`no more snapshot data from ${where} within ${opts.idleTimeoutMs / 1000}s`, endpoint, true),
        );
      }
    },
    Math.max(50, Math.min(opts.connectTimeoutMs, opts.idleTimeoutMs) / 10),
  );

  // The call's messages are taken as 'data' events (no per-message stream plumbing); backpressure pauses the
  // call, which stops grpc-js reading and so, through HTTP/2 flow control, the server.
  // While the reader holds the stream back (a slow or stalled S3 upload), the idle clock stops: a stall there is
  // the upload's to report (pipeline/fan-out.ts), and must not send the snapshot to another endpoint.
  let heldBack = false;
  const out = new Readable({
    read: () => {
      if (heldBack) lastData = Date.now();
      heldBack = false;
      call.resume();
    },
  });
  call.on('data', (message: DataMessage) => {
    lastData = Date.now();
    if (message.error) {
      out.destroy(new TalosError(`${where} reported an error inside the stream: ${message.error}`, endpoint, true));
      return;
    }
    if (message.bytes.length > 0) {
      batch.push(message.bytes);
      batchBytes += message.bytes.length;
    }
    if (batchBytes >= BATCH_BYTES && !out.push(takeBatch())) {
      heldBack = true;
      call.pause();
    }
  });
  // grpc-js emits 'error' (a non-OK status) before 'end', so 'end' here means the server said OK.
  call.on('error', (error: grpc.ServiceError) => out.destroy(describeStatus(error, endpoint, opts.node)));
  call.on('end', () => {
    if (out.destroyed) return;
    clearInterval(watchdog);
    if (batchBytes > 0) out.push(takeBatch());
    out.push(null);
  });
  out.on('close', () => {
    clearInterval(watchdog);
    call.cancel();
    client.close();
  });
  return out;
}
