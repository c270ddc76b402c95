import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packageVersion } from '../../src/api/crds.js';
import { ConfigError, DEFAULTS, parseServerConfig } from '../../src/server/config.js';

describe('parseServerConfig', () => {
  it('uses the defaults with an empty environment', () => {
    assert.deepEqual(parseServerConfig({}), DEFAULTS);
    assert.equal(DEFAULTS.host, '0.0.0.0');
    assert.equal(DEFAULTS.port, 8080);
    assert.ok(DEFAULTS.bodyLimit > 1024 * 1024, "above Fastify's 1 MiB default");
    assert.ok(DEFAULTS.keepAliveTimeoutMs > 90_000, "longer than Go's idle connection timeout");
    assert.ok(DEFAULTS.requestTimeoutMs < 10_000, "shorter than Metacontroller's default hook timeout");
    assert.ok(DEFAULTS.shutdownDelayMs > 0, 'serves on after SIGTERM while the endpoint is removed');
  });

  it('reads every variable', () => {
    const env = {
      HOST: '127.0.0.1',
      PORT: '9000',
      LOG_LEVEL: 'debug',
      BODY_LIMIT_BYTES: '2048',
      KEEP_ALIVE_TIMEOUT_SECONDS: '30',
      REQUEST_TIMEOUT_SECONDS: '3',
      SHUTDOWN_DELAY_SECONDS: '0',
      JOB_IMAGE: 'registry.example/talos-etcd-backup:1.2.3',
      JOB_IMAGE_PULL_POLICY: 'Always',
      JOB_IMAGE_PULL_SECRETS: 'regcred, other',
      ATTACHMENT_DEADLINE_SECONDS: '120',
      TALOS_OPERATOR: 'false',
      METRICS_EXPIRY_SECONDS: '1800',
    };
    assert.deepEqual(parseServerConfig(env), {
      host: '127.0.0.1',
      port: 9000,
      logLevel: 'debug',
      bodyLimit: 2048,
      keepAliveTimeoutMs: 30_000,
      requestTimeoutMs: 3_000,
      shutdownDelayMs: 0,
      jobImage: {
        image: 'registry.example/talos-etcd-backup:1.2.3',
        pullPolicy: 'Always',
        pullSecrets: ['regcred', 'other'],
      },
      backupHooks: { attachmentDeadlineSeconds: 120, talosOperator: false },
      metricsExpirySeconds: 1800,
    });
  });

  it("keeps a schedule's series 900 s by default, and refuses an expiry shorter than a minute", () => {
    assert.equal(parseServerConfig({}).metricsExpirySeconds, 900);
    assert.throws(() => parseServerConfig({ METRICS_EXPIRY_SECONDS: '30' }), {
      message: 'invalid configuration: METRICS_EXPIRY_SECONDS must be an integer from 60 to 86400, got "30"',
    });
  });

  it('defaults the backup hooks to a 600 s deadline with talos-operator, and refuses what they cannot use', () => {
    assert.deepEqual(parseServerConfig({}).backupHooks, { attachmentDeadlineSeconds: 600, talosOperator: true });
    assert.throws(() => parseServerConfig({ ATTACHMENT_DEADLINE_SECONDS: '5', TALOS_OPERATOR: 'auto' }), {
      message:
        'invalid configuration: ATTACHMENT_DEADLINE_SECONDS must be an integer from 30 to 86400, got "5"; TALOS_OPERATOR must be true or false, got "auto"',
    });
  });

  it('defaults the Job image to this version, pulled IfNotPresent, without pull secrets', () => {
    assert.deepEqual(parseServerConfig({}).jobImage, {
      image: `talos-etcd-backup:${packageVersion()}`,
      pullPolicy: 'IfNotPresent',
      pullSecrets: [],
    });
  });

  it('lists every problem at once', () => {
    assert.throws(
      () =>
        parseServerConfig({
          PORT: '70000',
          BODY_LIMIT_BYTES: '1.5',
          LOG_LEVEL: 'verbose',
          JOB_IMAGE_PULL_POLICY: 'Sometimes',
          JOB_IMAGE: 'a b',
          REQUEST_TIMEOUT_SECONDS: '0',
          SHUTDOWN_DELAY_SECONDS: '-1',
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /PORT must be an integer from 0 to 65535, got "70000"/);
        assert.match(error.message, /BODY_LIMIT_BYTES must be an integer/);
        assert.match(error.message, /LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent/);
        assert.match(
          error.message,
          /JOB_IMAGE_PULL_POLICY must be one of Always, IfNotPresent, Never, got "Sometimes"/,
        );
        assert.match(error.message, /JOB_IMAGE must be an image reference without spaces/);
        assert.match(error.message, /REQUEST_TIMEOUT_SECONDS must be an integer from 1 to 300, got "0"/);
        assert.match(error.message, /SHUTDOWN_DELAY_SECONDS must be an integer from 0 to 300, got "-1"/);
        return true;
      },
    );
  });
});
