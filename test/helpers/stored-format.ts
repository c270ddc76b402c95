// What a stored object's first bytes say it is: the tests' independent look at what the pipeline wrote.

const AGE_MAGIC = Buffer.from('age-encryption.org/', 'ascii');
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * What a stored object's first bytes say it is: 'age' (an age-encryption.org header, any version, so that the
 * decryptor can name an unsupported one), 'gzip' (1f 8b), 'zstd' (28 b5 2f fd), else 'raw'. Give it >= 19 bytes.
 */
export function sniffFormat(firstBytes: Uint8Array): 'age' | 'gzip' | 'zstd' | 'raw' {
  const bytes = Buffer.from(firstBytes.buffer, firstBytes.byteOffset, firstBytes.byteLength);
  const startsWith = (magic: Buffer): boolean =>
    bytes.length >= magic.length && bytes.subarray(0, magic.length).equals(magic);
  if (startsWith(AGE_MAGIC)) return 'age';
  if (startsWith(GZIP_MAGIC)) return 'gzip';
  if (startsWith(ZSTD_MAGIC)) return 'zstd';
  return 'raw';
}
