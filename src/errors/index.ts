export * from './encrypted-session.error.js';
export * from './errors.js';
