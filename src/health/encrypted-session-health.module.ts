import { Module, type DynamicModule } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { EncryptedSessionHealthIndicator } from './encrypted-session-health.indicator.js';
import {
  ENCRYPTED_SESSION_HEALTH_OPTIONS,
  resolveHealthOptions,
  type EncryptedSessionHealthOptions,
} from './health-options.js';

/**
 * Provides {@link EncryptedSessionHealthIndicator} (with terminus's `HealthIndicatorService`).
 * Import it beside `EncryptedSessionModule.forRoot({ ..., isGlobal: true })`: the indicator
 * injects the `EncryptedSessionJobs` and `KeyRing` that module exports. Without `isGlobal`, list
 * `EncryptedSessionHealthIndicator` in the providers of the module that imports both
 * `EncryptedSessionModule` and `TerminusModule` instead (docs/health.md).
 *
 * ```ts
 * imports: [
 *   TerminusModule,
 *   EncryptedSessionModule.forRoot({ keys, isGlobal: true }),
 *   EncryptedSessionHealthModule.forRoot({ timeoutMs: 2000, maxLagPeriods: 2 }),
 * ]
 * ```
 *
 * @publicApi
 */
@Module({
  imports: [TerminusModule],
  providers: [EncryptedSessionHealthIndicator],
  exports: [EncryptedSessionHealthIndicator],
})
// oxlint-disable-next-line typescript/no-extraneous-class -- a Nest module is a class by design
export class EncryptedSessionHealthModule {
  /**
   * The module with options other than the defaults.
   *
   * @throws ConfigurationError naming an option that is not usable, and what it takes.
   */
  static forRoot(options: EncryptedSessionHealthOptions = {}): DynamicModule {
    return {
      module: EncryptedSessionHealthModule,
      providers: [
        // Checked here, so a bad option fails at startup, not at the first probe.
        { provide: ENCRYPTED_SESSION_HEALTH_OPTIONS, useValue: resolveHealthOptions(options) },
      ],
    };
  }
}
