/**
 * `nest-encrypted-sessions/redis`: the Redis adapter (ioredis 5, standalone or Cluster), for
 * `storage: { instance: new RedisSessionStorage({ client }) }` with a client of the host's.
 * `ioredis` is an optional peer dependency: `npm install ioredis`.
 *
 * @packageDocumentation
 */
export { RedisSessionStorage, type RedisSessionStorageOptions } from './storage/redis/index.js';
