// Talos-like PKI generated at test time with @peculiar/x509 on Node's WebCrypto:
//   - a CA with O=talos (Ed25519 like siderolabs/crypto's defaults; ECDSA P-256 if this Node cannot do Ed25519),
//   - an apid server certificate (SANs IP:127.0.0.1, DNS:localhost, DNS:talos.default; EKU serverAuth),
//   - client certificates whose Subject O values are the Talos roles, EKU exactly clientAuth (what apid demands),
//     or deliberately wrong EKUs for negative tests,
//   - talosconfig YAML (base64 PEMs; the key with the `ED25519 PRIVATE KEY` label Talos writes).
// Private keys are PKCS#8 PEM (`PRIVATE KEY`), which Node/OpenSSL accept; talosLabel() produces the Talos label.
// A second createTalosPki() is a different ("foreign") CA.

import { createPrivateKey, webcrypto } from 'node:crypto';
import { stringify } from 'yaml';
import type * as X509 from '@peculiar/x509';

type X509Module = typeof X509;
// WebCrypto types as @peculiar/x509 names them (DOM lib types; this project compiles without the DOM lib).
type XCrypto = Parameters<X509Module['cryptoProvider']['set']>[0];
type XKeyPair = X509.X509CertificateCreateSelfSignedParams['keys'];
type XAlgorithm = NonNullable<X509.X509CertificateCreateParamsBase['signingAlgorithm']>;
type XKey = X509.X509CertificateCreateWithKeyParams['signingKey'];

// @peculiar/x509 2.x resolves its algorithm providers through tsyringe, which needs the Reflect metadata
// polyfill loaded first (hence the dynamic import below).
let x509Promise: Promise<X509Module> | undefined;

/** @peculiar/x509, loaded after the Reflect polyfill, on Node's WebCrypto. */
export function loadX509(): Promise<X509Module> {
  x509Promise ??= (async () => {
    await import('reflect-metadata');
    const ns = (await import('@peculiar/x509')) as unknown as X509Module & { default?: X509Module };
    const mod = typeof ns.X509CertificateGenerator === 'function' ? ns : ns.default!;
    mod.cryptoProvider.set(webcrypto as unknown as XCrypto);
    return mod;
  })();
  return x509Promise;
}

// ---------------------------------------------------------------------------------------------------------------
// Algorithms

export type KeyAlgorithm = 'Ed25519' | 'ECDSA-P256';

interface AlgorithmParams {
  generate: webcrypto.EcKeyGenParams | webcrypto.Algorithm;
  sign: webcrypto.EcdsaParams | webcrypto.Algorithm;
}

const ALGORITHMS: Record<KeyAlgorithm, AlgorithmParams> = {
  Ed25519: { generate: { name: 'Ed25519' }, sign: { name: 'Ed25519' } },
  'ECDSA-P256': {
    generate: { name: 'ECDSA', namedCurve: 'P-256' } as webcrypto.EcKeyGenParams,
    sign: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
  },
};

let defaultAlgorithm: Promise<KeyAlgorithm> | undefined;

/**
 * Ed25519 when this Node's WebCrypto can generate, sign and certify with it (Node 20+: yes), else ECDSA P-256
 * with a process warning saying so.
 */
export function defaultKeyAlgorithm(): Promise<KeyAlgorithm> {
  defaultAlgorithm ??= (async (): Promise<KeyAlgorithm> => {
    try {
      const x509 = await loadX509();
      const keys = (await webcrypto.subtle.generateKey(ALGORITHMS.Ed25519.generate, true, [
        'sign',
        'verify',
      ])) as webcrypto.CryptoKeyPair;
      const probe = await x509.X509CertificateGenerator.createSelfSigned({
        name: 'CN=ed25519-probe',
        keys: keys as unknown as XKeyPair,
        signingAlgorithm: ALGORITHMS.Ed25519.sign as XAlgorithm,
      });
      if (!(await probe.verify({ signatureOnly: true })))
        throw new Error('self-signed Ed25519 certificate does not verify');
      createPrivateKey(toPem(Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), 'PRIVATE KEY'));
      return 'Ed25519';
    } catch (err) {
      process.emitWarning(
        `test PKI: Ed25519 is not usable here (${(err as Error).message}); falling back to ECDSA P-256 (Talos' default is Ed25519)`,
      );
      return 'ECDSA-P256';
    }
  })();
  return defaultAlgorithm;
}

// ---------------------------------------------------------------------------------------------------------------
// PEM helpers

export function toPem(der: Buffer, label: string): string {
  const b64 = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** `-----BEGIN PRIVATE KEY-----` → `-----BEGIN ED25519 PRIVATE KEY-----` (and END): the label Talos writes. */
export function talosLabel(pem: string): string {
  return pem.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, '-----$1 ED25519 PRIVATE KEY-----');
}

/** The reverse of talosLabel(): what OpenSSL (Node, grpc-js createSsl) accepts. */
export function opensslLabel(pem: string): string {
  return pem.replace(/-----(BEGIN|END) ED25519 PRIVATE KEY-----/g, '-----$1 PRIVATE KEY-----');
}

/**
 * The key PEM as Talos would store it: Ed25519 PKCS#8 under `ED25519 PRIVATE KEY`, ECDSA as SEC1 `EC PRIVATE KEY`,
 * RSA as PKCS#1 `RSA PRIVATE KEY`.
 */
export function talosKeyPem(keyPem: string): string {
  const key = createPrivateKey(opensslLabel(keyPem));
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return talosLabel(key.export({ type: 'pkcs8', format: 'pem' }).toString());
    case 'ec':
      return key.export({ type: 'sec1', format: 'pem' }).toString();
    case 'rsa':
      return key.export({ type: 'pkcs1', format: 'pem' }).toString();
    default:
      return keyPem;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Certificates

export interface CertAndKey {
  certPem: string;
  /** PKCS#8 PEM, label `PRIVATE KEY`. */
  keyPem: string;
}

/** EKUs for a client certificate: apid accepts exactly `clientAuth`; the others are for negative tests. */
export type ClientEku = 'clientAuth' | 'serverAuth' | 'clientAuth+serverAuth' | 'none';

export interface ClientCertOptions {
  eku?: ClientEku;
  /** Subject CN (default `talos-etcd-backup-test`). */
  commonName?: string;
  notBefore?: Date;
  notAfter?: Date;
}

export interface ServerCertOptions {
  /** Subject CN (default `talos-apid-double`). */
  commonName?: string;
  /** IP SANs (default 127.0.0.1). */
  ips?: string[];
  /** DNS SANs (default localhost, talos.default). */
  dnsNames?: string[];
  notBefore?: Date;
  notAfter?: Date;
}

export interface TalosPki {
  algorithm: KeyAlgorithm;
  /** The CA certificate (O=talos), PEM. */
  caPem: string;
  caKeyPem: string;
  /** apid's server certificate: SANs IP:127.0.0.1, DNS:localhost, DNS:talos.default; EKU serverAuth. */
  serverCertPem: string;
  serverKeyPem: string;
  /** A client certificate with Subject O = roles (one O per role), EKU exactly clientAuth unless opts.eku says otherwise. */
  clientCert(roles: string[], opts?: ClientCertOptions): Promise<CertAndKey>;
  /** Another server certificate from this CA (other SANs, validity). */
  serverCert(opts?: ServerCertOptions): Promise<CertAndKey>;
}

export interface CreateTalosPkiOptions {
  /** Default: defaultKeyAlgorithm() (Ed25519 on Node 20+). */
  algorithm?: KeyAlgorithm;
  server?: ServerCertOptions;
  /** CA subject O (default `talos`). */
  caOrganization?: string;
}

const HOUR = 3_600_000;

async function generateKeys(algorithm: KeyAlgorithm): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHMS[algorithm].generate, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
}

async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  return toPem(Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key)), 'PRIVATE KEY');
}

function certPem(cert: X509.X509Certificate): string {
  return toPem(Buffer.from(cert.rawData), 'CERTIFICATE');
}

function serial(): string {
  // positive, 16 bytes
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}

/** Creates a fresh CA (O=talos) with an apid server certificate. Each call is a different, unrelated CA. */
export async function createTalosPki(opts: CreateTalosPkiOptions = {}): Promise<TalosPki> {
  const x509 = await loadX509();
  const algorithm = opts.algorithm ?? (await defaultKeyAlgorithm());
  const sign = ALGORITHMS[algorithm].sign as XAlgorithm;

  const caKeys = await generateKeys(algorithm);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: [{ O: [opts.caOrganization ?? 'talos'] }],
    keys: caKeys as unknown as XKeyPair,
    signingAlgorithm: sign,
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + 24 * HOUR),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey as unknown as XKey),
    ],
  });
  const caKeyId = await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey as unknown as XKey);

  const issue = async (
    subject: X509.JsonName,
    extensions: X509.Extension[],
    notBefore?: Date,
    notAfter?: Date,
  ): Promise<CertAndKey> => {
    const keys = await generateKeys(algorithm);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject,
      issuer: caCert.subject,
      publicKey: keys.publicKey as unknown as XKey,
      signingKey: caKeys.privateKey as unknown as XKey,
      signingAlgorithm: sign,
      notBefore: notBefore ?? new Date(Date.now() - HOUR),
      notAfter: notAfter ?? new Date(Date.now() + 24 * HOUR),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        ...extensions,
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as unknown as XKey),
        caKeyId,
      ],
    });
    return { certPem: certPem(cert), keyPem: await pkcs8Pem(keys.privateKey) };
  };

  const serverCert = (o: ServerCertOptions = {}): Promise<CertAndKey> => {
    const names: X509.JsonGeneralName[] = [
      ...(o.ips ?? ['127.0.0.1']).map((value) => ({ type: 'ip' as const, value })),
      ...(o.dnsNames ?? ['localhost', 'talos.default']).map((value) => ({ type: 'dns' as const, value })),
    ];
    return issue(
      [{ CN: [o.commonName ?? 'talos-apid-double'] }],
      [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(names),
      ],
      o.notBefore,
      o.notAfter,
    );
  };

  const clientCert = (roles: string[], o: ClientCertOptions = {}): Promise<CertAndKey> => {
    const eku = o.eku ?? 'clientAuth';
    const usages: Record<ClientEku, string[] | undefined> = {
      clientAuth: [x509.ExtendedKeyUsage.clientAuth],
      serverAuth: [x509.ExtendedKeyUsage.serverAuth],
      'clientAuth+serverAuth': [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth],
      none: undefined,
    };
    const ekuUsages = usages[eku];
    // One RDN per role, like Go's pkix.Name{Organization: roles}: Node then reports subject.O as an array.
    const subject: X509.JsonName = [
      ...roles.map((role) => ({ O: [role] })),
      { CN: [o.commonName ?? 'talos-etcd-backup-test'] },
    ];
    return issue(
      subject,
      [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        ...(ekuUsages ? [new x509.ExtendedKeyUsageExtension(ekuUsages)] : []),
      ],
      o.notBefore,
      o.notAfter,
    );
  };

  const server = await serverCert(opts.server);
  return {
    algorithm,
    caPem: certPem(caCert),
    caKeyPem: await pkcs8Pem(caKeys.privateKey),
    serverCertPem: server.certPem,
    serverKeyPem: server.keyPem,
    clientCert,
    serverCert,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// talosconfig

export interface TalosconfigContext {
  endpoints: string[];
  nodes?: string[];
  caPem: string;
  certPem: string;
  /** PKCS#8 PEM (or already Talos-labelled). */
  keyPem: string;
  /**
   * `talos` (default): the key as Talos writes it (talosKeyPem(): `ED25519 PRIVATE KEY` for Ed25519);
   * `as-is`: keyPem unchanged.
   */
  keyLabel?: 'talos' | 'as-is';
}

export type TalosconfigInput =
  ({ context: string } & TalosconfigContext) | { context: string; contexts: Record<string, TalosconfigContext> };

const b64 = (pem: string): string => Buffer.from(pem, 'utf8').toString('base64');

/**
 * A talosconfig (pkg/machinery/client/config): `context` + `contexts.<name>.{endpoints, nodes, ca, crt, key}` with
 * base64 (StdEncoding) PEMs. Either one context (`{ context, endpoints, ... }`) or several
 * (`{ context: 'current', contexts: { current: {...}, other: {...} } }`).
 */
export function talosconfigYaml(input: TalosconfigInput): string {
  const contexts: Record<string, TalosconfigContext> =
    'contexts' in input ? input.contexts : { [input.context]: input };
  if ('contexts' in input && !Object.hasOwn(contexts, input.context)) {
    throw new Error(
      `talosconfigYaml: current context ${input.context} is not among ${Object.keys(contexts).join(', ')}`,
    );
  }
  const out: Record<string, unknown> = {};
  for (const [name, c] of Object.entries(contexts)) {
    out[name] = {
      endpoints: c.endpoints,
      ...(c.nodes ? { nodes: c.nodes } : {}),
      ca: b64(c.caPem),
      crt: b64(c.certPem),
      key: b64(c.keyLabel === 'as-is' ? c.keyPem : talosKeyPem(c.keyPem)),
    };
  }
  return stringify({ context: input.context, contexts: out });
}
