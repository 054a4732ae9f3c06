export { MemorySessionStorage } from './memory.session-storage.js';
