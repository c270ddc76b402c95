// The S3 client's TLS options against an HTTPS endpoint: Ceph RGW serving HTTPS itself (beast's TLS, a certificate
// from a private CA). A trusted CA bundle works, an unknown CA is refused, and only an explicit skip ignores it;
// over HTTPS the uploads' payloads go unsigned, over HTTP they stay signed.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client, type S3Settings } from '../../../src/job/s3/client.js';
import { createTalosPki } from '../../harness/pki.js';
import { startRgw, type Rgw } from '../../harness/rgw.js';

/** Records each request's `<method> <x-amz-content-sha256>` as signed, just before it is sent. */
function recordPayloadHashes(client: S3Client): string[] {
  const seen: string[] = [];
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { method: string; headers: Record<string, string> };
      seen.push(`${request.method} ${request.headers['x-amz-content-sha256']}`);
      return next(args);
    },
    { step: 'finalizeRequest', name: 'recordPayloadHash', priority: 'low' },
  );
  return seen;
}

describe('S3 over HTTPS with a private CA', () => {
  let rgw: Rgw;
  let caPem: string;
  let otherCaPem: string;

  before(async () => {
    const pki = await createTalosPki({
      algorithm: 'ECDSA-P256',
      server: { commonName: 's3.test', ips: ['127.0.0.1'] },
    });
    caPem = pki.caPem;
    otherCaPem = (await createTalosPki({ algorithm: 'ECDSA-P256' })).caPem;
    rgw = await startRgw({ tls: { certPem: pki.serverCertPem, keyPem: pki.serverKeyPem, caPem } });
    assert.match(rgw.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    await rgw.createBucket('tls');
  });
  after(async () => {
    await rgw?.stop();
  });

  const settings = (extra: Partial<S3Settings>): S3Settings => ({
    region: rgw.region,
    endpoint: rgw.endpoint,
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
    ...extra,
  });

  it('works with the endpoint CA in caBundle', async () => {
    const client = createS3Client(settings({ caBundlePem: caPem }));
    await client.send(new PutObjectCommand({ Bucket: 'tls', Key: 'a', Body: 'x' }));
    assert.equal((await client.send(new ListObjectsV2Command({ Bucket: 'tls' }))).KeyCount, 1);
  });

  it('over HTTPS, uploads carry UNSIGNED-PAYLOAD (TLS protects the bytes) and RGW accepts them; over HTTP they stay signed', async () => {
    const { Upload } = await import('@aws-sdk/lib-storage');
    const client = createS3Client(settings({ caBundlePem: caPem }));
    const sent = recordPayloadHashes(client);
    const body = Buffer.alloc(6 * 1024 * 1024, 7);
    await new Upload({ client, params: { Bucket: 'tls', Key: 'parts', Body: body }, partSize: 5 * 1024 * 1024 }).done();
    await client.send(new PutObjectCommand({ Bucket: 'tls', Key: 'one', Body: 'x' }));
    const stored = await rgw.client().send(new ListObjectsV2Command({ Bucket: 'tls' }));
    const sizes = new Map(stored.Contents?.map((o) => [o.Key, o.Size]));
    assert.equal(sizes.get('parts'), body.length);
    assert.equal(sizes.get('one'), 1);
    const puts = sent.filter((h) => h.startsWith('PUT '));
    assert.deepEqual(puts, ['PUT UNSIGNED-PAYLOAD', 'PUT UNSIGNED-PAYLOAD', 'PUT UNSIGNED-PAYLOAD']);
    // Every other request (create, complete) is signed as before.
    const others = sent.filter((h) => !h.startsWith('PUT '));
    assert.ok(others.length >= 2 && others.every((h) => /^\w+ [0-9a-f]{64}$/.test(h)), others.join(', '));

    // Over plain HTTP the signature is all that ties the bytes to the request: the payload's hash is signed.
    // (Nothing listens there: the request is recorded as signed, then refused.)
    const plain = createS3Client({ ...settings({}), endpoint: 'http://127.0.0.1:1' });
    const plainSent = recordPayloadHashes(plain);
    await assert.rejects(plain.send(new PutObjectCommand({ Bucket: 'tls', Key: 'plain', Body: 'x' })));
    assert.ok(plainSent.length >= 1);
    assert.ok(
      plainSent.every((h) => h === `PUT ${createHash('sha256').update('x').digest('hex')}`),
      plainSent.join(),
    );
  });

  it('refuses a certificate from another CA', async () => {
    await assert.rejects(
      createS3Client(settings({ caBundlePem: otherCaPem })).send(new ListObjectsV2Command({ Bucket: 'tls' })),
      /self-signed|unable to (get|verify)|certificate/i,
    );
  });

  it('refuses it with no CA bundle (the system roots do not know it)', async () => {
    await assert.rejects(
      createS3Client(settings({})).send(new ListObjectsV2Command({ Bucket: 'tls' })),
      /certificate/i,
    );
  });

  it('accepts it only with insecureSkipTLSVerify', async () => {
    const client = createS3Client(settings({ insecureSkipTLSVerify: true }));
    assert.equal((await client.send(new ListObjectsV2Command({ Bucket: 'tls' }))).Name, 'tls');
  });
});
