import {
  Module,
  type DynamicModule,
  type MiddlewareConsumer,
  type NestModule,
} from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
// In your app: import { EncryptedSessionModule } from 'nest-encrypted-sessions';
import {
  AuditActorMiddleware,
  EncryptedSessionModule,
  type StorageOptions,
} from '../../src/index.js';
import { AuditController } from './audit.controller.js';
import { actorOf } from './demo-request.js';
import type { DemoKeys } from './demo-keys.js';
import { DemoExceptionFilter } from './demo-exception.filter.js';
import { JobsController } from './jobs.controller.js';
import { PrivacyController } from './privacy.controller.js';
import { SessionsController } from './sessions.controller.js';

/** What the demo's {@link AppModule} is built from; `createDemoApp` fills it in. */
export interface DemoAppConfig {
  /** Root keys, from SESSION_KEYS / SESSION_ACTIVE_KEY or the development key file. */
  readonly keys: DemoKeys;
  /** Where sessions live: the embedded SQLite file by default, or a server (SESSION_STORAGE_URL). */
  readonly storage: StorageOptions;
  /** The JSON-lines copy of the audit trail (winston). */
  readonly auditFile: string;
}

/**
 * The demo app: the encrypted session module (embedded SQLite unless told otherwise), a small JSON
 * API over it, and a filter that turns every error, the module's typed ones included, into one
 * JSON error shape with an HTTP status.
 */
@Module({})
export class AppModule implements NestModule {
  /** Every route runs as the actor its `x-actor-id` header names, for the audit trail. */
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(AuditActorMiddleware).forRoutes('*path');
  }

  /** Builds the module for one configuration, so tests can give their own folder and keys. */
  static forRoot(config: DemoAppConfig): DynamicModule {
    const sourceNames =
      config.keys.source === 'env'
        ? { keys: 'SESSION_KEYS', activeKeyId: 'SESSION_ACTIVE_KEY' }
        : {
            keys: `SESSION_KEYS in ${config.keys.devKeyFile}`,
            activeKeyId: `SESSION_ACTIVE_KEY in ${config.keys.devKeyFile}`,
          };
    return {
      module: AppModule,
      imports: [
        // The host's scheduler, once: the module never imports it itself.
        ScheduleModule.forRoot(),
        EncryptedSessionModule.forRoot({
          keys: {
            env: { keys: config.keys.keys, activeKeyId: config.keys.activeKeyId, sourceNames },
          },
          storage: config.storage,
          audit: { actorFromRequest: actorOf, winston: { file: config.auditFile } },
          // Short periods, to watch the jobs work: the purge of expired items every 30 seconds.
          jobs: { retentionPurge: { enabled: true, cron: '*/30 * * * * *' } },
        }),
      ],
      controllers: [SessionsController, AuditController, JobsController, PrivacyController],
      providers: [{ provide: APP_FILTER, useClass: DemoExceptionFilter }],
    };
  }
}
