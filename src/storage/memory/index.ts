export * from './memory.session-storage.js';
