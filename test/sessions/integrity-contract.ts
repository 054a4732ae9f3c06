import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentInputItem } from '@openai/agents-core';
import {
  IntegrityError,
  KeyDestroyedError,
  type EncryptedSession,
  type SessionRef,
} from '../../src/index.js';
import { TamperRefusedError, type ItemDamage } from '../support/item-tamperer.js';
import {
  userMessage,
  type HarnessFactory,
  type SessionHarness,
} from '../support/session-harness.js';

/**
 * Damage of a stored value's type or range, and the backends that cannot hold it, with why.
 * On those the tamper itself must be refused; on every other backend every read path must
 * fail with IntegrityError.
 */
const TYPE_DAMAGES: Array<{ damage: ItemDamage; cannotHold: Record<string, string> }> = [
  {
    damage: { field: 'seq', as: 'text' },
    cannotHold: {
      postgres: 'bigint column refuses text',
      mariadb: 'bigint column refuses text (strict mode)',
      redis: 'packed members have no text seq',
    },
  },
  {
    damage: { field: 'seq', as: 'beyond-2^53' },
    cannotHold: {},
  },
  {
    damage: { field: 'expiresAt', as: 'text' },
    cannotHold: {
      postgres: 'bigint column refuses text',
      mariadb: 'bigint column refuses text (strict mode)',
      redis: 'packed members have no text expiry',
    },
  },
  {
    damage: { field: 'expiresAt', as: 'beyond-2^53' },
    cannotHold: {},
  },
  {
    damage: { field: 'createdAt', as: 'text' },
    cannotHold: {
      postgres: 'bigint column refuses text',
      mariadb: 'bigint column refuses text (strict mode)',
      redis: 'packed members have no text time',
    },
  },
  {
    damage: { field: 'dekId', as: 'integer' },
    cannotHold: { redis: 'the data key id is a fixed-width text field' },
  },
  {
    damage: { field: 'ciphertext', as: 'integer' },
    cannotHold: {
      memory: 'the store copies ciphertext bytes as it reads them',
      redis: 'members are bytes',
    },
  },
  {
    damage: { field: 'ciphertext', as: 'real' },
    cannotHold: {
      memory: 'the store copies ciphertext bytes as it reads them',
      redis: 'members are bytes',
    },
  },
  {
    damage: { field: 'ciphertext', as: 'text' },
    cannotHold: { redis: 'members are bytes' },
  },
];

/**
 * Items altered behind the module's back, directly in the backend: every read fails with a
 * typed error and nothing is deleted, not even by popItem. Written once, run on each backend.
 */
export function describeIntegrityContract(
  backendName: string,
  createHarness: HarnessFactory,
): void {
  // The memory store keeps items inside their session's entry: the row cannot go alone, so
  // there the tamper must be refused, and the tests of a lost row do not apply.
  const describeSessionRowLoss =
    backendName === 'memory' ? describeSessionRowCannotGoAlone : describeSessionRowDeleted;
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

    const THREE = [userMessage('one'), userMessage('two'), userMessage('three')];

    describe('stored values of the wrong type or range', () => {
      const cases = TYPE_DAMAGES.map(({ damage, cannotHold }) => ({
        damage,
        title: `an item whose ${damage.field} holds ${damage.as}`,
        reason: cannotHold[backendName] ?? '',
      }));

      // Not skipped: where the backend cannot hold a value, it must really refuse it.
      it.each(cases.filter((entry) => entry.reason !== ''))(
        'cannot hold $title ($reason), and the session stays intact',
        async ({ damage }) => {
          await expect(harness.tamper.damageItem(ref, 3, damage)).rejects.toBeInstanceOf(
            TamperRefusedError,
          );
          expect(await session.getItems()).toEqual(THREE);
        },
      );

      it.each(cases.filter((entry) => entry.reason === ''))(
        'refuses $title with IntegrityError on every read path, deleting nothing',
        async ({ damage }) => {
          await harness.tamper.damageItem(ref, 3, damage);
          await expect(session.getItems()).rejects.toBeInstanceOf(IntegrityError);
          await expect(session.getItems(3)).rejects.toBeInstanceOf(IntegrityError);
          await expect(session.popItem()).rejects.toBeInstanceOf(IntegrityError);
          await expect(
            session.applyHistoryTransaction({
              operationId: `op-${randomUUID()}`,
              transaction: {
                type: 'replace_suffix',
                expectedSuffix: THREE,
                replacement: [userMessage('replaced')],
              },
            }),
          ).rejects.toBeInstanceOf(IntegrityError);
          expect(await harness.tamper.countItems(ref)).toBe(3);
        },
      );

      it('refuses an item whose data key id names no key at all as tampering, not erasure', async () => {
        await harness.tamper.setDekId(ref, 3, randomUUID());
        await expectReadsFailWithNothingDeleted(IntegrityError);
        await expect(
          session.applyHistoryTransaction({
            operationId: `op-${randomUUID()}`,
            transaction: {
              type: 'replace_suffix',
              expectedSuffix: [userMessage('three')],
              replacement: [userMessage('3')],
            },
          }),
        ).rejects.toBeInstanceOf(IntegrityError);
        expect(await harness.tamper.countItems(ref)).toBe(3);
      });

      it('refuses a recorded history operation whose data key id names no key', async () => {
        const operationId = `op-${randomUUID()}`;
        const transaction = { type: 'append_items' as const, items: [userMessage('four')] };
        await session.applyHistoryTransaction({ operationId, transaction });
        await harness.tamper.setOperationDekId(ref, operationId, randomUUID());
        await expect(
          session.applyHistoryTransaction({ operationId, transaction }),
        ).rejects.toBeInstanceOf(IntegrityError);
        expect(await harness.tamper.countItems(ref)).toBe(4);
      });
    });

    describe('a damaged sequence counter or session row', () => {
      it('reads the same items in full and limited reads after the counter was rolled back', async () => {
        await harness.tamper.setNextSeq(ref, 2);
        expect(await session.getItems()).toEqual(THREE);
        expect(await session.getItems(20)).toEqual(THREE);
      });

      it('refuses addItems with IntegrityError after the counter was rolled back, writing nothing', async () => {
        await harness.tamper.setNextSeq(ref, 2);
        await expect(session.addItems([userMessage('four')])).rejects.toBeInstanceOf(
          IntegrityError,
        );
        await expect(
          session.applyHistoryTransaction({
            operationId: `op-${randomUUID()}`,
            transaction: { type: 'append_items', items: [userMessage('four')] },
          }),
        ).rejects.toBeInstanceOf(IntegrityError);
        expect(await session.getItems()).toEqual(THREE);
      });

      describeSessionRowLoss(() => ({ harness, session, ref }), THREE);
    });
  });
}

/** What the session-row tests work on, read when each test runs. */
type SessionRowContext = () => {
  harness: SessionHarness;
  session: EncryptedSession;
  ref: SessionRef;
};

function describeSessionRowCannotGoAlone(context: SessionRowContext): void {
  it('cannot lose a session row while keeping its items', async () => {
    const { harness, ref } = context();
    await expect(harness.tamper.deleteSessionRow(ref)).rejects.toBeInstanceOf(TamperRefusedError);
  });
}

function describeSessionRowDeleted(context: SessionRowContext, stored: AgentInputItem[]): void {
  it('reads the same items in full and limited reads after the session row was deleted', async () => {
    const { harness, session, ref } = context();
    await harness.tamper.deleteSessionRow(ref);
    expect(await session.getItems()).toEqual(stored);
    expect(await session.getItems(20)).toEqual(stored);
  });

  it('refuses writes and a new open with IntegrityError when the session row was deleted but items remain', async () => {
    const { harness, session, ref } = context();
    await harness.tamper.deleteSessionRow(ref);
    await expect(session.addItems([userMessage('four')])).rejects.toBeInstanceOf(IntegrityError);
    await expect(harness.service.open(ref.sessionId)).rejects.toBeInstanceOf(IntegrityError);
    expect(await session.getItems()).toEqual(stored);
  });
}
