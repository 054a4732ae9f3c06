import { afterAll } from 'vitest';
import { AuditTrail, type CheckpointSigner } from '../../src/audit/index.js';
import { AuditService, EncryptedSessionService } from '../../src/index.js';
import { KeyRingAuditKeys } from '../../src/module/key-ring-audit-keys.js';
import {
  sqlServerHarness,
  sqliteHarness,
  type HarnessFactory,
  type SessionHarness,
} from './session-harness.js';
import { sqlServerUp } from './sql-server-support.js';

/*
 * An audited store on a SQL backend for the specs that tamper with the audit tables in SQL:
 * sessions and the audit service over one trail, and SQL written once with `?` placeholders and
 * double-quoted names, adapted per engine.
 */

/** An audited store and a way to reach its tables directly. */
export interface AuditRig {
  readonly harness: SessionHarness;
  readonly sessions: EncryptedSessionService;
  readonly audit: AuditService;
  readonly keys: KeyRingAuditKeys;
  /** Runs SQL with `?` placeholders and double-quoted names on the harness's database. */
  sql(statement: string, params?: unknown[]): Promise<unknown>;
}

/** Builds a rig on a harness; with `checkpointSigner`, the trail takes checkpoints. */
export async function auditRigOn(
  createHarness: HarnessFactory,
  checkpointSigner?: CheckpointSigner,
): Promise<AuditRig> {
  const harness = await createHarness();
  const keys = new KeyRingAuditKeys(harness.keyRing, 86_400_000);
  const trail = new AuditTrail(harness.storage.audit!, keys, {
    requireActor: true,
    reads: 'group-commit',
    checkpointSigner,
  });
  const dataSource = harness.dataSource!;
  const isPostgres = dataSource.options.type === 'postgres';
  const isMysql = dataSource.options.type === 'mysql' || dataSource.options.type === 'mariadb';
  return {
    harness,
    keys,
    sessions: new EncryptedSessionService(harness.storage, harness.keyRing, undefined, trail),
    audit: new AuditService(trail),
    sql: (statement, params = []) => {
      let index = 0;
      const text = isPostgres ? statement.replaceAll('?', () => `$${++index}`) : statement;
      return dataSource.query(isMysql ? text.replaceAll('"', '`') : text, params);
    },
  };
}

/**
 * Runs `describeOn` on SQLite, Postgres and MariaDB; a server that is not up is skipped (and
 * fails under CI=true, see `sqlServerUp`).
 */
export async function onSqlBackends(
  describeOn: (name: string, createHarness: HarnessFactory, skip: boolean) => void,
): Promise<void> {
  describeOn('sqlite', sqliteHarness, false);
  for (const [name, type] of [
    ['postgres', 'postgres'],
    ['mariadb', 'mysql'],
  ] as const) {
    const up = await sqlServerUp(type);
    const { factory, dispose } = sqlServerHarness(type);
    afterAll(dispose);
    describeOn(name, factory, !up);
  }
}
