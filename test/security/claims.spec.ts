import { createSecretKey, randomBytes, randomUUID } from 'node:crypto';
import type { LoggerService } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  EncryptedSessionModule,
  EncryptedSessionService,
  EnvKeyProvider,
  IntegrityError,
  InvalidArgumentError,
  KeyRing,
} from '../../src/index.js';
import { deriveSubkey, unwrapDataKey } from '../../src/crypto/index.js';
import { memoryHarness, userMessage, type SessionHarness } from '../support/session-harness.js';
import { createTestDatabase, sqlServerUp } from '../support/sql-server-support.js';
import { newRootKeyEntry } from '../support/test-keys.js';

/**
 * README claims that no backend-specific suite shows: the subject check on open(), zeroing of
 * cached data keys on clear and shutdown, the per-key item limit, and the database URL kept out
 * of log lines. (docs/security-claims.md maps every claim to its test.)
 */
const envKeys = () => ({ env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } });

describe('README security claims (module level)', () => {
  let harness: SessionHarness;
  beforeEach(async () => {
    harness = await memoryHarness();
  });
  afterEach(async () => {
    await harness.close();
  });

  it('refuses to open an existing session under another subjectId, changing nothing', async () => {
    const first = await harness.service.open('chat', { subjectId: 'patient-1' });
    await first.addItems([userMessage('mine')]);
    await expect(harness.service.open('chat', { subjectId: 'patient-2' })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(await first.getItems()).toEqual([userMessage('mine')]);
  });

  it('zeroes the cached data key of a session when it is cleared', async () => {
    const session = await harness.service.open('chat');
    await session.addItems([userMessage('one')]);
    const cached = await harness.keyRing.keyForWrite(
      { tenantId: 'default', sessionId: 'chat' },
      null,
    );
    expect(cached.key.equals(Buffer.alloc(32))).toBe(false);
    await session.clearSession();
    expect(cached.revoked).toBe(true);
    expect(cached.key.equals(Buffer.alloc(32))).toBe(true);
  });
});

describe('README security claims (module lifecycle)', () => {
  it('zeroes every cached data key on shutdown', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [EncryptedSessionModule.forRoot({ keys: envKeys(), storage: { type: 'memory' } })],
    }).compile();
    await moduleRef.init();
    const session = await moduleRef.get(EncryptedSessionService).open('chat');
    await session.addItems([userMessage('one')]);
    const cached = await moduleRef
      .get(KeyRing)
      .keyForWrite({ tenantId: 'default', sessionId: 'chat' }, null);
    expect(cached.key.equals(Buffer.alloc(32))).toBe(false);
    await moduleRef.close();
    expect(cached.key.equals(Buffer.alloc(32))).toBe(true);
  });

  it('seals at most 2^28 items under one data key by default', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [EncryptedSessionModule.forRoot({ keys: envKeys(), storage: { type: 'memory' } })],
    }).compile();
    await moduleRef.init();
    try {
      expect(moduleRef.get(KeyRing).maxItemsPerDataKey).toBe(2 ** 28);
    } finally {
      await moduleRef.close();
    }
  });
});

/** Collects every log line of every Nest logger while installed. */
class CapturingLogger implements LoggerService {
  readonly lines: string[] = [];
  log = (message: unknown) => void this.lines.push(String(message));
  warn = (message: unknown) => void this.lines.push(String(message));
  error = (message: unknown) => void this.lines.push(String(message));
  debug = (message: unknown) => void this.lines.push(String(message));
  verbose = (message: unknown) => void this.lines.push(String(message));
  fatal = (message: unknown) => void this.lines.push(String(message));
}

const postgresUp = await sqlServerUp('postgres');

describe.skipIf(!postgresUp)('README: storage.url is never logged', () => {
  it('logs the host of a postgres URL, never its password', async () => {
    const database = await createTestDatabase('postgres');
    const password = `canary-pw-${randomUUID()}`;
    // Trust authentication on the test server: the password is sent nowhere, only configured.
    const url = new URL(database.url);
    url.username = 'postgres';
    url.password = password;
    const capture = new CapturingLogger();
    try {
      const moduleRef = await Test.createTestingModule({
        imports: [
          EncryptedSessionModule.forRoot({
            keys: envKeys(),
            storage: { type: 'postgres', url: url.toString() },
          }),
        ],
      })
        .setLogger(capture)
        .compile();
      await moduleRef.init();
      const session = await moduleRef.get(EncryptedSessionService).open('chat');
      await session.addItems([userMessage('one')]);
      await moduleRef.close();
    } finally {
      await database.drop();
    }
    const text = capture.lines.join('\n');
    expect(text).toContain('Storing sessions in postgres at 127.0.0.1');
    expect(text).not.toContain(password);
  });
});

describe('README: data keys are wrapped under an HKDF subkey of the root key', () => {
  it('an env-wrapped data key opens with the dek-wrap subkey and not with the root key itself', async () => {
    const rootKey = randomBytes(32);
    const provider = new EnvKeyProvider({
      keys: `k1:${rootKey.toString('base64')}`,
      activeKeyId: 'k1',
    });
    const context = { tenantId: 't', sessionId: 's', dekId: randomUUID() };
    const { plaintext, wrapped } = await provider.generateDataKey(context);
    // The context entries as docs/envelope-format.md section 3 names them.
    const wrapContext = { tenant: 't', session: 's', dek: context.dekId };
    const subkey = deriveSubkey(rootKey, 'dek-wrap');
    expect(unwrapDataKey(subkey, wrapped.wrappedKey, wrapContext).equals(plaintext)).toBe(true);
    expect(() => unwrapDataKey(createSecretKey(rootKey), wrapped.wrappedKey, wrapContext)).toThrow(
      IntegrityError,
    );
  });
});
