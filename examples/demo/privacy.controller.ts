import { Body, Controller, Get, Headers, HttpCode, Param, Post, Query, Res } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
// In your app: import { EncryptedSessionService, ... } from 'nest-encrypted-sessions';
import {
  EncryptedSessionService,
  InvalidArgumentError,
  type ErasureReason,
  type ErasureReceipt,
  type LegalHold,
} from '../../src/index.js';
import { TENANT_HEADER, assertJsonContentType, tenantOf } from './demo-request.js';

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** `{ subjectId }` or `{ sessionId }`, exactly one, as strings. */
function targetOf(body: Record<string, unknown>): { subjectId: string } | { sessionId: string } {
  const { subjectId, sessionId } = body;
  if ((subjectId === undefined) === (sessionId === undefined)) {
    throw new InvalidArgumentError('Give exactly one of "subjectId" or "sessionId"');
  }
  if (subjectId !== undefined) {
    if (typeof subjectId !== 'string')
      throw new InvalidArgumentError('"subjectId" must be a string');
    return { subjectId };
  }
  if (typeof sessionId !== 'string') throw new InvalidArgumentError('"sessionId" must be a string');
  return { sessionId };
}

/**
 * Erasure and legal holds over HTTP, for the tenant of the `x-tenant-id` header and as the
 * actor of `x-actor-id`. A real app puts these behind a privacy officer's or counsel's role;
 * this demo has no authentication at all.
 */
@Controller()
export class PrivacyController {
  constructor(private readonly sessions: EncryptedSessionService) {}

  /**
   * Erases a subject's sessions or one session: `{ subjectId | sessionId, reason }`. 200 with
   * the receipt; 409 `LEGAL_HOLD` while a hold covers the target.
   */
  @Post('erasures')
  @HttpCode(200)
  erase(
    @Body() body: unknown,
    @Headers('content-type') contentType?: string,
    @Headers(TENANT_HEADER) tenantHeader?: string,
  ): Promise<ErasureReceipt> {
    assertJsonContentType(contentType);
    if (!isObject(body)) {
      throw new InvalidArgumentError(
        'Send { "subjectId": "...", "reason": "subject-request" } (or "sessionId")',
      );
    }
    const target = targetOf(body);
    const options = { tenantId: tenantOf(tenantHeader), reason: body.reason as ErasureReason };
    return 'subjectId' in target
      ? this.sessions.eraseSubject(target.subjectId, options)
      : this.sessions.eraseSession(target.sessionId, options);
  }

  /** Places a legal hold: `{ subjectId | sessionId, matterRef }`. 201 with the hold. */
  @Post('holds')
  placeHold(
    @Body() body: unknown,
    @Headers('content-type') contentType?: string,
    @Headers(TENANT_HEADER) tenantHeader?: string,
  ): Promise<LegalHold> {
    assertJsonContentType(contentType);
    if (!isObject(body) || typeof body.matterRef !== 'string') {
      throw new InvalidArgumentError(
        'Send { "subjectId": "...", "matterRef": "case-123" } (or "sessionId")',
      );
    }
    return this.sessions.placeHold({
      tenantId: tenantOf(tenantHeader),
      matterRef: body.matterRef,
      ...targetOf(body),
    });
  }

  /** The tenant's active holds (`?all=true`: released ones too). */
  @Get('holds')
  listHolds(
    @Query('all') all?: unknown,
    @Headers(TENANT_HEADER) tenantHeader?: string,
  ): Promise<LegalHold[]> {
    if (all !== undefined && all !== 'true' && all !== 'false') {
      throw new InvalidArgumentError('all must be true or false');
    }
    return this.sessions.listHolds({
      tenantId: tenantOf(tenantHeader),
      includeReleased: all === 'true',
    });
  }

  /** Releases a hold. 200 with the hold as released. */
  @Post('holds/:id/release')
  @HttpCode(200)
  releaseHold(@Param('id') holdId: string): Promise<LegalHold> {
    return this.sessions.releaseHold(holdId);
  }

  /** Everything a hold covers, past its TTL too, as JSON lines (audited per session). */
  @Get('holds/:id/export')
  async exportHold(@Param('id') holdId: string, @Res() response: ServerResponse): Promise<void> {
    const lines = this.sessions.exportHold(holdId);
    // The first line (or the error) before any header: a bad id still gets the JSON error.
    const first = await lines.next();
    response.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8' });
    if (!first.done) response.write(first.value);
    for await (const line of lines) response.write(line);
    response.end();
  }
}
