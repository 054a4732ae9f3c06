import {
  Inject,
  Injectable,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { KEY_PROVIDER, KekRotationService, KeyRing, type KeyProvider } from '../keys/index.js';
import { EncryptedSessionService } from '../sessions/index.js';
import { SESSION_STORAGE, type SessionStorage } from '../storage/index.js';
import { RESOLVED_MODULE_OPTIONS } from './module-tokens.js';
import type { ResolvedModuleOptions } from './resolve-module-options.js';
import { AUDIT_SINK, AuditService, type WinstonAuditSink } from '../audit/index.js';
import { JobScheduler } from '../jobs/index.js';

/**
 * The one owner of the module's shutdown. Nest runs `beforeApplicationShutdown` of providers on
 * one level in parallel, so no other provider of the module closes anything itself; this one
 * goes step by step:
 *
 * 1. stop what runs in the background (scheduled jobs come off their cron, their runs in
 *    progress end; a KEK rotation run ends after its current key; the audit checkpoint timer,
 *    after the run in progress);
 * 2. wait for session calls in flight, refusing new ones with `ShuttingDownError`;
 * 3. close storage: it lets its units of work finish, refuses new ones, then closes only what
 *    the module opened (a host's DataSource or Redis client stays open);
 * 4. clear the key ring (cached data keys are zeroed);
 * 5. close the key provider (token renewal timers and the like);
 * 6. flush and close the audit trail's winston file, once nothing can commit an event.
 *
 * Runs before `onApplicationShutdown`, where a host's TypeORM module destroys its DataSource.
 * Idempotent.
 */
@Injectable()
export class EncryptedSessionLifecycle
  implements OnApplicationBootstrap, BeforeApplicationShutdown
{
  private shutdown: Promise<void> | undefined;

  constructor(
    private readonly rotation: KekRotationService,
    private readonly sessions: EncryptedSessionService,
    @Inject(SESSION_STORAGE) private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
    @Inject(KEY_PROVIDER) private readonly provider: KeyProvider,
    @Inject(AUDIT_SINK) private readonly auditSink: WinstonAuditSink | null,
    private readonly audit: AuditService,
    private readonly scheduler: JobScheduler,
    @Inject(RESOLVED_MODULE_OPTIONS) private readonly options: ResolvedModuleOptions,
  ) {}

  /**
   * Puts the enabled jobs on their cron (failing startup when the host has no scheduler), and
   * starts the audit checkpoint timer when `audit.checkpoints.everySeconds` asks for one.
   */
  onApplicationBootstrap(): void {
    this.scheduler.start();
    const everyMs = this.options.audit?.checkpoints?.everyMs;
    if (everyMs !== undefined) this.audit.startCheckpointTimer(everyMs);
  }

  beforeApplicationShutdown(): Promise<void> {
    this.shutdown ??= this.shutDownInOrder();
    return this.shutdown;
  }

  private async shutDownInOrder(): Promise<void> {
    await this.scheduler.stop();
    await this.rotation.stop();
    await this.audit.stopCheckpointTimer();
    await this.sessions.drain();
    await this.storage.close();
    this.keyRing.clear();
    await this.provider.close?.();
    await this.auditSink?.close();
  }
}
