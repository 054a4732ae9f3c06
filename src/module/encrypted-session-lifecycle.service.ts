import { Inject, Injectable, type BeforeApplicationShutdown } from '@nestjs/common';
import { KeyRing } from '../keys/index.js';
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
  ) {}

  async beforeApplicationShutdown(): Promise<void> {
    // Storage waits for queued work, then closes only a DataSource the module opened itself.
    await this.storage.close();
    this.keyRing.clear();
  }
}
