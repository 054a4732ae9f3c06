import type { DataSource } from 'typeorm';
import { EnvKeyProvider, KeyRing } from '../src/keys/index.js';
import {
  EncryptedSession,
  EncryptedSessionService,
  type EncryptedSessionContext,
} from '../src/sessions/index.js';
import { envelopeItemCipher, type ItemCipher } from '../src/sessions/item-cipher.js';
import { createEncryptedSessionWithCipher } from '../src/sessions/item-cipher.testing.js';
import type { SessionRef, SessionStorage } from '../src/storage/index.js';
import { type SqliteSynchronous } from '../src/storage/typeorm/sqlite-data-source.js';
import { newRootKeyEntry } from '../test/support/test-keys.js';
import { openStoreAt, type OpenStore } from '../test/support/throwaway-store.js';
import type { BenchBackend, ServerBackend } from './args.js';
import { createBenchStore, storedItemReads } from './stores.js';

/** Seconds until items written with a TTL expire; the clock jumps past it for the last phase. */
export const ITEM_TTL_SECONDS = 24 * 60 * 60;

/** An injectable clock that follows real time until {@link ManualClock.jumpPastTtl}. */
export class ManualClock {
  private offsetMs = 0;
  /** Epoch ms as the session sees it. */
  readonly now = (): number => Date.now() + this.offsetMs;

  /** Moves the session's time past the expiry of every item written so far with the TTL. */
  jumpPastTtl(): void {
    this.offsetMs += (ITEM_TTL_SECONDS + 60) * 1000;
  }
}

/**
 * One benchmark variant: a fresh store with the module's tables and one session, opened through
 * `EncryptedSessionService` (so its record exists), and `EncryptedSession` handles on it built
 * with the variant's cipher and a manual clock.
 */
export interface BenchFixture {
  readonly clock: ManualClock;
  /** Writes items that expire after {@link ITEM_TTL_SECONDS} (by `clock`). */
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

/** One variant's SQLite file, with the layers under the session for the `--layers` breakdown. */
export interface SqliteFixture extends BenchFixture {
  readonly dataSource: DataSource;
  readonly storage: SessionStorage;
  readonly keyRing: KeyRing;
  readonly cipher: ItemCipher;
  readonly ref: SessionRef;
  /**
   * Bytes the database file holds: `page_count * page_size` after a `wal_checkpoint(TRUNCATE)`,
   * so nothing is left in the WAL and this is exactly the size of the main file.
   */
  databaseBytes(): Promise<number>;
}

const TENANT_ID = 'bench-tenant';
const SESSION_ID = 'bench-session';
/** Pooled connections per variant on a SQL server: the workload runs one call at a time. */
const POOL_SIZE = 4;

/**
 * The two `EncryptedSession` handles of a fixture on one session, on `clock`: built with
 * `cipher`, or through the public constructor (the production path) when it is undefined.
 */
function sessionHandles(
  on: Pick<EncryptedSessionContext, 'tenantId' | 'sessionId' | 'storage' | 'keyRing'>,
  clock: ManualClock,
  cipher: ItemCipher | undefined,
): { expiringSession: EncryptedSession; session: EncryptedSession } {
  const sessionWith = (itemTtlSeconds: number | null) => {
    const context: EncryptedSessionContext = {
      ...on,
      subjectId: null,
      itemTtlSeconds,
      clock: clock.now,
    };
    return cipher
      ? createEncryptedSessionWithCipher(context, cipher)
      : new EncryptedSession(context);
  };
  return { expiringSession: sessionWith(ITEM_TTL_SECONDS), session: sessionWith(null) };
}

/** A {@link BenchFixture} with everything a backend's own fixture type picks from. */
interface OpenedFixture extends ServerFixture, Omit<SqliteFixture, 'dataSource' | 'databaseBytes'> {
  readonly opened: OpenStore;
}

/**
 * Opens a fixture on a fresh store of `backend` (SQLite: with `synchronous`). `dispose` closes
 * the storage and removes the store, also when opening failed halfway.
 *
 * @param cipher `undefined` for the default AES-256-GCM envelope.
 */
async function openFixture(
  backend: BenchBackend,
  synchronous: SqliteSynchronous,
  cipher: ItemCipher | undefined,
): Promise<OpenedFixture> {
  const store = await createBenchStore(backend, { synchronous });
  let opened: OpenStore | undefined;
  try {
    opened = await openStoreAt(store.location, { migrate: true, poolSize: POOL_SIZE });
    const { storage } = opened;
    const keyRing = new KeyRing(
      storage,
      new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' }),
    );
    await new EncryptedSessionService(storage, keyRing).open(SESSION_ID, { tenantId: TENANT_ID });

    const clock = new ManualClock();
    const ref = { tenantId: TENANT_ID, sessionId: SESSION_ID };
    const reads = storedItemReads(store.location, opened);
    const memory = reads.itemsMemoryBytes;
    const open = opened;
    return {
      opened: open,
      storage,
      keyRing,
      cipher: cipher ?? envelopeItemCipher,
      ref,
      clock,
      ...sessionHandles({ ...ref, storage, keyRing }, clock, cipher),
      countRows: () => open.tamper.countItems(ref),
      countExpiredRows: () => reads.countExpiredRows(ref, clock.now()),
      sumStoredItemBytes: () => reads.sumCiphertextBytes(ref),
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

/** A fresh store on the server (a database, or a Redis key prefix, of its own). */
export function openServerFixture(
  backend: ServerBackend,
  cipher: ItemCipher | undefined,
): Promise<ServerFixture> {
  // synchronous is a SQLite setting: a server keeps its own durability settings.
  return openFixture(backend, 'FULL', cipher);
}

/** A fresh temp SQLite file (WAL, the given `synchronous`). */
export async function openSqliteFixture(
  synchronous: SqliteSynchronous,
  cipher: ItemCipher | undefined,
): Promise<SqliteFixture> {
  const fixture = await openFixture('sqlite', synchronous, cipher);
  const dataSource = fixture.opened.dataSource!;
  const scalar = async (sql: string): Promise<number> => {
    const rows: Record<string, unknown>[] = await dataSource.query(sql);
    return Number(Object.values(rows[0] ?? {})[0] ?? 0);
  };
  return {
    ...fixture,
    dataSource,
    databaseBytes: async () => {
      await dataSource.query('PRAGMA wal_checkpoint(TRUNCATE)');
      return (await scalar('PRAGMA page_count')) * (await scalar('PRAGMA page_size'));
    },
  };
}
