// The S3 client's TLS options against an HTTPS endpoint: a TLS-terminating proxy (certificate from a private CA)
// in front of Ceph RGW. A trusted CA bundle works, an unknown CA is refused, and only an explicit skip ignores it.

import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client, type S3Settings } from '../../../src/job/s3/client.js';
import { createTalosPki } from '../../harness/pki.js';
import { useRgw } from '../../harness/rgw.js';

describe('S3 over HTTPS with a private CA', () => {
  const rgw = useRgw();
  let proxy: Server;
  let endpoint: string;
  let caPem: string;
  let otherCaPem: string;

  before(async () => {
    const pki = await createTalosPki({
      algorithm: 'ECDSA-P256',
      server: { commonName: 's3.test', ips: ['127.0.0.1'] },
    });
    caPem = pki.caPem;
    otherCaPem = (await createTalosPki({ algorithm: 'ECDSA-P256' })).caPem;
    const upstream = new URL(rgw().endpoint);
    // Forwards each request as is (same Host, so SigV4 signatures stay valid) to RGW's plain HTTP port.
    proxy = createServer({ cert: pki.serverCertPem, key: pki.serverKeyPem }, (req, res) => {
      const forward = httpRequest(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    endpoint = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    await rgw().createBucket('tls');
  });
  after(() => new Promise<void>((resolve) => proxy.close(() => resolve())));

  const settings = (extra: Partial<S3Settings>): S3Settings => ({
    region: rgw().region,
    endpoint,
    credentials: { accessKeyId: rgw().accessKeyId, secretAccessKey: rgw().secretAccessKey },
    ...extra,
  });

  it('works with the endpoint CA in caBundle', async () => {
    const client = createS3Client(settings({ caBundlePem: caPem }));
    await client.send(new PutObjectCommand({ Bucket: 'tls', Key: 'a', Body: 'x' }));
    assert.equal((await client.send(new ListObjectsV2Command({ Bucket: 'tls' }))).KeyCount, 1);
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
