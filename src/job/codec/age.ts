// Client-side encryption of backups with age (age-encryption.org/v1), through age-encryption, the reference
// TypeScript implementation. Its API is web streams; AgeStream bridges it to a Node Duplex chunk for chunk, so that
// backpressure holds end to end: a write completes only when age has taken the chunk, and age reads only as fast as
// the Duplex's consumer takes its output.
//
// Secret keys never appear in an error message: identities are described by their line or index only.

import { Duplex } from 'node:stream';
import { Decrypter, Encrypter } from 'age-encryption';
import { AgeError, IDENTITY_LINE, isValidIdentity, parseRecipients } from '../../api/age-keys.js';

const VERSION_LINE = Buffer.from('age-encryption.org/v1\n', 'ascii');
/**
 * A header is ~100 bytes per X25519 recipient and ~1.6 KiB per hybrid one. age-encryption reads it line by line
 * with no limit, so a damaged file without newlines would be buffered whole: stop it here.
 */
export const MAX_HEADER_BYTES = 1024 * 1024;
/** Input is handed to age in pieces of at most this size, so that the header limit above is checked finely. */
const INPUT_PIECE_BYTES = 64 * 1024;

// ---------------------------------------------------------------------------------------------------------------
// Streams

/** A Duplex: plain bytes in, an age file out, readable by any of `recipients`. */
export function createEncryptor(recipients: string[]): Duplex {
  const parsed = parseRecipients(recipients);
  if (parsed.length === 0) throw new AgeError('at least one age recipient is needed to encrypt');
  const encrypter = new Encrypter();
  for (const recipient of parsed) encrypter.addRecipient(recipient);
  return new AgeStream((input) => encrypter.encrypt(input), describeEncryptError, false);
}

/** A Duplex: an age file in, plain bytes out. Every failure is an AgeError with a one-line message. */
export function createDecryptor(identities: string[]): Duplex {
  if (identities.length === 0) throw new AgeError('at least one age identity is needed to decrypt');
  identities.forEach((identity, index) => {
    if (typeof identity !== 'string' || !IDENTITY_LINE.test(identity.trim()) || !isValidIdentity(identity.trim()))
      throw new AgeError(`identity ${index} is not a valid age identity`);
  });
  const decrypter = new Decrypter();
  for (const identity of identities) decrypter.addIdentity(identity.trim());
  return new AgeStream((input) => decrypter.decrypt(input), describeDecryptError, true);
}

function describeEncryptError(error: unknown): AgeError {
  if (error instanceof AgeError) return error;
  return new AgeError(`age encryption failed: ${(error as Error)?.message ?? String(error)}`);
}

/** age-encryption's error texts (0.3.1), in the words of someone restoring a backup. */
function describeDecryptError(error: unknown, where: { inHeader: boolean; sawEnd: boolean }): AgeError {
  if (error instanceof AgeError) return error;
  const message = (error as Error)?.message ?? String(error);
  if (message === "no identity matched any of the file's recipients")
    return new AgeError("the age identity does not match any of the backup's recipients");
  if (message === 'invalid header HMAC') return new AgeError('age header is damaged: its MAC does not verify');
  if (/^stream ended before reading/.test(message))
    return new AgeError('age file is truncated: it ends before its payload');
  if (where.inHeader && where.sawEnd) return new AgeError('age file is truncated: it ends inside its header');
  if (where.inHeader) return new AgeError(`age header is damaged: ${message}`);
  // A payload cut short fails its last chunk's authentication like a damaged one; age cannot tell them apart.
  if (message === 'invalid tag' || /expected length >= tagLength/.test(message))
    return new AgeError('age payload is damaged or truncated: a chunk does not authenticate');
  if (message === 'final chunk is empty') return new AgeError('age payload is damaged: its last chunk is empty');
  return new AgeError(`age decryption failed: ${message}`);
}

/**
 * Node Duplex over age-encryption's web streams. Input: a pull-based ReadableStream (highWaterMark 0) that takes
 * one written chunk per pull, and completes that write only then. Output: the age stream's reader, read only while
 * the Duplex's readable side wants more.
 */
class AgeStream extends Duplex {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private pendingWrite: { chunk: Uint8Array; callback: (error?: Error | null) => void } | undefined;
  private pendingPull: (() => void) | undefined;
  private inputEnded = false;
  private sawEnd = false;
  private bytesIn = 0;
  private delivered = 0;
  private headerDone = false;
  private reading = false;
  private wantsMore = false;
  private readonly output: Promise<ReadableStreamDefaultReader<Uint8Array>>;

  constructor(
    start: (input: ReadableStream<Uint8Array>) => Promise<ReadableStream<Uint8Array>>,
    private readonly describe: (error: unknown, where: { inHeader: boolean; sawEnd: boolean }) => AgeError,
    private readonly decrypting: boolean,
  ) {
    super();
    const input = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
        },
        pull: () =>
          new Promise<void>((resolve) => {
            // age wants more while still in the header: fine up to MAX_HEADER_BYTES (plus its read-ahead).
            if (this.decrypting && !this.headerDone && this.delivered > MAX_HEADER_BYTES) {
              return this.fail(
                new AgeError(`age header is damaged: it does not end within ${MAX_HEADER_BYTES / 1024 / 1024} MiB`),
              );
            }
            this.pendingPull = resolve;
            this.deliver();
          }),
        // age gave up on its input (its output failed): the reason reaches us through the output too.
        cancel: (reason) => {
          this.fail(reason);
        },
      },
      { highWaterMark: 0 },
    );
    this.output = start(input).then((stream) => {
      this.headerDone = true;
      return stream.getReader();
    });
    // A header that fails must fail the Duplex even while nobody reads from it (age stops pulling input then).
    this.output.catch((error: unknown) => this.fail(error));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.decrypting && !this.headerDone) {
      const problem = this.checkHeaderBytes(chunk);
      if (problem) return callback(problem);
    }
    this.bytesIn += chunk.length;
    this.pendingWrite = { chunk, callback };
    this.deliver();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.decrypting && this.bytesIn === 0) return callback(new AgeError('not an age file: it is empty'));
    this.inputEnded = true;
    this.deliver();
    callback();
  }

  override _read(): void {
    this.wantsMore = true;
    if (!this.reading) void this.pump();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.pendingWrite = undefined;
    try {
      this.controller.error(error ?? new Error('age stream destroyed'));
    } catch {
      // already closed or errored
    }
    this.output.then((reader) => reader.cancel(error ?? undefined)).catch(() => undefined);
    callback(error);
  }

  /** Hands the pending write (or the end) to age's pending pull, if both are there. */
  private deliver(): void {
    const resolve = this.pendingPull;
    if (!resolve || this.destroyed) return;
    if (this.pendingWrite) {
      const { chunk, callback } = this.pendingWrite;
      const piece = chunk.subarray(0, INPUT_PIECE_BYTES);
      const rest = chunk.subarray(piece.length);
      this.pendingWrite = rest.length > 0 ? { chunk: rest, callback } : undefined;
      this.pendingPull = undefined;
      this.delivered += piece.length;
      this.controller.enqueue(piece);
      resolve();
      if (rest.length === 0) callback();
    } else if (this.inputEnded) {
      this.pendingPull = undefined;
      this.sawEnd = true;
      this.controller.close();
      resolve();
    }
  }

  /** Moves age's output to the readable side while it wants more (a _read during push() asks again). */
  private async pump(): Promise<void> {
    this.reading = true;
    try {
      const reader = await this.output;
      while (this.wantsMore && !this.destroyed) {
        const { done, value } = await reader.read();
        if (this.destroyed) return;
        if (done) {
          this.push(null);
          return;
        }
        if (value.length === 0) continue;
        this.wantsMore = false;
        if (this.push(value)) this.wantsMore = true;
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.reading = false;
    }
  }

  private fail(error: unknown): void {
    if (!this.destroyed) this.destroy(this.describe(error, { inHeader: !this.headerDone, sawEnd: this.sawEnd }));
  }

  /** The first bytes must be age's version line: anything else never reaches age-encryption. */
  private checkHeaderBytes(chunk: Buffer): AgeError | undefined {
    if (this.bytesIn < VERSION_LINE.length) {
      const seen = chunk.subarray(0, VERSION_LINE.length - this.bytesIn);
      if (!seen.equals(VERSION_LINE.subarray(this.bytesIn, this.bytesIn + seen.length))) {
        return new AgeError(
          this.bytesIn === 0 && chunk.subarray(0, 19).equals(VERSION_LINE.subarray(0, 19))
            ? 'age file has an unsupported version: only age-encryption.org/v1 is known'
            : 'not an age file: it does not begin with age-encryption.org/v1',
        );
      }
    }
    return undefined;
  }
}
