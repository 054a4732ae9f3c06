export * from './errors/index.js';
export * from './crypto/index.js';
export * from './storage/index.js';
export * from './keys/index.js';
export * from './sessions/index.js';
export * from './module/index.js';
