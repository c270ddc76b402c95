// The Talos client's TLS: the server certificate is verified against the talosconfig's CA and the endpoint's own
// name (the IP SAN for an IP endpoint, the DNS SAN for a host name), and an IP address is never sent as the TLS
// server name (RFC 6066 forbids it; Node prints DEP0123 for it). Against the Talos double (a real grpc-js server,
// mutual TLS) and a bare TLS server that records the ClientHello's server name.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { isIP, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createServer, type TLSSocket } from 'node:tls';
import { openEtcdSnapshot, TalosError } from '../../../src/job/talos/client.js';
import { endpointHost, parseTalosconfig, type TalosContext } from '../../../src/job/talos/talosconfig.js';
import { createTalosPki, talosconfigYaml, type TalosPki } from '../../harness/pki.js';
import { startTalosDouble, type TalosDouble } from '../../doubles/talos.js';

const OPTS = { connectTimeoutMs: 5_000, idleTimeoutMs: 5_000 };

/** The whole stream, or the error that ended it. */
async function drain(stream: NodeJS.ReadableStream): Promise<{ bytes: Buffer; error?: Error }> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return { bytes: Buffer.concat(chunks) };
  } catch (error) {
    return { bytes: Buffer.concat(chunks), error: error as Error };
  }
}

describe('Talos client TLS: server identity and server name', () => {
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  let pki: TalosPki;
  let foreign: TalosPki;
  let source: Buffer;
  let talos: TalosDouble;
  /** Serves a certificate from the right CA for the wrong IP (10.9.9.9) and the wrong host name. */
  let misnamed: TalosDouble;
  let context: TalosContext;
  let foreignContext: TalosContext;

  before(async () => {
    process.on('warning', onWarning);
    [pki, foreign] = await Promise.all([createTalosPki(), createTalosPki()]);
    const db = Buffer.alloc(300 * 1024, 3);
    source = Buffer.concat([db, createHash('sha256').update(db).digest()]);
    const wrong = await pki.serverCert({ ips: ['10.9.9.9'], dnsNames: ['apid.elsewhere.example'] });
    [talos, misnamed] = await Promise.all([
      startTalosDouble({ pki, source, hostname: 'cp-1' }),
      startTalosDouble({
        pki: { caPem: pki.caPem, serverCertPem: wrong.certPem, serverKeyPem: wrong.keyPem },
        source,
        hostname: 'cp-misnamed',
      }),
    ]);
    const client = await pki.clientCert(['os:etcd:backup']);
    context = parseTalosconfig(
      talosconfigYaml({
        context: 'prod',
        endpoints: [talos.endpoint],
        caPem: pki.caPem,
        certPem: client.certPem,
        keyPem: client.keyPem,
      }),
    );
    foreignContext = { ...context, caPem: foreign.caPem };
  });
  after(async () => {
    process.off('warning', onWarning);
    await Promise.all([talos?.stop(), misnamed?.stop()]);
  });

  it('endpointHost: the host of host:port, IPv6 without brackets', () => {
    assert.equal(endpointHost('10.0.0.2:50000'), '10.0.0.2');
    assert.equal(endpointHost('[fd00::2]:50000'), 'fd00::2');
    assert.equal(endpointHost('cp.example.com:443'), 'cp.example.com');
  });

  it('streams from an IP endpoint whose certificate has that IP SAN', async () => {
    const { bytes, error } = await drain(openEtcdSnapshot(context, `127.0.0.1:${talos.port}`, OPTS));
    assert.equal(error, undefined);
    assert.ok(bytes.equals(source));
  });

  it('streams from a DNS endpoint whose certificate has that DNS SAN', async () => {
    const { bytes, error } = await drain(openEtcdSnapshot(context, `localhost:${talos.port}`, OPTS));
    assert.equal(error, undefined);
    assert.ok(bytes.equals(source));
  });

  for (const host of ['127.0.0.1', 'localhost']) {
    it(`refuses a server whose certificate another CA signed (${host} endpoint)`, async () => {
      const { bytes, error } = await drain(openEtcdSnapshot(foreignContext, `${host}:${talos.port}`, OPTS));
      assert.ok(error instanceof TalosError, String(error));
      assert.match(error.message, /^cannot reach the Talos API at .*certificate/);
      assert.equal(bytes.length, 0);
    });
  }

  it('refuses a certificate of the right CA without the IP SAN of an IP endpoint', async () => {
    const { bytes, error } = await drain(openEtcdSnapshot(context, `127.0.0.1:${misnamed.port}`, OPTS));
    assert.ok(error instanceof TalosError, String(error));
    assert.match(error.message, /IP: 127\.0\.0\.1 is not in the cert's list: 10\.9\.9\.9/);
    assert.equal(bytes.length, 0);
  });

  it('refuses a certificate of the right CA without the DNS SAN of a DNS endpoint', async () => {
    const { bytes, error } = await drain(openEtcdSnapshot(context, `localhost:${misnamed.port}`, OPTS));
    assert.ok(error instanceof TalosError, String(error));
    assert.match(error.message, /Host: localhost\. is not in the cert's altnames: .*DNS:apid\.elsewhere\.example/);
    assert.equal(bytes.length, 0);
  });

  it('sends no IP address as the TLS server name; a DNS endpoint sends its name', async () => {
    let seen: (string | false | null)[] = [];
    const server = createServer(
      { cert: pki.serverCertPem, key: pki.serverKeyPem, ALPNProtocols: ['h2'] },
      (socket: TLSSocket) => {
        seen.push(socket.servername);
        socket.destroy();
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const names: Record<string, (string | false | null)[]> = {};
    try {
      for (const host of ['127.0.0.1', 'localhost']) {
        seen = [];
        const { error } = await drain(
          openEtcdSnapshot(context, `${host}:${port}`, { connectTimeoutMs: 2_000, idleTimeoutMs: 2_000 }),
        );
        assert.ok(error instanceof TalosError, 'the bare TLS server speaks no gRPC');
        names[host] = seen;
      }
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    const fromIp = names['127.0.0.1']!;
    const fromName = names.localhost!;
    assert.ok(fromIp.length > 0 && fromName.length > 0, `handshakes seen: ${JSON.stringify(names)}`);
    for (const name of fromIp)
      assert.ok(!name || isIP(name) === 0, `the IP endpoint sent ${JSON.stringify(name)} as server name`);
    for (const name of fromName) assert.equal(name, 'localhost');
  });

  it('none of these connections made Node warn (no DEP0123)', () => {
    assert.deepEqual(
      warnings.map((w) => `${w.name}: ${w.message}`),
      [],
    );
  });
});
