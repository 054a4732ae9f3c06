import { Controller, Get, Headers, Query } from '@nestjs/common';
// In your app: import { AuditService, ... } from 'nest-encrypted-sessions';
import {
  AuditService,
  InvalidArgumentError,
  type AccessReportPage,
  type AuditVerification,
} from '../../src/index.js';
import { TENANT_HEADER, tenantOf } from './demo-request.js';

/** A whole number from the query string, or undefined when absent. */
function wholeNumber(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d{1,16}$/.test(value)) {
    throw new InvalidArgumentError(`${name} must be a whole number`);
  }
  return Number(value);
}

/** A query string value that must appear at most once. */
function single(value: unknown, name: string): string | undefined {
  if (value === undefined || typeof value === 'string') return value;
  throw new InvalidArgumentError(`${name} must be given once`);
}

/**
 * The audit trail of the request's tenant: verify it, and list who accessed a session, a subject
 * or by an actor. A real app puts these behind an auditor's role; this demo has no
 * authentication at all.
 */
@Controller('audit')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  /** Verifies every chain of the tenant; `ok: false` names each chain's first break. */
  @Get('verify')
  verify(@Headers(TENANT_HEADER) tenantId?: string): Promise<AuditVerification> {
    return this.audit.verify({ tenantId: tenantOf(tenantId) });
  }

  /**
   * One page of the access report about `sessionId`, `subjectId` or `actorId`, between `from`
   * and `to` (ms since the epoch; default: all time), `limit` events, after `cursor`.
   */
  @Get('report')
  report(
    @Query() query: Record<string, unknown>,
    @Headers(TENANT_HEADER) tenantId?: string,
  ): Promise<AccessReportPage> {
    return this.audit.accessReport({
      tenantId: tenantOf(tenantId),
      sessionId: single(query.sessionId, 'sessionId'),
      subjectId: single(query.subjectId, 'subjectId'),
      actorId: single(query.actorId, 'actorId'),
      from: wholeNumber(query.from, 'from') ?? 0,
      to: wholeNumber(query.to, 'to') ?? Date.now() + 1,
      limit: wholeNumber(query.limit, 'limit'),
      cursor: single(query.cursor, 'cursor'),
    });
  }
}
