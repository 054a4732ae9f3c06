import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EncryptedSessionService,
  EnvKeyProvider,
  IntegrityError,
  KeyDestroyedError,
  KeyRing,
  type EncryptedSession,
  type SessionRef,
} from '../../src/index.js';
import {
  userMessage,
  type HarnessOptions,
  type SessionHarness,
} from '../support/session-harness.js';
import type { StoredRowTamperer } from '../support/stored-row-tamperer.js';
import { newRootKeyEntry } from '../support/test-keys.js';

/** A session harness plus the row tamperer of the same backend. */
export interface ClaimsHarness {
  readonly harness: SessionHarness;
  readonly rows: StoredRowTamperer;
}

export type ClaimsHarnessFactory = (options?: HarnessOptions) => Promise<ClaimsHarness>;

const items = (...texts: string[]) => texts.map((text) => userMessage(text)) as AgentInputItem[];
/** What a call rejected with (fails the test when it resolves). */
async function rejectionOf(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => {
      throw new Error('expected the call to fail, but it succeeded');
    },
    (error: unknown) => error,
  );
}

const texts = (list: AgentInputItem[]) => list.map((item) => (item as { content: string }).content);

/**
 * Security claims of README.md ("Security model", "What a database writer can still do") and
 * docs/envelope-format.md section 3 that concern stored data-key and item rows, each shown by
 * changing the rows behind the module's back. Written once, run on every backend.
 */
export function describeStoredClaims(backendName: string, create: ClaimsHarnessFactory): void {
  describe(`security claims about stored rows on ${backendName}`, () => {
    let harness: SessionHarness;
    let rows: StoredRowTamperer;
    let ref: SessionRef;
    let session: EncryptedSession;

    async function start(options?: HarnessOptions, tenantId = 'default') {
      ({ harness, rows } = await create(options));
      ref = { tenantId, sessionId: `claims-${randomUUID()}` };
      session = await harness.service.open(ref.sessionId, { tenantId });
    }
    afterEach(async () => {
      await harness?.close();
    });

    /** Every read path fails with `error`, and every stored item is still there. */
    async function expectEveryReadToFail(error: new (...args: never[]) => Error, stored: number) {
      await expect(session.getItems()).rejects.toBeInstanceOf(error);
      await expect(session.getItems(1)).rejects.toBeInstanceOf(error);
      await expect(session.popItem()).rejects.toBeInstanceOf(error);
      expect(await harness.tamper.countItems(ref)).toBe(stored);
    }

    describe('the data-key generation (envelope format, section 3)', () => {
      it("a generation changed in the data-key row makes that key's items fail with IntegrityError", async () => {
        await start();
        await session.addItems(items('one', 'two', 'three'));
        const [key] = await rows.keysOf(ref);
        await rows.setKeyGeneration(ref, key.dekId, key.generation + 1);
        harness.keyRing.clear(); // cold cache: the row is read again
        await expectEveryReadToFail(IntegrityError, 3);
      });

      it('generations swapped between two keys of a session open no item with the other key', async () => {
        await start({ keyRing: { maxItemsPerDataKey: 2 } });
        for (const text of ['one', 'two', 'three', 'four']) await session.addItems(items(text));
        const [first, second] = await rows.keysOf(ref);
        expect([first.generation, second.generation]).toEqual([1, 2]);
        // Through a free value: SQL tables keep (session, generation) unique.
        await rows.setKeyGeneration(ref, first.dekId, 99);
        await rows.setKeyGeneration(ref, second.dekId, 1);
        await rows.setKeyGeneration(ref, first.dekId, 2);
        harness.keyRing.clear();
        await expectEveryReadToFail(IntegrityError, 4);
      });
    });

    describe('the wrapped data key is bound to tenant, session and key id', () => {
      it.each([
        ['another session of the tenant', 'default', (id: string) => `${id}-other`],
        ['the same session id in another tenant', 'other-tenant', (id: string) => id],
      ])(
        'a wrapped key copied from %s does not unwrap',
        async (_name, otherTenant, otherSession) => {
          await start();
          await session.addItems(items('one', 'two'));
          const other = { tenantId: otherTenant, sessionId: otherSession(ref.sessionId) };
          await (
            await harness.service.open(other.sessionId, { tenantId: other.tenantId })
          ).addItems(items('other'));
          const [mine] = await rows.keysOf(ref);
          const [theirs] = await rows.keysOf(other);
          await rows.setWrappedKey(ref, mine.dekId, await rows.wrappedKeyOf(other, theirs.dekId));
          harness.keyRing.clear();
          const error = await rejectionOf(session.getItems());
          expect(error).toBeInstanceOf(IntegrityError);
          // Refused at the unwrap, not later by an item that failed to open.
          expect((error as Error).message).toMatch(/could not be unwrapped/);
          expect(await harness.tamper.countItems(ref)).toBe(2);
        },
      );
    });

    it('an item copied with its data-key id to the same session id of another tenant fails with IntegrityError', async () => {
      await start(undefined, 'acme');
      await session.addItems(items('acme 1', 'acme 2'));
      const victim = { tenantId: 'victim', sessionId: ref.sessionId };
      const victimSession = await harness.service.open(victim.sessionId, {
        tenantId: victim.tenantId,
      });
      await victimSession.addItems(items('victim 1', 'victim 2'));
      await harness.tamper.setCiphertext(victim, 2, await harness.tamper.ciphertextOf(ref, 2));
      await harness.tamper.setDekId(victim, 2, await harness.tamper.dekIdOf(ref, 2));
      await expect(victimSession.getItems()).rejects.toBeInstanceOf(IntegrityError);
      await expect(victimSession.popItem()).rejects.toBeInstanceOf(IntegrityError);
      expect(await harness.tamper.countItems(victim)).toBe(2);
    });

    it('an item whose data-key row was deleted fails with IntegrityError, not KeyDestroyedError', async () => {
      await start();
      await session.addItems(items('one', 'two', 'three'));
      const [key] = await rows.keysOf(ref);
      await rows.deleteKeyRow(ref, key.dekId);
      harness.keyRing.clear();
      await expectEveryReadToFail(IntegrityError, 3);
    });

    describe('clearSession', () => {
      it('erases the wrapped key bytes of the destroyed data key', async () => {
        await start();
        await session.addItems(items('one'));
        const [key] = await rows.keysOf(ref);
        await session.clearSession();
        expect((await rows.wrappedKeyOf(ref, key.dekId)).length).toBe(0);
      });

      it('leaves an old copy of an item put back after the clear unreadable: KeyDestroyedError', async () => {
        await start();
        await session.addItems(items('one', 'two', 'three'));
        const putBack = await rows.copyItemRow(ref, 3);
        await session.clearSession();
        await putBack();
        harness.keyRing.clear();
        await expectEveryReadToFail(KeyDestroyedError, 1);
      });
    });

    describe('what a database writer can still do (documented limits)', () => {
      it('a popped item put back at its own position opens again', async () => {
        await start();
        await session.addItems(items('one', 'two', 'three'));
        const putBack = await rows.copyItemRow(ref, 3);
        expect(texts([(await session.popItem())!])).toEqual(['three']);
        await putBack();
        expect(texts(await session.getItems())).toEqual(['one', 'two', 'three']);
      });

      it('a data-key row and items restored from a backup taken before clearSession open again', async () => {
        await start();
        await session.addItems(items('one', 'two'));
        const [key] = await rows.keysOf(ref);
        const backup = [
          await rows.copyKeyRow(ref, key.dekId),
          await rows.copyItemRow(ref, 1),
          await rows.copyItemRow(ref, 2),
        ];
        await session.clearSession();
        for (const putBack of backup) await putBack();
        harness.keyRing.clear();
        expect(texts(await session.getItems())).toEqual(['one', 'two']);
      });

      it('once the root key that wrapped it is removed, a restored data-key row opens nothing', async () => {
        await start();
        await session.addItems(items('one', 'two'));
        const [key] = await rows.keysOf(ref);
        const backup = [
          await rows.copyKeyRow(ref, key.dekId),
          await rows.copyItemRow(ref, 1),
          await rows.copyItemRow(ref, 2),
        ];
        await session.clearSession();
        for (const putBack of backup) await putBack();
        // The app now runs with a new root key only (k1 rotated out and removed).
        const provider = new EnvKeyProvider({ keys: newRootKeyEntry('k2'), activeKeyId: 'k2' });
        const service = new EncryptedSessionService(
          harness.storage,
          new KeyRing(harness.storage, provider),
        );
        const reopened = await service.open(ref.sessionId);
        await expect(reopened.getItems()).rejects.toBeInstanceOf(ConfigurationError);
        expect(await harness.tamper.countItems(ref)).toBe(2);
      });

      it('an earlier expiry hides an item without an error', async () => {
        await start();
        await session.addItems(items('one', 'two', 'three'));
        await harness.tamper.setExpiresAt(ref, 2, Date.now() - 1000);
        expect(texts(await session.getItems())).toEqual(['one', 'three']);
      });
    });
  });
}
