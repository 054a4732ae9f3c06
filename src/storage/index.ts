export * from './draining-storage.js';
export * from './memory/index.js';
export * from './redis/index.js';
export * from './serial-queue.js';
export * from './storage.ports.js';
export * from './storage.records.js';
export * from './typeorm/index.js';
export * from './work-in-flight.js';
