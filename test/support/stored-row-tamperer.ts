import type { Redis } from 'ioredis';
import type { DataSource } from 'typeorm';
import {
  type DataKeyRecord,
  type MemorySessionStorage,
  type SessionRef,
  type StoredItem,
} from '../../src/index.js';
import { dialectFor } from '../../src/storage/typeorm/sql-dialect.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import { packDataKey, unpackDataKey } from '../../src/storage/redis/redis-record-codec.js';

/** Puts a copied row back where it was, replacing whatever holds its key now. */
export type PutBack = () => Promise<void>;

/**
 * Edits data-key rows and copies rows aside, the way a database writer with a backup could:
 * what the security-claims suite needs beyond the item tamperer. One implementation per backend.
 */
export interface StoredRowTamperer {
  /** The session's data keys, lowest generation first. */
  keysOf(ref: SessionRef): Promise<Array<{ dekId: string; generation: number }>>;
  /** Writes another (well-formed) generation into a data-key row. */
  setKeyGeneration(ref: SessionRef, dekId: string, generation: number): Promise<void>;
  wrappedKeyOf(ref: SessionRef, dekId: string): Promise<Buffer>;
  setWrappedKey(ref: SessionRef, dekId: string, wrappedKey: Buffer): Promise<void>;
  deleteKeyRow(ref: SessionRef, dekId: string): Promise<void>;
  /** Copies the item row at `seq` aside (as a backup would hold it). */
  copyItemRow(ref: SessionRef, seq: number): Promise<PutBack>;
  /** Copies a data-key row aside (as a backup would hold it). */
  copyKeyRow(ref: SessionRef, dekId: string): Promise<PutBack>;
}

/** On SQLite, Postgres and MySQL/MariaDB, through the module's own tables. */
export function sqlRowTamperer(dataSource: DataSource, prefix = 'nes_'): StoredRowTamperer {
  const dialect = dialectFor(dataSource);
  const p = (n: number) => dialect.param(n);
  const keys = `"${prefix}data_keys"`;
  const query = (statement: string, params: unknown[]) =>
    dataSource.query<Array<Record<string, unknown>>>(dialect.sql(statement), params);

  /** Copies the row matching `where` (on `params`) and returns how to put it back. */
  async function copyRow(table: string, where: string, params: unknown[]): Promise<PutBack> {
    const [row] = await query(`SELECT * FROM ${table} WHERE ${where}`, params);
    if (!row) throw new Error(`No row in ${table} to copy`);
    const columns = Object.keys(row);
    return async () => {
      await query(`DELETE FROM ${table} WHERE ${where}`, params);
      await query(
        `INSERT INTO ${table} (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((_, i) => p(i + 1)).join(', ')})`,
        columns.map((c) => row[c]),
      );
    };
  }

  return {
    async keysOf(ref) {
      const rows = await query(
        `SELECT "dek_id", "generation" FROM ${keys} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)} ORDER BY "generation"`,
        [ref.tenantId, ref.sessionId],
      );
      return rows.map((row) => ({
        dekId: String(row.dek_id),
        generation: Number(row.generation),
      }));
    },
    async setKeyGeneration(_ref, dekId, generation) {
      await query(`UPDATE ${keys} SET "generation" = ${p(1)} WHERE "dek_id" = ${p(2)}`, [
        generation,
        dekId,
      ]);
    },
    async wrappedKeyOf(_ref, dekId) {
      const [row] = await query(`SELECT "wrapped_key" FROM ${keys} WHERE "dek_id" = ${p(1)}`, [
        dekId,
      ]);
      return Buffer.from(row.wrapped_key as Buffer);
    },
    async setWrappedKey(_ref, dekId, wrappedKey) {
      await query(`UPDATE ${keys} SET "wrapped_key" = ${p(1)} WHERE "dek_id" = ${p(2)}`, [
        wrappedKey,
        dekId,
      ]);
    },
    async deleteKeyRow(_ref, dekId) {
      await query(`DELETE FROM ${keys} WHERE "dek_id" = ${p(1)}`, [dekId]);
    },
    copyItemRow: (ref, seq) =>
      copyRow(
        `"${prefix}items"`,
        `"tenant_id" = ${p(1)} AND "session_id" = ${p(2)} AND "seq" = ${p(3)}`,
        [ref.tenantId, ref.sessionId, seq],
      ),
    copyKeyRow: (_ref, dekId) => copyRow(keys, `"dek_id" = ${p(1)}`, [dekId]),
  };
}

/** On Redis: the session's data-key hash, its items sorted set and the key-id pointers. */
export function redisRowTamperer(client: Redis, keyPrefix: string): StoredRowTamperer {
  const layout = new RedisKeyLayout(keyPrefix);
  const keysKey = (ref: SessionRef) => layout.forSession(ref).dataKeys;
  const record = async (ref: SessionRef, dekId: string): Promise<DataKeyRecord> => {
    const packed = await client.hgetBuffer(keysKey(ref), dekId);
    if (!packed) throw new Error(`No data key ${dekId} in session ${ref.sessionId}`);
    return unpackDataKey(dekId, packed);
  };
  const rewrite = async (ref: SessionRef, dekId: string, change: Partial<DataKeyRecord>) => {
    const current = await record(ref, dekId);
    await client.hset(keysKey(ref), dekId, packDataKey({ ...current, ...change }));
  };
  return {
    async keysOf(ref) {
      const packed = await client.hgetallBuffer(keysKey(ref));
      return Object.entries(packed)
        .map(([dekId, value]) => ({ dekId, generation: unpackDataKey(dekId, value).generation }))
        .toSorted((a, b) => a.generation - b.generation);
    },
    setKeyGeneration: (ref, dekId, generation) => rewrite(ref, dekId, { generation }),
    wrappedKeyOf: async (ref, dekId) => Buffer.from((await record(ref, dekId)).wrappedKey),
    setWrappedKey: (ref, dekId, wrappedKey) => rewrite(ref, dekId, { wrappedKey }),
    async deleteKeyRow(ref, dekId) {
      await client.hdel(keysKey(ref), dekId);
      await client.del(layout.dataKeyPointer(dekId));
    },
    async copyItemRow(ref, seq) {
      const items = layout.forSession(ref).items;
      const [member] = await client.zrangeBuffer(items, seq, seq, 'BYSCORE');
      if (!member) throw new Error(`No item at seq ${seq} to copy`);
      return async () => {
        await client.multi().zremrangebyscore(items, seq, seq).zadd(items, seq, member).exec();
      };
    },
    async copyKeyRow(ref, dekId) {
      const packed = await client.hgetBuffer(keysKey(ref), dekId);
      const pointer = await client.get(layout.dataKeyPointer(dekId));
      if (!packed || pointer === null) throw new Error(`No data key ${dekId} to copy`);
      return async () => {
        await client.hset(keysKey(ref), dekId, packed);
        await client.set(layout.dataKeyPointer(dekId), pointer);
      };
    },
  };
}

/** The private state of MemorySessionStorage, reached into the way a debugger would. */
interface MemoryInternals {
  sessions: Map<string, { record: SessionRef; items: Map<number, StoredItem> }>;
  dataKeys: Map<string, DataKeyRecord>;
}

/** A copy whose buffers are not shared with the store. */
const copyOf = <T extends { ciphertext?: Buffer; wrappedKey?: Buffer }>(value: T): T => ({
  ...value,
  ...(value.ciphertext ? { ciphertext: Buffer.from(value.ciphertext) } : {}),
  ...(value.wrappedKey ? { wrappedKey: Buffer.from(value.wrappedKey) } : {}),
});

/** On the in-memory store, through its private maps. */
export function memoryRowTamperer(storage: MemorySessionStorage): StoredRowTamperer {
  const internals = storage as unknown as MemoryInternals;
  const itemsOf = (ref: SessionRef) => {
    for (const state of internals.sessions.values()) {
      if (state.record.tenantId === ref.tenantId && state.record.sessionId === ref.sessionId)
        return state.items;
    }
    throw new Error(`No session ${ref.sessionId}`);
  };
  const key = (dekId: string) => {
    const found = internals.dataKeys.get(dekId);
    if (!found) throw new Error(`No data key ${dekId}`);
    return found;
  };
  return {
    keysOf: async (ref) =>
      [...internals.dataKeys.values()]
        .filter((k) => k.tenantId === ref.tenantId && k.sessionId === ref.sessionId)
        .map(({ dekId, generation }) => ({ dekId, generation }))
        .toSorted((a, b) => a.generation - b.generation),
    setKeyGeneration: async (_ref, dekId, generation) => {
      internals.dataKeys.set(dekId, { ...key(dekId), generation });
    },
    wrappedKeyOf: async (_ref, dekId) => Buffer.from(key(dekId).wrappedKey),
    setWrappedKey: async (_ref, dekId, wrappedKey) => {
      internals.dataKeys.set(dekId, { ...key(dekId), wrappedKey: Buffer.from(wrappedKey) });
    },
    deleteKeyRow: async (_ref, dekId) => {
      internals.dataKeys.delete(dekId);
    },
    async copyItemRow(ref, seq) {
      const row = itemsOf(ref).get(seq);
      if (!row) throw new Error(`No item ${seq} to copy`);
      const saved = copyOf(row);
      return async () => {
        itemsOf(ref).set(seq, copyOf(saved));
      };
    },
    async copyKeyRow(_ref, dekId) {
      const saved = copyOf(key(dekId));
      return async () => {
        internals.dataKeys.set(dekId, copyOf(saved));
      };
    },
  };
}
