// The Redis adapter as the module layer uses it.
export { DEFAULT_REDIS_KEY_PREFIX, validateRedisKeyPrefix } from './redis-keys.js';
export {
  REDIS_STORAGE_DEFAULTS,
  RedisSessionStorage,
  type RedisSessionStorageOptions,
} from './redis.session-storage.js';
