import type { DataSource, QueryRunner } from 'typeorm';
import {
  AuditWriteError,
  EncryptedSessionError,
  IntegrityError,
  InvalidArgumentError,
  StorageUnavailableError,
  type LeaseLostError,
} from '../../errors/index.js';
import {
  checkExpiredItemScan,
  decodeExpiredItemCursor,
  encodeExpiredItemCursor,
} from '../expired-items.js';
import {
  checkIdleSessionScan,
  decodeIdleSessionCursor,
  encodeIdleSessionCursor,
} from '../idle-sessions.js';
import { checkJobLease, checkLeaseName, checkLeaseTtl, leaseLostError } from '../job-leases.js';
import {
  checkEpochMs,
  checkErasureLedgerRecord,
  checkLegalHoldQuery,
  checkLegalHoldRecord,
  checkPageAfter,
  checkPageLimit,
  checkStorageId,
} from '../legal-hold-arguments.js';
import { checkSameTenant } from '../multi-session.js';
import { sequenceBehindItemsError } from '../sequence-behind-items.js';
import { SerialQueue } from '../serial-queue.js';
import {
  bindAuditChains,
  bindReadScope,
  bindWriteScope,
  type AdapterAuditChains,
  type AdapterScope,
} from '../adapter-scope.js';
import type {
  AuditStorage,
  DataKeyAges,
  DataKeyPage,
  ErasureLedgerStorage,
  ExpiredItemPage,
  IdleSessionPage,
  LeaseStorage,
  LegalHoldStorage,
  MultiSessionUnit,
  SessionReadScope,
  SessionStorage,
  SessionWriteScope,
  StorageMaintenance,
} from '../storage.ports.js';
import type { ErasureLedgerRecord, JobLease, SessionRef, StoredItem } from '../storage.records.js';
import { poolReaderFor, type Row, type RowReader } from './pool-reader.js';
import {
  dataKeyLabel,
  sessionLabel,
  toAuditHead,
  toAuditRecord,
  toChainLink,
  toStoredCheckpoint,
  toDataKeyRecord,
  toErasureLedgerRecord,
  toExpiredItemRecord,
  toJobLease,
  toLegalHoldRecord,
  toListedSessionRecord,
  toOperationRecord,
  toSessionRecord,
  toStoredItems,
} from './row-mappers.js';
import { RowValues } from './row-values.js';
import {
  AUDIT_RECORD_INSERT_PARAMETERS,
  ITEM_INSERT_PARAMETERS,
  buildSessionStatements,
  type SessionStatements,
} from './session-statements.js';
import { dialectFor, type SqlBackend, type SqlDialect } from './sql-dialect.js';
import { schemaOf, tableNamesFor, type TableNames } from './table-names.js';

/**
 * Options of {@link TypeOrmSessionStorage}.
 *
 * @publicApi
 */
export interface TypeOrmSessionStorageOptions {
  /** An initialized DataSource (the module's own SQLite one, or a host's). */
  dataSource: DataSource;
  /** Table name prefix. @default 'nes_' */
  tablePrefix?: string;
  /** Whether {@link TypeOrmSessionStorage.close} destroys the DataSource (only for one we opened). @default false */
  ownsDataSource?: boolean;
  /**
   * Postgres: prepare read statements once per connection under a fixed name. Turn off behind
   * a pooler that cannot keep them (PgBouncer in transaction mode before 1.21). @default true
   */
  namedStatements?: boolean;
}

/** The parts of a better-sqlite3 connection the audit statements use. */
interface RawSqlite {
  prepare(source: string): {
    all(...params: unknown[]): Row[];
    run(...params: unknown[]): { changes: number };
    /** Rows as arrays of values from now on, not objects: faster to build. */
    raw(toggle: boolean): unknown;
  };
}

/** A write unit's fence: the error of a fence that failed, which keeps the unit from committing. */
interface FencedUnit {
  lost?: LeaseLostError;
  /** MySQL: the statement that puts the connection's idle timeout back once the unit ended. */
  restore?: string;
}

/**
 * The statements that bound how long a fenced unit's transaction may sit idle: about as long as
 * its lease has left. A job paused mid-unit (a stopped process) would otherwise keep the lease
 * row locked, and every replica out of the job, for as long as its connection lives; the
 * server ends it instead, which rolls the unit back and frees the row once the lease lapsed.
 */
function idleBound(
  backend: SqlBackend,
  lease: JobLease,
): { readonly set: [string, unknown[]]; readonly restore?: string } | undefined {
  const ms = Math.max(1_000, Math.ceil(lease.expiresAt - Date.now()));
  switch (backend) {
    case 'postgres':
      // Local to the transaction: it lapses with it.
      return {
        set: ["SELECT set_config('idle_in_transaction_session_timeout', $1, true)", [String(ms)]],
      };
    case 'mysql':
      // No per-transaction form on MySQL: the connection's own idle timeout, put back after.
      return {
        set: ['SET SESSION wait_timeout = ?', [Math.ceil(ms / 1000)]],
        restore: 'SET SESSION wait_timeout = DEFAULT',
      };
    default:
      // SQLite: one process's connection; a stopped process holds its lock until it dies.
      return undefined;
  }
}

/** The MAC a chain's first record follows; also the placeholder MAC of an empty head row. */
const GENESIS_MAC = Buffer.alloc(32);

/** An append the MySQL server refused as larger than its max_allowed_packet. */
function packetTooLargeError(cause: unknown): InvalidArgumentError {
  return new InvalidArgumentError(
    "An item of this append is larger than the MySQL/MariaDB server accepts in one statement (its max_allowed_packet; an item's ciphertext travels hex-encoded, so at twice its size); nothing was written. Lower the module's maxItemBytes option below half of max_allowed_packet, or raise max_allowed_packet on the server",
    { cause },
  );
}

/**
 * Storage on a TypeORM DataSource with hand-written, parameterized SQL: one statement per
 * operation and one batched insert per append. Schema from the module's migrations.
 *
 * @publicApi
 */
export class TypeOrmSessionStorage implements SessionStorage {
  readonly backend: string;
  private readonly dialect: SqlDialect;
  private readonly tables: TableNames;
  private readonly sql: SessionStatements;
  private readonly queue = new SerialQueue();
  /** Read scope straight on a server's pool, built once; undefined on SQLite (its one runner). */
  private readonly poolReadScope: AdapterScope | undefined;
  private readonly poolReader: RowReader | undefined;
  private closed = false;
  /**
   * SQLite: the driver's one connection, for the audit statements, prepared once each. Every
   * unit of work runs alone on this connection (the serial queue), so they join the unit's
   * transaction exactly as TypeORM's do, without its per-statement cost (a third of an audited
   * append's time).
   */
  private readonly rawSqlite: RawSqlite | undefined;
  private readonly preparedSqlite = new Map<string, ReturnType<RawSqlite['prepare']>>();

  constructor(private readonly options: TypeOrmSessionStorageOptions) {
    this.dialect = dialectFor(options.dataSource);
    this.backend = this.dialect.backend;
    // Postgres: the DataSource's schema (the module's own `storage.schema`, or a host's).
    this.tables = tableNamesFor(options.tablePrefix, schemaOf(options.dataSource));
    this.sql = buildSessionStatements(this.tables, this.dialect);
    const poolReader = poolReaderFor(
      options.dataSource,
      this.dialect,
      options.namedStatements ?? true,
    );
    this.poolReader = poolReader;
    this.rawSqlite =
      this.dialect.backend === 'sqlite'
        ? (options.dataSource.driver as unknown as { databaseConnection?: RawSqlite })
            .databaseConnection
        : undefined;
    // Stateless over the pool, so one scope serves every read.
    this.poolReadScope = poolReader && this.createScope(poolReader, undefined);
  }

  /**
   * Cross-session scans: of the data keys table, for KEK rotation and key status; of the items
   * expiry index and the sessions idle index, for the retention purge; of the sessions subject
   * index, for erasure.
   */
  readonly maintenance: StorageMaintenance = {
    supported: true,
    jobConcurrency: () => poolShareForJobs(this.options.dataSource),
    listDataKeysWrappedByOtherKek: (kekId, cursor, limit) =>
      this.readRows(async (q): Promise<DataKeyPage> => {
        const rows = await q(this.sql.listWrappedByOtherKek, [kekId, cursor ?? '', limit]);
        const records = rows.map((row) => toDataKeyRecord(row, () => dataKeyLabel(row)));
        return {
          records,
          cursor: records.length === limit ? records.at(-1)!.dekId : undefined,
        };
      }),
    listRetiringDataKeys: (cursor, limit) =>
      this.readRows(async (q): Promise<DataKeyPage> => {
        const rows = await q(this.sql.listRetiringDataKeys, [cursor ?? '', limit]);
        const records = rows.map((row) => toDataKeyRecord(row, () => dataKeyLabel(row)));
        return {
          records,
          cursor: records.length === limit ? records.at(-1)!.dekId : undefined,
        };
      }),
    dataKeyAges: (createdBefore, exceptTenantId) =>
      this.readRows(async (q): Promise<DataKeyAges> => {
        const [row] = await q(this.sql.dataKeyAges, [createdBefore, exceptTenantId]);
        const values = new RowValues(row, () => 'the data keys table');
        return {
          // SUM over no rows is NULL.
          activeKeys: values.nullableInteger('active_keys') ?? 0,
          oldestActiveCreatedAt: values.nullableInteger('oldest_active'),
          activeKeysCreatedBefore: values.nullableInteger('active_before') ?? 0,
          retiringKeys: values.nullableInteger('retiring_keys') ?? 0,
          oldestRetiredAt: values.nullableInteger('oldest_retired'),
        };
      }),
    countDataKeysByKek: () =>
      this.readRows(async (q) => {
        const counts: Record<string, number> = {};
        for (const row of await q(this.sql.countByKek, [])) {
          const values = new RowValues(row, () => 'the data keys table');
          counts[values.text('kek_id')] = values.integer('data_keys');
        }
        return counts;
      }),
    listExpiredItems: async (now, cursor, limit) => {
      checkExpiredItemScan(now, limit);
      const after = decodeExpiredItemCursor(cursor);
      return this.readRows(async (q): Promise<ExpiredItemPage> => {
        const rows = await q(this.sql.listExpiredItems, [
          now,
          after.expiresAt,
          after.expiresAt,
          after.expiresAt,
          after.tenantId,
          after.tenantId,
          after.sessionId,
          after.sessionId,
          after.seq,
          limit,
        ]);
        const items = rows.map((row) =>
          toExpiredItemRecord(row, this.dialect.backend === 'postgres'),
        );
        const last = items.at(-1);
        return {
          items,
          cursor:
            last && items.length === limit
              ? encodeExpiredItemCursor({
                  // Not null: the statement selects only items that expire.
                  expiresAt: last.item.expiresAt!,
                  tenantId: last.tenantId,
                  sessionId: last.sessionId,
                  seq: last.item.seq,
                })
              : undefined,
        };
      });
    },
    listIdleSessions: async (before, cursor, limit) => {
      checkIdleSessionScan(before, limit);
      const after = decodeIdleSessionCursor(cursor);
      return this.readRows(async (q): Promise<IdleSessionPage> => {
        const rows = await q(this.sql.listIdleSessions, [
          before,
          after.lastActivityAt,
          after.lastActivityAt,
          after.lastActivityAt,
          after.tenantId,
          after.tenantId,
          after.sessionId,
          limit,
        ]);
        const sessions = rows.map(toListedSessionRecord);
        const last = sessions.at(-1);
        return {
          sessions,
          cursor: last && sessions.length === limit ? encodeIdleSessionCursor(last) : undefined,
        };
      });
    },
    listSessionsOfSubject: async (tenantId, subjectId, afterSessionId, limit) => {
      checkStorageId(tenantId, 'listSessionsOfSubject: tenantId');
      checkStorageId(subjectId, 'listSessionsOfSubject: subjectId');
      checkPageAfter(afterSessionId, 'listSessionsOfSubject: afterSessionId');
      checkPageLimit(limit, 'listSessionsOfSubject');
      return this.readRows(async (q) =>
        (await q(this.sql.listSessionsOfSubject, [tenantId, subjectId, afterSessionId, limit])).map(
          toListedSessionRecord,
        ),
      );
    },
  };

  /**
   * Legal holds, a row each in the holds table, indexed by session and by subject within a
   * tenant. Each call is one statement (a release, one conditional UPDATE and a read of the row).
   */
  readonly holds: LegalHoldStorage = {
    insert: async (hold) => {
      checkLegalHoldRecord(hold);
      await this.insertRow(
        this.sql.insertHold,
        [
          hold.holdId,
          hold.tenantId,
          hold.sessionId,
          hold.subjectId,
          hold.matterRef,
          hold.placedAt,
          hold.placedBy,
          hold.releasedAt,
          hold.releasedBy,
        ],
        this.tables.legalHolds,
        () => `A legal hold with id '${hold.holdId}'`,
      );
    },
    release: async (holdId, releasedAt, releasedBy) => {
      checkStorageId(holdId, 'release: holdId');
      checkEpochMs(releasedAt, 'release: releasedAt');
      checkStorageId(releasedBy, 'release: releasedBy');
      // Only an active hold changes; either way the row is then read as stored.
      await this.withRunner((runner) =>
        runner.query(this.sql.releaseHold, [releasedAt, releasedBy, holdId]),
      );
      return this.findHold(holdId);
    },
    find: async (holdId) => {
      checkStorageId(holdId, 'find: holdId');
      return this.findHold(holdId);
    },
    list: async (query) => {
      checkLegalHoldQuery(query);
      const tenant = query.tenantId !== undefined;
      const variant = tenant
        ? query.activeOnly
          ? 'tenantActive'
          : 'tenant'
        : query.activeOnly
          ? 'active'
          : 'all';
      const params = [...(tenant ? [query.tenantId] : []), query.afterHoldId ?? '', query.limit];
      return this.readRows(async (q) =>
        (await q(this.sql.listHolds[variant], params)).map(toLegalHoldRecord),
      );
    },
    activeCovering: async (tenantId, sessionId, subjectId) => {
      checkStorageId(tenantId, 'activeCovering: tenantId');
      checkStorageId(sessionId, 'activeCovering: sessionId');
      if (subjectId !== null) checkStorageId(subjectId, 'activeCovering: subjectId');
      return this.readRows(async (q) =>
        (await q(this.sql.activeHoldsCovering, [tenantId, sessionId, subjectId])).map(
          toLegalHoldRecord,
        ),
      );
    },
    activeOnSubject: async (tenantId, subjectId) => {
      checkStorageId(tenantId, 'activeOnSubject: tenantId');
      checkStorageId(subjectId, 'activeOnSubject: subjectId');
      return this.readRows(async (q) =>
        (await q(this.sql.activeHoldsOnSubject, [tenantId, subjectId])).map(toLegalHoldRecord),
      );
    },
  };

  /** The erasure ledger, a row per erasure, read by id only. */
  readonly erasureLedger: ErasureLedgerStorage = {
    insert: async (entry) => {
      checkErasureLedgerRecord(entry);
      await this.insertRow(
        this.sql.insertErasure,
        this.erasureParams(entry),
        this.tables.erasureLedger,
        () => `An erasure ledger entry with id '${entry.erasureId}'`,
      );
    },
    complete: async (erasureId, completedAt, receipt) => {
      checkStorageId(erasureId, 'complete: erasureId');
      checkEpochMs(completedAt, 'complete: completedAt');
      if (typeof receipt !== 'string' || !receipt.isWellFormed()) {
        throw new InvalidArgumentError(
          'complete: receipt must be a string (the signed receipt as JSON)',
        );
      }
      // Only a pending entry changes: a second completion leaves the first receipt.
      const { affected } = (await this.withRunner((runner) =>
        runner.query(this.sql.completeErasure, [completedAt, receipt, erasureId], true),
      )) as { affected?: number };
      return affected === 1;
    },
    find: async (erasureId) => {
      checkStorageId(erasureId, 'find: erasureId');
      return this.readRows(async (q) => {
        const [row] = await q(this.sql.findErasure, [erasureId]);
        return row && toErasureLedgerRecord(row);
      });
    },
    list: async (afterErasureId, limit) => {
      checkPageAfter(afterErasureId, 'list: afterErasureId');
      checkPageLimit(limit, 'Listing the erasure ledger');
      return this.readRows(async (q) =>
        (await q(this.sql.listErasures, [afterErasureId, limit])).map(toErasureLedgerRecord),
      );
    },
  };

  /** The audit trail in the module's audit tables, beside the sessions. */
  readonly audit: AuditStorage = {
    transaction: (chain, work) =>
      this.inTransaction((runner) =>
        work(bindAuditChains(this.auditChains(runnerReader(runner), runner), chain, chain.chainId)),
      ),
    readChain: (chain, afterSeq, limit) =>
      this.readAuditRows(async (q) =>
        (await q(this.sql.readAuditChain, [chain.chainId, afterSeq, limit])).map((row) =>
          toAuditRecord(row, chain.chainId),
        ),
      ),
    readChainLinks: (chain, afterSeq, limit) =>
      this.rawSqlite
        ? // A verifier reads every record of a chain: rows as arrays, which the driver builds
          // faster than objects.
          this.queue.run(() =>
            this.translateErrors(async () =>
              (
                this.sqliteStatement(this.sql.readAuditChainLinks, 'raw').all(
                  chain.chainId,
                  afterSeq,
                  limit,
                ) as unknown as unknown[][]
              ).map(([seq, macKeyId, prevMac, mac, body]) =>
                toChainLink(
                  { seq, mac_key_id: macKeyId, prev_mac: prevMac, mac, body },
                  chain.chainId,
                ),
              ),
            ),
          )
        : this.readRows(async (q) =>
            (await q(this.sql.readAuditChainLinks, [chain.chainId, afterSeq, limit])).map((row) =>
              toChainLink(row, chain.chainId),
            ),
          ),
    findHead: (chain) =>
      this.readRows(async (q) => {
        const [row] = await q(this.sql.findAuditHead, [chain.chainId]);
        return row && toAuditHead(row);
      }),
    appendCheckpoint: (checkpoint) =>
      this.inTransaction(
        async (runner) =>
          ((
            (await runner.query(
              this.sql.insertCheckpoint,
              [
                checkpoint.tenantId,
                checkpoint.seq,
                checkpoint.checkpointId,
                checkpoint.time,
                checkpoint.checkpoint,
                checkpoint.heads,
              ],
              true,
            )) as { affected?: number }
          ).affected ?? 0) === 1,
      ),
    latestCheckpoint: (tenantId) =>
      this.readAuditRows(async (q) => {
        const [row] = await q(this.sql.latestCheckpoint, [tenantId]);
        return row && toStoredCheckpoint(row, tenantId);
      }),
    listRecords: (query) =>
      this.readRows(async (q) => {
        const { by } = query;
        const [column, value] =
          'sessionId' in by
            ? (['session_id', by.sessionId] as const)
            : 'subjectRef' in by
              ? (['subject_ref', by.subjectRef] as const)
              : (['actor_id', by.actorId] as const);
        const after = query.after ?? { time: -1, chainId: '', seq: 0 };
        const rows = await q(this.sql.listAuditRecordsBy[column], [
          query.tenantId,
          value,
          query.fromTime,
          query.toTime,
          after.time,
          after.time,
          after.chainId,
          after.chainId,
          after.seq,
          query.limit,
        ]);
        return rows.map((row) => toAuditRecord(row, 'of an access report'));
      }),
    listHeads: (tenantId, afterChainId, limit) =>
      this.readRows(async (q) => {
        const rows = await q(this.sql.listAuditHeads, [tenantId, afterChainId, limit]);
        return rows.flatMap((row) => toAuditHead(row) ?? []);
      }),
  };

  /**
   * Job leases, a row per job in the leases table, timed by the database's clock. Each change
   * is one conditional UPDATE, so two replicas racing for a lease cannot both win; acquire
   * first inserts the job's row if it has none (an insert that skips an existing row).
   */
  readonly leases: LeaseStorage = {
    acquire: async (job, owner, ttlMs) => {
      checkLeaseName(job, 'job');
      checkLeaseName(owner, 'owner');
      checkLeaseTtl(ttlMs);
      await this.withRunner((runner) => runner.query(this.sql.insertLeaseRow, [job]));
      return this.changeLease(job, this.sql.takeLease, [owner, ttlMs, job, owner]);
    },
    renew: async (lease, ttlMs) => {
      checkJobLease(lease);
      checkLeaseTtl(ttlMs);
      return this.changeLease(lease.job, this.sql.renewLease, [
        ttlMs,
        lease.job,
        lease.owner,
        lease.token,
      ]);
    },
    release: async (lease) => {
      checkJobLease(lease);
      await this.withRunner((runner) =>
        runner.query(this.sql.releaseLease, [lease.job, lease.owner, lease.token]),
      );
    },
    current: async (job) => {
      checkLeaseName(job, 'job');
      return this.readRows(async (q) => {
        const [row] = await q(this.sql.findLease, [job]);
        return row && toJobLease(row, job);
      });
    },
  };

  read<T>(ref: SessionRef, work: (scope: SessionReadScope) => Promise<T>): Promise<T> {
    const scope = this.poolReadScope;
    if (scope) return this.translateErrors(() => work(bindReadScope(scope, ref)));
    return this.withRunner((runner) =>
      work(bindReadScope(this.createScope(runnerReader(runner), undefined), ref)),
    );
  }

  transaction<T>(ref: SessionRef, work: (scope: SessionWriteScope) => Promise<T>): Promise<T> {
    const unit: FencedUnit = {};
    return this.inTransaction(
      async (runner) => {
        const result = await work(
          bindWriteScope(this.createScope(runnerReader(runner), runner, unit), ref),
        );
        // A failed fence refuses the commit, also when the work caught its error.
        if (unit.lost) throw unit.lost;
        return result;
      },
      async (runner) => {
        if (unit.restore) await runner.query(unit.restore);
      },
    );
  }

  transactionAcross<T>(
    tenantId: string,
    refs: readonly SessionRef[],
    work: (unit: MultiSessionUnit) => Promise<T>,
  ): Promise<T> {
    checkSameTenant(tenantId, refs);
    const unit: FencedUnit = {};
    return this.inTransaction(
      async (runner) => {
        const scope = this.createScope(runnerReader(runner), runner, unit);
        const result = await work({
          scopes: refs.map((ref) => bindWriteScope(scope, ref)),
          ...(scope.audit && {
            control: bindAuditChains(scope.audit, { tenantId, sessionId: null }),
          }),
          erasureLedger: {
            insert: async (entry) => {
              checkErasureLedgerRecord(entry);
              await runner.query(this.sql.insertErasure, this.erasureParams(entry));
            },
          },
        });
        if (unit.lost) throw unit.lost;
        return result;
      },
      async (runner) => {
        if (unit.restore) await runner.query(unit.restore);
      },
    );
  }

  /** An erasure ledger entry as the insert statement's parameters. */
  private erasureParams(entry: ErasureLedgerRecord): unknown[] {
    return [
      entry.erasureId,
      entry.tenantId,
      entry.scope,
      entry.subjectRef,
      entry.sessionIds,
      entry.createdAt,
      entry.completedAt,
      entry.receipt,
    ];
  }

  /**
   * Runs a conditional update of `job`'s lease row; returns the lease it left, or undefined when
   * no row matched (another owner holds it, or the lease was lost).
   */
  private changeLease(
    job: string,
    statement: string,
    params: unknown[],
  ): Promise<JobLease | undefined> {
    if (this.dialect.backend !== 'mysql') {
      return this.withRunner(async (runner) => {
        const [row] = runnerRows(await runner.query(statement, params, true));
        return row && toJobLease(row, job);
      });
    }
    // MySQL's UPDATE returns no row: it is read back in the same transaction, under the lock
    // the update took, so no other replica can change it in between.
    return this.inTransaction(async (runner) => {
      const { affected } = (await runner.query(statement, params, true)) as { affected?: number };
      if ((affected ?? 0) === 0) return undefined;
      const [row] = await runnerReader(runner)(this.sql.findLease, [job]);
      return row && toJobLease(row, job);
    });
  }

  private findHold(holdId: string) {
    return this.readRows(async (q) => {
      const [row] = await q(this.sql.findHold, [holdId]);
      return row && toLegalHoldRecord(row);
    });
  }

  /**
   * Inserts one row of a record that must be new. A duplicate id is the caller's (a reused id,
   * or a retry of an insert that did commit): a plain error saying so, nothing stored.
   */
  private async insertRow(
    statement: string,
    params: unknown[],
    table: string,
    describe: () => string,
  ): Promise<void> {
    try {
      await this.withRunner((runner) => runner.query(statement, params));
    } catch (error) {
      if (this.dialect.isPrimaryKeyViolation(error, table)) {
        throw new Error(
          `${describe()} is stored already; nothing was stored. Read it back to tell a retry of the same insert from a reused id`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** Runs work in a write transaction: committed when it resolves, rolled back when it throws. */
  private inTransaction<T>(
    work: (runner: QueryRunner) => Promise<T>,
    /** Runs on the connection once the transaction ended either way; its failure is ignored. */
    afterEnd?: (runner: QueryRunner) => Promise<void>,
  ): Promise<T> {
    return this.withRunner(async (runner) => {
      for (const statement of this.dialect.beginWrite) await runner.query(statement);
      try {
        const result = await work(runner);
        await runner.query('COMMIT');
        return result;
      } catch (error) {
        // On a dead connection the server has already rolled back; nothing to add.
        await runner.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        // A dead connection has nothing left to put back.
        await afterEnd?.(runner).catch(() => undefined);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Let queued work finish before the connection goes away.
    await this.queue.drain();
    if (this.options.ownsDataSource && this.options.dataSource.isInitialized) {
      await this.options.dataSource.destroy();
    }
  }

  /**
   * Runs work on a connection of its own: SQLite's single shared one, one unit at a time; a
   * server's pooled one, released afterwards (pg drops a broken one from the pool itself).
   */
  private withRunner<T>(work: (runner: QueryRunner) => Promise<T>): Promise<T> {
    if (this.dialect.oneConnection) {
      // better-sqlite3 has a single connection; TypeORM hands out the same runner each time.
      return this.queue.run(() =>
        this.translateErrors(() => work(this.options.dataSource.createQueryRunner())),
      );
    }
    return this.translateErrors(async () => {
      const runner = this.options.dataSource.createQueryRunner();
      try {
        return await work(runner);
      } finally {
        await runner.release();
      }
    });
  }

  private async translateErrors<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof EncryptedSessionError) throw error;
      const reason = this.dialect.transientReason(error);
      if (reason === undefined) throw error;
      throw new StorageUnavailableError(
        this.dialect.backend === 'sqlite'
          ? `The session database is locked by another writer (${reason}); retry the call, or raise the busy timeout`
          : `The ${this.backend} session database is unreachable or busy (${reason}); retry the call`,
        { cause: error },
      );
    }
  }

  /**
   * Whether an insert failed because the statement was larger than MySQL's
   * max_allowed_packet: the server's own error, or, for a statement of more than
   * max_allowed_packet bytes, the connection reset the server answers it with instead.
   */
  private async exceedsMaxPacket(error: unknown, chunk: readonly StoredItem[]): Promise<boolean> {
    if (this.dialect.backend !== 'mysql') return false;
    if (this.dialect.isPacketTooLarge(error)) return true;
    if (this.dialect.transientReason(error) === undefined) return false;
    // mysql2 sends a Buffer parameter as X'<hex>': two bytes per byte.
    const statementBytes = chunk.reduce((sum, item) => sum + 2 * item.ciphertext.length + 200, 0);
    const maxPacket = await this.maxAllowedPacket().catch(() => undefined);
    return maxPacket !== undefined && statementBytes > maxPacket;
  }

  private maxPacketBytes: Promise<number> | undefined;

  /** The server's max_allowed_packet, read once (on a fresh pooled connection). */
  private maxAllowedPacket(): Promise<number> {
    this.maxPacketBytes ??= this.options.dataSource
      .query('SELECT @@max_allowed_packet AS "max_packet"'.replaceAll('"', '`'))
      .then((rows: Row[]) => new RowValues(rows[0]!, () => 'the server').integer('max_packet'));
    this.maxPacketBytes.catch(() => (this.maxPacketBytes = undefined));
    return this.maxPacketBytes;
  }

  /**
   * Reads audit rows outside any unit of work: on SQLite through its raw connection (in the
   * serial queue, as every unit), elsewhere as {@link readRows}.
   */
  private readAuditRows<T>(work: (q: RowReader) => Promise<T>): Promise<T> {
    if (!this.rawSqlite) return this.readRows(work);
    return this.queue.run(() =>
      this.translateErrors(() =>
        work(async (statement, params) => this.sqliteStatement(statement).all(...params)),
      ),
    );
  }

  /** Reads rows outside any session's unit of work: on the pool, or SQLite's one runner. */
  private readRows<T>(work: (q: RowReader) => Promise<T>): Promise<T> {
    const reader = this.poolReader;
    if (reader) return this.translateErrors(() => work(reader));
    return this.withRunner((runner) => work(runnerReader(runner)));
  }

  /**
   * A scope that reads with `q` and, inside a transaction, writes on `writer`; a fence that
   * fails notes its error in `unit`.
   */
  private createScope(
    q: RowReader,
    writer: QueryRunner | undefined,
    unit: FencedUnit = {},
  ): AdapterScope {
    const sql = this.sql;
    const run = async (statement: string, params: unknown[]) => {
      if (!writer) throw new Error('Write attempted inside a read-only storage scope');
      return (await writer.query(statement, params, true)) as {
        affected?: number;
        records?: Row[];
        raw?: unknown;
      };
    };
    const write = async (statement: string, params: unknown[]): Promise<number> =>
      (await run(statement, params)).affected ?? 0;
    const maxRowsPerInsert = Math.floor(this.dialect.maxParameters / ITEM_INSERT_PARAMETERS);
    const base64Items = this.dialect.backend === 'postgres';

    return {
      sessions: {
        find: async (ref) => {
          const rows = await q(sql.findSession, [ref.tenantId, ref.sessionId]);
          return rows[0] ? toSessionRecord(rows[0], ref) : undefined;
        },
        insertIfAbsent: async (record) =>
          (await write(sql.insertSession, [
            record.tenantId,
            record.sessionId,
            record.subjectId,
            record.createdAt,
            record.lastActivityAt,
            record.nextSeq,
            record.itemTtlSeconds,
            record.legalHold ? 1 : 0,
          ])) === 1,
        lockForWrite: async (ref, now) =>
          (await write(sql.touchSession, [now, ref.tenantId, ref.sessionId])) === 1,
        forgetSubject: async (ref) => {
          await write(sql.forgetSessionSubject, [ref.tenantId, ref.sessionId]);
          await write(sql.forgetDataKeySubjects, [ref.tenantId, ref.sessionId]);
        },
        // The session row first: every writer of the session locks it first, so the unit takes
        // the same locks in the same order as an append.
        deleteSession: async (ref) => {
          const deleted = await write(sql.deleteSession, [ref.tenantId, ref.sessionId]);
          for (const statement of [sql.deleteAllItems, sql.deleteDataKeys, sql.deleteOperations]) {
            await write(statement, [ref.tenantId, ref.sessionId]);
          }
          return deleted === 1;
        },
        reserveSequence: async (ref, count, now) => {
          const result = await run(sql.advanceSequence, [count, now, ref.tenantId, ref.sessionId]);
          if ((result.affected ?? 0) === 0) return undefined;
          let row: Row;
          switch (this.dialect.sequenceReadBack) {
            case 'returning':
              row = result.records![0]!;
              break;
            case 'last-insert-id':
              row = { next_seq: (result.raw as { insertId: unknown }).insertId };
              break;
            case 'read-back':
              // Under the lock the update took: no other writer can move it in between.
              row = (await q(sql.readSequence, [ref.tenantId, ref.sessionId]))[0]!;
              break;
          }
          return new RowValues(row, sessionLabel(ref)).integer('next_seq') - count;
        },
      },
      items: {
        insertMany: async (ref, items) => {
          for (let start = 0; start < items.length; start += maxRowsPerInsert) {
            const chunk = items.slice(start, start + maxRowsPerInsert);
            const params: unknown[] = [];
            for (const item of chunk) {
              params.push(
                ref.tenantId,
                ref.sessionId,
                item.seq,
                item.dekId,
                item.expiresAt,
                item.createdAt,
                item.ciphertext,
              );
            }
            try {
              await write(sql.insertItems(chunk.length), params);
            } catch (error) {
              if (this.dialect.isPrimaryKeyViolation(error, this.tables.items)) {
                throw sequenceBehindItemsError(ref, error);
              }
              if (await this.exceedsMaxPacket(error, chunk)) throw packetTooLargeError(error);
              throw error;
            }
          }
        },
        listVisible: async (ref, now, limit) => {
          const newestFirst = await q(sql.listNewestVisible, [
            ref.tenantId,
            ref.sessionId,
            now,
            limit,
          ]);
          return toStoredItems(newestFirst.reverse(), ref, base64Items);
        },
        listVisiblePage: async (ref, now, afterSeq, throughSeq, limit) =>
          toStoredItems(
            await q(sql.listVisiblePage, [
              ref.tenantId,
              ref.sessionId,
              // From the start: zero and negative positions, which no append makes, too.
              afterSeq < 1 ? Number.MIN_SAFE_INTEGER : afterSeq,
              throughSeq,
              now,
              limit,
            ]),
            ref,
            base64Items,
          ),
        deleteBySeq: async (ref, seqs) => {
          if (seqs.length === 0) return 0;
          return write(sql.deleteItemsBySeq(seqs.length), [ref.tenantId, ref.sessionId, ...seqs]);
        },
        deleteAll: async (ref) => write(sql.deleteAllItems, [ref.tenantId, ref.sessionId]),
        listSealedUnder: async (ref, dekId, afterSeq, limit) =>
          toStoredItems(
            await q(sql.listSealedUnder, [
              ref.tenantId,
              ref.sessionId,
              dekId,
              afterSeq < 1 ? Number.MIN_SAFE_INTEGER : afterSeq,
              limit,
            ]),
            ref,
            base64Items,
          ),
        reseal: async (ref, fromDekId, resealed) => {
          let replaced = 0;
          // Postgres: one statement per chunk, one round trip instead of one per item.
          if (this.dialect.backend === 'postgres') {
            const perStatement = Math.floor((this.dialect.maxParameters - 3) / 3);
            for (let start = 0; start < resealed.length; start += perStatement) {
              const chunk = resealed.slice(start, start + perStatement);
              const params: unknown[] = [];
              for (const item of chunk) params.push(item.seq, item.dekId, item.ciphertext);
              params.push(ref.tenantId, ref.sessionId, fromDekId);
              replaced += await write(sql.resealItems(chunk.length), params);
            }
            return replaced;
          }
          // SQLite: its prepared statement run in process, microseconds a row; MySQL: a
          // statement a row.
          const statement = this.rawSqlite && this.sqliteStatement(sql.resealItem);
          for (const item of resealed) {
            const params = [
              item.dekId,
              item.ciphertext,
              ref.tenantId,
              ref.sessionId,
              item.seq,
              fromDekId,
            ];
            replaced += statement
              ? statement.run(...params).changes
              : await write(sql.resealItem, params);
          }
          return replaced;
        },
      },
      dataKeys: {
        findById: async (dekId) => {
          const rows = await q(sql.findDataKey, [dekId]);
          return rows[0] ? toDataKeyRecord(rows[0], () => dataKeyLabel(rows[0]!)) : undefined;
        },
        findActive: async (ref) => {
          const rows = await q(sql.findActiveDataKey, [ref.tenantId, ref.sessionId]);
          const label = sessionLabel(ref);
          return rows[0] ? toDataKeyRecord(rows[0], () => `the data key of ${label()}`) : undefined;
        },
        maxGeneration: async (ref) => {
          const rows = await q(sql.maxGeneration, [ref.tenantId, ref.sessionId]);
          const label = sessionLabel(ref);
          return new RowValues(
            rows[0] ?? { max_generation: 0 },
            () => `the data keys of ${label()}`,
          ).integer('max_generation');
        },
        insertIfAbsent: async (record) =>
          (await write(sql.insertDataKey, [
            record.dekId,
            record.tenantId,
            record.sessionId,
            record.subjectId,
            record.generation,
            record.firstSeq,
            record.kekId,
            record.wrappedKey,
            record.state,
            record.createdAt,
            record.destroyedAt,
          ])) === 1,
        retireActiveBelow: async (ref, generation) =>
          write(sql.retireActiveDataKeys, [ref.tenantId, ref.sessionId, generation]),
        replaceWrapping: async (key, expectedKekId, next) =>
          (await write(sql.replaceWrapping, [
            next.kekId,
            next.wrappedKey,
            key.dekId,
            key.tenantId,
            key.sessionId,
            expectedKekId,
          ])) === 1,
        destroyAllForSession: async (ref, now) =>
          write(sql.destroyDataKeys, [Buffer.alloc(0), now, ref.tenantId, ref.sessionId]),
        listAllForSession: async (ref) => {
          const label = sessionLabel(ref);
          return (await q(sql.listSessionDataKeys, [ref.tenantId, ref.sessionId])).map((row) =>
            toDataKeyRecord(row, () => `a data key of ${label()}`),
          );
        },
        destroyByIds: async (ref, dekIds, now) => {
          let destroyed = 0;
          // An erasure names a session's keys: a few, but chunked under the parameter limit.
          const perStatement = this.dialect.maxParameters - 4;
          for (let start = 0; start < dekIds.length; start += perStatement) {
            const chunk = dekIds.slice(start, start + perStatement);
            destroyed += await write(sql.destroyDataKeysById(chunk.length), [
              Buffer.alloc(0),
              now,
              ref.tenantId,
              ref.sessionId,
              ...chunk,
            ]);
          }
          return destroyed;
        },
      },
      holds: {
        // The holds on the session and on the subject its row names now. In a write unit, on the
        // unit's connection: every hold committed before the call (see lockActiveHoldsCoveringSession).
        covering: async (ref) => {
          const rows = await q(
            writer ? sql.lockActiveHoldsCoveringSession : sql.activeHoldsCoveringSession,
            [ref.tenantId, ref.sessionId, ref.tenantId, ref.sessionId],
          );
          return rows.map(toLegalHoldRecord);
        },
      },
      ...(writer && {
        audit: this.auditChains(q, writer),
        // On the unit's own connection, so the row lock lasts until the unit ends (SQLite: the
        // write transaction already keeps every other writer out).
        fence: async (lease: JobLease) => {
          checkJobLease(lease);
          const bound = idleBound(this.dialect.backend, lease);
          if (bound) {
            await writer.query(...bound.set);
            unit.restore ??= bound.restore;
          }
          const [row] = await q(sql.fenceLease, [lease.job, lease.owner, lease.token]);
          if (!row) throw (unit.lost = leaseLostError(lease));
        },
      }),
      historyOperations: {
        find: async (ref, operationId) => {
          const rows = await q(sql.findOperation, [ref.tenantId, ref.sessionId, operationId]);
          return rows[0] ? toOperationRecord(rows[0], ref) : undefined;
        },
        insertIfAbsent: async (ref, record) =>
          (await write(sql.insertOperation, [
            ref.tenantId,
            ref.sessionId,
            record.operationId,
            record.dekId,
            record.digest,
            record.createdAt,
          ])) === 1,
        deleteAll: async (ref) => write(sql.deleteOperations, [ref.tenantId, ref.sessionId]),
      },
    };
  }

  /**
   * Audit chain writes inside a transaction. A chain's head row is locked (SQLite: the write
   * transaction's database lock) before its records are sealed, and moved only from the seq it
   * was locked at. A non-transient failure of these statements is the audit store refusing the
   * record: the unit fails closed with AuditWriteError.
   */
  private auditChains(runnerQuery: RowReader, writer: QueryRunner): AdapterAuditChains {
    const sql = this.sql;
    const raw = this.rawSqlite;
    const q: RowReader = raw
      ? async (statement, params) => this.sqliteStatement(statement).all(...params)
      : runnerQuery;
    const write = raw
      ? async (statement: string, params: unknown[]): Promise<number> =>
          this.sqliteStatement(statement).run(...params).changes
      : async (statement: string, params: unknown[]): Promise<number> =>
          ((await writer.query(statement, params, true)) as { affected?: number }).affected ?? 0;
    return {
      lockHead: (chain) =>
        this.failClosed(async () => {
          let [row] = await q(sql.lockAuditHead, [chain.chainId]);
          if (!row) {
            await write(sql.insertEmptyAuditHead, [chain.chainId, chain.tenantId, GENESIS_MAC]);
            [row] = await q(sql.lockAuditHead, [chain.chainId]);
          }
          if (!row) throw new AuditWriteError(auditRefusedMessage(this.backend));
          if (
            new RowValues(row, () => 'an audit chain head').text('tenant_id') !== chain.tenantId
          ) {
            throw new IntegrityError(
              `The head of audit chain '${chain.chainId}' names another tenant: the row was edited outside the module. Verify the audit trail; nothing was changed`,
            );
          }
          return toAuditHead(row);
        }),
      append: (chain, head, records) =>
        this.failClosed(async () => {
          const last = records.at(-1)!;
          const moveHead = [last.seq, last.mac, last.time, chain.chainId, head?.seq ?? 0];
          // Postgres moves the head in the last insert's statement; the others after it.
          const movesWithInsert = this.dialect.backend === 'postgres';
          const perInsert = Math.floor(
            (this.dialect.maxParameters - moveHead.length) / AUDIT_RECORD_INSERT_PARAMETERS,
          );
          let moved = 0;
          for (let start = 0; start < records.length; start += perInsert) {
            const chunk = records.slice(start, start + perInsert);
            const params: unknown[] = [];
            for (const record of chunk) {
              params.push(
                record.chainId,
                record.seq,
                record.tenantId,
                record.sessionId,
                record.eventId,
                record.time,
                record.action,
                record.outcome,
                record.actorId,
                record.subjectRef,
                record.macKeyId,
                record.prevMac,
                record.mac,
                record.body,
              );
            }
            if (movesWithInsert && start + perInsert >= records.length) {
              moved = await write(sql.insertAuditRecordsMovingHead(chunk.length), [
                ...params,
                ...moveHead,
              ]);
            } else {
              await write(sql.insertAuditRecords(chunk.length), params);
            }
          }
          if (!movesWithInsert) moved = await write(sql.moveAuditHead, moveHead);
          if (moved !== 1) throw new AuditWriteError(auditRefusedMessage(this.backend));
        }),
    };
  }

  /** A statement on SQLite's raw connection, prepared on first use. */
  private sqliteStatement(
    source: string,
    rows: 'objects' | 'raw' = 'objects',
  ): ReturnType<RawSqlite['prepare']> {
    const cacheKey = rows === 'raw' ? `raw:${source}` : source;
    let statement = this.preparedSqlite.get(cacheKey);
    if (!statement) {
      statement = this.rawSqlite!.prepare(source);
      if (rows === 'raw') statement.raw(true);
      this.preparedSqlite.set(cacheKey, statement);
    }
    return statement;
  }

  /** Runs audit statements; a failure a retry cannot fix becomes AuditWriteError. */
  private async failClosed<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof EncryptedSessionError) throw error;
      if (this.dialect.transientReason(error) !== undefined) throw error;
      throw new AuditWriteError(auditRefusedMessage(this.backend), { cause: error });
    }
  }
}

/**
 * How many of a job's units run side by side: 1 on SQLite's one connection; on a server, half
 * the pool (TypeORM's `poolSize`, else the driver's `extra` limit, else the drivers' default of
 * 10), at most 4, so the app's own calls keep the rest.
 */
function poolShareForJobs(dataSource: DataSource): number {
  if (dialectFor(dataSource).backend === 'sqlite') return 1;
  const options = dataSource.options as {
    readonly poolSize?: number;
    readonly extra?: { readonly max?: number; readonly connectionLimit?: number };
  };
  const poolSize = options.poolSize ?? options.extra?.max ?? options.extra?.connectionLimit ?? 10;
  return Math.max(1, Math.min(4, Math.floor(poolSize / 2)));
}

/** Why an operation failed closed on its audit record, and what to check. */
function auditRefusedMessage(backend: string): string {
  return `The ${backend} audit tables refused this operation's audit record, so the operation failed and nothing of it was stored. Check the audit tables (triggers, grants, disk space) and the server log, then retry`;
}

/** Reads through a query runner (SQLite, and every statement inside a transaction). */

function runnerReader(runner: QueryRunner): RowReader {
  return async (statement, params) => runnerRows(await runner.query(statement, params, true));
}

/** The rows of a structured query result (none for a statement that returns none). */
function runnerRows(result: unknown): Row[] {
  return (result as { records?: Row[] }).records ?? [];
}
