import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeDataMessage, MalformedMessageError } from '../../../src/job/talos/data-message.js';
import { loadMachineService } from '../../../src/job/talos/protos.js';

// The reference encoder: protobufjs through proto-loader, from the same protos/ the double serves.
const encode = loadMachineService().service.EtcdSnapshot!.responseSerialize as (value: object) => Buffer;

describe('decodeDataMessage (common.Data)', () => {
  it('decodes whatever protobufjs encodes: payload, metadata.error, hostname and status alongside', () => {
    const message = fc.record(
      {
        bytes: fc.uint8Array({ maxLength: 2048 }),
        metadata: fc.record(
          {
            hostname: fc.string(),
            error: fc.string({ unit: 'grapheme' }),
            status: fc.record({ code: fc.integer({ min: 0, max: 16 }), message: fc.string() }),
          },
          { requiredKeys: [] },
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(message, (value) => {
        const decoded = decodeDataMessage(
          encode({ ...value, ...(value.bytes && { bytes: Buffer.from(value.bytes) }) }),
        );
        assert.deepEqual([...decoded.bytes], [...(value.bytes ?? [])]);
        assert.equal(decoded.error, value.metadata?.error ?? '');
      }),
      { numRuns: 500 },
    );
  });

  it('returns the payload as a view of the message, not a copy', () => {
    const wire = encode({ bytes: Buffer.alloc(1024, 7) });
    const decoded = decodeDataMessage(wire);
    assert.equal(decoded.bytes.buffer, wire.buffer);
    assert.equal(decoded.bytes.length, 1024);
  });

  it('skips fields it does not know, of every wire type (a newer Talos may add some)', () => {
    const known = encode({ bytes: Buffer.from('etcd'), metadata: { error: 'boom' } });
    // field 3 varint 300, field 4 fixed64, field 5 length-delimited "zz", field 6 fixed32
    const unknown = Buffer.from([
      0x18, 0xac, 0x02, 0x21, 1, 2, 3, 4, 5, 6, 7, 8, 0x2a, 2, 0x7a, 0x7a, 0x35, 1, 2, 3, 4,
    ]);
    const decoded = decodeDataMessage(Buffer.concat([unknown, known, unknown]));
    assert.equal(decoded.bytes.toString(), 'etcd');
    assert.equal(decoded.error, 'boom');
  });

  it('rejects truncated and invalid encodings with a clear error', () => {
    const wire = encode({ bytes: Buffer.from('abcdef') });
    for (const bad of [
      wire.subarray(0, wire.length - 1),
      Buffer.from([0x12]),
      Buffer.from([0x12, 0xff]),
      Buffer.from([0x0b]),
      Buffer.from([0x0a, 0x02, 0x12, 0x05]),
    ]) {
      assert.throws(() => decodeDataMessage(bad), MalformedMessageError, `bytes ${bad.toString('hex')}`);
    }
  });

  it('decodes an empty message as no payload and no error (the trailing message of some streams)', () => {
    assert.deepEqual(decodeDataMessage(Buffer.alloc(0)), { bytes: Buffer.alloc(0), error: '' });
  });
});
