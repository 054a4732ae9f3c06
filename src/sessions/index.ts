// The sessions layer as the module layer and hosts use it.
export { EncryptedSession, type EncryptedSessionContext } from './encrypted-session.js';
export {
  EncryptedSessionService,
  MAX_ID_LENGTH,
  type OpenSessionOptions,
} from './encrypted-session.service.js';
export { ExpiredItemPurge, type SessionPurgeCounts } from './expired-item-purge.js';
export {
  DEFAULT_MAX_ITEM_BYTES,
  DEFAULT_SESSION_DEFAULTS,
  SESSION_DEFAULTS,
  type SessionDefaults,
} from './session-defaults.js';
