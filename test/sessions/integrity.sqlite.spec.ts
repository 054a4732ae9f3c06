import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IntegrityError, KeyDestroyedError, type EncryptedSession } from '../../src/index.js';
import { sqliteHarness, userMessage, type SessionHarness } from '../support/session-harness.js';

/**
 * Rows altered behind the module's back, directly in the SQLite file: every read fails with a
 * typed error and nothing is deleted, not even by popItem.
 */
describe('tampered rows on sqlite', () => {
  let harness: SessionHarness;
  let db: DataSource;
  let session: EncryptedSession;
  let sessionId: string;

  const count = async (id = sessionId) =>
    Number((await db.query('SELECT COUNT(*) AS n FROM nes_items WHERE session_id = ?', [id]))[0].n);
  const ciphertextOf = async (seq: number, id = sessionId): Promise<Buffer> =>
    (
      await db.query('SELECT ciphertext FROM nes_items WHERE session_id = ? AND seq = ?', [id, seq])
    )[0].ciphertext;

  beforeEach(async () => {
    harness = await sqliteHarness();
    db = harness.dataSource!;
    sessionId = `s-${randomUUID()}`;
    session = await harness.service.open(sessionId);
    await session.addItems([userMessage('one'), userMessage('two'), userMessage('three')]);
  });
  afterEach(async () => {
    await harness.close();
  });

  async function expectReadsFailWithNothingDeleted(
    error: new (...args: never[]) => Error = IntegrityError,
  ) {
    await expect(session.getItems()).rejects.toBeInstanceOf(error);
    await expect(session.popItem()).rejects.toBeInstanceOf(error);
    expect(await count()).toBe(3);
  }

  it('refuses an item with one flipped ciphertext byte', async () => {
    const stored = await ciphertextOf(3);
    stored[stored.length - 20] ^= 0x01;
    await db.query('UPDATE nes_items SET ciphertext = ? WHERE session_id = ? AND seq = 3', [
      stored,
      sessionId,
    ]);
    await expectReadsFailWithNothingDeleted();
  });

  it('refuses an item moved to another position', async () => {
    await db.query('DELETE FROM nes_items WHERE session_id = ? AND seq = 3', [sessionId]);
    await db.query('UPDATE nes_items SET seq = 3 WHERE session_id = ? AND seq = 2', [sessionId]);
    await expect(session.getItems()).rejects.toBeInstanceOf(IntegrityError);
    await expect(session.popItem()).rejects.toBeInstanceOf(IntegrityError);
    expect(await count()).toBe(2);
  });

  it('refuses a ciphertext copied from another session', async () => {
    const other = await harness.service.open(`${sessionId}-other`);
    await other.addItems([userMessage('other 1'), userMessage('other 2'), userMessage('other 3')]);
    const foreign = await ciphertextOf(3, `${sessionId}-other`);
    await db.query('UPDATE nes_items SET ciphertext = ? WHERE session_id = ? AND seq = 3', [
      foreign,
      sessionId,
    ]);
    await expectReadsFailWithNothingDeleted();
  });

  it('refuses a row whose data key column points at another session', async () => {
    const other = await harness.service.open(`${sessionId}-other`);
    await other.addItems([userMessage('other')]);
    const [{ dek_id: foreignKey }] = await db.query(
      'SELECT dek_id FROM nes_items WHERE session_id = ?',
      [`${sessionId}-other`],
    );
    await db.query('UPDATE nes_items SET dek_id = ? WHERE session_id = ? AND seq = 3', [
      foreignKey,
      sessionId,
    ]);
    await expectReadsFailWithNothingDeleted();
  });

  it('refuses an item whose expiry was extended', async () => {
    await db.query('UPDATE nes_items SET expires_at = ? WHERE session_id = ? AND seq = 3', [
      Date.now() + 86_400_000,
      sessionId,
    ]);
    await expectReadsFailWithNothingDeleted();
  });

  it('refuses a plaintext JSON row', async () => {
    const plaintext = Buffer.from(JSON.stringify(userMessage('injected')));
    await db.query('UPDATE nes_items SET ciphertext = ? WHERE session_id = ? AND seq = 3', [
      plaintext,
      sessionId,
    ]);
    await expectReadsFailWithNothingDeleted();
  });

  it('refuses a truncated row', async () => {
    const stored = await ciphertextOf(3);
    await db.query('UPDATE nes_items SET ciphertext = ? WHERE session_id = ? AND seq = 3', [
      stored.subarray(0, 30),
      sessionId,
    ]);
    await expectReadsFailWithNothingDeleted();
  });

  it('reports a destroyed data key as KeyDestroyedError and deletes nothing', async () => {
    await db.query("UPDATE nes_data_keys SET state = 'destroyed' WHERE session_id = ?", [
      sessionId,
    ]);
    harness.keyRing.forgetSession({ tenantId: 'default', sessionId });
    await expectReadsFailWithNothingDeleted(KeyDestroyedError);
  });

  it('reads again once an untouched row is the newest', async () => {
    const stored = await ciphertextOf(3);
    stored[40] ^= 0x80;
    await db.query('UPDATE nes_items SET ciphertext = ? WHERE session_id = ? AND seq = 3', [
      stored,
      sessionId,
    ]);
    await expect(session.getItems(1)).rejects.toBeInstanceOf(IntegrityError);
    // The damaged row stays for investigation; the rest of the history is intact.
    await expect(session.getItems()).rejects.toBeInstanceOf(IntegrityError);
    await db.query('DELETE FROM nes_items WHERE session_id = ? AND seq = 3', [sessionId]);
    expect(await session.getItems()).toEqual([userMessage('one'), userMessage('two')]);
  });
});
