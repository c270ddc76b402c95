import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadMachineService } from '../../../src/job/talos/protos.js';

describe('protos/', () => {
  it('declares the Talos method paths exactly, EtcdSnapshot server-streaming', () => {
    const service = loadMachineService().service;
    assert.equal(service.EtcdSnapshot!.path, '/machine.MachineService/EtcdSnapshot');
    assert.equal(service.EtcdSnapshot!.responseStream, true);
    assert.equal(service.EtcdSnapshot!.requestStream, false);
    assert.equal(service.EtcdStatus!.path, '/machine.MachineService/EtcdStatus');
    assert.equal(service.EtcdMemberList!.path, '/machine.MachineService/EtcdMemberList');
  });

  it('encodes common.Data as upstream does: metadata = field 1, bytes = field 2', () => {
    const encode = loadMachineService().service.EtcdSnapshot!.responseSerialize;
    // field 2, wire type 2 (length-delimited) = 0x12, length 3, then the bytes
    assert.deepEqual([...encode({ bytes: Buffer.from('abc') })], [0x12, 3, 0x61, 0x62, 0x63]);
    const decode = loadMachineService().service.EtcdSnapshot!.responseDeserialize;
    // field 1 (metadata) with field 2 (error) = "x"
    const decoded = decode(Buffer.from([0x0a, 0x03, 0x12, 0x01, 0x78])) as { metadata: { error: string } };
    assert.equal(decoded.metadata.error, 'x');
  });
});
