import { AuditTrail } from '../audit/index.js';
import { ConfigurationError } from '../errors/index.js';
import type { KeyRing } from '../keys/index.js';
import type { SessionStorage } from '../storage/index.js';
import { KeyRingAuditKeys } from './key-ring-audit-keys.js';
import type { ResolvedModuleOptions } from './resolve-module-options.js';

/**
 * The module's audit trail over its storage and key ring, or null when `options.audit.enabled`
 * is false. A storage that keeps no audit trail (a host's own adapter) is refused at startup:
 * the trail is fail-closed, so it cannot silently record nothing.
 */
export function auditTrailFor(
  options: ResolvedModuleOptions,
  storage: SessionStorage,
  keyRing: KeyRing,
): AuditTrail | null {
  const audit = options.audit;
  if (!audit) return null;
  if (!storage.audit) {
    throw new ConfigurationError(
      `The ${storage.backend} storage keeps no audit trail (its adapter has no 'audit' member), and the audit trail is on: use a built-in adapter, or set options.audit.enabled: false`,
    );
  }
  return new AuditTrail(storage.audit, new KeyRingAuditKeys(keyRing, audit.macKeyRotationMs), {
    requireActor: audit.requireActor,
    reads: audit.reads,
    actorFromRequest: audit.actorFromRequest,
    actorFromRunContext: audit.actorFromRunContext,
  });
}
