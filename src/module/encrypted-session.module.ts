import { Logger, Module } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import {
  KEY_PROVIDER,
  KEY_RING_OPTIONS,
  KekRotationService,
  KeyRing,
  type KeyRingOptions,
} from '../keys/index.js';
import {
  DEFAULT_MAX_ITEM_BYTES,
  EncryptedSessionService,
  SESSION_DEFAULTS,
  type SessionDefaults,
} from '../sessions/index.js';
import { SESSION_STORAGE } from '../storage/index.js';
import { EncryptedSessionLifecycle } from './encrypted-session-lifecycle.service.js';
import type { EncryptedSessionModuleOptions } from './encrypted-session-module-options.interface.js';
import {
  ConfigurableEncryptedSessionModule,
  ENCRYPTED_SESSION_MODULE_OPTIONS,
  HOST_DATA_SOURCE,
} from './encrypted-session.module-definition.js';
import { createSessionStorage } from './session-storage.factory.js';
import { validateModuleOptions } from './validate-module-options.js';

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
 */
@Module({
  providers: [
    {
      // Validated first: every other provider depends on it, so bad options stop startup.
      provide: KEY_PROVIDER,
      useFactory: async (options: EncryptedSessionModuleOptions) => {
        const provider = validateModuleOptions(options);
        // Log in and look up the active root key now: a wrong key id or credential stops
        // startup with its error instead of failing the first request.
        await provider.init?.();
        new Logger('EncryptedSessionModule').log(
          `Key provider '${provider.name}', new data keys wrapped under ${provider.activeKekId()}`,
        );
        return provider;
      },
      inject: [ENCRYPTED_SESSION_MODULE_OPTIONS],
    },
    {
      provide: SESSION_STORAGE,
      useFactory: (options: EncryptedSessionModuleOptions, _provider: unknown, host?: DataSource) =>
        createSessionStorage(options, host),
      inject: [
        ENCRYPTED_SESSION_MODULE_OPTIONS,
        KEY_PROVIDER,
        { token: HOST_DATA_SOURCE, optional: true },
      ],
    },
    {
      provide: KEY_RING_OPTIONS,
      useFactory: (options: EncryptedSessionModuleOptions): KeyRingOptions =>
        options.keyCache ?? {},
      inject: [ENCRYPTED_SESSION_MODULE_OPTIONS],
    },
    {
      provide: SESSION_DEFAULTS,
      useFactory: (options: EncryptedSessionModuleOptions): SessionDefaults => ({
        tenantId: options.defaultTenantId ?? 'default',
        itemTtlSeconds: options.itemTtlSeconds ?? null,
        maxItemBytes: options.maxItemBytes ?? DEFAULT_MAX_ITEM_BYTES,
      }),
      inject: [ENCRYPTED_SESSION_MODULE_OPTIONS],
    },
    KeyRing,
    KekRotationService,
    EncryptedSessionService,
    EncryptedSessionLifecycle,
  ],
  exports: [EncryptedSessionService, KeyRing, KekRotationService, SESSION_STORAGE, KEY_PROVIDER],
})
export class EncryptedSessionModule extends ConfigurableEncryptedSessionModule {}
