import type { SessionRef } from '../../src/index.js';

/**
 * A stored value of the wrong type or out of range: what a column of an item is damaged with.
 * Each tamperer writes the raw value its backend would really hold for that kind of damage
 * (SQLite keeps TEXT in an INTEGER column; a JS store keeps whatever it is given).
 */
export type ItemDamage =
  | { field: 'seq'; as: 'text' | 'beyond-2^53' }
  | { field: 'expiresAt'; as: 'text' | 'beyond-2^53' }
  | { field: 'createdAt'; as: 'text' }
  | { field: 'dekId'; as: 'integer' }
  | { field: 'ciphertext'; as: 'integer' | 'real' | 'text' };

/**
 * Thrown by a tamperer when the backend itself refuses to hold the damaged value (a typed SQL
 * column), or when its storage format has no way to express it (Redis packs items as bytes).
 */
export class TamperRefusedError extends Error {
  constructor(
    readonly reason: 'refused-by-backend' | 'not-expressible',
    detail: string,
  ) {
    super(`tamper ${reason}: ${detail}`);
  }
}

/**
 * Edits stored items behind the module's back, the way a malicious or careless database
 * operator could: one implementation per backend, used by the shared integrity suite.
 */
export interface ItemTamperer {
  ciphertextOf(ref: SessionRef, seq: number): Promise<Buffer>;
  setCiphertext(ref: SessionRef, seq: number, ciphertext: Buffer): Promise<void>;
  dekIdOf(ref: SessionRef, seq: number): Promise<string>;
  setDekId(ref: SessionRef, seq: number, dekId: string): Promise<void>;
  setExpiresAt(ref: SessionRef, seq: number, expiresAt: number | null): Promise<void>;
  /** Moves the item at `fromSeq` to position `toSeq` (deleting whatever was at `toSeq`). */
  moveItem(ref: SessionRef, fromSeq: number, toSeq: number): Promise<void>;
  deleteItem(ref: SessionRef, seq: number): Promise<void>;
  countItems(ref: SessionRef): Promise<number>;
  /** Marks every data key of the session destroyed (as a crypto-shred would). */
  destroyKeys(ref: SessionRef): Promise<void>;
  /**
   * Writes a value of the wrong type or range into one field of the item at `seq`.
   * @throws TamperRefusedError when the backend cannot hold it.
   */
  damageItem(ref: SessionRef, seq: number, damage: ItemDamage): Promise<void>;
  /** Points the recorded history operation at another data key id. */
  setOperationDekId(ref: SessionRef, operationId: string, dekId: string): Promise<void>;
  /** Sets the session's sequence counter (e.g. rolls it back below its newest item). */
  setNextSeq(ref: SessionRef, nextSeq: number): Promise<void>;
  /** Deletes the session's row (record), leaving its items, keys and operations. */
  deleteSessionRow(ref: SessionRef): Promise<void>;
  /** How many data keys of the session are in state `active` (an invariant says at most one). */
  countActiveKeys(ref: SessionRef): Promise<number>;
}
