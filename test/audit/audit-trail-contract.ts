import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuditTrail,
  auditChainOf,
  chainPages,
  runAs,
  verifyChain,
  type AuditActor,
  type AuditEvent,
  type AuditReadsPolicy,
} from '../../src/audit/index.js';
import {
  AuditActorRequiredError,
  AuditService,
  EncryptedSessionService,
  KeyProviderUnavailableError,
  IntegrityError,
  InvalidArgumentError,
  type DataKeyContext,
  type KeyProvider,
  type WrappedDataKey,
} from '../../src/index.js';
import { KeyRingAuditKeys } from '../../src/module/key-ring-audit-keys.js';
import type { AuditStorage } from '../../src/storage/storage.ports.js';
import type { StoredAuditRecord } from '../../src/storage/storage.records.js';
import {
  assistantMessage,
  userMessage,
  type HarnessFactory,
  type SessionHarness,
} from '../support/session-harness.js';

/*
 * The audit trail at work on a backend: every session operation leaves exactly one event in the
 * session's chain, sealed in the operation's own unit of work; refused and failed attempts
 * leave theirs on their own; reads share commits; and the chain verifies with the keys the
 * module generated through its root key provider.
 */

const DAY_MS = 86_400_000;
const nurse: AuditActor = { type: 'user', id: 'nurse-17', tenantId: 'clinic' };
const SUBJECT = 'patient-canary-5e1f';

interface TrailUnderTest {
  readonly trail: AuditTrail;
  readonly service: EncryptedSessionService;
  readonly audit: AuditStorage;
  readonly keys: KeyRingAuditKeys;
  readonly published: AuditEvent[];
}

function trailOn(
  harness: SessionHarness,
  options: { requireActor?: boolean; reads?: AuditReadsPolicy } = {},
): TrailUnderTest {
  const keys = new KeyRingAuditKeys(harness.keyRing, DAY_MS);
  const trail = new AuditTrail(harness.storage.audit!, keys, {
    requireActor: options.requireActor ?? true,
    reads: options.reads ?? 'group-commit',
  });
  harness.keyRing.attachAuditTrail(trail);
  const published: AuditEvent[] = [];
  trail.onCommitted((events) => published.push(...events));
  return {
    trail,
    keys,
    audit: harness.storage.audit!,
    published,
    service: new EncryptedSessionService(harness.storage, harness.keyRing, undefined, trail),
  };
}

/** Every stored record of the session's chain. */
async function chainOf(audit: AuditStorage, tenantId: string, sessionId: string) {
  const records: StoredAuditRecord[] = [];
  for (let after = 0; ;) {
    const page = await audit.readChain(auditChainOf({ tenantId, sessionId }), after, 100);
    records.push(...page);
    if (page.length < 100) return records;
    after = page.at(-1)!.seq;
  }
}

const bodies = (records: readonly StoredAuditRecord[]) =>
  records.map((record) => JSON.parse(record.body) as AuditEvent);

/** Verifies the session's chain from storage with the trail's own MAC keys. */
async function verifies(under: TrailUnderTest, tenantId: string, sessionId: string) {
  const chain = auditChainOf({ tenantId, sessionId });
  return verifyChain(chainPages(under.audit, chain, 0, Number.MAX_SAFE_INTEGER, 3), {
    chainId: chain.chainId,
    macKeyFor: (keyId) => under.keys.macKey(keyId),
  });
}

export function describeAuditTrailContract(name: string, createHarness: HarnessFactory): void {
  describe(`${name} audit trail of session operations`, () => {
    let harness: SessionHarness;
    let under: TrailUnderTest;
    const tenantId = `clinic-${randomUUID()}`;
    const actor = { ...nurse, tenantId };

    beforeAll(async () => {
      harness = await createHarness();
      under = trailOn(harness);
    });
    afterAll(() => harness.close());

    it('records one event per operation, in order, in a chain that verifies', async () => {
      const sessionId = 'visit-1';
      await runAs(actor, async () => {
        const session = await under.service.open(sessionId, { tenantId, subjectId: SUBJECT });
        await session.addItems([userMessage('a'), userMessage('b')]);
        expect(await session.getItems()).toHaveLength(2);
        await session.popItem();
        await session.applyHistoryTransaction({
          operationId: 'op-1',
          transaction: { type: 'append_items', items: [assistantMessage('c')] },
        });
        await session.clearSession();
      });
      const events = bodies(await chainOf(under.audit, tenantId, sessionId));
      expect(events.map((event) => [event.action, event.outcome, event.target.count])).toEqual([
        ['session.create', 'success', undefined],
        ['key.create', 'success', undefined],
        ['session.append', 'success', 2],
        ['session.read', 'success', 2],
        ['session.pop', 'success', 1],
        ['session.history_transaction', 'success', 1],
        ['session.clear', 'success', 2],
        ['key.destroy', 'success', 1],
      ]);
      expect(events[1].keys!.dekIds).toEqual(events[2].keys!.dekIds);
      expect(events[1].keys!.kekIds).toEqual([harness.provider.activeKekId()]);
      for (const event of events) {
        expect(event.actor).toEqual(actor);
        expect(event.target.subjectRef).toMatch(/^[\w-]{43}$/);
      }
      expect(await verifies(under, tenantId, sessionId)).toEqual({
        ok: true,
        chainId: auditChainOf({ tenantId, sessionId }).chainId,
        verifiedThroughSeq: 8,
      });
    });

    it('hands each committed event to the sinks once, as stored', async () => {
      const sessionId = 'visit-sinks';
      const before = under.published.length;
      await runAs(actor, async () => {
        const session = await under.service.open(sessionId, { tenantId });
        await session.addItems([userMessage('a')]);
        await session.getItems();
      });
      const published = under.published.slice(before);
      const stored = await chainOf(under.audit, tenantId, sessionId);
      expect(published.map((event) => event.chain.seq)).toEqual([1, 2, 3, 4]);
      expect(published.map((event) => event.eventId)).toEqual(stored.map((r) => r.eventId));
    });

    it('keeps the raw subject id out of every record', async () => {
      const records = await chainOf(under.audit, tenantId, 'visit-1');
      expect(records.length).toBeGreaterThan(0);
      for (const record of records) {
        expect(JSON.stringify(record)).not.toContain(SUBJECT);
        expect(record.body).not.toContain(SUBJECT);
      }
    });

    it('reports who did what to a session, a subject or by an actor, page by page', async () => {
      const report = new AuditService(under.trail);
      const window = { tenantId, from: 0, to: Date.now() + 60_000 };
      const stored = bodies(await chainOf(under.audit, tenantId, 'visit-1'));
      const pages: AuditEvent[] = [];
      let cursor: string | undefined;
      do {
        const page = await report.accessReport({
          ...window,
          sessionId: 'visit-1',
          limit: 3,
          cursor,
        });
        pages.push(...page.events);
        cursor = page.nextCursor;
      } while (cursor);
      expect(pages.map((event) => event.eventId)).toEqual(stored.map((event) => event.eventId));
      expect(pages[0].chain.seq).toBe(1);

      const bySubject = await report.accessReport({ ...window, subjectId: SUBJECT });
      expect(bySubject.events.map((event) => event.eventId)).toEqual(
        stored.map((event) => event.eventId),
      );
      const byActor = await report.accessReport({ ...window, actorId: actor.id, limit: 1000 });
      expect(byActor.events.length).toBeGreaterThan(stored.length);
      expect(new Set(byActor.events.map((event) => event.actor.id))).toEqual(new Set([actor.id]));
      // Ids compare byte for byte: a trailing space or another case is someone else.
      for (const actorId of [`${actor.id} `, actor.id.toUpperCase()]) {
        expect((await report.accessReport({ ...window, actorId })).events).toEqual([]);
      }
      const later = await report.accessReport({ ...window, sessionId: 'visit-1', from: window.to });
      expect(later.events).toEqual([]);
    });

    it('refuses an operation with no actor before it touches anything, and records the refusal', async () => {
      const sessionId = 'no-actor';
      await expect(under.service.open(sessionId, { tenantId })).rejects.toThrow(
        AuditActorRequiredError,
      );
      const ref = { tenantId, sessionId };
      expect(await harness.storage.read(ref, (scope) => scope.session.find())).toBeUndefined();
      const events = bodies(await chainOf(under.audit, tenantId, sessionId));
      expect(events.map((event) => [event.action, event.outcome, event.reason])).toEqual([
        ['access.denied', 'denied', 'ACTOR_REQUIRED'],
      ]);
      expect(events[0].actor.type).toBe('system');
    });

    it('refuses an append with no actor: nothing stored, the refusal recorded', async () => {
      const sessionId = 'append-no-actor';
      const session = await runAs(actor, () => under.service.open(sessionId, { tenantId }));
      await expect(session.addItems([userMessage('x')])).rejects.toThrow(AuditActorRequiredError);
      expect(await runAs(actor, () => session.getItems())).toEqual([]);
      const events = bodies(await chainOf(under.audit, tenantId, sessionId));
      expect(events.map((event) => event.action)).toEqual([
        'session.create',
        'access.denied',
        'session.read',
      ]);
    });

    it('records a subject mismatch as denied', async () => {
      const sessionId = 'subject-mismatch';
      await runAs(actor, () => under.service.open(sessionId, { tenantId, subjectId: 's-1' }));
      await expect(
        runAs(actor, () => under.service.open(sessionId, { tenantId, subjectId: 's-2' })),
      ).rejects.toThrow(InvalidArgumentError);
      const events = bodies(await chainOf(under.audit, tenantId, sessionId));
      expect(events.map((event) => [event.action, event.outcome, event.reason])).toEqual([
        ['session.create', 'success', undefined],
        ['session.subject_mismatch', 'denied', 'SUBJECT_MISMATCH'],
      ]);
    });

    it('records an item that did not open as an integrity failure, in a unit of its own', async () => {
      const sessionId = 'tampered';
      const session = await runAs(actor, () => under.service.open(sessionId, { tenantId }));
      await runAs(actor, () => session.addItems([userMessage('x')]));
      const ref = { tenantId, sessionId };
      const ciphertext = await harness.tamper.ciphertextOf(ref, 1);
      ciphertext[ciphertext.length - 1] ^= 1;
      await harness.tamper.setCiphertext(ref, 1, ciphertext);
      await expect(runAs(actor, () => session.getItems())).rejects.toThrow(IntegrityError);
      const events = bodies(await chainOf(under.audit, tenantId, sessionId));
      expect(events.at(-1)).toMatchObject({
        action: 'session.integrity_failure',
        outcome: 'failure',
        reason: 'INTEGRITY',
      });
      expect((await verifies(under, tenantId, sessionId)).ok).toBe(true);
    });

    it('commits 16 concurrent reads in fewer units than reads, each before it returns', async () => {
      const sessionId = 'busy-reads';
      const session = await runAs(actor, () => under.service.open(sessionId, { tenantId }));
      await runAs(actor, () => session.addItems([userMessage('x')]));
      let units = 0;
      const transaction = under.audit.transaction.bind(under.audit);
      under.audit.transaction = (chain, work) => {
        units++;
        return transaction(chain, work);
      };
      try {
        const reads = await runAs(actor, () =>
          Promise.all(Array.from({ length: 16 }, () => session.getItems(20))),
        );
        expect(reads.every((items) => items.length === 1)).toBe(true);
      } finally {
        under.audit.transaction = transaction;
      }
      const events = bodies(await chainOf(under.audit, tenantId, sessionId));
      expect(events.filter((event) => event.action === 'session.read')).toHaveLength(16);
      expect(units).toBeLessThan(16);
      // create, key.create, append, then the 16 reads.
      expect((await verifies(under, tenantId, sessionId)).verifiedThroughSeq).toBe(19);
    });

    it('with a de-duplication window, records one read per actor and session in it', async () => {
      const deduped = trailOn(harness, { reads: { dedupeWindowSeconds: 3600 } });
      const sessionId = 'deduped';
      const session = await runAs(actor, () => deduped.service.open(sessionId, { tenantId }));
      for (let index = 0; index < 4; index++) await runAs(actor, () => session.getItems());
      const other = { ...actor, id: 'doctor-3' };
      await runAs(other, () => session.getItems());
      // A pop that finds nothing is recorded every time, dedupe or not.
      await runAs(actor, () => session.popItem());
      await runAs(actor, () => session.popItem());
      const events = bodies(await chainOf(deduped.audit, tenantId, sessionId));
      const reads = events.filter((event) => event.action === 'session.read');
      expect(reads.map((event) => event.actor.id)).toEqual(['nurse-17', 'doctor-3']);
      expect(events.filter((event) => event.action === 'session.pop')).toHaveLength(2);
    });

    it("records a key provider outage once, on the tenant's control chain, until a call succeeds", async () => {
      // The same root keys as the shared harness: SQL servers share one database between
      // harnesses, and with it the trail's MAC key.
      const provider = new SwitchableProvider(harness.provider);
      const flaky = await createHarness({
        provider,
        keyRing: { providerMaxAttempts: 1, providerOutageCooldownMs: 10 },
      });
      try {
        const trail = trailOn(flaky);
        const outageTenant = `${tenantId}-outage`;
        const append = (sessionId: string) =>
          runAs({ ...actor, tenantId: outageTenant }, async () => {
            const session = await trail.service.open(sessionId, { tenantId: outageTenant });
            await session.addItems([userMessage('x')]);
          });
        // The trail's MAC key is loaded (and cached) while the provider is up.
        await append('warm-up');
        provider.down = true;
        await expect(append('a')).rejects.toThrow(KeyProviderUnavailableError);
        await new Promise((resolve) => setTimeout(resolve, 30));
        await expect(append('b')).rejects.toThrow(KeyProviderUnavailableError);
        provider.down = false;
        await new Promise((resolve) => setTimeout(resolve, 30));
        await append('c');
        provider.down = true;
        await new Promise((resolve) => setTimeout(resolve, 30));
        await expect(append('d')).rejects.toThrow(KeyProviderUnavailableError);
        const control = await trail.audit.readChain(
          auditChainOf({ tenantId: outageTenant }),
          0,
          100,
        );
        expect(bodies(control).map((event) => [event.action, event.reason])).toEqual([
          ['key.provider_outage', 'KEY_PROVIDER_UNAVAILABLE'],
          ['key.provider_outage', 'KEY_PROVIDER_UNAVAILABLE'],
        ]);
      } finally {
        await flaky.close();
      }
    });

    it('starts a new MAC key each period; records of the old one still verify', async () => {
      // Later than any period this key ring has sealed in yet.
      let now = Date.now() + 10 * DAY_MS;
      const rotating = new AuditTrail(
        under.audit,
        new KeyRingAuditKeys(harness.keyRing, DAY_MS, () => now),
        { requireActor: true, reads: 'group-commit' },
      );
      harness.keyRing.attachAuditTrail(rotating);
      const service = new EncryptedSessionService(
        harness.storage,
        harness.keyRing,
        undefined,
        rotating,
      );
      const sessionId = 'rotating-mac';
      const session = await runAs(actor, () => service.open(sessionId, { tenantId }));
      now += DAY_MS;
      await runAs(actor, () => session.addItems([userMessage('x')]));
      const records = await chainOf(under.audit, tenantId, sessionId);
      expect(new Set(records.map((record) => record.macKeyId)).size).toBe(2);
      expect((await verifies(under, tenantId, sessionId)).ok).toBe(true);
    });
  });
}

/** A provider behind a switch: while `down`, every call fails as an unreachable provider. */
class SwitchableProvider implements KeyProvider {
  readonly name = 'env';
  down = false;

  constructor(private readonly inner: KeyProvider) {}

  activeKekId(): string {
    return this.inner.activeKekId();
  }

  generateDataKey(context: DataKeyContext) {
    return this.reachable(() => this.inner.generateDataKey(context));
  }

  unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    return this.reachable(() => this.inner.unwrapDataKey(wrapped, context));
  }

  rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    return this.reachable(() => this.inner.rewrapDataKey(wrapped, context));
  }

  private async reachable<T>(call: () => Promise<T>): Promise<T> {
    if (this.down) throw new KeyProviderUnavailableError('the test provider is switched off');
    return call();
  }
}
