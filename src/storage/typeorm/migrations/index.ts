import type { MigrationInterface } from 'typeorm';
import { createSessionTablesMigration } from './create-session-tables.migration.js';

export { createSessionTablesMigration } from './create-session-tables.migration.js';

/** Every migration of the module, oldest first, for tables under `prefix`. */
export function sessionMigrations(prefix?: string): Array<new () => MigrationInterface> {
  return [createSessionTablesMigration(prefix)];
}
