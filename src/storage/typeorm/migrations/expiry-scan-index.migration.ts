import type { MigrationInterface } from 'typeorm';
import type { SqlBackend } from '../sql-dialect.js';
import type { TableNames } from '../table-names.js';
import {
  indexedByBytes,
  tablesMigration,
  type AddedIndexDefinition,
} from './create-session-tables.migration.js';

/**
 * The index of the retention purge's scan (`listExpiredItems`): items by expiry, then tenant
 * and session by their bytes, then seq, the scan's order, so a page is a range of it read in
 * order and nothing is sorted. Postgres: the id columns take the database's collation, so the
 * index names "C", as the scan's statement does; MySQL's binary and SQLite's BINARY ids sort
 * by bytes. It replaces the first schema's index on expiry alone, which its first column serves
 * as well (kept, SQLite read every item of a page's expiries and sorted them; every append and
 * delete wrote both).
 */
export function expiryScanIndexDefinitions(
  t: TableNames,
  backend: SqlBackend,
): AddedIndexDefinition[] {
  const byBytes = (column: string) => indexedByBytes(backend, column);
  return [
    {
      table: t.items,
      name: `${t.items}_expiry_scan`,
      columns: `"expires_at", ${byBytes('tenant_id')}, ${byBytes('session_id')}, "seq"`,
      replaces: { name: `${t.items}_expiry`, columns: '"expires_at"' },
    },
  ];
}

/** Builds the migration that gives the purge's scan an index in its own order (after holds). */
export const expiryScanIndexMigration = (prefix?: string): new () => MigrationInterface =>
  tablesMigration('ExpiryScanIndex1765400000000', prefix, () => [], expiryScanIndexDefinitions);
