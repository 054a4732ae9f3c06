import type { SessionRef } from '../../src/index.js';

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
}
