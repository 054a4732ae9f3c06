export * from './encrypted-session.js';
export * from './encrypted-session.service.js';
export * from './history-transaction.js';
export * from './session-defaults.js';
