import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { KeyRing } from '../keys/index.js';
import { SESSION_STORAGE, type SessionStorage } from '../storage/index.js';

/** Closes what the module opened when the app shuts down. Idempotent. */
@Injectable()
export class EncryptedSessionLifecycle implements OnApplicationShutdown {
  constructor(
    @Inject(SESSION_STORAGE) private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
  ) {}

  async onApplicationShutdown(): Promise<void> {
    // Storage waits for queued work, then closes only a DataSource the module opened itself.
    await this.storage.close();
    this.keyRing.clear();
  }
}
