import type { Command } from 'commander';
import type { AuditActor } from '../audit/index.js';
import { UsageError } from './runtime.js';

/** The options every command that changes data on an operator's word takes. */
export interface OperatorOptions {
  readonly actor?: string;
  readonly tenant?: string;
  readonly json?: boolean;
}

/** Adds `--actor` (required: who does it, for the audit trail) and `--tenant`. */
export function withOperatorOptions(command: Command): Command {
  return command
    .option(
      '--actor <id>',
      "who runs it, as the audit trail records it: the operator's opaque id (required)",
    )
    .option('--tenant <id>', "the tenant (default: the module's defaultTenantId)");
}

/** The operator as an audit actor in `tenantId`; UsageError without `--actor`. */
export function operatorActor(options: OperatorOptions, tenantId: string): AuditActor {
  if (!options.actor) {
    throw new UsageError(
      'give --actor <id>: the audit trail records who erased or held what (an opaque id, never a name)',
    );
  }
  return { type: 'user', id: options.actor, tenantId };
}
