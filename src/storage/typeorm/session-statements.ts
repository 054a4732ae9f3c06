import type { SqlDialect } from './sql-dialect.js';
import { quotedTable, type TableNames } from './table-names.js';

/*
 * The SQL text of every statement the TypeORM session storage runs, parameterized and built
 * once per table prefix and dialect; sql-dialect.ts holds what differs between the engines.
 */

/**
 * Parameters per row of `insertItems` (tenant, session and the five item columns): with the
 * dialect's parameter limit, it caps how many rows one insert may carry.
 */
export const ITEM_INSERT_PARAMETERS = 7;

/** Parameters per row of `insertAuditRecords`. */
export const AUDIT_RECORD_INSERT_PARAMETERS = 14;

/** The statements of {@link buildSessionStatements}, by name. */
export type SessionStatements = ReturnType<typeof buildSessionStatements>;

/** Every statement the adapter runs, built once per table prefix and dialect. */
export function buildSessionStatements(t: TableNames, d: SqlDialect) {
  const statements = buildPortableStatements(t, d);
  const forEngine = {} as Record<string, unknown>;
  for (const [name, statement] of Object.entries(statements)) {
    forEngine[name] =
      typeof statement === 'string'
        ? d.sql(statement)
        : typeof statement === 'function'
          ? (count: number) => d.sql((statement as (count: number) => string)(count))
          : Object.fromEntries(Object.entries(statement).map(([key, text]) => [key, d.sql(text)]));
  }
  return forEngine as typeof statements;
}

/**
 * The statements with double-quoted identifiers (standard SQL); {@link buildSessionStatements} adapts
 * the quoting per engine.
 */
function buildPortableStatements(t: TableNames, d: SqlDialect) {
  const [
    sessions,
    items,
    dataKeys,
    operations,
    auditRecords,
    auditHeads,
    checkpoints,
    leases,
    holds,
    ledger,
  ] = [
    t.sessions,
    t.items,
    t.dataKeys,
    t.historyOperations,
    t.auditRecords,
    t.auditHeads,
    t.auditCheckpoints,
    t.jobLeases,
    t.legalHolds,
    t.erasureLedger,
  ].map((name) => quotedTable(t, name));
  const p = (n: number) => d.param(n);
  const itemColumns = '"seq", "dek_id", "expires_at", "created_at", "ciphertext"';
  // pg returns bytea as hex text, twice the bytes; base64 is a third smaller to send and parse.
  const selectedItemColumns =
    d.backend === 'postgres'
      ? `"seq", "dek_id", "expires_at", "created_at", encode("ciphertext", 'base64') AS "ciphertext"`
      : itemColumns;
  const visible = (nowParam: string) => `("expires_at" IS NULL OR "expires_at" > ${nowParam})`;
  const keyColumns =
    '"dek_id", "tenant_id", "session_id", "subject_id", "generation", "first_seq", "kek_id", "wrapped_key", "state", "created_at", "destroyed_at"';
  const placeholders = (from: number, count: number) =>
    Array.from({ length: count }, (_, i) => p(from + i)).join(', ');
  const auditRecordColumns =
    '"chain_id", "seq", "tenant_id", "session_id", "event_id", "event_time", "action", "outcome", "actor_id", "subject_ref", "mac_key_id", "prev_mac", "mac", "body"';
  const headColumns = '"chain_id", "tenant_id", "seq", "mac", "last_time"';
  const macColumn = (column: string) =>
    d.backend === 'sqlite'
      ? `CASE WHEN typeof("${column}") = 'blob' THEN hex("${column}") END AS "${column}"`
      : `"${column}"`;
  // SQLite's write transaction already holds the database's one write lock.
  const forUpdate = d.backend === 'sqlite' ? '' : ' FOR UPDATE';
  const forShare = { sqlite: '', postgres: ' FOR SHARE', mysql: ' LOCK IN SHARE MODE' }[d.backend];
  const leaseColumns = '"job", "owner", "token", "expires_at"';
  // Postgres and SQLite hand the changed row back; MySQL reads it back under the update's lock.
  const returningLease = d.backend === 'mysql' ? '' : ` RETURNING ${leaseColumns}`;
  const now = d.nowMs;
  // Ids compared and sorted by their bytes: SQLite's BINARY collation and MySQL's varbinary do
  // already; Postgres' id columns take the database's collation, so the statement names "C".
  const byBytes = (column: string) =>
    d.backend === 'postgres' ? `"${column}" COLLATE "C"` : `"${column}"`;
  const [tenantBytes, sessionBytes] = [byBytes('tenant_id'), byBytes('session_id')];
  const holdColumns =
    '"hold_id", "tenant_id", "session_id", "subject_id", "matter_ref", "placed_at", "placed_by", "released_at", "released_by"';
  const ledgerColumns =
    '"erasure_id", "tenant_id", "scope", "subject_ref", "session_ids", "created_at", "completed_at", "receipt"';
  // The hold and ledger id columns compare and sort by bytes on every engine (Postgres: "C").
  /** Parameters: the tenant when `tenant`, then the hold id to start after, then the limit. */
  const listHolds = (tenant: boolean, activeOnly: boolean): string => {
    const first = tenant ? 2 : 1;
    const where = [
      ...(tenant ? [`"tenant_id" = ${p(1)}`] : []),
      ...(activeOnly ? ['"released_at" IS NULL'] : []),
      `"hold_id" > ${p(first)}`,
    ];
    return `SELECT ${holdColumns} FROM ${holds} WHERE ${where.join(' AND ')} ORDER BY "hold_id" ASC LIMIT ${p(first + 1)}`;
  };
  const activeHoldsCovering = `SELECT ${holdColumns} FROM ${holds} WHERE "tenant_id" = ${p(1)} AND "released_at" IS NULL AND ("session_id" = ${p(2)} OR "subject_id" = ${p(3)}) ORDER BY "hold_id" ASC`;
  // The same for a session by its row, in one statement: its subject read by a subquery (no
  // row, or no subject, matches no subject hold).
  const activeHoldsCoveringSession = `SELECT ${holdColumns} FROM ${holds} WHERE "tenant_id" = ${p(1)} AND "released_at" IS NULL AND ("session_id" = ${p(2)} OR "subject_id" = (SELECT "subject_id" FROM ${sessions} WHERE "tenant_id" = ${p(3)} AND "session_id" = ${p(4)})) ORDER BY "hold_id" ASC`;
  // The insert of `rowCount` audit records, their parameters numbered from 1.
  const insertAuditRows = (rowCount: number): string => {
    const rows = Array.from(
      { length: rowCount },
      (_, r) =>
        `(${placeholders(r * AUDIT_RECORD_INSERT_PARAMETERS + 1, AUDIT_RECORD_INSERT_PARAMETERS)})`,
    );
    return `INSERT INTO ${auditRecords} (${auditRecordColumns}) VALUES ${rows.join(', ')}`;
  };
  // Moves a chain's head from the seq it was locked at; its five parameters numbered from
  // `first` (after a statement's other parameters, where it is part of one).
  const moveAuditHeadFrom = (first: number): string => {
    const q = (n: number) => p(first + n - 1);
    return `UPDATE ${auditHeads} SET "seq" = ${q(1)}, "mac" = ${q(2)}, "last_time" = ${q(3)} WHERE "chain_id" = ${q(4)} AND "seq" = ${q(5)}`;
  };
  const insertAuditCache = new Map<number, string>();
  const insertMovingHeadCache = new Map<number, string>();
  const insertItemsCache = new Map<number, string>();
  const deleteBySeqCache = new Map<number, string>();
  const resealCache = new Map<number, string>();
  const destroyByIdsCache = new Map<number, string>();

  return {
    findSession: `SELECT * FROM ${sessions} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
    insertSession: d.insertIgnoringDuplicates(
      `INSERT INTO ${sessions} ("tenant_id", "session_id", "subject_id", "created_at", "last_activity_at", "next_seq", "item_ttl_seconds", "legal_hold") VALUES (${placeholders(1, 8)})`,
    ),
    advanceSequence: `UPDATE ${sessions} SET "next_seq" = ${
      d.sequenceReadBack === 'last-insert-id'
        ? `LAST_INSERT_ID("next_seq" + ${p(1)})`
        : d.backend === 'sqlite'
          ? // SQLite would add to TEXT as if it were 0; leave a damaged value for the read-back.
            `CASE WHEN typeof("next_seq") = 'integer' THEN "next_seq" + ${p(1)} ELSE "next_seq" END`
          : `"next_seq" + ${p(1)}`
    }, "last_activity_at" = ${p(2)} WHERE "tenant_id" = ${p(3)} AND "session_id" = ${p(4)}${
      d.sequenceReadBack === 'returning' ? ' RETURNING "next_seq"' : ''
    }`,
    // Never back: a job locks with the activity time it read, and an append may have committed
    // a later one in between.
    touchSession: `UPDATE ${sessions} SET "last_activity_at" = ${d.backend === 'sqlite' ? 'MAX' : 'GREATEST'}("last_activity_at", ${p(1)}) WHERE "tenant_id" = ${p(2)} AND "session_id" = ${p(3)}`,
    readSequence: `SELECT "next_seq" FROM ${sessions} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
    insertItems(rowCount: number): string {
      let statement = insertItemsCache.get(rowCount);
      if (!statement) {
        const rows = Array.from(
          { length: rowCount },
          (_, r) => `(${placeholders(r * ITEM_INSERT_PARAMETERS + 1, ITEM_INSERT_PARAMETERS)})`,
        );
        statement = `INSERT INTO ${items} ("tenant_id", "session_id", ${itemColumns}) VALUES ${rows.join(', ')}`;
        insertItemsCache.set(rowCount, statement);
      }
      return statement;
    },
    // Rows whose seq no reader could use (beyond 2^53; on SQLite also TEXT or BLOB, which sort
    // above every number) are selected too, last, so the row mapper reports them instead of
    // the bounds skipping them. The primary key still serves the range and the order.
    listVisiblePage: `SELECT ${selectedItemColumns} FROM ${items} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)} AND "seq" > ${p(3)} AND ("seq" <= ${p(4)} OR "seq" > ${Number.MAX_SAFE_INTEGER}) AND ${visible(p(5))} ORDER BY "seq" ASC LIMIT ${p(6)}`,
    listNewestVisible: `SELECT ${selectedItemColumns} FROM ${items} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)} AND ${visible(p(3))} ORDER BY "seq" DESC LIMIT ${p(4)}`,
    // The retention scan: a range of the expiry index (bounded below by the page's cursor, so a
    // later page skips what earlier ones passed over) and the keyset after the cursor's item.
    listExpiredItems: `SELECT "tenant_id", "session_id", ${selectedItemColumns} FROM ${items} WHERE "expires_at" <= ${p(1)} AND "expires_at" >= ${p(2)} AND ("expires_at" > ${p(3)} OR ("expires_at" = ${p(4)} AND (${tenantBytes} > ${p(5)} OR (${tenantBytes} = ${p(6)} AND (${sessionBytes} > ${p(7)} OR (${sessionBytes} = ${p(8)} AND "seq" > ${p(9)})))))) ORDER BY "expires_at" ASC, ${tenantBytes} ASC, ${sessionBytes} ASC, "seq" ASC LIMIT ${p(10)}`,
    deleteItemsBySeq(count: number): string {
      let statement = deleteBySeqCache.get(count);
      if (!statement) {
        statement = `DELETE FROM ${items} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)} AND "seq" IN (${placeholders(3, count)})`;
        deleteBySeqCache.set(count, statement);
      }
      return statement;
    },
    deleteAllItems: `DELETE FROM ${items} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
    // Re-encryption: a retiring key's items in seq order, then each replaced only while it is
    // still sealed under that key.
    listSealedUnder: `SELECT ${selectedItemColumns} FROM ${items} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)} AND "dek_id" = ${p(3)} AND "seq" > ${p(4)} ORDER BY "seq" ASC LIMIT ${p(5)}`,
    /**
     * Postgres: re-encryption of `count` items in one statement (UPDATE ... FROM VALUES),
     * parameters in order: (seq, dek_id, ciphertext) per item, then tenant, session and the
     * retiring key. SQLite and MySQL replace row by row (`resealItem`).
     */
    resealItems(count: number): string {
      let statement = resealCache.get(count);
      if (!statement) {
        const rows = Array.from({ length: count }, (_, r) => {
          const [seq, dekId, ciphertext] = [p(3 * r + 1), p(3 * r + 2), p(3 * r + 3)];
          // Postgres types a VALUES list by its first row.
          return r === 0
            ? `(${seq}::bigint, ${dekId}::char(36), ${ciphertext}::bytea)`
            : `(${seq}, ${dekId}, ${ciphertext})`;
        });
        const [tenant, session, from] = [p(3 * count + 1), p(3 * count + 2), p(3 * count + 3)];
        statement = `UPDATE ${items} AS i SET "dek_id" = v."dek_id", "ciphertext" = v."ciphertext" FROM (VALUES ${rows.join(', ')}) AS v("seq", "dek_id", "ciphertext") WHERE i."tenant_id" = ${tenant} AND i."session_id" = ${session} AND i."dek_id" = ${from} AND i."seq" = v."seq"`;
        resealCache.set(count, statement);
      }
      return statement;
    },
    resealItem: `UPDATE ${items} SET "dek_id" = ${p(1)}, "ciphertext" = ${p(2)} WHERE "tenant_id" = ${p(3)} AND "session_id" = ${p(4)} AND "seq" = ${p(5)} AND "dek_id" = ${p(6)}`,
    findDataKey: `SELECT ${keyColumns} FROM ${dataKeys} WHERE "dek_id" = ${p(1)}`,
    findActiveDataKey: `SELECT ${keyColumns} FROM ${dataKeys} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)} AND "state" = 'active' ORDER BY "generation" DESC LIMIT 1`,
    maxGeneration: `SELECT COALESCE(MAX("generation"), 0) AS "max_generation" FROM ${dataKeys} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
    insertDataKey: d.insertIgnoringDuplicates(
      `INSERT INTO ${dataKeys} (${keyColumns}) VALUES (${placeholders(1, 11)})`,
    ),
    retireActiveDataKeys: `UPDATE ${dataKeys} SET "state" = 'retiring' WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)} AND "state" = 'active' AND "generation" < ${p(3)}`,
    listWrappedByOtherKek: `SELECT ${keyColumns} FROM ${dataKeys} WHERE "kek_id" <> ${p(1)} AND "state" <> 'destroyed' AND "dek_id" > ${p(2)} ORDER BY "dek_id" ASC LIMIT ${p(3)}`,
    listRetiringDataKeys: `SELECT ${keyColumns} FROM ${dataKeys} WHERE "state" = 'retiring' AND "dek_id" > ${p(1)} ORDER BY "dek_id" ASC LIMIT ${p(2)}`,
    replaceWrapping: `UPDATE ${dataKeys} SET "kek_id" = ${p(1)}, "wrapped_key" = ${p(2)} WHERE "dek_id" = ${p(3)} AND "tenant_id" = ${p(4)} AND "session_id" = ${p(5)} AND "kek_id" = ${p(6)} AND "state" <> 'destroyed'`,
    // Every key of a session, served by the (tenant, session, generation) unique key.
    listSessionDataKeys: `SELECT ${keyColumns} FROM ${dataKeys} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)} ORDER BY "generation" ASC`,
    destroyDataKeysById(count: number): string {
      let statement = destroyByIdsCache.get(count);
      if (!statement) {
        statement = `UPDATE ${dataKeys} SET "state" = 'destroyed', "wrapped_key" = ${p(1)}, "destroyed_at" = ${p(2)} WHERE "tenant_id" = ${p(3)} AND "session_id" = ${p(4)} AND "state" <> 'destroyed' AND "dek_id" IN (${placeholders(5, count)})`;
        destroyByIdsCache.set(count, statement);
      }
      return statement;
    },
    // One pass over the data keys; a retiring key is retired when its session's next
    // generation was created (its own creation when that row is missing).
    dataKeyAges: `SELECT SUM(CASE WHEN k."state" = 'active' THEN 1 ELSE 0 END) AS "active_keys", MIN(CASE WHEN k."state" = 'active' THEN k."created_at" END) AS "oldest_active", SUM(CASE WHEN k."state" = 'active' AND k."created_at" < ${p(1)} THEN 1 ELSE 0 END) AS "active_before", SUM(CASE WHEN k."state" = 'retiring' THEN 1 ELSE 0 END) AS "retiring_keys", MIN(CASE WHEN k."state" = 'retiring' THEN COALESCE(n."created_at", k."created_at") END) AS "oldest_retired" FROM ${dataKeys} k LEFT JOIN ${dataKeys} n ON k."state" = 'retiring' AND n."tenant_id" = k."tenant_id" AND n."session_id" = k."session_id" AND n."generation" = k."generation" + 1 WHERE k."state" <> 'destroyed' AND k."tenant_id" <> ${p(2)}`,
    countByKek: `SELECT "kek_id", COUNT(*) AS "data_keys" FROM ${dataKeys} WHERE "state" <> 'destroyed' GROUP BY "kek_id"`,
    destroyDataKeys: `UPDATE ${dataKeys} SET "state" = 'destroyed', "wrapped_key" = ${p(1)}, "destroyed_at" = ${p(2)} WHERE "tenant_id" = ${p(3)} AND "session_id" = ${p(4)} AND "state" <> 'destroyed'`,
    findOperation: `SELECT "operation_id", "dek_id", "digest", "created_at" FROM ${operations} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)} AND "operation_id" = ${p(3)}`,
    insertOperation: d.insertIgnoringDuplicates(
      `INSERT INTO ${operations} ("tenant_id", "session_id", "operation_id", "dek_id", "digest", "created_at") VALUES (${placeholders(1, 6)})`,
    ),
    deleteOperations: `DELETE FROM ${operations} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
    lockAuditHead: `SELECT ${headColumns} FROM ${auditHeads} WHERE "chain_id" = ${p(1)}${forUpdate}`,
    // A chain's head row exists before its first record (seq 0), so there is a row to lock.
    // MySQL: INSERT IGNORE would take a shared lock on a row another unit just inserted, and
    // two units upgrading theirs to FOR UPDATE deadlock; the no-op update locks exclusively.
    insertEmptyAuditHead:
      d.backend === 'mysql'
        ? `INSERT INTO ${auditHeads} (${headColumns}) VALUES (${p(1)}, ${p(2)}, 0, ${p(3)}, 0) ON DUPLICATE KEY UPDATE "seq" = "seq"`
        : d.insertIgnoringDuplicates(
            `INSERT INTO ${auditHeads} (${headColumns}) VALUES (${p(1)}, ${p(2)}, 0, ${p(3)}, 0)`,
          ),
    moveAuditHead: moveAuditHeadFrom(1),
    insertAuditRecords(rowCount: number): string {
      let statement = insertAuditCache.get(rowCount);
      if (!statement) {
        statement = insertAuditRows(rowCount);
        insertAuditCache.set(rowCount, statement);
      }
      return statement;
    },
    /**
     * Postgres: `insertAuditRecords` and `moveAuditHead` in one statement (a data-modifying
     * WITH, which runs to completion whatever the UPDATE reads), one round trip fewer per
     * audited unit. Parameters: the records' (`AUDIT_RECORD_INSERT_PARAMETERS` per row), then
     * `moveAuditHead`'s five. Its row count is the UPDATE's: 1 when the head moved.
     */
    insertAuditRecordsMovingHead(rowCount: number): string {
      let statement = insertMovingHeadCache.get(rowCount);
      if (!statement) {
        const headFrom = rowCount * AUDIT_RECORD_INSERT_PARAMETERS + 1;
        statement = `WITH "inserted" AS (${insertAuditRows(rowCount)}) ${moveAuditHeadFrom(headFrom)}`;
        insertMovingHeadCache.set(rowCount, statement);
      }
      return statement;
    },
    readAuditChain: `SELECT ${auditRecordColumns} FROM ${auditRecords} WHERE "chain_id" = ${p(1)} AND "seq" > ${p(2)} ORDER BY "seq" ASC LIMIT ${p(3)}`,
    // What a verifier reads. SQLite: MACs as hex text, which the driver hands over several times
    // faster than a Buffer per value (NULL for a value that is not a blob: damage).
    readAuditChainLinks: `SELECT "seq", "mac_key_id", ${macColumn('prev_mac')}, ${macColumn('mac')}, "body" FROM ${auditRecords} WHERE "chain_id" = ${p(1)} AND "seq" > ${p(2)} ORDER BY "seq" ASC LIMIT ${p(3)}`,
    findAuditHead: `SELECT ${headColumns} FROM ${auditHeads} WHERE "chain_id" = ${p(1)} AND "seq" > 0`,
    // The access report, one statement per target column; each is served by its index.
    listAuditRecordsBy: Object.fromEntries(
      (['session_id', 'subject_ref', 'actor_id'] as const).map((column) => [
        column,
        `SELECT ${auditRecordColumns} FROM ${auditRecords} WHERE "tenant_id" = ${p(1)} AND "${column}" = ${p(2)} AND "event_time" >= ${p(3)} AND "event_time" < ${p(4)} AND ("event_time" > ${p(5)} OR ("event_time" = ${p(6)} AND ("chain_id" > ${p(7)} OR ("chain_id" = ${p(8)} AND "seq" > ${p(9)})))) ORDER BY "event_time" ASC, "chain_id" ASC, "seq" ASC LIMIT ${p(10)}`,
      ]),
    ) as Record<'session_id' | 'subject_ref' | 'actor_id', string>,
    insertCheckpoint: d.insertIgnoringDuplicates(
      `INSERT INTO ${checkpoints} ("tenant_id", "seq", "checkpoint_id", "checkpoint_time", "checkpoint", "heads") VALUES (${placeholders(1, 6)})`,
    ),
    latestCheckpoint: `SELECT "tenant_id", "seq", "checkpoint_id", "checkpoint_time", "checkpoint", "heads" FROM ${checkpoints} WHERE "tenant_id" = ${p(1)} ORDER BY "seq" DESC LIMIT 1`,
    // A job's row, unheld (token 0, lapsed), so that taking the lease is an update of one row.
    insertLeaseRow: d.insertIgnoringDuplicates(
      `INSERT INTO ${leases} (${leaseColumns}) VALUES (${p(1)}, '', 0, 0)`,
    ),
    // Taken afresh when lapsed (MySQL assigns left to right: the token reads the old expiry),
    // extended when the owner holds it; no row changes while another owner holds it.
    takeLease: `UPDATE ${leases} SET "token" = CASE WHEN "expires_at" <= ${now} THEN "token" + 1 ELSE "token" END, "owner" = ${p(1)}, "expires_at" = ${now} + ${p(2)} WHERE "job" = ${p(3)} AND ("expires_at" <= ${now} OR "owner" = ${p(4)})${returningLease}`,
    renewLease: `UPDATE ${leases} SET "expires_at" = ${now} + ${p(1)} WHERE "job" = ${p(2)} AND "owner" = ${p(3)} AND "token" = ${p(4)} AND "expires_at" > ${now}${returningLease}`,
    releaseLease: `UPDATE ${leases} SET "expires_at" = ${now} WHERE "job" = ${p(1)} AND "owner" = ${p(2)} AND "token" = ${p(3)} AND "expires_at" > ${now}`,
    findLease: `SELECT ${leaseColumns} FROM ${leases} WHERE "job" = ${p(1)}`,
    // A unit's fence: the lease row while the lease is still this one and unexpired, locked
    // until the unit ends so that no other owner takes the lease before it commits. A shared
    // lock: the job's own units run side by side, while a take or renewal (an update) waits.
    fenceLease: `SELECT "token" FROM ${leases} WHERE "job" = ${p(1)} AND "owner" = ${p(2)} AND "token" = ${p(3)} AND "expires_at" > ${now}${forShare}`,
    // The idle-session scan: a range of the (last activity, tenant, session) index, bounded
    // below by the page's cursor, read in the index's order from the keyset after the cursor.
    listIdleSessions: `SELECT * FROM ${sessions} WHERE "last_activity_at" < ${p(1)} AND "last_activity_at" >= ${p(2)} AND ("last_activity_at" > ${p(3)} OR ("last_activity_at" = ${p(4)} AND (${tenantBytes} > ${p(5)} OR (${tenantBytes} = ${p(6)} AND ${sessionBytes} > ${p(7)})))) ORDER BY "last_activity_at" ASC, ${tenantBytes} ASC, ${sessionBytes} ASC LIMIT ${p(8)}`,
    // A subject's sessions, served by the (tenant, subject) index; by session id bytes.
    listSessionsOfSubject: `SELECT * FROM ${sessions} WHERE "tenant_id" = ${p(1)} AND "subject_id" = ${p(2)} AND ${sessionBytes} > ${p(3)} ORDER BY ${sessionBytes} ASC LIMIT ${p(4)}`,
    forgetSessionSubject: `UPDATE ${sessions} SET "subject_id" = NULL WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
    forgetDataKeySubjects: `UPDATE ${dataKeys} SET "subject_id" = NULL WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
    deleteSession: `DELETE FROM ${sessions} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
    deleteDataKeys: `DELETE FROM ${dataKeys} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
    insertHold: `INSERT INTO ${holds} (${holdColumns}) VALUES (${placeholders(1, 9)})`,
    releaseHold: `UPDATE ${holds} SET "released_at" = ${p(1)}, "released_by" = ${p(2)} WHERE "hold_id" = ${p(3)} AND "released_at" IS NULL`,
    findHold: `SELECT ${holdColumns} FROM ${holds} WHERE "hold_id" = ${p(1)}`,
    // By (tenant given, active only); the hold id keyset is the primary key's order.
    listHolds: {
      all: listHolds(false, false),
      active: listHolds(false, true),
      tenant: listHolds(true, false),
      tenantActive: listHolds(true, true),
    },
    activeHoldsCovering,
    // A write unit's hold check. MySQL: a locking read, which reads the newest committed rows
    // (and waits for a hold being written) whatever the transaction's isolation level; the
    // write units run READ COMMITTED, whose plain reads see them too. Postgres' READ COMMITTED
    // statement and SQLite's write transaction already see every committed hold.
    activeHoldsCoveringSession,
    lockActiveHoldsCoveringSession:
      d.backend === 'mysql'
        ? `${activeHoldsCoveringSession} LOCK IN SHARE MODE`
        : activeHoldsCoveringSession,
    activeHoldsOnSubject: `SELECT ${holdColumns} FROM ${holds} WHERE "tenant_id" = ${p(1)} AND "subject_id" = ${p(2)} AND "released_at" IS NULL ORDER BY "hold_id" ASC`,
    insertErasure: `INSERT INTO ${ledger} (${ledgerColumns}) VALUES (${placeholders(1, 8)})`,
    completeErasure: `UPDATE ${ledger} SET "completed_at" = ${p(1)}, "receipt" = ${p(2)} WHERE "erasure_id" = ${p(3)} AND "completed_at" IS NULL`,
    findErasure: `SELECT ${ledgerColumns} FROM ${ledger} WHERE "erasure_id" = ${p(1)}`,
    listErasures: `SELECT ${ledgerColumns} FROM ${ledger} WHERE "erasure_id" > ${p(1)} ORDER BY "erasure_id" ASC LIMIT ${p(2)}`,
    listAuditHeads: `SELECT ${headColumns} FROM ${auditHeads} WHERE "tenant_id" = ${p(1)} AND "chain_id" > ${p(2)} AND "seq" > 0 ORDER BY "chain_id" ASC LIMIT ${p(3)}`,
  };
}
