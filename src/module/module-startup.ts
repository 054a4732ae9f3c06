import { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import type { KeyProvider } from '../keys/index.js';
import { DrainingSessionStorage } from '../storage/index.js';
import { createKeyProvider } from './key-provider.factory.js';
import type { ResolvedModuleOptions } from './resolve-module-options.js';
import { createSessionStorage } from './session-storage.factory.js';

/** What the module opens at startup and closes at shutdown. */
export interface OpenedBackends {
  readonly keyProvider: KeyProvider;
  /** Drains on close: shutdown waits for units in flight and refuses new ones. */
  readonly storage: DrainingSessionStorage;
}

/** Injection token of {@link OpenedBackends}. */
export const OPENED_BACKENDS = Symbol('OPENED_BACKENDS');

/**
 * The one owner of the module's startup, the counterpart of `EncryptedSessionLifecycle`:
 * the key provider first (log in, look up the active root key, so a wrong key id or
 * credential stops startup before any database is touched), then storage (connect, migrate).
 * When storage fails the provider is closed again, so a failed start leaves no timer or
 * connection behind.
 */
export async function openBackends(
  options: ResolvedModuleOptions,
  hostDataSource: DataSource | null,
): Promise<OpenedBackends> {
  const keyProvider = await createKeyProvider(options.keys);
  // A provider whose init fails cleans up after itself (no timer outlives a failed start).
  await keyProvider.init?.();
  new Logger('EncryptedSessionModule').log(
    `Key provider '${keyProvider.name}', new data keys wrapped under ${keyProvider.activeKekId()}`,
  );
  try {
    const storage = await createSessionStorage(options.storage, hostDataSource);
    return { keyProvider, storage: new DrainingSessionStorage(storage) };
  } catch (error) {
    await keyProvider.close?.();
    throw error;
  }
}
