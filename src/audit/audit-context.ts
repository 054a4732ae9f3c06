import { AsyncLocalStorage } from 'node:async_hooks';
import { checkAuditActor, type AuditActor, type AuditSource } from './audit-event.js';

/** Who is acting, and where the request came from, for the events of the work in progress. */
export interface AuditContext {
  readonly actor: AuditActor;
  readonly source?: AuditSource;
}

const contexts = new AsyncLocalStorage<AuditContext>();

/**
 * Runs `work` as `actor`: every audited operation inside it, awaited or not, records this
 * actor (and `source`). For jobs, command-line tools and tests; a request's context comes from
 * the module's middleware or interceptor instead. Nested calls take the innermost actor.
 *
 * @throws InvalidArgumentError when the actor is not well formed (naming the field only).
 *
 * @publicApi
 */
export function runAs<T>(actor: AuditActor, work: () => T, source?: AuditSource): T {
  const context: AuditContext = Object.freeze({
    actor: Object.freeze(checkAuditActor(actor)),
    ...(source === undefined ? {} : { source: Object.freeze({ ...source }) }),
  });
  return contexts.run(context, work);
}

/**
 * The audit context of the work in progress, or undefined outside any `runAs` or audited
 * request.
 *
 * @publicApi
 */
export function currentAuditContext(): AuditContext | undefined {
  return contexts.getStore();
}
