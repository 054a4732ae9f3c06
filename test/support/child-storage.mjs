/**
 * Opens the storage a child process of the concurrency tests or the benchmark writes through,
 * from the store location (`throwaway-store.ts`) its parent passed. `entryUrl` is the compiled
 * library's `index.js`; the adapters and data-source openers come from their barrels beside it.
 */
export async function openChildStorage(entryUrl, backend) {
  const typeorm = await import(new URL('./storage/typeorm/index.js', entryUrl).href);
  const redis = await import(new URL('./storage/redis/index.js', entryUrl).href);
  const lib = { ...typeorm, ...redis };
  switch (backend.type) {
    case 'sqlite': {
      const dataSource = await lib.openSqliteDataSource({
        path: backend.path,
        synchronous: backend.synchronous ?? 'NORMAL',
        // Several processes queue for one file lock: wait for it rather than fail.
        busyTimeoutMs: 30_000,
      });
      return new lib.TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
    }
    case 'postgres':
    case 'mysql': {
      const dataSource = await lib.openSqlServerDataSource({
        type: backend.type,
        url: backend.url,
        poolSize: 2,
      });
      return new lib.TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
    }
    case 'redis':
      return new lib.RedisSessionStorage({ url: backend.url, keyPrefix: backend.keyPrefix });
    default:
      throw new Error(`unknown backend ${backend.type}`);
  }
}
