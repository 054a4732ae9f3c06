import { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';

/** The job concurrency a storage over this (never connected) DataSource reports. */
function jobConcurrencyOver(options: ConstructorParameters<typeof DataSource>[0]): number {
  const storage = new TypeOrmSessionStorage({ dataSource: new DataSource(options) });
  return storage.maintenance.jobConcurrency?.() ?? 1;
}

describe('TypeOrmSessionStorage job concurrency', () => {
  it('runs one unit at a time on SQLite, whose one connection every unit queues for', () => {
    expect(jobConcurrencyOver({ type: 'better-sqlite3', database: ':memory:' })).toBe(1);
  });

  it('takes half the pool on a server, at most 4, and at least 1', () => {
    expect(jobConcurrencyOver({ type: 'postgres', poolSize: 4 })).toBe(2);
    expect(jobConcurrencyOver({ type: 'mysql', poolSize: 1 })).toBe(1);
    expect(jobConcurrencyOver({ type: 'postgres', poolSize: 30 })).toBe(4);
  });

  it("reads the driver's own pool limit when TypeORM's poolSize is not set, else its default of 10", () => {
    expect(jobConcurrencyOver({ type: 'postgres', extra: { max: 6 } })).toBe(3);
    expect(jobConcurrencyOver({ type: 'mysql', extra: { connectionLimit: 2 } })).toBe(1);
    expect(jobConcurrencyOver({ type: 'postgres' })).toBe(4);
  });
});
