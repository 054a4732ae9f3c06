import { Inject, Injectable, type BeforeApplicationShutdown } from '@nestjs/common';
import { KEY_PROVIDER, KeyRing, type KeyProvider } from '../keys/index.js';
import { SESSION_STORAGE, type SessionStorage } from '../storage/index.js';

/**
 * Drains queued session work and closes what the module opened when the app shuts down.
 * Runs before `onApplicationShutdown`, where a host's TypeORM module destroys its DataSource.
 * Idempotent.
 */
@Injectable()
export class EncryptedSessionLifecycle implements BeforeApplicationShutdown {
  constructor(
    @Inject(SESSION_STORAGE) private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
    @Inject(KEY_PROVIDER) private readonly provider: KeyProvider,
  ) {}

  async beforeApplicationShutdown(): Promise<void> {
    // Storage waits for queued work, then closes only a DataSource the module opened itself.
    await this.storage.close();
    this.keyRing.clear();
    // Stops token renewal timers and the like, so nothing keeps the process alive.
    await this.provider.close?.();
  }
}
