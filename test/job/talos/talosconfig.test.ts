import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import {
  normalizeEndpoint,
  parseTalosconfig,
  relabelTalosKey,
  TalosconfigError,
} from '../../../src/job/talos/talosconfig.js';

const b64 = (text: string): string => Buffer.from(text).toString('base64');
const CERT = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';
const ED25519_KEY =
  '-----BEGIN ED25519 PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIsecret\n-----END ED25519 PRIVATE KEY-----\n';
const EC_KEY = '-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIsecret\n-----END EC PRIVATE KEY-----\n';

function context(extra: Record<string, unknown> = {}) {
  return {
    endpoints: ['10.0.0.2', '10.0.0.3'],
    nodes: ['10.0.0.2'],
    ca: b64(CERT),
    crt: b64(CERT),
    key: b64(ED25519_KEY),
    ...extra,
  };
}

// The shape `talosctl gen config` and Talos ServiceAccounts write: several contexts, Ed25519 keys.
const generated = stringify({
  context: 'prod',
  contexts: {
    prod: context(),
    staging: context({ endpoints: ['https://staging.example.com'], nodes: undefined, key: b64(EC_KEY) }),
  },
});

describe('parseTalosconfig', () => {
  it('reads the current context, with endpoints on port 50000 and the Ed25519 key relabelled for OpenSSL', () => {
    const parsed = parseTalosconfig(generated);
    assert.equal(parsed.name, 'prod');
    assert.deepEqual(parsed.endpoints, ['10.0.0.2:50000', '10.0.0.3:50000']);
    assert.deepEqual(parsed.nodes, ['10.0.0.2']);
    assert.equal(parsed.caPem, CERT);
    assert.match(parsed.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(parsed.keyPem, /-----END PRIVATE KEY-----\n$/);
  });

  it('reads another context on request; EC keys pass unchanged; https:// endpoints default to 443', () => {
    const parsed = parseTalosconfig(generated, 'staging');
    assert.deepEqual(parsed.endpoints, ['staging.example.com:443']);
    assert.deepEqual(parsed.nodes, []);
    assert.equal(parsed.keyPem, EC_KEY);
  });

  it('accepts the deprecated `target` for endpoints', () => {
    const parsed = parseTalosconfig(
      stringify({ context: 'a', contexts: { a: context({ endpoints: undefined, target: 'talos.default' }) } }),
    );
    assert.deepEqual(parsed.endpoints, ['talos.default:50000']);
  });

  const broken: { name: string; text: string; context?: string; message: RegExp }[] = [
    { name: 'not YAML', text: 'contexts: [unclosed', message: /not valid YAML/ },
    { name: 'a list', text: '- a\n- b\n', message: /not a YAML mapping/ },
    { name: 'empty', text: '', message: /not a YAML mapping/ },
    { name: 'no contexts', text: stringify({ context: 'a' }), message: /has no contexts/ },
    {
      name: 'no current context',
      text: stringify({ contexts: { a: context() } }),
      message: /names no current context/,
    },
    {
      name: 'an unknown context',
      text: generated,
      context: 'dev',
      message: /has no context "dev"; it has: prod, staging/,
    },
    {
      name: 'no ca',
      text: stringify({ context: 'a', contexts: { a: context({ ca: undefined }) } }),
      message: /context "a" has no ca/,
    },
    {
      name: 'a key that is not base64 PEM',
      text: stringify({ context: 'a', contexts: { a: context({ key: 'hunter2' }) } }),
      message: /key is not a base64-encoded PEM private key/,
    },
    {
      name: 'a crt that is not a certificate',
      text: stringify({ context: 'a', contexts: { a: context({ crt: b64(EC_KEY) }) } }),
      message: /crt is not a base64-encoded PEM certificate/,
    },
    {
      name: 'endpoints of the wrong type',
      text: stringify({ context: 'a', contexts: { a: context({ endpoints: [1, 2] }) } }),
      message: /endpoints must be a list of strings/,
    },
  ];
  for (const b of broken) {
    it(`rejects ${b.name} with a clear message and no secret`, () => {
      assert.throws(
        () => parseTalosconfig(b.text, b.context),
        (error: unknown) => {
          assert.ok(error instanceof TalosconfigError);
          assert.match(error.message, b.message);
          assert.ok(!error.message.includes('secret') && !error.message.includes('hunter2'), error.message);
          return true;
        },
      );
    });
  }
});

describe('normalizeEndpoint', () => {
  const cases: [string, string][] = [
    ['10.0.0.2', '10.0.0.2:50000'],
    ['10.0.0.2:50001', '10.0.0.2:50001'],
    ['cp.example.com', 'cp.example.com:50000'],
    ['https://cp.example.com', 'cp.example.com:443'],
    ['https://cp.example.com:6443', 'cp.example.com:6443'],
    ['tcp://10.0.0.2:50000', '10.0.0.2:50000'],
    ['fd00::2', '[fd00::2]:50000'],
    ['[fd00::2]', '[fd00::2]:50000'],
    ['[fd00::2]:50001', '[fd00::2]:50001'],
  ];
  for (const [input, expected] of cases)
    it(`${input} → ${expected}`, () => assert.equal(normalizeEndpoint(input), expected));
});

describe('relabelTalosKey', () => {
  it('rewrites only the Ed25519 label', () => {
    assert.equal(relabelTalosKey(ED25519_KEY), ED25519_KEY.replaceAll('ED25519 PRIVATE KEY', 'PRIVATE KEY'));
    assert.equal(relabelTalosKey(EC_KEY), EC_KEY);
  });
});
