import type { MemorySessionStorage, SessionRef, StoredItem } from '../../src/index.js';
import { TamperRefusedError, type ItemDamage, type ItemTamperer } from './item-tamperer.js';

/** The private state of MemorySessionStorage, reached into the way a debugger would. */
interface MemoryInternals {
  sessions: Map<
    string,
    {
      record: SessionRef & { nextSeq: number };
      items: Map<number, StoredItem>;
      operations: Map<string, { dekId: string }>;
    }
  >;
  dataKeys: Map<string, { tenantId: string; sessionId: string; state: string }>;
}

/** Tampers with the in-memory store's items directly. */
export function memoryItemTamperer(storage: MemorySessionStorage): ItemTamperer {
  const internals = storage as unknown as MemoryInternals;
  const stateOf = (ref: SessionRef) => {
    for (const state of internals.sessions.values()) {
      if (state.record.tenantId === ref.tenantId && state.record.sessionId === ref.sessionId)
        return state;
    }
    throw new Error(`No session ${ref.sessionId}`);
  };
  const itemsOf = (ref: SessionRef) => stateOf(ref).items;
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
    damageItem: async (ref, seq, damage) => {
      if (damage.field === 'ciphertext' && damage.as !== 'text') {
        // The store copies each ciphertext with Buffer.from as it hands rows out, which a
        // number would fail inside this very process: only code in the process could put one
        // there, which is no writer this suite models.
        throw new TamperRefusedError('not-expressible', 'the memory store copies ciphertext bytes');
      }
      const target = item(ref, seq) as unknown as Record<string, unknown>;
      target[damage.field] = RAW_VALUES[damage.field][damage.as as never];
    },
    setOperationDekId: async (ref, operationId, dekId) => {
      const operation = stateOf(ref).operations.get(operationId);
      if (!operation) throw new Error(`No operation ${operationId} in session ${ref.sessionId}`);
      operation.dekId = dekId;
    },
    setNextSeq: async (ref, nextSeq) => {
      const state = stateOf(ref);
      state.record = { ...state.record, nextSeq };
    },
    countActiveKeys: async (ref) =>
      [...internals.dataKeys.values()].filter(
        (key) =>
          key.tenantId === ref.tenantId &&
          key.sessionId === ref.sessionId &&
          key.state === 'active',
      ).length,
    deleteSessionRow: async () => {
      // The memory store keeps a session's items inside its entry: no row to delete alone.
      throw new TamperRefusedError(
        'not-expressible',
        'the memory store keeps items inside their session entry',
      );
    },
  };
}

/**
 * What a JS store would hold for each damage. Text that compares like a number where the store
 * compares (expiry), so the damaged item stays visible and reaches the session layer.
 */
const RAW_VALUES: {
  [F in ItemDamage['field']]: Record<Extract<ItemDamage, { field: F }>['as'], unknown>;
} = {
  seq: { text: 'x1', 'beyond-2^53': 2 ** 60 },
  expiresAt: { text: '9000000000000000', 'beyond-2^53': 2 ** 60 },
  createdAt: { text: 'yesterday' },
  dekId: { integer: 42 },
  ciphertext: { integer: undefined, real: undefined, text: 'AAAA' },
};
