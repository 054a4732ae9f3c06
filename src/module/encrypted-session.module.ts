import { Logger, Module, type DynamicModule } from '@nestjs/common';
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
import { DrainingSessionStorage, SESSION_STORAGE } from '../storage/index.js';
import { EncryptedSessionLifecycle } from './encrypted-session-lifecycle.service.js';
import type { EncryptedSessionModuleOptions } from './encrypted-session-module-options.interface.js';
import {
  ASYNC_OPTIONS_TYPE,
  ConfigurableEncryptedSessionModule,
  ENCRYPTED_SESSION_MODULE_OPTIONS,
  HOST_DATA_SOURCE,
} from './encrypted-session.module-definition.js';
import { refuseUnreadAsyncOptions } from './module-option-keys.js';
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
      useFactory: async (
        options: EncryptedSessionModuleOptions,
        _provider: unknown,
        host: DataSource | null,
      ) =>
        // Drains on close: shutdown waits for units in flight and refuses new ones.
        new DrainingSessionStorage(await createSessionStorage(options, host)),
      // HOST_DATA_SOURCE is required (null when none is named): see its definition.
      inject: [ENCRYPTED_SESSION_MODULE_OPTIONS, KEY_PROVIDER, HOST_DATA_SOURCE],
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
  // Not SESSION_STORAGE nor KEY_PROVIDER: a host holding the raw storage port could write around
  // the encryption, and the raw provider could unwrap any data key.
  exports: [EncryptedSessionService, KeyRing, KekRotationService],
})
export class EncryptedSessionModule extends ConfigurableEncryptedSessionModule {
  /**
   * As the generated `forRootAsync`, but refuses options beside `useFactory` that would be
   * ignored there (Nest takes every unknown key as an extra): `tablePrefix`, `storage`, typos.
   *
   * @throws ConfigurationError naming the key and where it belongs.
   */
  static override forRootAsync(options: typeof ASYNC_OPTIONS_TYPE): DynamicModule {
    refuseUnreadAsyncOptions(options);
    return super.forRootAsync(options);
  }
}
