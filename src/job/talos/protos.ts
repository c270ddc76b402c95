// Loads the Talos machine API subset in protos/ for @grpc/grpc-js.

import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { packageRoot } from '../../api/crds.js';

/** Options shared by the client and the test double: snake_case fields, 64-bit integers as strings. */
export const PROTO_LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

export function machineProtoPath(): string {
  return join(packageRoot(), 'protos', 'machine', 'machine.proto');
}

/** The `machine.MachineService` client/service definition. */
export function loadMachineService(): grpc.ServiceClientConstructor {
  const definition = loadSync(machineProtoPath(), {
    ...PROTO_LOADER_OPTIONS,
    includeDirs: [join(packageRoot(), 'protos')],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    machine: { MachineService: grpc.ServiceClientConstructor };
  };
  return loaded.machine.MachineService;
}
