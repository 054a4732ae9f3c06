import {
  BadRequestException,
  Body,
  Controller,
  Delete,
  Get,
  Headers,
  HttpCode,
  NotFoundException,
  Param,
  Post,
  Query,
} from '@nestjs/common';
import type { AgentInputItem } from '@openai/agents-core';
// In your app: import { EncryptedSessionService, ... } from 'nest-encrypted-sessions';
import { EncryptedSessionService, type EncryptedSession } from '../../src/index.js';
import { TENANT_HEADER, assertJsonContentType, tenantOf } from './demo-request.js';

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Agent session history over HTTP. Every route opens the session (creating it on first use)
 * under the tenant named by the `x-tenant-id` header, else `'default'`.
 *
 * A real app takes the tenant from the authenticated caller, never from a header the client
 * chooses: this demo has no authentication at all.
 */
@Controller('sessions')
export class SessionsController {
  constructor(private readonly sessions: EncryptedSessionService) {}

  /** Appends items in one transaction. 201 `{ appended }`; 415 unless the body is JSON. */
  @Post(':id/items')
  async append(
    @Param('id') sessionId: string,
    @Body() body: unknown,
    @Headers('content-type') contentType?: string,
    @Headers(TENANT_HEADER) tenantId?: string,
  ): Promise<{ appended: number }> {
    assertJsonContentType(contentType);
    const items = itemsFromBody(body);
    const session = await this.open(sessionId, tenantId);
    await session.addItems(items);
    return { appended: items.length };
  }

  /** The newest `limit` items (all when absent), oldest first. */
  @Get(':id/items')
  async list(
    @Param('id') sessionId: string,
    @Query('limit') limit?: unknown,
    @Headers(TENANT_HEADER) tenantId?: string,
  ): Promise<{ items: AgentInputItem[] }> {
    const parsedLimit = parseLimit(limit);
    const session = await this.open(sessionId, tenantId);
    return { items: await session.getItems(parsedLimit) };
  }

  /** Removes and returns the newest item; 404 `SESSION_EMPTY` when there is none. */
  @Post(':id/pop')
  @HttpCode(200)
  pop(
    @Param('id') sessionId: string,
    @Headers(TENANT_HEADER) tenantId?: string,
  ): Promise<{ item: AgentInputItem }> {
    return this.popNewest(sessionId, tenantId);
  }

  /** Same as `POST /sessions/:id/pop`, for clients that prefer a DELETE. */
  @Delete(':id/items/last')
  @HttpCode(200)
  deleteLast(
    @Param('id') sessionId: string,
    @Headers(TENANT_HEADER) tenantId?: string,
  ): Promise<{ item: AgentInputItem }> {
    return this.popNewest(sessionId, tenantId);
  }

  /** Deletes every item and destroys the session's data keys. 204. */
  @Delete(':id')
  @HttpCode(204)
  async clear(
    @Param('id') sessionId: string,
    @Headers(TENANT_HEADER) tenantId?: string,
  ): Promise<void> {
    const session = await this.open(sessionId, tenantId);
    await session.clearSession();
  }

  private async popNewest(sessionId: string, tenantId?: string): Promise<{ item: AgentInputItem }> {
    const session = await this.open(sessionId, tenantId);
    const item = await session.popItem();
    if (item === undefined) {
      throw new NotFoundException({ code: 'SESSION_EMPTY', message: 'The session has no items' });
    }
    return { item };
  }

  private open(sessionId: string, tenantId: string | undefined): Promise<EncryptedSession> {
    // The module checks both ids (length, control characters) and throws InvalidArgumentError.
    return this.sessions.open(sessionId, { tenantId: tenantOf(tenantId) });
  }
}

/**
 * Takes `{ items: [...] }` or a single item. Only the shape the demo needs is checked (each
 * item is an object with a string `role` or `type`); messages never repeat what was sent.
 */
function itemsFromBody(body: unknown): AgentInputItem[] {
  if (!isObject(body)) {
    throw invalidArgument(
      'Send a JSON object: { "items": [{ "role": "user", "content": "..." }] } or a single item',
    );
  }
  const items = 'items' in body ? body.items : [body];
  if (!Array.isArray(items)) {
    throw invalidArgument('"items" must be an array of items');
  }
  items.forEach((item: unknown, index) => {
    if (!isObject(item) || (typeof item.role !== 'string' && typeof item.type !== 'string')) {
      throw invalidArgument(
        `items[${index}] must be an object with a string "role" (a message) or "type"`,
      );
    }
  });
  return items as AgentInputItem[];
}

/** `?limit=N` as an integer; a negative one goes through so the module rejects it. */
function parseLimit(limit: unknown): number | undefined {
  if (limit === undefined) return undefined;
  if (typeof limit !== 'string' || !/^-?\d{1,15}$/.test(limit)) {
    throw invalidArgument('limit must be a whole number: 0 or more, or left out for all');
  }
  return Number(limit);
}

/** A 400 with the module's own code for a bad argument, so clients handle both alike. */
function invalidArgument(message: string): BadRequestException {
  return new BadRequestException({ code: 'INVALID_ARGUMENT', message });
}
