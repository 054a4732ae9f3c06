/**
 * `nest-encrypted-sessions/health`: health indicators for `@nestjs/terminus` 12 (storage
 * reachable, key provider outage, each job's last run and lag against its cron). `@nestjs/terminus`
 * is an optional peer dependency: `npm install @nestjs/terminus@^12.1`. The package root never
 * loads this entry, so a host without terminus does not need it (docs/health.md).
 *
 * @packageDocumentation
 */
export {
  EncryptedSessionHealthIndicator,
  type JobHealth,
  type JobsHealth,
  type KeyProviderHealth,
  type KeyRotationHealth,
  type StorageHealth,
} from './encrypted-session-health.indicator.js';
export { EncryptedSessionHealthModule } from './encrypted-session-health.module.js';
export {
  ENCRYPTED_SESSION_HEALTH_OPTIONS,
  type EncryptedSessionHealthOptions,
} from './health-options.js';
