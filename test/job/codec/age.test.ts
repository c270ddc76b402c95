// age streams: recipients and identity files checked with clear messages (secrets never echoed), roundtrips over a
// real etcd snapshot and random inputs, compress→encrypt→decrypt→decompress, interop with the age CLI (Debian's
// 1.1.1) both ways, failures as AgeError, and bounded buffering under a slow consumer.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { generateHybridIdentity, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { AgeError, parseIdentities, parseRecipients } from '../../../src/api/age-keys.js';
import { MAX_HEADER_BYTES, createDecryptor, createEncryptor } from '../../../src/job/codec/age.js';

/** age's file format: the payload in 64 KiB chunks, each with a 16-byte Poly1305 tag, after a 16-byte nonce. */
function ageFileSize(plainBytes: number, headerBytes: number): number {
  const chunks = Math.max(1, Math.ceil(plainBytes / (64 * 1024)));
  return headerBytes + 16 + plainBytes + chunks * 16;
}
import { createCompressor, createDecompressor } from '../../../src/job/codec/compression.js';
import { startEtcd } from '../../harness/etcd.js';
import { cut, failure, inputTakenWhileSinkPaused, sha256, through } from './stream-helpers.js';

/** Runs a CLI; returns stdout, failing the test on a non-zero exit. */
function cli(command: string, args: string[], input?: Buffer): Buffer {
  const run = spawnSync(command, args, { input, maxBuffer: 256 * 1024 * 1024 });
  if (run.error)
    throw new Error(
      `${command} is not usable (${run.error.message}); run ./scripts/install-test-deps.sh (Debian package age)`,
    );
  assert.equal(run.status, 0, `${command} ${args.join(' ')} failed: ${run.stderr.toString()}`);
  return run.stdout;
}

async function encrypt(recipients: string[], bytes: Buffer, sizes = [64 * 1024]): Promise<Buffer> {
  return through(cut(bytes, sizes), createEncryptor(recipients));
}

async function decrypt(identities: string[], bytes: Buffer, sizes = [64 * 1024]): Promise<Buffer> {
  return through(cut(bytes, sizes), createDecryptor(identities));
}

/** The age header's length: everything up to and including the "--- <mac>" line. */
function headerBytes(file: Buffer): number {
  const macLine = file.indexOf('\n---') + 1;
  return file.indexOf('\n', macLine) + 1;
}

/** Chunk sizes to cycle through; the 4 KiB one keeps a run of 1-byte pieces from taking all the test's time. */
const chunkSizes = fc
  .array(fc.integer({ min: 1, max: 140_000 }), { minLength: 1, maxLength: 6 })
  .map((sizes) => [...sizes, 4096]);

/** The AgeError a call throws, asserting that it throws one. */
function ageErrorOf(run: () => unknown): AgeError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof AgeError, `expected an AgeError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected an AgeError');
}

describe('age', () => {
  let snapshot: Buffer;
  let dir: string;
  let keyFile: string; // written by age-keygen
  let identity: string;
  let recipient: string;
  let other: { identity: string; recipient: string };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'talos-etcd-backup-age-'));
    keyFile = join(dir, 'key.txt');
    cli('age-keygen', ['-o', keyFile]);
    [identity] = parseIdentities(await readFile(keyFile, 'utf8')) as [string];
    recipient = cli('age-keygen', ['-y', keyFile]).toString().trim();
    const otherIdentity = await generateX25519Identity();
    other = { identity: otherIdentity, recipient: await identityToRecipient(otherIdentity) };
    const etcd = await startEtcd();
    try {
      await etcd.putMany(3000, 'registry/secrets/default/s-', 700);
      snapshot = await etcd.snapshot();
    } finally {
      await etcd.stop();
    }
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('recipients', () => {
    it('accepts X25519 and hybrid post-quantum recipients, trimmed; an empty list is no encryption', async () => {
      const pq = await identityToRecipient(await generateHybridIdentity());
      assert.deepEqual(parseRecipients([` ${recipient}\n`, other.recipient]), [recipient, other.recipient]);
      assert.deepEqual(parseRecipients([pq]), [pq]);
      assert.deepEqual(parseRecipients([]), []);
    });

    it('names the bad entry and what is wrong', async () => {
      const damaged = recipient.slice(0, -1) + (recipient.endsWith('q') ? 'p' : 'q');
      const pq = await identityToRecipient(await generateHybridIdentity());
      const cases: Array<[string[], string]> = [
        [[recipient, ''], 'recipient 1 is empty'],
        [
          [damaged],
          `recipient 0 ("${damaged.slice(0, 20)}...") is not a valid X25519 recipient: its bech32 checksum or length is wrong (copied incompletely?)`,
        ],
        [
          [recipient.slice(0, 40)],
          `recipient 0 ("${recipient.slice(0, 20)}...") is not a valid X25519 recipient: its bech32 checksum or length is wrong (copied incompletely?)`,
        ],
        [
          [pq.slice(0, -3)],
          `recipient 0 ("${pq.slice(0, 20)}...") is not a valid hybrid post-quantum recipient: its bech32 checksum or length is wrong (copied incompletely?)`,
        ],
        [
          ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI'],
          'recipient 0 ("ssh-ed25519 AAAAC3Nz...") is an SSH key, which is not supported: use an X25519 (age1...) or hybrid post-quantum (age1pq1...) recipient',
        ],
        [
          ['alice@example.com'],
          'recipient 0 ("alice@example.com") is not an age recipient: expected age1... (X25519) or age1pq1... (hybrid post-quantum)',
        ],
        [
          ['age1yubikey1qwertyuiop'],
          'recipient 0 ("age1yubikey1qwertyuiop") is an age plugin recipient, which is not supported: use an X25519 (age1...) or hybrid post-quantum (age1pq1...) recipient',
        ],
        [
          [recipient, pq],
          'recipient 1 is post-quantum (age1pq1...) and recipient 0 is not: age does not mix post-quantum and classic recipients in one file',
        ],
      ];
      for (const [input, message] of cases) assert.equal(ageErrorOf(() => parseRecipients(input)).message, message);
    });

    it('never echoes a secret key given as a recipient', () => {
      const error = ageErrorOf(() => parseRecipients([recipient, identity]));
      assert.equal(
        error.message,
        'recipient 1 is an age identity (a secret key), not a recipient: give its public key (age-keygen -y) instead, and keep the secret out of this setting',
      );
      assert.ok(!error.message.includes(identity.slice(16, 40)));
    });

    it('createEncryptor needs at least one valid recipient', () => {
      assert.equal(ageErrorOf(() => createEncryptor([])).message, 'at least one age recipient is needed to encrypt');
      assert.match(
        ageErrorOf(() => createEncryptor(['age1nope'])).message,
        /^recipient 0 \("age1nope"\) is not a valid X25519 recipient/,
      );
    });
  });

  describe('identity files', () => {
    it("reads age-keygen's file, comments, blank lines, CRLF, several and hybrid identities", async () => {
      const pq = await generateHybridIdentity();
      assert.deepEqual(parseIdentities(await readFile(keyFile, 'utf8')), [identity]);
      const text = `# created: 2026-01-01T00:00:00Z\r\n# public key: ${recipient}\r\n${identity}\r\n\r\n   \n# the PQ one\n  ${pq}  \n${other.identity}`;
      assert.deepEqual(parseIdentities(text), [identity, pq, other.identity]);
    });

    it('names the bad line without echoing any secret', () => {
      const damaged = identity.slice(0, -1) + (identity.endsWith('Q') ? 'P' : 'Q');
      const cases: Array<[string, string]> = [
        [
          `# key\n\n${damaged}\n`,
          'line 3 is not a valid age identity: its bech32 checksum or length is wrong (copied incompletely?)',
        ],
        [
          `${identity}\n${identity.slice(0, 30)}`,
          'line 2 is not a valid age identity: its bech32 checksum or length is wrong (copied incompletely?)',
        ],
        [`# key\nsecret-${identity}\n`, 'line 2 is not an age identity'],
        [
          `${identity} # mine\n`,
          'line 1 is not a valid age identity: its bech32 checksum or length is wrong (copied incompletely?)',
        ],
        [
          `AGE-PLUGIN-YUBIKEY-1QQQQQQQQQQQQQQQ\n`,
          'line 1 is an age plugin identity, which is not supported (only AGE-SECRET-KEY-1... and AGE-SECRET-KEY-PQ-1...)',
        ],
        [
          'age-encryption.org/v1\n-> scrypt abc 18\n',
          'line 1 begins an age-encrypted file: the identity file is passphrase-protected; decrypt it first (age -d)',
        ],
        [
          `# only comments\n# public key: ${recipient}\n`,
          'the identity file has no age identity (no AGE-SECRET-KEY-1... line)',
        ],
        ['', 'the identity file has no age identity (no AGE-SECRET-KEY-1... line)'],
      ];
      const secretPart = identity.slice('AGE-SECRET-KEY-1'.length, -6);
      for (const [text, message] of cases) {
        const error = ageErrorOf(() => parseIdentities(text));
        assert.equal(error.message, message);
        assert.ok(
          !error.message.includes(secretPart) && !error.message.includes(secretPart.toLowerCase()),
          'no part of the secret in the message',
        );
        assert.ok(!(error.stack ?? '').includes(secretPart), 'nor in the stack');
      }
    });

    it('createDecryptor refuses bad identities by index, without echoing them', () => {
      assert.equal(ageErrorOf(() => createDecryptor([])).message, 'at least one age identity is needed to decrypt');
      const error = ageErrorOf(() => createDecryptor([identity, identity.slice(0, -2)]));
      assert.equal(error.message, 'identity 1 is not a valid age identity');
    });
  });

  describe('streams', () => {
    it('a real etcd snapshot roundtrips, to several recipients, with arbitrary chunk boundaries', async () => {
      const file = await encrypt([recipient, other.recipient], snapshot, [1, 70_000, 13, 65_536, 200_000]);
      assert.equal(file.subarray(0, 22).toString(), 'age-encryption.org/v1\n');
      assert.equal(file.length, ageFileSize(snapshot.length, headerBytes(file)));
      assert.equal(sha256(await decrypt([identity], file, [7, 100_000, 65_552])), sha256(snapshot));
      assert.equal(sha256(await decrypt([other.identity], file, [1_000_000])), sha256(snapshot));
    });

    it('random inputs roundtrip whatever the chunking, and the size formula holds', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.uint8Array({ maxLength: 3000 }),
            fc.integer({ min: 0, max: 300_000 }).map((n) => new Uint8Array(n).fill(n % 251)),
          ),
          chunkSizes,
          chunkSizes,
          async (plain, inSizes, outSizes) => {
            const bytes = Buffer.from(plain);
            const file = await encrypt([recipient], bytes, inSizes);
            assert.equal(file.length, ageFileSize(bytes.length, headerBytes(file)));
            assert.equal(sha256(await decrypt([identity], file, outSizes)), sha256(bytes));
          },
        ),
        { numRuns: 30 },
      );
      // Chunk edges exactly: age's 64 KiB payload chunks.
      for (const size of [0, 1, 65_535, 65_536, 65_537, 2 * 65_536]) {
        const bytes = Buffer.alloc(size, 7);
        const file = await encrypt([recipient], bytes);
        assert.equal(file.length, ageFileSize(size, headerBytes(file)), `size ${size}`);
        assert.equal(sha256(await decrypt([identity], file)), sha256(bytes), `size ${size}`);
      }
    });

    it('hybrid post-quantum recipients roundtrip (between our own encryptor and decryptor)', async () => {
      const identities = [await generateHybridIdentity(), await generateHybridIdentity()];
      const recipients = await Promise.all(identities.map((i) => identityToRecipient(i)));
      const file = await encrypt(recipients, snapshot);
      for (const pq of identities) assert.equal(sha256(await decrypt([pq], file)), sha256(snapshot));
      const error = await failure([file], createDecryptor([identity]));
      assert.equal(error.message, "the age identity does not match any of the backup's recipients");
    });

    for (const kind of ['gzip', 'zstd'] as const) {
      it(`${kind} then age, and back: compress → encrypt → decrypt → decompress`, async () => {
        const stored = await through(
          cut(snapshot, [4096, 65_536, 1]),
          await createCompressor(kind),
          createEncryptor([recipient]),
        );
        assert.ok(stored.length < snapshot.length);
        const back = await through(
          cut(stored, [30_000, 1, 65_552]),
          createDecryptor([identity]),
          await createDecompressor(kind),
        );
        assert.equal(sha256(back), sha256(snapshot));
      });
    }
  });

  describe('the age CLI', () => {
    it('decrypts what we encrypt, to one recipient or several', async () => {
      const path = join(dir, 'ours.age');
      await writeFile(path, await encrypt([other.recipient, recipient], snapshot));
      assert.equal(sha256(cli('age', ['-d', '-i', keyFile, path])), sha256(snapshot));
      await writeFile(path, await encrypt([recipient], Buffer.alloc(0)));
      assert.equal(cli('age', ['-d', '-i', keyFile, path]).length, 0);
    });

    it('encrypts what we decrypt, to one recipient or several', async () => {
      const theirs = cli('age', ['-r', other.recipient, '-r', recipient], snapshot);
      assert.equal(sha256(await decrypt([identity], theirs, [1000])), sha256(snapshot));
      assert.equal(sha256(await decrypt([other.identity], theirs)), sha256(snapshot));
      // And with the identity file age-keygen wrote, read by parseIdentities.
      const small = cli('age', ['-r', recipient], Buffer.from('hello'));
      assert.equal((await decrypt(parseIdentities(await readFile(keyFile, 'utf8')), small)).toString(), 'hello');
    });
  });

  describe('failures', () => {
    let file: Buffer;
    before(async () => {
      file = await encrypt([recipient], snapshot);
    });

    const expectAgeError = async (bytes: Buffer, identities: string[], message: string): Promise<void> => {
      const error = await failure(cut(bytes, [40_000]), createDecryptor(identities));
      assert.ok(error instanceof AgeError, `${error.name}: ${error.message}`);
      assert.equal(error.message, message);
      for (const i of identities) assert.ok(!error.message.includes(i.slice(16)), 'no secret in the message');
    };

    it('a wrong identity', async () => {
      await expectAgeError(file, [other.identity], "the age identity does not match any of the backup's recipients");
      const pq = await generateHybridIdentity();
      await expectAgeError(
        file,
        [other.identity, pq],
        "the age identity does not match any of the backup's recipients",
      );
    });

    it('damaged ciphertext, header and MAC', async () => {
      const payload = Buffer.from(file);
      const at = headerBytes(file) + 16 + 100_000;
      payload[at] = payload[at]! ^ 0x40;
      await expectAgeError(payload, [identity], 'age payload is damaged or truncated: a chunk does not authenticate');
      const mac = Buffer.from(file);
      const macAt = file.indexOf('\n--- ') + 6;
      mac[macAt] = mac[macAt] === 0x41 ? 0x42 : 0x41;
      await expectAgeError(mac, [identity], 'age header is damaged: its MAC does not verify');
      const stanza = Buffer.from(file);
      stanza[file.indexOf('-> X25519') + 2] = 0x00; // a control byte in the header
      await expectAgeError(stanza, [identity], 'age header is damaged: invalid non-ASCII byte in header');
    });

    it('truncated files', async () => {
      const header = headerBytes(file);
      await expectAgeError(
        file.subarray(0, file.length - 1000),
        [identity],
        'age payload is damaged or truncated: a chunk does not authenticate',
      );
      // Cut exactly at a payload chunk boundary: the last chunk present is not marked last.
      await expectAgeError(
        file.subarray(0, header + 16 + 3 * 65_552),
        [identity],
        'age payload is damaged or truncated: a chunk does not authenticate',
      );
      await expectAgeError(
        file.subarray(0, header + 16 + 5),
        [identity],
        'age payload is damaged or truncated: a chunk does not authenticate',
      );
      await expectAgeError(
        file.subarray(0, header + 5),
        [identity],
        'age file is truncated: it ends before its payload',
      );
      await expectAgeError(
        file.subarray(0, header - 20),
        [identity],
        'age file is truncated: it ends inside its header',
      );
      await expectAgeError(file.subarray(0, 30), [identity], 'age file is truncated: it ends inside its header');
      await expectAgeError(file.subarray(0, 10), [identity], 'age file is truncated: it ends inside its header');
    });

    it('not age at all', async () => {
      await expectAgeError(snapshot, [identity], 'not an age file: it does not begin with age-encryption.org/v1');
      const gz = await through([snapshot], await createCompressor('gzip'));
      await expectAgeError(gz, [identity], 'not an age file: it does not begin with age-encryption.org/v1');
      await expectAgeError(
        Buffer.from('age-encryption.org/v2\n-> X25519 x\n'),
        [identity],
        'age file has an unsupported version: only age-encryption.org/v1 is known',
      );
      await expectAgeError(Buffer.alloc(0), [identity], 'not an age file: it is empty');
    });

    it('a header that never ends is refused after MAX_HEADER_BYTES, not buffered', async () => {
      const endless = Buffer.concat([
        Buffer.from('age-encryption.org/v1\n-> X25519 '),
        Buffer.alloc(8 * 1024 * 1024, 'A'),
      ]);
      await expectAgeError(
        endless,
        [identity],
        `age header is damaged: it does not end within ${MAX_HEADER_BYTES / 1024 / 1024} MiB`,
      );
    });
  });

  describe('backpressure', () => {
    it('a paused consumer stops the encryptor from taking input', async () => {
      const stalled = await inputTakenWhileSinkPaused(createEncryptor([recipient]));
      assert.ok(stalled.produced <= 1024 * 1024, `took ${stalled.produced} bytes while the sink was paused`);
      assert.ok(stalled.stageBuffered <= 512 * 1024, `the encryptor buffered ${stalled.stageBuffered} bytes`);
    });

    it('a paused consumer stops the decryptor from taking input', async () => {
      const plain = Buffer.alloc(16 * 1024 * 1024, 'x');
      const stored = await encrypt([recipient], plain);
      const decryptor = createDecryptor([identity]);
      let taken = 0;
      for (const piece of cut(stored, [64 * 1024])) {
        taken += piece.length;
        if (!decryptor.write(piece)) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(taken <= 1024 * 1024, `took ${taken} bytes with no reader`);
      assert.ok(decryptor.readableLength <= 512 * 1024, `buffered ${decryptor.readableLength} bytes of output`);
      // Reading resumes the flow to the end.
      const rest = cut(stored.subarray(taken), [64 * 1024]);
      const chunks: Buffer[] = [];
      decryptor.on('data', (chunk: Buffer) => chunks.push(chunk));
      const ended = new Promise((resolve, reject) => decryptor.once('end', resolve).once('error', reject));
      for (const piece of rest)
        if (!decryptor.write(piece)) await new Promise((resolve) => decryptor.once('drain', resolve));
      decryptor.end();
      await ended;
      assert.equal(sha256(Buffer.concat(chunks)), sha256(plain));
    });

    it('an encryptor destroyed midway, or whose consumer fails, ends without hanging', async () => {
      const encryptor = createEncryptor([recipient]);
      encryptor.write(Buffer.alloc(300 * 1024));
      encryptor.destroy(new Error('upload failed'));
      const error = await new Promise<Error>((resolve) => encryptor.once('error', resolve));
      assert.equal(error.message, 'upload failed');
      const decryptor = createDecryptor([identity]);
      decryptor.destroy();
      await new Promise((resolve) => decryptor.once('close', resolve));
    });
  });
});
