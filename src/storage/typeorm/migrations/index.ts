import type { MigrationInterface } from 'typeorm';
import { binaryIdsMigration } from './binary-ids.migration.js';
import {
  createAuditCheckpointsMigration,
  createAuditTablesMigration,
} from './create-audit-tables.migration.js';
import { createJobLeasesMigration } from './create-job-leases.migration.js';
import { createLegalHoldsMigration } from './create-legal-holds.migration.js';
import { createSessionTablesMigration } from './create-session-tables.migration.js';
import { expiryScanIndexMigration } from './expiry-scan-index.migration.js';

export { binaryIdsMigration } from './binary-ids.migration.js';
export {
  createAuditCheckpointsMigration,
  createAuditTablesMigration,
} from './create-audit-tables.migration.js';
export { createJobLeasesMigration } from './create-job-leases.migration.js';
export { createLegalHoldsMigration } from './create-legal-holds.migration.js';
export { createSessionTablesMigration } from './create-session-tables.migration.js';
export { expiryScanIndexMigration } from './expiry-scan-index.migration.js';

/**
 * Every migration of the module, oldest first, for tables under `prefix`.
 *
 * @publicApi
 */
export function sessionMigrations(prefix?: string): Array<new () => MigrationInterface> {
  return [
    createSessionTablesMigration(prefix),
    binaryIdsMigration(prefix),
    createAuditTablesMigration(prefix),
    createAuditCheckpointsMigration(prefix),
    createJobLeasesMigration(prefix),
    createLegalHoldsMigration(prefix),
    expiryScanIndexMigration(prefix),
  ];
}
