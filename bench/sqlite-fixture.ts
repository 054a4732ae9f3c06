import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import { EnvKeyProvider, KeyRing } from '../src/keys/index.js';
import {
  EncryptedSession,
  EncryptedSessionService,
  type EncryptedSessionContext,
} from '../src/sessions/index.js';
import { envelopeItemCipher, type ItemCipher } from '../src/sessions/item-cipher.js';
import { createEncryptedSessionWithCipher } from '../src/sessions/item-cipher.testing.js';
import {
  TypeOrmSessionStorage,
  dialectFor,
  openSqliteDataSource,
  runSessionMigrations,
  tableNamesFor,
  type SessionRef,
  type SqliteSynchronous,
} from '../src/storage/index.js';

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

/** One benchmark variant: a fresh database file, its storage, key ring and session handles. */
export interface SqliteFixture {
  readonly path: string;
  readonly dataSource: DataSource;
  /** The layers under the session, for the `--layers` breakdown. */
  readonly storage: TypeOrmSessionStorage;
  readonly keyRing: KeyRing;
  readonly cipher: ItemCipher;
  readonly ref: SessionRef;
  readonly clock: ManualClock;
  /** Writes items that expire after {@link ITEM_TTL_SECONDS} (by `clock`). */
  readonly expiringSession: EncryptedSession;
  /** Writes items that never expire; also used for every read. */
  readonly session: EncryptedSession;
  /** Rows in the items table, expired or not. */
  countRows(): Promise<number>;
  /** Rows whose `expires_at` has passed by `clock` (still physically present). */
  countExpiredRows(): Promise<number>;
  /** `SUM(LENGTH(ciphertext))` over the items table. */
  sumStoredItemBytes(): Promise<number>;
  /**
   * Bytes the database file holds: `page_count * page_size` after a `wal_checkpoint(TRUNCATE)`,
   * so nothing is left in the WAL and this is exactly the size of the main file.
   */
  databaseBytes(): Promise<number>;
  /** Closes the storage (and DataSource) and deletes the temp directory. */
  dispose(): Promise<void>;
}

/**
 * The two `EncryptedSession` handles of a fixture on one session, on `clock`: built with
 * `cipher`, or through the public constructor (the production path) when it is undefined.
 */
export function sessionHandles(
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

const TENANT_ID = 'bench-tenant';
const SESSION_ID = 'bench-session';

/**
 * Creates a fresh temp directory and SQLite file (WAL, the given `synchronous`), runs the
 * module's migrations, opens the session through `EncryptedSessionService` (so its row exists)
 * and returns `EncryptedSession` handles built directly with the given cipher and a manual clock.
 *
 * @param cipher `undefined` for the default AES-256-GCM envelope.
 */
export async function openSqliteFixture(
  synchronous: SqliteSynchronous,
  cipher: ItemCipher | undefined,
): Promise<SqliteFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'nes-bench-'));
  const path = join(dir, 'sessions.db');
  let dataSource: DataSource | undefined;
  let storage: TypeOrmSessionStorage | undefined;
  try {
    const db = await openSqliteDataSource({ path, synchronous });
    dataSource = db;
    await runSessionMigrations(db, dialectFor(db));
    storage = new TypeOrmSessionStorage({ dataSource: db, ownsDataSource: true });
    const provider = new EnvKeyProvider({
      keys: `k1:${randomBytes(32).toString('base64')}`,
      activeKeyId: 'k1',
    });
    const keyRing = new KeyRing(storage, provider);
    await new EncryptedSessionService(storage, keyRing).open(SESSION_ID, { tenantId: TENANT_ID });

    const clock = new ManualClock();
    const items = `"${tableNamesFor().items}"`;
    const scalar = async (sql: string, params: unknown[] = []): Promise<number> => {
      const rows = (await db.query(sql, params)) as Record<string, unknown>[];
      return Number(Object.values(rows[0] ?? {})[0] ?? 0);
    };
    const ownedStorage = storage;
    const ref = { tenantId: TENANT_ID, sessionId: SESSION_ID };

    return {
      path,
      dataSource: db,
      storage: ownedStorage,
      keyRing,
      cipher: cipher ?? envelopeItemCipher,
      ref,
      clock,
      ...sessionHandles({ ...ref, storage: ownedStorage, keyRing }, clock, cipher),
      countRows: () => scalar(`SELECT COUNT(*) FROM ${items}`),
      countExpiredRows: () =>
        scalar(
          `SELECT COUNT(*) FROM ${items} WHERE "expires_at" IS NOT NULL AND "expires_at" <= ?`,
          [clock.now()],
        ),
      sumStoredItemBytes: () =>
        scalar(`SELECT COALESCE(SUM(LENGTH("ciphertext")), 0) FROM ${items}`),
      databaseBytes: async () => {
        await db.query('PRAGMA wal_checkpoint(TRUNCATE)');
        return (await scalar('PRAGMA page_count')) * (await scalar('PRAGMA page_size'));
      },
      dispose: async () => {
        try {
          await ownedStorage.close();
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (error) {
    await (storage ? storage.close() : dataSource?.destroy())?.catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
