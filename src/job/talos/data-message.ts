// Decoder for `common.Data`, the message EtcdSnapshot streams, written by hand for the hot path: a snapshot of
// 1 GiB is a million 1 KiB messages, and the generic protobufjs decode + toObject cost ~10% of the pipeline's CPU
// (measured with --cpu-prof on `npm run bench`). The payload is returned as a view of the message buffer, not a
// copy. The wire format is protobuf's (field numbers from protos/common/common.proto); unknown fields are skipped,
// as any protobuf decoder does, so a newer Talos that adds fields still decodes.
//
//   message Data     { Metadata metadata = 1; bytes bytes = 2; }
//   message Metadata { string hostname = 1; string error = 2; RpcStatus status = 3; }

export interface DataMessage {
  /** The payload: a view of the decoded buffer. */
  bytes: Buffer;
  /** metadata.error: apid's report of a failed upstream inside the stream ('' when unset). */
  error: string;
}

const EMPTY: Buffer = Buffer.alloc(0);

/** Thrown for bytes that are not a valid protobuf encoding (grpc-js turns it into an INTERNAL call status). */
export class MalformedMessageError extends Error {
  override name = 'MalformedMessageError';
}

/** A cursor over one protobuf message. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (this.pos >= this.end)
        throw new MalformedMessageError('common.Data: a varint runs past the end of the message');
      const byte = this.buf[this.pos++]!;
      // Values above 2^53 cannot be lengths of anything in memory; only their presence matters when skipping.
      if (shift < 53) value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new MalformedMessageError('common.Data: a varint is longer than 10 bytes');
  }

  /** The bounds of a length-delimited field's contents; advances past it. */
  delimited(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    if (length > this.end - start)
      throw new MalformedMessageError('common.Data: a field runs past the end of the message');
    this.pos = start + length;
    return [start, this.pos];
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.advance(8);
        return;
      case 2:
        this.delimited();
        return;
      case 5:
        this.advance(4);
        return;
      default:
        throw new MalformedMessageError(`common.Data: unsupported wire type ${wireType}`);
    }
  }

  private advance(bytes: number): void {
    if (bytes > this.end - this.pos)
      throw new MalformedMessageError('common.Data: a field runs past the end of the message');
    this.pos += bytes;
  }
}

function metadataError(buf: Buffer, start: number, end: number): string {
  const reader = new Reader(buf, start, end);
  let error = '';
  while (reader.pos < end) {
    const key = reader.varint();
    if (key >>> 3 === 2 && (key & 7) === 2) {
      const [from, to] = reader.delimited();
      error = buf.toString('utf8', from, to);
    } else {
      reader.skip(key & 7);
    }
  }
  return error;
}

export function decodeDataMessage(buf: Buffer): DataMessage {
  const reader = new Reader(buf, 0, buf.length);
  let bytes: Buffer = EMPTY;
  let error = '';
  // Protobuf semantics: for a repeated non-repeated field, the last one wins (sub-messages would merge; only
  // metadata.error is read from them, and a later non-empty one wins).
  while (reader.pos < buf.length) {
    const key = reader.varint();
    const field = key >>> 3;
    const wireType = key & 7;
    if (field === 2 && wireType === 2) {
      const [from, to] = reader.delimited();
      bytes = buf.subarray(from, to);
    } else if (field === 1 && wireType === 2) {
      const [from, to] = reader.delimited();
      error = metadataError(buf, from, to) || error;
    } else {
      reader.skip(wireType);
    }
  }
  return { bytes, error };
}
