// Proves the Talos double (test/doubles/talos.ts) against real etcds, with a raw grpc-js client built from
// talosconfig material the way a Talos client must: base64 PEMs, the `ED25519 PRIVATE KEY` label relabelled to
// `PRIVATE KEY` before createSsl (OpenSSL rejects the Talos label).

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { parse } from 'yaml';
import { loadMachineService } from '../../src/job/talos/protos.js';
import { restoreSnapshot, SnapshotRestoreError, startEtcd, type Etcd } from '../harness/etcd.js';
import { createTalosPki, opensslLabel, talosconfigYaml, type TalosPki } from '../harness/pki.js';
import { CHUNK_SIZE, startTalosDouble, type TalosDouble } from './talos.js';

interface Data {
  metadata: { hostname: string; error: string; status: { code: number; message: string } | null } | null;
  bytes: Buffer;
}

interface SnapshotResult {
  messages: Data[];
  body: Buffer;
  code: grpc.status;
  details: string;
}

const MachineService = loadMachineService();
const clients: grpc.Client[] = [];

/** A MachineService client from a talosconfig, as a Talos client would build it. */
function clientFromTalosconfig(yamlText: string, endpointOverride?: string): grpc.Client {
  const config = parse(yamlText) as {
    context: string;
    contexts: Record<string, { endpoints: string[]; ca: string; crt: string; key: string }>;
  };
  const ctx = config.contexts[config.context]!;
  const pem = (b64: string): Buffer => Buffer.from(b64, 'base64');
  const key = pem(ctx.key).toString('utf8');
  const credentials = grpc.credentials.createSsl(pem(ctx.ca), Buffer.from(opensslLabel(key)), pem(ctx.crt));
  const client = new MachineService(endpointOverride ?? ctx.endpoints[0]!, credentials, {
    'grpc.max_receive_message_length': 32 * 1024 * 1024,
  });
  clients.push(client);
  return client;
}

async function clientFor(
  pki: TalosPki,
  double: TalosDouble,
  roles: string[],
  opts: Parameters<TalosPki['clientCert']>[1] = {},
  caPem = pki.caPem,
): Promise<grpc.Client> {
  const { certPem, keyPem } = await pki.clientCert(roles, opts);
  return clientFromTalosconfig(
    talosconfigYaml({ context: 'test', endpoints: [double.endpoint], caPem, certPem, keyPem }),
  );
}

function metadata(nodes: string[]): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const n of nodes) md.add('node', n);
  return md;
}

function snapshot(client: grpc.Client, md = new grpc.Metadata(), deadlineMs = 10_000): Promise<SnapshotResult> {
  return new Promise((resolve) => {
    const call = (
      client as unknown as {
        EtcdSnapshot(req: object, md: grpc.Metadata, opts: grpc.CallOptions): grpc.ClientReadableStream<Data>;
      }
    ).EtcdSnapshot({}, md, { deadline: Date.now() + deadlineMs });
    const messages: Data[] = [];
    call.on('data', (m: Data) => messages.push(m));
    call.on('error', () => {
      // the status event carries it
    });
    call.on('status', (s: grpc.StatusObject) => {
      // 'status' can precede the last 'data' events being consumed; settle on the next turn
      setImmediate(() =>
        resolve({ messages, body: Buffer.concat(messages.map((m) => m.bytes)), code: s.code, details: s.details }),
      );
    });
  });
}

function unary<T>(client: grpc.Client, method: 'EtcdStatus' | 'EtcdMemberList', md = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (
      client as unknown as Record<
        string,
        (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: T) => void) => void
      >
    )[method]!;
    fn.call(client, {}, md, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function rejectsWith(p: Promise<unknown>, code: grpc.status, details?: RegExp): Promise<void> {
  await assert.rejects(p, (err: grpc.ServiceError) => {
    assert.equal(err.code, code, `expected ${grpc.status[code]}, got ${grpc.status[err.code]}: ${err.details}`);
    if (details) assert.match(err.details, details);
    return true;
  });
}

function assertEtcdSnapshot(body: Buffer): void {
  assert.equal(body.length % 512, 32, `size ${body.length} % 512 should be 32`);
  const digest = createHash('sha256').update(body.subarray(0, -32)).digest();
  assert.ok(digest.equals(body.subarray(-32)), 'sha256(body) must equal the 32-byte trailer');
}

describe('Talos double', () => {
  let pki: TalosPki;
  let etcdA: Etcd;
  let etcdB: Etcd;
  let written: Map<string, string>;
  let talos: TalosDouble;
  let backup: grpc.Client; // os:etcd:backup
  let dir: string;

  before(async () => {
    [pki, etcdA, etcdB, dir] = await Promise.all([
      createTalosPki(),
      startEtcd(),
      startEtcd(),
      mkdtemp(join(tmpdir(), 'talos-double-test-')),
    ]);
    [written] = await Promise.all([etcdA.putMany(2000, 'a/', 100), etcdB.putMany(50, 'b/')]);
    talos = await startTalosDouble({
      pki,
      etcd: etcdA,
      hostname: 'cp-1',
      nodes: {
        '10.5.0.2': { etcd: etcdA, hostname: 'cp-1' },
        '10.5.0.3': { etcd: etcdB, hostname: 'cp-2' },
        '10.5.0.9': { controlPlane: false, hostname: 'worker-1' },
        '10.5.0.5': { etcd: 'http://127.0.0.1:1', hostname: 'cp-etcd-down' },
      },
    });
    backup = await clientFor(pki, talos, ['os:etcd:backup']);
  });

  after(async () => {
    for (const c of clients) c.close();
    await talos?.stop();
    await Promise.all([etcdA?.stop(), etcdB?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('uses a Talos-like PKI and talosconfig (Ed25519, ED25519 PRIVATE KEY label, O=roles, EKU clientAuth)', async () => {
    const { certPem, keyPem } = await pki.clientCert(['os:etcd:backup', 'os:reader']);
    const config = parse(
      talosconfigYaml({
        context: 'c1',
        endpoints: [talos.endpoint],
        nodes: ['10.5.0.2'],
        caPem: pki.caPem,
        certPem,
        keyPem,
      }),
    ) as {
      context: string;
      contexts: Record<string, { endpoints: string[]; nodes: string[]; ca: string; crt: string; key: string }>;
    };
    assert.equal(config.context, 'c1');
    assert.deepEqual(config.contexts.c1!.nodes, ['10.5.0.2']);
    const talosKey = Buffer.from(config.contexts.c1!.key, 'base64').toString();
    if (pki.algorithm === 'Ed25519') {
      assert.match(talosKey, /^-----BEGIN ED25519 PRIVATE KEY-----\n/);
      // why a Talos client must relabel: OpenSSL refuses the Talos label
      assert.throws(() =>
        grpc.credentials.createSsl(Buffer.from(pki.caPem), Buffer.from(talosKey), Buffer.from(certPem)),
      );
    }
    const { X509Certificate } = await import('node:crypto');
    const cert = new X509Certificate(certPem);
    assert.match(cert.subject, /O=os:etcd:backup\nO=os:reader/);
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    assert.ok(cert.verify(new X509Certificate(pki.caPem).publicKey));
    const server = new X509Certificate(pki.serverCertPem);
    assert.equal(server.subjectAltName, 'IP Address:127.0.0.1, DNS:localhost, DNS:talos.default');
    assert.equal(new X509Certificate(pki.caPem).subject, 'O=talos');
    // several contexts
    const multi = parse(
      talosconfigYaml({
        context: 'b',
        contexts: {
          a: { endpoints: ['1.2.3.4'], caPem: pki.caPem, certPem, keyPem },
          b: { endpoints: ['5.6.7.8'], caPem: pki.caPem, certPem, keyPem },
        },
      }),
    ) as { context: string; contexts: Record<string, unknown> };
    assert.equal(multi.context, 'b');
    assert.deepEqual(Object.keys(multi.contexts), ['a', 'b']);
  });

  it("streams etcd's snapshot byte-identically in messages of at most 1024 bytes", async () => {
    const [through, direct] = await Promise.all([snapshot(backup), etcdA.snapshot()]);
    assert.equal(through.code, grpc.status.OK, through.details);
    assert.ok(through.body.equals(direct), `double ${through.body.length} bytes vs etcd ${direct.length} bytes`);
    assert.ok(through.messages.every((m) => m.bytes.length > 0 && m.bytes.length <= CHUNK_SIZE));
    assert.ok(
      through.messages.every((m) => m.metadata === null),
      'metadata is unset in one-to-one mode',
    );
    assert.equal(
      through.messages.at(-1)!.bytes.length,
      32,
      'the sha256 trailer arrives as its own message, as etcd sends it',
    );
    assertEtcdSnapshot(through.body);
    await writeFile(join(dir, 'good.db'), through.body);
    assert.equal(talos.servedBy.at(-1), 'cp-1');
  });

  it('routes by node metadata; repeated node is INVALID_ARGUMENT, unknown node UNAVAILABLE, worker UNIMPLEMENTED', async () => {
    const b = await snapshot(backup, metadata(['10.5.0.3']));
    assert.equal(b.code, grpc.status.OK, b.details);
    assert.ok(b.body.equals(await etcdB.snapshot()));
    assert.equal(talos.servedBy.at(-1), 'cp-2');

    const a = await snapshot(backup, metadata(['10.5.0.2']));
    assert.ok(a.body.equals(await etcdA.snapshot()));
    assert.equal(talos.servedBy.at(-1), 'cp-1');
    assert.equal(talos.records.at(-1)!.node, '10.5.0.2');

    const twice = await snapshot(backup, metadata(['10.5.0.2', '10.5.0.3']));
    assert.equal(twice.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(twice.details, 'node metadata must be single-valued');

    const unknown = await snapshot(backup, metadata(['10.5.0.77']));
    assert.equal(unknown.code, grpc.status.UNAVAILABLE);
    assert.match(unknown.details, /10\.5\.0\.77:50000/);

    const worker = await snapshot(backup, metadata(['10.5.0.9']));
    assert.equal(worker.code, grpc.status.UNIMPLEMENTED);
    assert.equal(worker.details, 'etcd snapshot is only available on control plane nodes');

    const etcdDown = await snapshot(backup, metadata(['10.5.0.5']));
    assert.equal(etcdDown.code, grpc.status.UNAVAILABLE);
    assert.match(etcdDown.details, /^etcd snapshot failed/);
    await rejectsWith(unary(backup, 'EtcdStatus', metadata(['10.5.0.5'])), grpc.status.UNAVAILABLE);

    const status = await unary<{ messages: Array<{ member_status: { member_id: string } }> }>(
      backup,
      'EtcdStatus',
      metadata(['10.5.0.3']),
    );
    assert.equal(status.messages[0]!.member_status.member_id, (await etcdB.client.status()).header!.member_id);
  });

  it('enforces RBAC: os:reader may not snapshot but may call EtcdStatus/EtcdMemberList', async () => {
    const reader = await clientFor(pki, talos, ['os:reader']);
    const denied = await snapshot(reader);
    assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
    assert.equal(denied.messages.length, 0);

    const status = await unary<{ messages: Array<{ metadata: unknown; member_status: Record<string, unknown> }> }>(
      reader,
      'EtcdStatus',
    );
    const ms = status.messages[0]!.member_status;
    const etcdStatus = await etcdA.client.status();
    assert.equal(ms.member_id, etcdStatus.header!.member_id);
    assert.equal(ms.protocol_version, '3.4.23');
    assert.ok(Number(ms.db_size) > 0);
    assert.equal(ms.leader, etcdStatus.header!.member_id);

    const members = await unary<{
      messages: Array<{ members: Array<{ id: string; hostname: string; client_urls: string[] }> }>;
    }>(reader, 'EtcdMemberList');
    assert.deepEqual(
      members.messages[0]!.members.map((m) => [m.id, m.hostname, m.client_urls]),
      [[etcdStatus.header!.member_id, 'cp-1', [etcdA.clientUrl]]],
    );

    // several O values are several roles
    const both = await clientFor(pki, talos, ['os:reader', 'os:etcd:backup']);
    assert.equal((await snapshot(both)).code, grpc.status.OK);
    assert.deepEqual(talos.records.at(-1)!.roles, ['os:reader', 'os:etcd:backup']);

    const nobody = await clientFor(pki, talos, ['os:image:verifier']);
    await rejectsWith(unary(nobody, 'EtcdStatus'), grpc.status.PERMISSION_DENIED);
  });

  it('refuses client certificates whose EKU is not exactly clientAuth', async () => {
    for (const eku of ['none', 'clientAuth+serverAuth'] as const) {
      const client = await clientFor(pki, talos, ['os:admin'], { eku });
      const res = await snapshot(client);
      assert.equal(res.code, grpc.status.UNAUTHENTICATED, `eku ${eku}: ${res.details}`);
      assert.match(res.details, /missing the client auth extended key usage/);
    }
    // serverAuth only: OpenSSL itself rejects the client certificate purpose during the handshake
    const serverOnly = await clientFor(pki, talos, ['os:admin'], { eku: 'serverAuth' });
    const res = await snapshot(serverOnly, undefined, 5_000);
    assert.equal(res.code, grpc.status.UNAVAILABLE, res.details);
    assert.equal(res.messages.length, 0);
  });

  it('a client trusting a different CA refuses the server (and the server refuses a foreign client cert)', async () => {
    const foreign = await createTalosPki();
    const distrusting = await clientFor(pki, talos, ['os:admin'], {}, foreign.caPem);
    const res = await snapshot(distrusting, undefined, 5_000);
    assert.equal(res.code, grpc.status.UNAVAILABLE);
    assert.match(res.details, /certificate/);
    assert.equal(res.messages.length, 0);

    const foreignClient = await clientFor(foreign, talos, ['os:admin'], {}, pki.caPem);
    const res2 = await snapshot(foreignClient, undefined, 5_000);
    assert.equal(res2.code, grpc.status.UNAVAILABLE);
    assert.equal(res2.messages.length, 0);
  });

  describe('faults', () => {
    let full: Buffer;
    before(async () => {
      full = await etcdA.snapshot();
    });
    after(() => talos.setFault(undefined));

    it('truncate: status OK but fewer bytes (a prefix)', async () => {
      talos.setFault({ kind: 'truncate', afterBytes: 10_000, times: 1 });
      const res = await snapshot(backup);
      assert.equal(res.code, grpc.status.OK);
      assert.equal(res.body.length, 10_000);
      assert.ok(res.body.equals(full.subarray(0, 10_000)));
      assert.notEqual(res.body.length % 512, 32);
      // times: 1 → the next call is whole again
      const next = await snapshot(backup);
      assert.ok(next.body.equals(full));
    });

    it('corrupt: same length, one bit flipped, the sha256 trailer no longer matches', async () => {
      talos.setFault({ kind: 'corrupt', atByte: 5_000 });
      const res = await snapshot(backup);
      talos.setFault(undefined);
      assert.equal(res.code, grpc.status.OK);
      assert.equal(res.body.length, full.length);
      assert.equal(res.body[5_000], full[5_000]! ^ 0x01);
      assert.ok(
        res.body.subarray(0, 5_000).equals(full.subarray(0, 5_000)) &&
          res.body.subarray(5_001).equals(full.subarray(5_001)),
      );
      assert.throws(() => assertEtcdSnapshot(res.body), /sha256/);
      await writeFile(join(dir, 'corrupt.db'), res.body);
    });

    it('break: UNAVAILABLE after some bytes', async () => {
      talos.setFault({ kind: 'break', afterBytes: 8_192, times: 1 });
      const res = await snapshot(backup);
      assert.equal(res.code, grpc.status.UNAVAILABLE);
      assert.equal(res.body.length, 8_192);
    });

    it('unavailable and unimplemented fail at once; times limits a fault to the first calls', async () => {
      const before = talos.calls;
      talos.setFault({ kind: 'unavailable', times: 2 });
      assert.equal((await snapshot(backup)).code, grpc.status.UNAVAILABLE);
      assert.equal((await snapshot(backup)).code, grpc.status.UNAVAILABLE);
      assert.equal((await snapshot(backup)).code, grpc.status.OK);
      assert.equal(talos.calls, before + 3);

      talos.setFault({ kind: 'unimplemented', times: 1 });
      const res = await snapshot(backup);
      assert.equal(res.code, grpc.status.UNIMPLEMENTED);
      assert.equal(res.details, 'etcd snapshot is only available on control plane nodes');
      assert.equal(res.messages.length, 0);

      talos.setFault({ kind: 'unavailable', methods: ['EtcdStatus'], times: 1 });
      await rejectsWith(unary(backup, 'EtcdStatus'), grpc.status.UNAVAILABLE);
      await unary(backup, 'EtcdStatus');
    });

    it('metadata-error: a Data message with metadata.error, status OK', async () => {
      talos.setFault({ kind: 'metadata-error', afterBytes: 4_096, times: 1 });
      const res = await snapshot(backup);
      assert.equal(res.code, grpc.status.OK);
      const bad = res.messages.filter((m) => m.metadata?.error);
      assert.equal(bad.length, 1);
      assert.equal(bad[0]!.metadata!.hostname, 'cp-1');
      assert.equal(bad[0]!.metadata!.status?.code, grpc.status.UNAVAILABLE);
      assert.equal(res.body.length, 4_096);
    });

    it('stall: forever until the client gives up; with ms it resumes', async () => {
      talos.setFault({ kind: 'stall', afterBytes: 2_048, times: 1 });
      const stuck = await snapshot(backup, undefined, 700);
      assert.equal(stuck.code, grpc.status.DEADLINE_EXCEEDED);
      assert.equal(stuck.body.length, 2_048);
      await talos.idle();
      assert.equal(talos.records.at(-1)!.code, grpc.status.CANCELLED);

      talos.setFault({ kind: 'stall', afterBytes: 2_048, ms: 300, times: 1 });
      const started = Date.now();
      const slow = await snapshot(backup);
      assert.ok(Date.now() - started >= 290);
      assert.ok(slow.body.equals(full));
    });
  });

  it('fast mode streams a Buffer or a list of them as one (also with faults); several doubles run at once, a stopped one is UNAVAILABLE', async () => {
    const db = randomBytes(3 * 1024 * 1024 + 4096);
    const trailer = createHash('sha256').update(db).digest();
    const source = Buffer.concat([db, trailer]);
    const fastA = await startTalosDouble({ pki, source, hostname: 'fast-a' });
    // B serves the same snapshot from segments (as the benchmark repeats a block for its largest sizes).
    const segments = [db.subarray(0, 2 * 1024 * 1024), db.subarray(2 * 1024 * 1024), trailer];
    const fastB = await startTalosDouble({ pki, source: segments, hostname: 'fast-b' });
    try {
      const clientA = await clientFor(pki, fastA, ['os:etcd:backup']);
      const clientB = await clientFor(pki, fastB, ['os:etcd:backup']);
      const started = Date.now();
      const res = await snapshot(clientA);
      const ms = Date.now() - started;
      assert.equal(res.code, grpc.status.OK);
      assert.ok(res.body.equals(source));
      assert.equal(res.messages.length, Math.ceil(source.length / CHUNK_SIZE));
      assert.ok(res.messages.every((m) => m.bytes.length <= CHUNK_SIZE && m.metadata === null));
      assertEtcdSnapshot(res.body);
      console.log(`fast mode: ${(source.length / 1048576).toFixed(1)} MiB in ${ms} ms over mTLS (client included)`);

      fastA.setFault({ kind: 'truncate', afterBytes: 1_000_000, times: 1 });
      assert.equal((await snapshot(clientA)).body.length, 1_000_000);

      // endpoint A down: a client dialling it fails with UNAVAILABLE (connection refused), B still serves
      await fastA.stop();
      const toDownA = await clientFor(pki, fastA, ['os:etcd:backup']);
      assert.equal((await snapshot(toDownA, undefined, 3_000)).code, grpc.status.UNAVAILABLE);
      const fromB = await snapshot(clientB);
      assert.ok(fromB.body.equals(source));
      assert.equal(fromB.messages.length, Math.ceil(source.length / CHUNK_SIZE));
      assert.deepEqual(fastB.servedBy, ['fast-b']);
    } finally {
      await Promise.all([fastA.stop(), fastB.stop()]);
    }
  });

  it('the ECDSA P-256 fallback PKI works end to end (EC PRIVATE KEY in the talosconfig)', async () => {
    const ec = await createTalosPki({ algorithm: 'ECDSA-P256' });
    const source = Buffer.concat([Buffer.alloc(4096, 1), createHash('sha256').update(Buffer.alloc(4096, 1)).digest()]);
    const double = await startTalosDouble({ pki: ec, source, hostname: 'ec' });
    try {
      const { certPem, keyPem } = await ec.clientCert(['os:etcd:backup']);
      const yamlText = talosconfigYaml({
        context: 'ec',
        endpoints: [double.endpoint],
        caPem: ec.caPem,
        certPem,
        keyPem,
      });
      const config = parse(yamlText) as { contexts: { ec: { key: string } } };
      assert.match(Buffer.from(config.contexts.ec.key, 'base64').toString(), /^-----BEGIN EC PRIVATE KEY-----/);
      const res = await snapshot(clientFromTalosconfig(yamlText));
      assert.equal(res.code, grpc.status.OK, res.details);
      assert.ok(res.body.equals(source));
    } finally {
      await double.stop();
    }
  });

  it('restoreSnapshot gives back the keys written with putMany; a corrupted snapshot is rejected', async () => {
    const restored = await restoreSnapshot(join(dir, 'good.db'));
    try {
      const sample = [...written].filter((_, i) => i % 40 === 0);
      for (const [key, value] of sample) assert.equal(await restored.get(key), value, key);
      assert.equal(await restored.get('b/000000'), undefined, 'keys of the other etcd are not there');
    } finally {
      await restored.stop();
    }
    await assert.rejects(restoreSnapshot(join(dir, 'corrupt.db')), (err: Error) => {
      assert.ok(err instanceof SnapshotRestoreError);
      assert.match(err.message, /expected sha256/);
      return true;
    });
  });
});
