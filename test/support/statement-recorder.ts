import type { Logger as TypeOrmLogger } from 'typeorm';

/** A TypeORM logger that records every statement a DataSource runs through a query runner. */
export class StatementRecorder implements TypeOrmLogger {
  readonly statements: string[] = [];
  logQuery(query: string) {
    this.statements.push(query);
  }
  logQueryError() {}
  logQuerySlow() {}
  logSchemaBuild() {}
  logMigration() {}
  log() {}
}
