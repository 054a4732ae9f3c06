import type { AddressInfo } from 'node:net';
import {
  Controller,
  Get,
  Module,
  Param,
  Post,
  type INestApplication,
  type MiddlewareConsumer,
  type NestModule,
} from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Agent, Runner } from '@openai/agents';
import { Usage, type Model, type ModelResponse, type StreamEvent } from '@openai/agents-core';
import { afterEach, describe, expect, it } from 'vitest';
import { auditChainOf, type AuditEvent } from '../../src/audit/index.js';
import {
  AuditActorMiddleware,
  AuditService,
  EncryptedSessionModule,
  EncryptedSessionService,
  MemorySessionStorage,
  runAs,
  type AuditActor,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';

/*
 * Where the actor comes from: a request (through the module's middleware and the host's
 * resolver), an agent run's context (through RunContextAwareSession), or runAs.
 */

const TENANT = 'clinic';

@Controller('sessions')
class SessionsController {
  constructor(private readonly sessions: EncryptedSessionService) {}

  @Post(':id')
  async append(@Param('id') id: string): Promise<{ ok: true }> {
    const session = await this.sessions.open(id, { tenantId: TENANT });
    await session.addItems([{ role: 'user', content: 'hello' }]);
    return { ok: true };
  }

  @Get(':id')
  async read(@Param('id') id: string): Promise<{ items: number }> {
    const session = await this.sessions.open(id, { tenantId: TENANT });
    return { items: (await session.getItems()).length };
  }
}

/** Every event of a session's chain in the storage. */
async function eventsOf(storage: MemorySessionStorage, sessionId: string): Promise<AuditEvent[]> {
  const records = await storage.audit.readChain(
    auditChainOf({ tenantId: TENANT, sessionId }),
    0,
    100,
  );
  return records.map((record) => JSON.parse(record.body) as AuditEvent);
}

function auditedModule(storage: MemorySessionStorage) {
  return EncryptedSessionModule.forRoot({
    keys: { env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } },
    storage: { instance: storage },
    audit: {
      requireActor: true,
      actorFromRequest: (request: { headers: Record<string, string | undefined> }) => {
        const id = request.headers['x-user'];
        return id ? { type: 'user', id, tenantId: TENANT } : undefined;
      },
      actorFromRunContext: (context: { userId?: string } | undefined) =>
        context?.userId
          ? { type: 'service', id: 'intake-agent', tenantId: TENANT, onBehalfOf: context.userId }
          : undefined,
    },
  });
}

describe('the actor of an audited operation', () => {
  let app: INestApplication | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it("comes from the request through AuditActorMiddleware, with the request's id and address", async () => {
    const storage = new MemorySessionStorage();
    @Module({ imports: [auditedModule(storage)], controllers: [SessionsController] })
    class HostModule implements NestModule {
      configure(consumer: MiddlewareConsumer): void {
        consumer.apply(AuditActorMiddleware).forRoutes('*path');
      }
    }
    const moduleRef = await Test.createTestingModule({ imports: [HostModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as AddressInfo;
    const url = `http://127.0.0.1:${port}/sessions/visit`;

    const headers = { 'x-user': 'nurse-17', 'x-request-id': 'req-42' };
    expect((await fetch(url, { method: 'POST', headers })).status).toBe(201);
    expect(await (await fetch(url, { headers })).json()).toEqual({ items: 1 });
    // No actor: refused before anything is touched, the refusal on record.
    expect((await fetch(url, { method: 'POST' })).status).toBe(500);

    const events = await eventsOf(storage, 'visit');
    expect(events.map((event) => [event.action, event.actor.id])).toEqual([
      ['session.create', 'nurse-17'],
      ['key.create', 'nurse-17'],
      ['session.append', 'nurse-17'],
      ['session.read', 'nurse-17'],
      ['access.denied', 'unattributed'],
    ]);
    expect(events[2].source).toEqual({ requestId: 'req-42', ip: '127.0.0.1' });
    const auditor: AuditActor = { type: 'user', id: 'auditor-1', tenantId: TENANT };
    const verified = await runAs(auditor, () =>
      app!.get(AuditService).verify({ tenantId: TENANT }),
    );
    expect(verified.ok).toBe(true);
  });

  it("comes from an agent run's context when the Runner passes it to the session", async () => {
    const storage = new MemorySessionStorage();
    const moduleRef = await Test.createTestingModule({
      imports: [auditedModule(storage)],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    const system: AuditActor = { type: 'system', id: 'setup', tenantId: TENANT };
    const session = await runAs(system, () =>
      app!.get(EncryptedSessionService).open('agent-visit', { tenantId: TENANT }),
    );
    const agent = new Agent({ name: 'Intake', instructions: 'Be brief.', model: new OneReply() });
    const runner = new Runner({ tracingDisabled: true });
    await runner.run(agent, 'hello', { session, context: { userId: 'u-1842' } });

    const events = await eventsOf(storage, 'agent-visit');
    expect(events[0]).toMatchObject({ action: 'session.create', actor: system });
    const runEvents = events.slice(1);
    expect(runEvents.length).toBeGreaterThan(0);
    for (const event of runEvents) {
      expect(event.actor).toEqual({
        type: 'service',
        id: 'intake-agent',
        tenantId: TENANT,
        onBehalfOf: 'u-1842',
      });
    }
  });
});

/** A model that answers every turn with one line; no network. */
class OneReply implements Model {
  async getResponse(): Promise<ModelResponse> {
    return {
      usage: new Usage({ requests: 1, inputTokens: 1, outputTokens: 1, totalTokens: 2 }),
      output: [
        {
          type: 'message',
          id: 'msg_1',
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: 'Noted.' }],
        },
      ],
    };
  }

  // eslint-disable-next-line require-yield
  async *getStreamedResponse(): AsyncIterable<StreamEvent> {
    throw new Error('This model does not stream');
  }
}
