export * from './migrations/index.js';
export * from './migration-runner.js';
export * from './sql-dialect.js';
export * from './sqlite-data-source.js';
export * from './table-names.js';
export * from './typeorm.session-storage.js';
export * from './server-data-source.js';
export * from './session-entities.js';
