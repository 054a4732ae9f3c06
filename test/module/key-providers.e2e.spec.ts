import { randomBytes, randomUUID } from 'node:crypto';
import { ConsoleLogger } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  EncryptedSessionModule,
  EncryptedSessionService,
  KekRotationService,
  KeyRing,
  type KeysOptions,
} from '../../src/index.js';
import { findSecret } from '../support/file-scan.js';
import { KmsTestServer } from '../support/kms-test-server.js';
import { VaultTestServer } from '../support/vault-test-server.js';

/** Collects every line the module logs, at every level. */
class CollectingLogger extends ConsoleLogger {
  readonly lines: string[] = [];
  constructor() {
    super('test', { logLevels: ['log', 'error', 'warn', 'debug', 'verbose'] });
  }
  protected override printMessages(messages: unknown[], context = '', logLevel = 'log'): void {
    this.lines.push(`${logLevel} ${context} ${messages.map(String).join(' ')}`);
  }
}

interface ProviderSetup {
  readonly keys: KeysOptions;
  /** Tokens, secret keys and root key material that must never be logged. */
  readonly secrets: string[];
  stop(): Promise<void>;
}

async function kmsSetup(): Promise<ProviderSetup> {
  const server = new KmsTestServer();
  const { endpoint } = await server.start();
  const key = server.createKey();
  const secretAccessKey = randomBytes(30).toString('base64');
  return {
    keys: {
      awsKms: {
        keyId: key.arn,
        region: server.region,
        endpoint,
        credentials: { accessKeyId: `AKIA${randomUUID().slice(0, 12)}`, secretAccessKey },
      },
    },
    secrets: [secretAccessKey, ...server.keyMaterials()],
    stop: () => server.stop(),
  };
}

async function vaultTransitSetup(): Promise<ProviderSetup> {
  const server = await VaultTestServer.start();
  server.createTransitKey('sessions');
  const token = server.createToken();
  return {
    keys: {
      vaultTransit: {
        endpoint: server.endpoint,
        auth: { method: 'token', token },
        keyName: 'sessions',
      },
    },
    secrets: [token, server.rootToken],
    stop: () => server.close(),
  };
}

describe.each([
  ['awsKms', kmsSetup],
  ['vaultTransit', vaultTransitSetup],
])('EncryptedSessionModule with keys.%s', (_, setup) => {
  let moduleRef: TestingModule | undefined;
  let provider: ProviderSetup | undefined;

  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    await provider?.stop();
  });

  it('stores and reads sessions, rewraps, and never logs a token or key', async () => {
    provider = await setup();
    const logger = new CollectingLogger();
    moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({ keys: provider.keys, storage: { type: 'memory' } }),
      ],
    })
      .setLogger(logger)
      .compile();
    moduleRef.useLogger(logger);
    await moduleRef.init();

    const sessions = moduleRef.get(EncryptedSessionService);
    const session = await sessions.open(`s-${randomUUID()}`);
    await session.addItems([{ role: 'user', content: 'hello through the provider' }]);
    // Cold read: forget every cached key, so the provider unwraps over the wire.
    moduleRef.get(KeyRing).clear();
    expect(await session.getItems()).toEqual([
      { role: 'user', content: 'hello through the provider' },
    ]);
    const status = await moduleRef.get(KekRotationService).status();
    expect(status.remaining).toBe(0);

    const logged = logger.lines.join('\n');
    expect(logged).toContain('Key provider');
    for (const secret of provider.secrets) expect(findSecret(logged, secret)).toEqual([]);
  });
});
