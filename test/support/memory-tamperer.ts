import type { MemorySessionStorage, SessionRef, StoredItem } from '../../src/index.js';
import type { ItemTamperer } from './item-tamperer.js';

/** The private state of MemorySessionStorage, reached into the way a debugger would. */
interface MemoryInternals {
  sessions: Map<string, { record: SessionRef; items: Map<number, StoredItem> }>;
  dataKeys: Map<string, { tenantId: string; sessionId: string; state: string }>;
}

/** Tampers with the in-memory store's items directly. */
export function memoryItemTamperer(storage: MemorySessionStorage): ItemTamperer {
  const internals = storage as unknown as MemoryInternals;
  const itemsOf = (ref: SessionRef) => {
    for (const state of internals.sessions.values()) {
      if (state.record.tenantId === ref.tenantId && state.record.sessionId === ref.sessionId)
        return state.items;
    }
    throw new Error(`No session ${ref.sessionId}`);
  };
  const item = (ref: SessionRef, seq: number) => {
    const found = itemsOf(ref).get(seq);
    if (!found) throw new Error(`No item ${seq} in session ${ref.sessionId}`);
    return found;
  };
  return {
    ciphertextOf: async (ref, seq) => Buffer.from(item(ref, seq).ciphertext),
    setCiphertext: async (ref, seq, ciphertext) => {
      item(ref, seq).ciphertext = Buffer.from(ciphertext);
    },
    dekIdOf: async (ref, seq) => item(ref, seq).dekId,
    setDekId: async (ref, seq, dekId) => {
      item(ref, seq).dekId = dekId;
    },
    setExpiresAt: async (ref, seq, expiresAt) => {
      item(ref, seq).expiresAt = expiresAt;
    },
    moveItem: async (ref, fromSeq, toSeq) => {
      const items = itemsOf(ref);
      const moved = item(ref, fromSeq);
      items.delete(fromSeq);
      items.set(toSeq, { ...moved, seq: toSeq });
    },
    deleteItem: async (ref, seq) => {
      itemsOf(ref).delete(seq);
    },
    countItems: async (ref) => itemsOf(ref).size,
    destroyKeys: async (ref) => {
      for (const [dekId, key] of internals.dataKeys) {
        if (key.tenantId === ref.tenantId && key.sessionId === ref.sessionId)
          internals.dataKeys.set(dekId, { ...key, state: 'destroyed' });
      }
    },
  };
}
