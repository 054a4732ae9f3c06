export * from './key-provider.interface.js';
export * from './key-ring.options.js';
export * from './kek-rotation.service.js';
export * from './key-ring.service.js';
export * from './providers/env-key-provider.js';
export * from './providers/aws-kms-key-provider.js';
export * from './providers/vault/index.js';
