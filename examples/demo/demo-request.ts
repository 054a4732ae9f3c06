import type { IncomingMessage } from 'node:http';
import { UnsupportedMediaTypeException } from '@nestjs/common';

/**
 * Header that names the tenant of a request. A real app takes the tenant from the authenticated
 * caller, never from a header the client chooses: the demo has no authentication at all.
 */
export const TENANT_HEADER = 'x-tenant-id';

/** Tenant of a request without {@link TENANT_HEADER} (the module's own default, `'default'`). */
export const DEFAULT_TENANT_ID = 'default';

/**
 * Largest request body the demo reads: 1 MiB. A larger one gets `413 PAYLOAD_TOO_LARGE`. The
 * module's own limit per item (`maxItemBytes`, 4 MiB by default) is separate and still applies.
 */
export const JSON_BODY_LIMIT_BYTES = 1024 * 1024;

/** {@link JSON_BODY_LIMIT_BYTES} as the README and error messages write it. */
export const JSON_BODY_LIMIT_TEXT = `${JSON_BODY_LIMIT_BYTES / (1024 * 1024)} MiB`;

/** Longest tenant id a log line repeats; the module refuses ids over 191 characters anyway. */
const MAX_LOGGED_TENANT_LENGTH = 191;

/** Names who acts, for the audit trail. The demo has no authentication: a real app takes the actor from its verified caller (e.g. `req.user`). */
export const ACTOR_HEADER = 'x-actor-id';

/**
 * The audit actor of a demo request: the `x-actor-id` header as a user of the request's tenant,
 * or none (then the module records the unattributed system actor, or refuses the request with
 * 401 AUDIT_ACTOR_REQUIRED under NODE_ENV=production).
 */
export function actorOf(request: {
  readonly headers: Record<string, string | string[] | undefined>;
}): { type: 'user'; id: string; tenantId: string } | undefined {
  const id = request.headers[ACTOR_HEADER];
  if (typeof id !== 'string' || id === '') return undefined;
  return { type: 'user', id, tenantId: tenantOf(request.headers[TENANT_HEADER]) };
}

/** The tenant a request acts for: the header's value, else {@link DEFAULT_TENANT_ID}. */
export function tenantOf(headerValue: string | string[] | undefined): string {
  const value = Array.isArray(headerValue) ? headerValue.join(', ') : headerValue;
  return value === undefined || value === '' ? DEFAULT_TENANT_ID : value;
}

/**
 * The tenant as a log line shows it: quoted, so that spaces or an empty-looking id stay visible
 * and a control character cannot start a fake log line.
 */
export function tenantForLog(headerValue: string | string[] | undefined): string {
  const tenant = tenantOf(headerValue);
  return tenant.length > MAX_LOGGED_TENANT_LENGTH
    ? `${JSON.stringify(tenant.slice(0, MAX_LOGGED_TENANT_LENGTH))}...`
    : JSON.stringify(tenant);
}

/** A request as Express hands it over: Node's, with the URL before any router rewrote it. */
export type DemoRequest = IncomingMessage & { readonly originalUrl?: string };

/**
 * The tenant, method and path of a request, for a log line. Never the query string or the body:
 * only ids, which the module's own messages name too.
 */
export function describeRequestForLog(request: DemoRequest): string {
  const path = (request.originalUrl ?? request.url ?? '').split('?')[0];
  return `tenant ${tenantForLog(request.headers[TENANT_HEADER])} ${request.method ?? '?'} ${path}`;
}

/**
 * Refuses a body that is not declared as JSON with `415 UNSUPPORTED_MEDIA_TYPE` and a message
 * that says which header to send. Without it, such a body is never parsed and the request fails
 * later with a validation message about the body's shape, which hides the real mistake
 * (`curl -d` without `-H 'content-type: application/json'` is the usual one).
 */
export function assertJsonContentType(contentType: string | undefined): void {
  const mediaType = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (mediaType === 'application/json') return;
  // Echo the media type only when it looks like one: a header is the client's free text.
  const sent =
    mediaType === ''
      ? 'no Content-Type header'
      : /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(mediaType)
        ? `Content-Type ${mediaType}${mediaType === 'application/x-www-form-urlencoded' ? ' (what curl -d sends by default)' : ''}`
        : 'a Content-Type that is not a media type';
  throw new UnsupportedMediaTypeException({
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: `Send the request body as JSON with the header "Content-Type: application/json"; this request has ${sent}`,
  });
}
