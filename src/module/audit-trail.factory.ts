import { AuditTrail, WinstonAuditSink, auditFileLogger } from '../audit/index.js';
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
/** The winston copy of the trail `options.audit.winston` asks for, or null. */
export function auditSinkFor(options: ResolvedModuleOptions): WinstonAuditSink | null {
  const winston = options.audit?.winston;
  if (!winston) return null;
  return 'file' in winston
    ? new WinstonAuditSink(auditFileLogger(winston.file), true)
    : new WinstonAuditSink(winston.logger, false);
}

export function auditTrailFor(
  options: ResolvedModuleOptions,
  storage: SessionStorage,
  keyRing: KeyRing,
  sink: WinstonAuditSink | null,
): AuditTrail | null {
  const audit = options.audit;
  if (!audit) return null;
  if (!storage.audit) {
    throw new ConfigurationError(
      `The ${storage.backend} storage keeps no audit trail (its adapter has no 'audit' member), and the audit trail is on: use a built-in adapter, or set options.audit.enabled: false`,
    );
  }
  const trail = new AuditTrail(
    storage.audit,
    new KeyRingAuditKeys(keyRing, audit.macKeyRotationMs),
    {
      requireActor: audit.requireActor,
      reads: audit.reads,
      actorFromRequest: audit.actorFromRequest,
      actorFromRunContext: audit.actorFromRunContext,
      checkpointSigner: audit.checkpoints?.signer,
    },
  );
  keyRing.attachAuditTrail(trail);
  if (sink) trail.onCommitted((events) => sink.write(events));
  return trail;
}
