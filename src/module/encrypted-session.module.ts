import { Module, type DynamicModule } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { AUDIT_SINK, AUDIT_TRAIL, AuditService } from '../audit/index.js';
import { ConfigurationError } from '../errors/index.js';
import {
  EncryptedSessionJobs,
  JOBS_CONFIG,
  JobScheduler,
  KeyRotationService,
  RetentionService,
} from '../jobs/index.js';
import { KEY_PROVIDER, KEY_RING_OPTIONS, KekRotationService, KeyRing } from '../keys/index.js';
import { EncryptedSessionService, SESSION_DEFAULTS } from '../sessions/index.js';
import { SESSION_STORAGE } from '../storage/index.js';
import { auditSinkFor, auditTrailFor } from './audit-trail.factory.js';
import { EncryptedSessionLifecycle } from './encrypted-session-lifecycle.service.js';
import {
  ASYNC_OPTIONS_TYPE,
  ConfigurableEncryptedSessionModule,
  ENCRYPTED_SESSION_MODULE_OPTIONS,
  HOST_DATA_SOURCE,
  MODULE_EXTRAS_DEFAULTS,
} from './encrypted-session.module-definition.js';
import { moduleOptionsSchema } from './module-options.schema.js';
import { OPENED_BACKENDS, openBackends, type OpenedBackends } from './module-startup.js';
import { resolveModuleOptions, type ResolvedModuleOptions } from './resolve-module-options.js';

import { RESOLVED_MODULE_OPTIONS } from './module-tokens.js';

/**
 * Encrypted agent sessions for a Nest app.
 *
 * ```ts
 * EncryptedSessionModule.forRoot({
 *   keys: { env: { keys: process.env.SESSION_KEYS!, activeKeyId: process.env.SESSION_ACTIVE_KEY! } },
 * })
 * ```
 * then inject `EncryptedSessionService` and `open(sessionId, { tenantId, subjectId })`.
 * `forRootAsync({ useFactory, inject, imports })` takes the same options from a factory;
 * `isGlobal` and `dataSourceName` go beside either.
 *
 * @publicApi
 */
@Module({
  providers: [
    {
      // Checked, defaulted and frozen once; every provider below derives from it.
      provide: RESOLVED_MODULE_OPTIONS,
      useFactory: (options: unknown, host: DataSource | null): ResolvedModuleOptions =>
        resolveModuleOptions(options, host !== null),
      // HOST_DATA_SOURCE is required (null when none is named): see its definition.
      inject: [ENCRYPTED_SESSION_MODULE_OPTIONS, HOST_DATA_SOURCE],
    },
    {
      provide: OPENED_BACKENDS,
      useFactory: (options: ResolvedModuleOptions, host: DataSource | null) =>
        openBackends(options, host),
      inject: [RESOLVED_MODULE_OPTIONS, HOST_DATA_SOURCE],
    },
    {
      provide: KEY_PROVIDER,
      useFactory: (backends: OpenedBackends) => backends.keyProvider,
      inject: [OPENED_BACKENDS],
    },
    {
      provide: SESSION_STORAGE,
      useFactory: (backends: OpenedBackends) => backends.storage,
      inject: [OPENED_BACKENDS],
    },
    {
      provide: KEY_RING_OPTIONS,
      useFactory: (options: ResolvedModuleOptions) => options.keyRing,
      inject: [RESOLVED_MODULE_OPTIONS],
    },
    {
      provide: SESSION_DEFAULTS,
      useFactory: (options: ResolvedModuleOptions) => options.sessions,
      inject: [RESOLVED_MODULE_OPTIONS],
    },
    KeyRing,
    {
      provide: AUDIT_SINK,
      useFactory: auditSinkFor,
      inject: [RESOLVED_MODULE_OPTIONS],
    },
    {
      // null when options.audit.enabled is false: the services then record nothing.
      provide: AUDIT_TRAIL,
      useFactory: auditTrailFor,
      inject: [RESOLVED_MODULE_OPTIONS, SESSION_STORAGE, KeyRing, AUDIT_SINK],
    },
    KekRotationService,
    EncryptedSessionService,
    AuditService,
    {
      provide: JOBS_CONFIG,
      useFactory: (options: ResolvedModuleOptions) => options.jobs,
      inject: [RESOLVED_MODULE_OPTIONS],
    },
    EncryptedSessionJobs,
    RetentionService,
    KeyRotationService,
    JobScheduler,
    EncryptedSessionLifecycle,
  ],
  // Not SESSION_STORAGE nor KEY_PROVIDER: a host holding the raw storage port could write around
  // the encryption, and the raw provider could unwrap any data key.
  exports: [
    EncryptedSessionService,
    KeyRing,
    KekRotationService,
    AuditService,
    EncryptedSessionJobs,
    RetentionService,
    KeyRotationService,
  ],
})
export class EncryptedSessionModule extends ConfigurableEncryptedSessionModule {
  /**
   * As the generated `forRootAsync`, but refuses options beside `useFactory` that would be
   * ignored there (Nest takes every unknown key as an extra): `storage`, `keys`, typos.
   *
   * @throws ConfigurationError naming the key and where it belongs.
   */
  static override forRootAsync(options: typeof ASYNC_OPTIONS_TYPE): DynamicModule {
    refuseUnreadAsyncOptions(options);
    return super.forRootAsync(options);
  }
}

/** Keys of `forRootAsync`'s own options (Nest's `ConfigurableModuleAsyncOptions`) and extras. */
const BESIDE_USE_FACTORY = [
  'useFactory',
  'useClass',
  'useExisting',
  'inject',
  'imports',
  'provideInjectionTokensFrom',
  ...Object.keys(MODULE_EXTRAS_DEFAULTS),
];

/**
 * Refuses keys given beside `forRootAsync`'s factory that are read only from its result
 * (`storage`, `keys`, ...) or not at all. Nest would take them as extras and ignore them.
 */
function refuseUnreadAsyncOptions(asyncOptions: object): void {
  for (const key of Object.keys(asyncOptions)) {
    if (BESIDE_USE_FACTORY.includes(key)) continue;
    if (Object.hasOwn(moduleOptionsSchema.shape, key)) {
      throw new ConfigurationError(
        `forRootAsync option ${key} is read from the factory's result, not beside useFactory: return it from useFactory`,
      );
    }
    throw new ConfigurationError(
      `Unknown forRootAsync option ${key}; beside useFactory it takes: ${BESIDE_USE_FACTORY.join(', ')}`,
    );
  }
}
