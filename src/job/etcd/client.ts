// A client for the one etcd the restore test starts inside its pod: plain gRPC over the unix socket in the pod's
// emptyDir (no TCP port, no TLS: only the containers that mount that volume can reach it). Only what the check
// needs: Maintenance.Status and KV.Range (protos/etcd/rpc.proto).

import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { packageRoot } from '../../api/crds.js';
import { PROTO_LOADER_OPTIONS } from '../talos/protos.js';

export interface KeyValue {
  key: Buffer;
  mod_revision: string;
  value: Buffer;
}

export interface RangeRequest {
  key: Buffer;
  range_end?: Buffer;
  limit?: number;
  revision?: number;
  sort_order?: 'NONE' | 'ASCEND' | 'DESCEND';
  sort_target?: 'KEY' | 'VERSION' | 'CREATE' | 'MOD' | 'VALUE';
  keys_only?: boolean;
  count_only?: boolean;
}

export interface EtcdClient {
  status(deadlineMs: number): Promise<{ version: string; revision: number }>;
  range(request: RangeRequest, deadlineMs: number): Promise<{ revision: number; kvs: KeyValue[]; count: number }>;
  close(): void;
}

type Unary = (
  request: object,
  options: grpc.CallOptions,
  callback: (error: Error | null, reply: never) => void,
) => void;

function services(): { KV: grpc.ServiceClientConstructor; Maintenance: grpc.ServiceClientConstructor } {
  const definition = loadSync(join(packageRoot(), 'protos', 'etcd', 'rpc.proto'), PROTO_LOADER_OPTIONS);
  return (grpc.loadPackageDefinition(definition) as unknown as { etcdserverpb: ReturnType<typeof services> })
    .etcdserverpb;
}

/** `target`: a gRPC target such as `unix:etcd.sock` (relative to the working directory). */
export function etcdClient(target: string): EtcdClient {
  const { KV, Maintenance } = services();
  const credentials = grpc.credentials.createInsecure();
  const kv = new KV(target, credentials);
  const maintenance = new Maintenance(target, credentials, { channelOverride: kv.getChannel() } as grpc.ClientOptions);
  const call = <T>(client: grpc.Client, method: string, request: object, deadlineMs: number) =>
    new Promise<T>((resolve, reject) =>
      (client as unknown as Record<string, Unary>)[method]!.call(
        client,
        request,
        { deadline: Date.now() + deadlineMs },
        (error, reply) => (error ? reject(error) : resolve(reply as T)),
      ),
    );
  return {
    async status(deadlineMs) {
      const reply = await call<{ version: string; header: { revision: string } }>(
        maintenance,
        'Status',
        {},
        deadlineMs,
      );
      return { version: reply.version, revision: Number(reply.header.revision) };
    },
    async range(request, deadlineMs) {
      const reply = await call<{ header: { revision: string }; kvs: KeyValue[]; count: string }>(
        kv,
        'Range',
        request,
        deadlineMs,
      );
      return { revision: Number(reply.header.revision), kvs: reply.kvs, count: Number(reply.count) };
    },
    close() {
      kv.close();
    },
  };
}
