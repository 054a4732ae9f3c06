export * from './redis.session-storage.js';
export * from './redis-keys.js';
