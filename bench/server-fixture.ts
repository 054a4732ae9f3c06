import { randomBytes } from 'node:crypto';
import { EnvKeyProvider, KeyRing } from '../src/keys/index.js';
import { EncryptedSessionService, type EncryptedSession } from '../src/sessions/index.js';
import type { ItemCipher } from '../src/sessions/item-cipher.js';
import type { ServerBackend } from './args.js';
import { ManualClock, sessionHandles } from './sqlite-fixture.js';
import { createThrowawayStore, openStoreAt } from './stores.js';

/**
 * What the benchmark phases need of one variant's store, on any backend. `SqliteFixture` has
 * all of it (and more: the file size and the layers for `--layers`).
 */
export interface BenchFixture {
  readonly clock: ManualClock;
  /** Writes items that expire after `ITEM_TTL_SECONDS` (by `clock`). */
  readonly expiringSession: EncryptedSession;
  /** Writes items that never expire; also used for every read. */
  readonly session: EncryptedSession;
  /** Stored items, expired or not. */
  countRows(): Promise<number>;
  /** Stored items whose expiry has passed by `clock` (still physically present). */
  countExpiredRows(): Promise<number>;
  /** Bytes of the stored ciphertexts (SQL: `SUM(LENGTH(ciphertext))`). */
  sumStoredItemBytes(): Promise<number>;
  /** Closes the storage and removes the store. */
  dispose(): Promise<void>;
}

/** One variant's throwaway store on a server. */
export interface ServerFixture extends BenchFixture {
  /** Redis only: `MEMORY USAGE` of the session's item ZSET (SAMPLES 0); undefined on SQL. */
  readonly itemsMemoryBytes: (() => Promise<number>) | undefined;
}

const TENANT_ID = 'bench-tenant';
const SESSION_ID = 'bench-session';
/** Pooled connections per variant: the workload runs one call at a time. */
const POOL_SIZE = 4;

/**
 * A fresh store on the server (a database of its own, or a key prefix of its own on Redis)
 * with the module's tables, the session opened through `EncryptedSessionService` (so its
 * record exists), and `EncryptedSession` handles built with the given cipher and a manual
 * clock, exactly as {@link openSqliteFixture} does for SQLite. `dispose` closes the storage and
 * removes the store, also when opening failed halfway.
 *
 * @param cipher `undefined` for the default AES-256-GCM envelope.
 */
export async function openServerFixture(
  backend: ServerBackend,
  cipher: ItemCipher | undefined,
): Promise<ServerFixture> {
  const store = await createThrowawayStore(backend);
  let opened;
  try {
    opened = await openStoreAt(store.location, { migrate: true, poolSize: POOL_SIZE });
    const { storage } = opened;
    const provider = new EnvKeyProvider({
      keys: `k1:${randomBytes(32).toString('base64')}`,
      activeKeyId: 'k1',
    });
    const keyRing = new KeyRing(storage, provider);
    await new EncryptedSessionService(storage, keyRing).open(SESSION_ID, { tenantId: TENANT_ID });

    const clock = new ManualClock();
    const ref = { tenantId: TENANT_ID, sessionId: SESSION_ID };
    const open = opened;
    const memory = open.itemsMemoryBytes;
    return {
      clock,
      ...sessionHandles({ ...ref, storage, keyRing }, clock, cipher),
      countRows: () => open.countRows(ref),
      countExpiredRows: () => open.countExpiredRows(ref, clock.now()),
      sumStoredItemBytes: () => open.sumCiphertextBytes(ref),
      itemsMemoryBytes: memory ? () => memory(ref) : undefined,
      dispose: async () => {
        try {
          await open.close();
        } finally {
          await store.remove();
        }
      },
    };
  } catch (error) {
    await opened?.close().catch(() => undefined);
    await store.remove().catch(() => undefined);
    throw error;
  }
}
