import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Test } from '@nestjs/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { checkpointSignatureHolds, type AuditCheckpoint } from '../../src/audit/index.js';
import {
  AuditService,
  ConfigurationError,
  EncryptedSessionModule,
  EncryptedSessionService,
  MemorySessionStorage,
  runAs,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';

/*
 * Checkpoints through the module: a signing key from the options, a copy of each checkpoint in
 * the winston file, the public key for auditors, and the timer that checkpoints every tenant
 * whose trail changed.
 */

const keys = { env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } };
const actor = { type: 'user' as const, id: 'nurse-17', tenantId: 'clinic' };

describe('audit checkpoints in the module', () => {
  const directory = mkdtempSync(join(tmpdir(), 'nes-checkpoints-'));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));
  const privateKey = generateKeyPairSync('ed25519')
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();

  it('signs with the configured key, copies each checkpoint to the winston file, and exports the public key', async () => {
    const file = join(directory, 'audit.jsonl');
    const moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys,
          storage: { type: 'memory' },
          audit: { winston: { file }, checkpoints: { privateKey, keyId: 'audit-2026' } },
        }),
      ],
    }).compile();
    await moduleRef.init();
    const audit = moduleRef.get(AuditService);
    const checkpoint = await runAs(actor, async () => {
      const session = await moduleRef
        .get(EncryptedSessionService)
        .open('visit', { tenantId: 'clinic' });
      await session.addItems([{ role: 'user', content: 'x' }]);
      return audit.checkpoint({ tenantId: 'clinic' });
    });
    const { keyId, pem } = audit.checkpointPublicKey()!;
    expect(keyId).toBe('audit-2026');
    expect(checkpoint.signingKeyId).toBe('audit-2026');
    expect(checkpointSignatureHolds(checkpoint, createPublicKey(pem))).toBe(true);
    expect(pem).not.toContain('PRIVATE');
    await moduleRef.close();

    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const copies = lines
      .map((line) => JSON.parse(line) as { schema: string })
      .filter((entry) => entry.schema === 'nes.audit.checkpoint/1') as AuditCheckpoint[];
    expect(copies).toEqual([checkpoint]);
  });

  it('checkpoints every tenant whose trail changed, on the timer', async () => {
    const storage = new MemorySessionStorage();
    const moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys,
          storage: { instance: storage },
          audit: { checkpoints: { privateKey, everySeconds: 1 } },
        }),
      ],
    }).compile();
    await moduleRef.init();
    await runAs(actor, async () => {
      for (const tenantId of ['clinic-a', 'clinic-b']) {
        const session = await moduleRef.get(EncryptedSessionService).open('visit', { tenantId });
        await session.addItems([{ role: 'user', content: 'x' }]);
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await moduleRef.close();
    for (const tenantId of ['clinic-a', 'clinic-b']) {
      expect(await storage.audit.latestCheckpoint!(tenantId)).toMatchObject({ tenantId, seq: 1 });
    }
  });

  it('refuses a signing key that is not Ed25519, without echoing it', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    for (const bad of [rsa, 'not a key: canary-5d1e']) {
      const error = await Test.createTestingModule({
        imports: [
          EncryptedSessionModule.forRoot({
            keys,
            storage: { type: 'memory' },
            audit: { checkpoints: { privateKey: bad } },
          }),
        ],
      })
        .compile()
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toMatch(/Ed25519 private key/);
      expect((error as Error).message).not.toContain(
        bad.length > 80 ? bad.slice(40, 80) : 'canary-5d1e',
      );
    }
  });

  it('refuses checkpoints with both keys, neither, or a timer without the private key', async () => {
    const pair = generateKeyPairSync('ed25519');
    const publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const cases: Array<
      [{ privateKey?: string; publicKey?: string; everySeconds?: number }, RegExp]
    > = [
      [
        { privateKey, publicKey: publicPem },
        /privateKey .* or publicKey .*, not both and not neither/,
      ],
      [{}, /not both and not neither/],
      [
        { publicKey: publicPem, everySeconds: 60 },
        /everySeconds takes checkpoints, which needs privateKey/,
      ],
    ];
    for (const [checkpoints, message] of cases) {
      const error = await Test.createTestingModule({
        imports: [
          EncryptedSessionModule.forRoot({
            keys,
            storage: { type: 'memory' },
            audit: { checkpoints },
          }),
        ],
      })
        .compile()
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toMatch(message);
    }
  });
});
