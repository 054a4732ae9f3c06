import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import createVault from 'node-vault';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { auditChainOf, type AuditEvent } from '../../src/audit/index.js';
import {
  EncryptedSessionJobs,
  EncryptedSessionModule,
  EncryptedSessionService,
  KekRotationService,
  runAs,
  type KeysOptions,
  type SessionStorage,
} from '../../src/index.js';
import { SESSION_STORAGE } from '../../src/storage/storage.ports.js';
import { KmsTestServer } from '../support/kms-test-server.js';
import { VaultTestServer } from '../support/vault-test-server.js';

/*
 * The root key rewrap job (EncryptedSessionJobs.rewrapRootKeys, as the scheduler runs it, under
 * its lease) after the provider's active root key changed: AWS KMS another key id (the host's
 * options, then a restart), Vault transit a new key version (an operator's rotate, no restart).
 * Each time every data key moves, the sessions still read, and the trail counts the batches.
 */

const TENANT = 'clinic';
const SESSIONS = 5;
const actor = { type: 'service' as const, id: 'rewrap-test', tenantId: TENANT };

/** The tenant's `key.rewrap.batch` counts and `key.rewrap.run` events on its control chain. */
async function rewrapEvents(app: TestingModule) {
  const storage = app.get<symbol, SessionStorage>(SESSION_STORAGE, { strict: false });
  const records = await storage.audit!.readChain(auditChainOf({ tenantId: TENANT }), 0, 1000);
  const events = records.map((record) => JSON.parse(record.body) as AuditEvent);
  return {
    batched: events
      .filter((event) => event.action === 'key.rewrap.batch')
      .reduce((sum, event) => sum + (event.target.count ?? 0), 0),
    runs: events.filter((event) => event.action === 'key.rewrap.run'),
  };
}

describe('the root key rewrap job after the active root key changed', () => {
  let directory: string;
  let apps: TestingModule[] = [];

  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), 'nes-kek-job-'));
  });
  afterEach(async () => {
    for (const app of apps) await app.close();
    apps = [];
    rmSync(directory, { recursive: true, force: true });
  });

  /** The module on the test's SQLite file with `keys`, the rewrap job in small batches. */
  async function boot(keys: KeysOptions): Promise<TestingModule> {
    const app = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys,
          storage: { type: 'sqlite', path: join(directory, 'sessions.sqlite') },
          jobs: { kekRewrap: { batchSize: 2 } },
        }),
      ],
    }).compile();
    await app.init();
    apps.push(app);
    return app;
  }

  const sessionIds = Array.from({ length: SESSIONS }, (_, index) => `s-${index}`);

  async function writeSessions(app: TestingModule): Promise<void> {
    await runAs(actor, async () => {
      for (const sessionId of sessionIds) {
        const session = await app.get(EncryptedSessionService).open(sessionId, {
          tenantId: TENANT,
        });
        await session.addItems([{ role: 'user', content: `${sessionId} before the rotation` }]);
      }
    });
  }

  async function expectSessionsRead(app: TestingModule): Promise<void> {
    await runAs(actor, async () => {
      for (const sessionId of sessionIds) {
        const session = await app.get(EncryptedSessionService).open(sessionId, {
          tenantId: TENANT,
        });
        expect(await session.getItems()).toEqual([
          { role: 'user', content: `${sessionId} before the rotation` },
        ]);
      }
    });
  }

  /** Runs the job and checks every data key moved to `activeKekId`, audited per batch. */
  async function rewrapAndCheck(app: TestingModule, oldKekId: string): Promise<void> {
    const rotation = app.get(KekRotationService);
    const before = await rotation.status();
    expect(before.activeKekId).not.toBe(oldKekId);
    // The sessions' keys and the trail's own MAC key, all still under the old root key.
    expect(before.dataKeysByKek[oldKekId]).toBe(SESSIONS + 1);
    expect(before.remaining).toBe(SESSIONS + 1);

    const run = await app.get(EncryptedSessionJobs).rewrapRootKeys();
    expect(run).toMatchObject({
      job: 'nest-encrypted-sessions:kek-rewrap',
      outcome: 'done',
      result: { rewrapped: SESSIONS + 1, failed: 0, remaining: 0 },
    });
    expect(await rotation.status()).toEqual({
      activeKekId: before.activeKekId,
      dataKeysByKek: { [before.activeKekId]: SESSIONS + 1 },
      remaining: 0,
    });
    await expectSessionsRead(app);
    // Batches of two over the tenant's five keys; the trail's own key is nobody's event.
    const { batched, runs } = await rewrapEvents(app);
    expect(batched).toBe(SESSIONS);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({
      target: { count: SESSIONS },
      keys: { kekIds: [before.activeKekId] },
    });
  }

  it('AWS KMS: the host names another key id and restarts; the job moves every data key to it', async () => {
    const server = new KmsTestServer();
    const { endpoint } = await server.start();
    try {
      const credentials = {
        accessKeyId: `AKIA${randomUUID().slice(0, 12)}`,
        secretAccessKey: randomBytes(30).toString('base64'),
      };
      const kms = (keyId: string): KeysOptions => ({
        awsKms: { keyId, region: server.region, endpoint, credentials },
      });
      const [oldKey, newKey] = [server.createKey(), server.createKey()];
      const first = await boot(kms(oldKey.arn));
      await writeSessions(first);
      const oldKekId = (await first.get(KekRotationService).status()).activeKekId;
      await first.close();
      apps = [];

      const second = await boot(kms(newKey.arn));
      await rewrapAndCheck(second, oldKekId);
      expect((await second.get(KekRotationService).status()).activeKekId).toContain(newKey.arn);
    } finally {
      await server.stop();
    }
  });

  it('Vault transit: an operator rotates the key; the running app moves every data key to the new version', async () => {
    const server = await VaultTestServer.start();
    try {
      server.createTransitKey('sessions');
      const app = await boot({
        vaultTransit: {
          endpoint: server.endpoint,
          auth: { method: 'token', token: server.createToken() },
          keyName: 'sessions',
        },
      });
      await writeSessions(app);
      const oldKekId = (await app.get(KekRotationService).status()).activeKekId;
      expect(oldKekId).toMatch(/:v1$/);

      const admin = createVault({ endpoint: server.endpoint, token: server.rootToken });
      await admin.write('transit/keys/sessions/rotate', {});

      // No restart: the job reads the key's latest version before it looks for keys to move.
      await rewrapAndCheck(app, oldKekId);
      const moved = await app.get(KekRotationService).status();
      expect(moved.activeKekId).toMatch(/:v2$/);
      // Vault down: the status still answers, against the version last read.
      await server.down();
      expect(await app.get(KekRotationService).status()).toEqual(moved);
    } finally {
      await server.close();
    }
  });
});
