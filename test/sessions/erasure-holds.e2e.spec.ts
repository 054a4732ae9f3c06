import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AuditActorRequiredError,
  AuditService,
  EncryptedSessionModule,
  EncryptedSessionService,
  IntegrityError,
  InvalidArgumentError,
  LegalHoldError,
  RetentionService,
  runAs,
  verifyErasureReceipt,
  type EncryptedSessionModuleOptions,
  type ErasureReceipt,
  type SessionStorage,
} from '../../src/index.js';
import { SESSION_STORAGE } from '../../src/storage/index.js';
import { openSqliteDataSource } from '../../src/storage/typeorm/sqlite-data-source.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { rejectionOf } from '../support/thrown-by.js';

/*
 * Erasure and legal holds through the module as a host boots it, on the embedded SQLite file
 * and in memory: a subject's sessions crypto-shredded with a signed receipt, a hold that
 * refuses erasure and makes the purge keep what it covers, an audited export of a held
 * session past its TTL, and a backup restored after an erasure erased again from the receipt.
 */

const CANARY = 'CANARY-erasure-51c9';
const k1 = newRootKeyEntry('k1');
const actor = { type: 'user' as const, id: 'dpo-1', tenantId: 'acme' };
const { privateKey, publicKey } = generateKeyPairSync('ed25519');

type StorageOptions = EncryptedSessionModuleOptions['storage'];

const backends: Array<[string, (directory: string) => StorageOptions]> = [
  ['sqlite', (directory) => ({ type: 'sqlite', path: join(directory, 'sessions.sqlite') })],
  ['memory', () => ({ type: 'memory' })],
];

/** Sessions of a subject (and one of another), each with `count` items. */
async function seed(
  service: EncryptedSessionService,
  sessions: Record<string, string>,
  count = 3,
  ttlSeconds: number | null = null,
): Promise<void> {
  await runAs(actor, async () => {
    for (const [sessionId, subjectId] of Object.entries(sessions)) {
      const session = await service.open(sessionId, { tenantId: 'acme', subjectId, ttlSeconds });
      await session.addItems(
        Array.from({ length: count }, (_, index) => ({
          role: 'user' as const,
          content: `${CANARY} ${sessionId} ${index}`,
        })),
      );
    }
  });
}

const read = (service: EncryptedSessionService, sessionId: string) =>
  runAs(actor, async () => (await service.open(sessionId, { tenantId: 'acme' })).getItems());

describe.each(backends)('erasure and legal holds on %s', (_backend, storageFor) => {
  let directory: string;
  let moduleRef: TestingModule | undefined;

  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), 'nes-erasure-'));
  });
  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    rmSync(directory, { recursive: true, force: true });
  });

  async function boot(
    options: Partial<EncryptedSessionModuleOptions> = {},
  ): Promise<TestingModule> {
    const ref = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: { env: { keys: k1, activeKeyId: 'k1' } },
          storage: storageFor(directory),
          audit: { requireActor: true, checkpoints: { privateKey, keyId: 'audit-2026' } },
          ...options,
        }),
      ],
    }).compile();
    moduleRef = ref;
    await ref.init();
    return ref;
  }

  it('erases every session of a subject and returns a receipt that verifies offline', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7', 's-2': 'patient-7', other: 'patient-8' });

    const receipt = await runAs(actor, () =>
      service.eraseSubject('patient-7', { tenantId: 'acme', reason: 'subject-request' }),
    );

    expect(receipt).toMatchObject({
      schema: 'nes.erasure.receipt/1',
      tenantId: 'acme',
      scope: 'subject',
      reason: 'subject-request',
      sessionIds: ['s-1', 's-2'],
      sessions: 2,
      keysDestroyed: 2,
      itemsDeleted: 6,
      actor: { type: 'user', id: 'dpo-1' },
      signingKeyId: 'audit-2026',
    });
    expect(receipt.subjectRef).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(JSON.stringify(receipt)).not.toContain('patient-7');
    expect(verifyErasureReceipt(receipt, publicKey)).toBe(true);
    expect(verifyErasureReceipt({ ...receipt, itemsDeleted: 5 }, publicKey)).toBe(false);
    expect(await read(service, 's-1')).toEqual([]);
    expect(await read(service, 'other')).toHaveLength(3);
  });

  it('records each session.erase and the subject.erase in the trail, and it verifies', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7' });
    const receipt = await runAs(actor, () =>
      service.eraseSubject('patient-7', { tenantId: 'acme', reason: 'consent-withdrawn' }),
    );
    const audit = ref.get(AuditService);
    const report = await audit.accessReport({
      tenantId: 'acme',
      sessionId: 's-1',
      from: 0,
      to: Date.now() + 1000,
    });
    const erase = report.events.find((event) => event.action === 'session.erase');
    expect(erase).toMatchObject({
      outcome: 'success',
      target: { sessionId: 's-1', recordId: receipt.receiptId, count: 1 },
      keys: { dekIds: receipt.dekIds },
    });
    expect((await runAs(actor, () => audit.verify({ tenantId: 'acme' }))).ok).toBe(true);
  });

  it('refuses an erasure with no actor before it touches anything', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7' });
    const error = await rejectionOf(() =>
      service.eraseSubject('patient-7', { tenantId: 'acme', reason: 'subject-request' }),
    );
    expect(error).toBeInstanceOf(AuditActorRequiredError);
    expect(await read(service, 's-1')).toHaveLength(3);
  });

  it('refuses a reason that is not one of the codes, naming them', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    const error = await rejectionOf(() =>
      runAs(actor, () =>
        service.eraseSubject('patient-7', {
          tenantId: 'acme',
          reason: 'because the patient asked' as never,
        }),
      ),
    );
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error.message).toContain('subject-request');
  });

  it('a hold on a subject refuses its erasure with LegalHoldError and nothing changes', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7', 's-2': 'patient-7' });
    const hold = await runAs(actor, () =>
      service.placeHold({ tenantId: 'acme', subjectId: 'patient-7', matterRef: 'case-2026-14' }),
    );

    const error = await rejectionOf(() =>
      runAs(actor, () => service.eraseSubject('patient-7', { tenantId: 'acme', reason: 'other' })),
    );
    expect(error).toBeInstanceOf(LegalHoldError);
    expect(error.message).toContain(hold.holdId);
    expect(error.message).not.toContain('patient-7');
    const sessionError = await rejectionOf(() =>
      runAs(actor, () => service.eraseSession('s-2', { tenantId: 'acme', reason: 'other' })),
    );
    expect(sessionError).toBeInstanceOf(LegalHoldError);
    expect(await read(service, 's-1')).toHaveLength(3);
    expect(await read(service, 's-2')).toHaveLength(3);

    await runAs(actor, () => service.releaseHold(hold.holdId));
    const receipt = await runAs(actor, () =>
      service.eraseSubject('patient-7', { tenantId: 'acme', reason: 'other' }),
    );
    expect(receipt.sessions).toBe(2);
  });

  it('a hold on one session covers it only; placing and releasing are audited', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7', 's-2': 'patient-8' });
    const hold = await runAs(actor, () =>
      service.placeHold({ tenantId: 'acme', sessionId: 's-1', matterRef: 'case-9' }),
    );
    expect(hold).toMatchObject({ sessionId: 's-1', subjectId: null, placedBy: 'dpo-1' });
    await runAs(actor, () => service.eraseSession('s-2', { tenantId: 'acme', reason: 'other' }));
    expect(await service.listHolds({ tenantId: 'acme' })).toEqual([hold]);

    const released = await runAs(actor, () => service.releaseHold(hold.holdId));
    expect(released).toMatchObject({ holdId: hold.holdId, releasedBy: 'dpo-1' });
    expect(released.releasedAt).toBeGreaterThanOrEqual(hold.placedAt);
    expect(await service.listHolds({ tenantId: 'acme' })).toEqual([]);
    expect(await service.listHolds({ tenantId: 'acme', includeReleased: true })).toEqual([
      released,
    ]);
    const report = await ref.get(AuditService).accessReport({
      tenantId: 'acme',
      sessionId: 's-1',
      from: 0,
      to: Date.now() + 1000,
    });
    const actions = report.events
      .filter((event) => event.target.recordId === hold.holdId)
      .map((event) => event.action);
    expect(actions).toEqual(['hold.apply', 'hold.release']);
  });

  it('refuses a hold with both targets, or neither, and an unknown hold id', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    for (const input of [
      { tenantId: 'acme', sessionId: 's', subjectId: 'p', matterRef: 'm' },
      { tenantId: 'acme', matterRef: 'm' },
    ]) {
      const error = await rejectionOf(() => runAs(actor, () => service.placeHold(input as never)));
      expect(error).toBeInstanceOf(InvalidArgumentError);
    }
    const unknown = await rejectionOf(() =>
      runAs(actor, () => service.releaseHold('01890000-0000-7000-8000-000000000000')),
    );
    expect(unknown).toBeInstanceOf(InvalidArgumentError);
  });

  it('the purge keeps expired items of a held session, counts them, and deletes the others', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { held: 'patient-7', free: 'patient-8' }, 2, 1);
    await runAs(actor, () =>
      service.placeHold({ tenantId: 'acme', subjectId: 'patient-7', matterRef: 'case-3' }),
    );
    await sleep(1100);

    const report = await ref.get(RetentionService).purgeExpired();
    expect(report.result).toMatchObject({ scanned: 4, purged: 2, skippedForHold: 2 });

    const lines: string[] = [];
    const [hold] = await service.listHolds({ tenantId: 'acme' });
    for await (const line of runAs(actor, () => service.exportHold(hold.holdId))) {
      lines.push(line);
    }
    const exported = lines.map((line) => JSON.parse(line));
    expect(exported).toHaveLength(2);
    expect(exported[0]).toMatchObject({
      holdId: hold.holdId,
      matterRef: 'case-3',
      sessionId: 'held',
      seq: 1,
      item: { role: 'user', content: `${CANARY} held 0` },
    });
    expect(exported[0].expiresAt).toBeLessThan(Date.now());
    const report2 = await ref.get(AuditService).accessReport({
      tenantId: 'acme',
      sessionId: 'held',
      from: 0,
      to: Date.now() + 1000,
    });
    expect(report2.events.map((event) => event.action)).toContain('hold.export');
  });

  it("a row flagged legal_hold by the host's own tooling is held as well", async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    const storage = ref.get<SessionStorage>(SESSION_STORAGE);
    const session = { tenantId: 'acme', sessionId: 'flagged' };
    await storage.transaction(session, (scope) =>
      scope.session.insertIfAbsent({
        ...session,
        subjectId: 'patient-7',
        createdAt: Date.now(),
        lastActivityAt: Date.now(),
        nextSeq: 1,
        itemTtlSeconds: null,
        legalHold: true,
      }),
    );
    await seed(service, { flagged: 'patient-7' });
    for (const erase of [
      () => service.eraseSession('flagged', { tenantId: 'acme', reason: 'other' }),
      () => service.eraseSubject('patient-7', { tenantId: 'acme', reason: 'other' }),
    ]) {
      expect(await rejectionOf(() => runAs(actor, erase))).toBeInstanceOf(LegalHoldError);
    }
    expect(await read(service, 'flagged')).toHaveLength(3);
  });

  it('the purge shreds and deletes sessions idle past retention.sessionIdleDays, not held ones', async () => {
    const ref = await boot({ retention: { sessionIdleDays: 30 } });
    const service = ref.get(EncryptedSessionService);
    const storage = ref.get<SessionStorage>(SESSION_STORAGE);
    // 31 days without activity: seeded with the clock set back (only Date is faked).
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() - 31 * 86_400_000);
      await seed(service, { old: 'patient-1', 'old-held': 'patient-2' });
      await runAs(actor, () =>
        service.placeHold({ tenantId: 'acme', sessionId: 'old-held', matterRef: 'case-5' }),
      );
    } finally {
      vi.useRealTimers();
    }
    await seed(service, { recent: 'patient-3' });

    const report = await ref.get(RetentionService).purgeExpired();

    expect(report.result).toMatchObject({ idleSessionsPurged: 1, idleSessionsHeld: 1 });
    const rows = await storage.read({ tenantId: 'acme', sessionId: 'old' }, async (scope) => ({
      session: await scope.session.find(),
      keys: await scope.dataKeys.listAll!(),
    }));
    expect(rows).toEqual({ session: undefined, keys: [] });
    expect(await read(service, 'old-held')).toHaveLength(3);
    expect(await read(service, 'recent')).toHaveLength(3);
    const trail = await ref.get(AuditService).accessReport({
      tenantId: 'acme',
      sessionId: 'old',
      from: 0,
      to: Date.now() + 1000,
    });
    expect(trail.events.at(-1)).toMatchObject({
      action: 'retention.purge.batch',
      target: { sessionId: 'old', count: 3 },
    });
  });

  it("placing and releasing a hold leave the idle clock at the session's last activity", async () => {
    const ref = await boot({ retention: { sessionIdleDays: 30 } });
    const service = ref.get(EncryptedSessionService);
    const storage = ref.get<SessionStorage>(SESSION_STORAGE);
    const idle = { tenantId: 'acme', sessionId: 'idle' };
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() - 31 * 86_400_000);
      await seed(service, { idle: 'patient-4' });
    } finally {
      vi.useRealTimers();
    }
    const lastActivity = () =>
      storage.read(idle, async (scope) => (await scope.session.find())?.lastActivityAt);
    const seeded = await lastActivity();

    const hold = await runAs(actor, () => service.placeHold({ ...idle, matterRef: 'case-6' }));
    expect(await lastActivity()).toBe(seeded);
    await runAs(actor, () => service.releaseHold(hold.holdId));

    const report = await ref.get(RetentionService).purgeExpired();
    expect(report.result).toMatchObject({ idleSessionsPurged: 1, idleSessionsHeld: 0 });
  });

  it('erases one session; reading it after gives nothing, and its keys are destroyed', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7' });
    const session = await runAs(actor, () => service.open('s-1', { tenantId: 'acme' }));
    const receipt = await runAs(actor, () =>
      service.eraseSession('s-1', { tenantId: 'acme', reason: 'retention-policy' }),
    );
    expect(receipt).toMatchObject({ scope: 'session', sessions: 1, keysDestroyed: 1 });
    expect(await runAs(actor, () => session.getItems())).toEqual([]);
    // A write after the erasure starts afresh under a new key; the old one stays destroyed.
    await runAs(actor, () => session.addItems([{ role: 'user', content: 'after' }]));
    expect(await runAs(actor, () => session.getItems())).toEqual([
      { role: 'user', content: 'after' },
    ]);
    expect(receipt.dekIds).toHaveLength(1);
  });
});
describe('erasure and holds on the SQLite file, seen in its rows', () => {
  let directory: string;
  let moduleRef: TestingModule | undefined;
  const storageFor = backends[0][1];

  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), 'nes-erasure-'));
  });
  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    rmSync(directory, { recursive: true, force: true });
  });

  async function boot(): Promise<TestingModule> {
    const ref = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: { env: { keys: k1, activeKeyId: 'k1' } },
          storage: storageFor(directory),
          audit: { requireActor: true, checkpoints: { privateKey, keyId: 'audit-2026' } },
        }),
      ],
    }).compile();
    moduleRef = ref;
    await ref.init();
    return ref;
  }

  /** A statement on a second connection to the file: what the module does not show. */
  async function sql<T = Record<string, unknown>>(statement: string): Promise<T[]> {
    const raw = await openSqliteDataSource({ path: join(directory, 'sessions.sqlite') });
    try {
      return await raw.query<T[]>(statement);
    } finally {
      await raw.destroy();
    }
  }

  /** Makes the audit store refuse events of `action`: a real write failure, no mock. */
  const refuseAuditOf = (action: string) =>
    sql(
      `CREATE TRIGGER "refuse_${action.replace('.', '_')}" BEFORE INSERT ON "nes_audit_records" WHEN NEW."action" = '${action}' BEGIN SELECT RAISE(ABORT, 'audit store refuses writes'); END`,
    );

  it("an erasure leaves the subject's id in no row and no audit record", async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    const subjectId = 'CANARY-subject-9d41';
    await seed(service, { 's-1': subjectId, 's-2': subjectId });
    await runAs(actor, () =>
      service.eraseSubject(subjectId, { tenantId: 'acme', reason: 'other' }),
    );
    for (const table of [
      'nes_sessions',
      'nes_data_keys',
      'nes_audit_records',
      'nes_erasure_ledger',
    ]) {
      const rows = await sql(`SELECT * FROM "${table}"`);
      expect(rows.length, table).toBeGreaterThan(0);
      expect(JSON.stringify(rows), table).not.toContain(subjectId);
    }
  });

  it("erases a subject's sessions in one transaction: a failure at its last write erases none", async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7', 's-2': 'patient-7' });
    // The subject.erase event is the unit's last audit write: refuse it.
    await refuseAuditOf('subject.erase');
    await rejectionOf(() =>
      runAs(actor, () => service.eraseSubject('patient-7', { tenantId: 'acme', reason: 'other' })),
    );
    expect(await read(service, 's-1')).toHaveLength(3);
    expect(await read(service, 's-2')).toHaveLength(3);
    expect(await sql('SELECT * FROM "nes_erasure_ledger"')).toEqual([]);
  });

  it('a hold whose hold.apply event cannot be written is not left in force', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7' });
    await refuseAuditOf('hold.apply');
    const error = await rejectionOf(() =>
      runAs(actor, () =>
        service.placeHold({ tenantId: 'acme', sessionId: 's-1', matterRef: 'case-1' }),
      ),
    );
    expect(error.message).not.toContain('patient-7');
    expect(await service.listHolds({ tenantId: 'acme' })).toEqual([]);
    await runAs(actor, () => service.eraseSession('s-1', { tenantId: 'acme', reason: 'other' }));
  });

  it('a release whose hold.release event cannot be written leaves the hold in force', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7' });
    const hold = await runAs(actor, () =>
      service.placeHold({ tenantId: 'acme', sessionId: 's-1', matterRef: 'case-1' }),
    );
    await refuseAuditOf('hold.release');
    await rejectionOf(() => runAs(actor, () => service.releaseHold(hold.holdId)));
    expect(await service.listHolds({ tenantId: 'acme' })).toEqual([hold]);
    const refused = await rejectionOf(() =>
      runAs(actor, () => service.eraseSession('s-1', { tenantId: 'acme', reason: 'other' })),
    );
    expect(refused).toBeInstanceOf(LegalHoldError);
  });

  it('the matter reference stays in the holds table, never in the audit trail', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7' });
    const matterRef = 'CANARY-matter-6b2e';
    const hold = await runAs(actor, () =>
      service.placeHold({ tenantId: 'acme', subjectId: 'patient-7', matterRef }),
    );
    await runAs(actor, () => service.releaseHold(hold.holdId));
    expect(JSON.stringify(await sql('SELECT * FROM "nes_audit_records"'))).not.toContain(matterRef);
    expect(JSON.stringify(await sql('SELECT * FROM "nes_legal_holds"'))).toContain(matterRef);
  });

  it('after a backup restore, replaying the receipts erases the subject again', async () => {
    const databasePath = join(directory, 'sessions.sqlite');
    const backupPath = join(directory, 'backup.sqlite');
    let ref = await boot();
    let service = ref.get(EncryptedSessionService);
    await seed(service, { 's-1': 'patient-7', 's-2': 'patient-7', other: 'patient-8' });
    await ref.close();
    moduleRef = undefined;
    copyFileSync(databasePath, backupPath);

    ref = await boot();
    service = ref.get(EncryptedSessionService);
    const receipt: ErasureReceipt = await runAs(actor, () =>
      service.eraseSubject('patient-7', { tenantId: 'acme', reason: 'subject-request' }),
    );
    await ref.close();
    moduleRef = undefined;
    // The restore: the old file, with its old (empty) ledger, comes back.
    copyFileSync(backupPath, databasePath);
    rmSync(`${databasePath}-wal`, { force: true });
    rmSync(`${databasePath}-shm`, { force: true });

    ref = await boot();
    service = ref.get(EncryptedSessionService);
    expect(await read(service, 's-1')).toHaveLength(3);
    const replay = await runAs(actor, () =>
      service.replayErasureLedger({ receipts: [JSON.stringify(receipt)] }),
    );
    expect(replay).toMatchObject({ entries: 1, sessionsErased: 2, keysDestroyed: 2 });
    expect(await read(service, 's-1')).toEqual([]);
    expect(await read(service, 's-2')).toEqual([]);
    expect(await read(service, 'other')).toHaveLength(3);

    const forged = { ...receipt, sessionIds: ['other'] };
    const error = await rejectionOf(() =>
      runAs(actor, () => service.replayErasureLedger({ receipts: [forged] })),
    );
    expect(error).toBeInstanceOf(IntegrityError);
    expect(await read(service, 'other')).toHaveLength(3);
  });
});
