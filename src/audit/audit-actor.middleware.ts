import { isIP } from 'node:net';
import { Injectable, type NestMiddleware } from '@nestjs/common';
import { runAs } from './audit-context.js';
import type { AuditSource } from './audit-event.js';
import { AuditService } from './audit.service.js';

/** The parts of an Express or Fastify (raw) request the middleware reads. */
interface IncomingRequest {
  readonly headers?: Record<string, string | string[] | undefined>;
  readonly ip?: string;
  readonly socket?: { readonly remoteAddress?: string };
}

/** A request id the trail accepts: 1-128 visible ASCII characters. */
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** Where the request came from: its `x-request-id` (when well formed) and client address. */
function sourceOf(request: IncomingRequest): AuditSource | undefined {
  const header = request.headers?.['x-request-id'];
  const requestId = typeof header === 'string' && REQUEST_ID.test(header) ? header : undefined;
  const address = request.ip ?? request.socket?.remoteAddress;
  const ip = address && isIP(address) ? address : undefined;
  return requestId === undefined && ip === undefined ? undefined : { requestId, ip };
}

/**
 * Puts each request's actor (from `options.audit.actorFromRequest`) and source (`x-request-id`,
 * client address) in the audit context for everything the request does, so every audited
 * operation records who acted. Apply it to your routes:
 *
 * ```ts
 * export class AppModule implements NestModule {
 *   configure(consumer: MiddlewareConsumer) {
 *     consumer.apply(AuditActorMiddleware).forRoutes('*');
 *   }
 * }
 * ```
 *
 * A request the resolver names no actor for runs without one (refused by operations when
 * `audit.requireActor` is on). An actor that is not well formed fails the request with
 * `InvalidArgumentError`, naming the field, never its value.
 *
 * @publicApi
 */
@Injectable()
export class AuditActorMiddleware implements NestMiddleware {
  constructor(private readonly audit: AuditService) {}

  use(request: IncomingRequest, _response: unknown, next: (error?: unknown) => void): void {
    const actor = this.audit.actorOfRequest(request);
    if (!actor) {
      next();
      return;
    }
    runAs(actor, () => next(), sourceOf(request));
  }
}
