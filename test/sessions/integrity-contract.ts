import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  IntegrityError,
  KeyDestroyedError,
  type EncryptedSession,
  type SessionRef,
} from '../../src/index.js';
import {
  userMessage,
  type HarnessFactory,
  type SessionHarness,
} from '../support/session-harness.js';

/**
 * Items altered behind the module's back, directly in the backend: every read fails with a
 * typed error and nothing is deleted, not even by popItem. Written once, run on each backend.
 */
export function describeIntegrityContract(
  backendName: string,
  createHarness: HarnessFactory,
): void {
  describe(`tampered items on ${backendName}`, () => {
    let harness: SessionHarness;
    let session: EncryptedSession;
    let ref: SessionRef;

    beforeEach(async () => {
      harness = await createHarness();
      ref = { tenantId: 'default', sessionId: `s-${randomUUID()}` };
      session = await harness.service.open(ref.sessionId);
      await session.addItems([userMessage('one'), userMessage('two'), userMessage('three')]);
    });
    afterEach(async () => {
      await harness.close();
    });

    async function expectReadsFailWithNothingDeleted(
      error: new (...args: never[]) => Error = IntegrityError,
      itemsLeft = 3,
    ) {
      await expect(session.getItems()).rejects.toBeInstanceOf(error);
      await expect(session.popItem()).rejects.toBeInstanceOf(error);
      expect(await harness.tamper.countItems(ref)).toBe(itemsLeft);
    }

    /** Another session of the same tenant with three items of its own. */
    async function otherSession(): Promise<SessionRef> {
      const other = { tenantId: 'default', sessionId: `${ref.sessionId}-other` };
      const handle = await harness.service.open(other.sessionId);
      await handle.addItems([
        userMessage('other 1'),
        userMessage('other 2'),
        userMessage('other 3'),
      ]);
      return other;
    }

    it('refuses an item with one flipped ciphertext byte', async () => {
      const stored = await harness.tamper.ciphertextOf(ref, 3);
      stored[stored.length - 20] ^= 0x01;
      await harness.tamper.setCiphertext(ref, 3, stored);
      await expectReadsFailWithNothingDeleted();
    });

    it('refuses an item moved to another position', async () => {
      await harness.tamper.moveItem(ref, 2, 3);
      await expectReadsFailWithNothingDeleted(IntegrityError, 2);
    });

    it('refuses a ciphertext copied from another session', async () => {
      const other = await otherSession();
      await harness.tamper.setCiphertext(ref, 3, await harness.tamper.ciphertextOf(other, 3));
      await expectReadsFailWithNothingDeleted();
    });

    it('refuses a ciphertext copied from another session together with its data key id', async () => {
      const other = await otherSession();
      await harness.tamper.setCiphertext(ref, 3, await harness.tamper.ciphertextOf(other, 3));
      await harness.tamper.setDekId(ref, 3, await harness.tamper.dekIdOf(other, 3));
      await expectReadsFailWithNothingDeleted();
    });

    it('refuses an item whose expiry was extended', async () => {
      await harness.tamper.setExpiresAt(ref, 3, Date.now() + 86_400_000);
      await expectReadsFailWithNothingDeleted();
    });

    it('refuses a plaintext JSON item', async () => {
      await harness.tamper.setCiphertext(
        ref,
        3,
        Buffer.from(JSON.stringify(userMessage('injected'))),
      );
      await expectReadsFailWithNothingDeleted();
    });

    it('refuses a truncated item', async () => {
      const stored = await harness.tamper.ciphertextOf(ref, 3);
      await harness.tamper.setCiphertext(ref, 3, stored.subarray(0, 30));
      await expectReadsFailWithNothingDeleted();
    });

    it('reports a destroyed data key as KeyDestroyedError and deletes nothing', async () => {
      await harness.tamper.destroyKeys(ref);
      harness.keyRing.forgetSession(ref);
      await expectReadsFailWithNothingDeleted(KeyDestroyedError);
    });

    it('reads again once an untouched item is the newest', async () => {
      const stored = await harness.tamper.ciphertextOf(ref, 3);
      stored[40] ^= 0x80;
      await harness.tamper.setCiphertext(ref, 3, stored);
      await expect(session.getItems(1)).rejects.toBeInstanceOf(IntegrityError);
      // The damaged item stays for investigation; the rest of the history is intact.
      await expect(session.getItems()).rejects.toBeInstanceOf(IntegrityError);
      await harness.tamper.deleteItem(ref, 3);
      expect(await session.getItems()).toEqual([userMessage('one'), userMessage('two')]);
    });
  });
}
