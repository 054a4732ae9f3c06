export * from './encrypted-session-module-options.interface.js';
export {
  ENCRYPTED_SESSION_MODULE_OPTIONS,
  HOST_DATA_SOURCE,
} from './encrypted-session.module-definition.js';
export * from './encrypted-session.module.js';
export * from './validate-module-options.js';
