import { performance } from 'node:perf_hooks';
import type { QueryRunner } from 'typeorm';
import { decodeItemPayload, encodeItemPayload } from '../src/crypto/index.js';
import type { ItemCipher } from '../src/sessions/item-cipher.js';
import type { SessionReadScope, StoredItem } from '../src/storage/index.js';
import { nullItemCipher } from './null-item-cipher.js';
import { openSqliteFixture, type SqliteFixture } from './fixtures.js';
import { BATCH_SIZE, READ_LIMIT, batchesOf, itemOf } from './workload.js';

/** Mean time of one call in ms, after `warm` untimed calls and a GC. */
async function mean(
  reps: number,
  call: () => unknown,
  warm = Math.ceil(reps / 10),
): Promise<number> {
  for (let i = 0; i < warm; i++) await call();
  (globalThis as { gc?: () => void }).gc?.();
  const started = performance.now();
  for (let i = 0; i < reps; i++) await call();
  return (performance.now() - started) / reps;
}

interface RawStatement {
  readonly reader: boolean;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): unknown;
}
interface RawDatabase {
  prepare(sql: string): RawStatement;
}

/** Records the SQL the storage adapter sends through TypeORM while `work` runs. */
async function captureQueries(
  runner: QueryRunner,
  work: () => Promise<unknown>,
): Promise<[string, unknown[]][]> {
  const captured: [string, unknown[]][] = [];
  const original = runner.query.bind(runner);
  runner.query = ((sql: string, params?: unknown[], structured?: boolean) => {
    captured.push([sql, params ?? []]);
    return original(sql, params, structured as true);
  }) as QueryRunner['query'];
  try {
    await work();
  } finally {
    runner.query = original as QueryRunner['query'];
  }
  return captured;
}

/** Per-layer cost of one read shape, in ms per call. */
interface ReadLayers {
  sqlite: number;
  typeorm: number;
  storage: number;
  keyRing: number;
  open: number;
  decode: number;
  session: number;
}

async function readLayers(fixture: SqliteFixture, limit: number | undefined): Promise<ReadLayers> {
  const { session, storage, keyRing, cipher, ref, dataSource } = fixture;
  const reps = limit === undefined ? 5 : 2000;
  const runner = dataSource.createQueryRunner();
  const statements = await captureQueries(runner, () => session.getItems(limit));
  const raw = (dataSource.driver as unknown as { databaseConnection: RawDatabase })
    .databaseConnection;
  const prepared = statements.map(([sql, params]) => [raw.prepare(sql), params] as const);
  const now = fixture.clock.now();
  // A limited read is one newest-first query; a full read is timed as one page of everything.
  const listRows = (scope: SessionReadScope, at: number) =>
    limit === undefined
      ? scope.items.listVisiblePage(at, 0, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)
      : scope.items.listVisible(at, limit);
  const rows: StoredItem[] = await storage.read(ref, (scope) => listRows(scope, now));
  const dataKey = await keyRing.keyForRead(ref, rows[0]!.dekId);
  const binding = (row: StoredItem) => ({ ...ref, seq: row.seq, expiresAt: row.expiresAt });
  const payloads = rows.map((row) => cipher.open(dataKey, binding(row), row.ciphertext));
  return {
    sqlite: await mean(reps, () => {
      for (const [statement, params] of prepared) {
        if (statement.reader) statement.all(...params);
        else statement.run(...params);
      }
    }),
    typeorm: await mean(reps, async () => {
      for (const [sql, params] of statements) await runner.query(sql, params);
    }),
    storage: await mean(reps, () => storage.read(ref, (scope) => listRows(scope, now))),
    keyRing: await mean(reps, () => keyRing.keyForRead(ref, dataKey.dekId)),
    open: await mean(reps, () => {
      for (const row of rows) cipher.open(dataKey, binding(row), row.ciphertext);
    }),
    decode: await mean(reps, () => {
      for (const payload of payloads) decodeItemPayload(payload);
    }),
    session: await mean(reps, () => session.getItems(limit)),
  };
}

/** Per-layer cost of `addItems` with a batch of 10, in ms per batch. */
interface AddLayers {
  encode: number;
  seal: number;
  session: number;
}

async function addLayers(fixture: SqliteFixture, total: number): Promise<AddLayers> {
  const { session, keyRing, cipher, ref } = fixture;
  const batch = Array.from({ length: BATCH_SIZE }, (_, i) => itemOf(total + i));
  const payloads = batch.map((item) => encodeItemPayload(item));
  const dataKey = await keyRing.keyForWrite(ref, null);
  let seq = total;
  return {
    encode: await mean(2000, () => batch.forEach((item) => encodeItemPayload(item))),
    seal: await mean(2000, () =>
      payloads.forEach((payload) =>
        cipher.seal(dataKey, { ...ref, seq: ++seq, expiresAt: null }, payload),
      ),
    ),
    session: await mean(500, () => session.addItems(batch)),
  };
}

const us = (ms: number) => (ms * 1000).toFixed(1);

/**
 * `--layers`: where the time of a read and of an add goes, layer by layer, for both ciphers on a
 * fresh `synchronous=NORMAL` database of `total` items. Each layer is timed on its own over the
 * same rows the session reads: SQLite alone (better-sqlite3 prepared statement), the same SQL
 * through TypeORM's query runner, the storage adapter (serial queue, row mapping), the key ring
 * lookup, `cipher.open` for every row, and `decodeItemPayload` for every row; then the whole
 * `session.getItems()`. Returns the table as text.
 */
export async function layerBreakdown(
  total: number,
  log: (message: string) => void,
): Promise<string> {
  const variants: [string, ItemCipher | undefined][] = [
    ['encrypted', undefined],
    ['plain', nullItemCipher],
  ];
  const results: { name: string; limited: ReadLayers; full: ReadLayers; add: AddLayers }[] = [];
  for (const [name, cipher] of variants) {
    const fixture = await openSqliteFixture('NORMAL', cipher);
    try {
      log(`layers: ${name}, ${total} items`);
      for (const { from, to, expiring } of batchesOf(total)) {
        const batch = Array.from({ length: to - from }, (_, i) => itemOf(from + i));
        await (expiring ? fixture.expiringSession : fixture.session).addItems(batch);
      }
      const limited = await readLayers(fixture, READ_LIMIT);
      const full = await readLayers(fixture, undefined);
      const add = await addLayers(fixture, total);
      results.push({ name, limited, full, add });
    } finally {
      await fixture.dispose();
    }
  }
  const readRows: [string, keyof ReadLayers][] = [
    ['SQLite: better-sqlite3 stmt.all, same SQL', 'sqlite'],
    ['  + TypeORM queryRunner.query', 'typeorm'],
    ['  + storage.read(listVisible): queue, row mapping', 'storage'],
    ['key ring: keyForRead (cached)', 'keyRing'],
    ['cipher.open, every row', 'open'],
    ['decodeItemPayload (JSON), every row', 'decode'],
    ['session.getItems() end to end', 'session'],
  ];
  const lines = [
    `Layer breakdown, ${total} items, synchronous=NORMAL (mean per call)`,
    '',
    `getItems(${READ_LIMIT}), us/call`.padEnd(50) +
      results.map((r) => r.name.padStart(24)).join(''),
    ...readRows.map(
      ([label, key]) =>
        label.padEnd(50) + results.map((r) => us(r.limited[key]).padStart(24)).join(''),
    ),
    `unattributed (session - storage - keys - open - decode)`.padEnd(50) +
      results
        .map((r) => {
          const l = r.limited;
          return us(l.session - l.storage - l.keyRing - l.open - l.decode).padStart(24);
        })
        .join(''),
    '',
    `getItems() of ${total}, ms/call`.padEnd(50) + results.map((r) => r.name.padStart(24)).join(''),
    ...readRows.map(
      ([label, key]) =>
        label.padEnd(50) + results.map((r) => r.full[key].toFixed(2).padStart(24)).join(''),
    ),
    '',
    `addItems(batch of ${BATCH_SIZE}), us/batch`.padEnd(50) +
      results.map((r) => r.name.padStart(24)).join(''),
    ...(
      [
        ['encodeItemPayload x 10', 'encode'],
        ['cipher.seal x 10', 'seal'],
        ['session.addItems end to end', 'session'],
      ] as [string, keyof AddLayers][]
    ).map(
      ([label, key]) => label.padEnd(50) + results.map((r) => us(r.add[key]).padStart(24)).join(''),
    ),
    '',
  ];
  return lines.join('\n');
}
