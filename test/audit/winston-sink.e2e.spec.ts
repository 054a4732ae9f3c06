import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Test } from '@nestjs/testing';
import winston from 'winston';
import TransportStream from 'winston-transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { auditChainOf, type AuditEvent } from '../../src/audit/index.js';
import {
  AuditService,
  EncryptedSessionModule,
  EncryptedSessionService,
  MemorySessionStorage,
  runAs,
  type EncryptedSessionModuleOptions,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { userMessage } from '../support/session-harness.js';

/*
 * winston as the secondary copy of the trail: every committed event, after commit, in the
 * stored schema; flushed at shutdown; a failing transport counted and never in the way.
 */

const actor = { type: 'user' as const, id: 'nurse-17', tenantId: 'clinic' };

async function startModule(
  storage: MemorySessionStorage,
  audit: EncryptedSessionModuleOptions['audit'],
) {
  const moduleRef = await Test.createTestingModule({
    imports: [
      EncryptedSessionModule.forRoot({
        keys: { env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } },
        storage: { instance: storage },
        audit,
      }),
    ],
  }).compile();
  await moduleRef.init();
  return moduleRef;
}

/** Some audited work: a session created, 30 appends and 30 reads. */
async function someWork(sessions: EncryptedSessionService): Promise<void> {
  await runAs(actor, async () => {
    const session = await sessions.open('visit', { tenantId: 'clinic' });
    for (let index = 0; index < 30; index++) {
      await session.addItems([userMessage(`item ${index}`)]);
      await session.getItems(5);
    }
  });
}

describe('the winston copy of the audit trail', () => {
  let directory: string;
  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), 'nes-audit-'));
  });
  afterEach(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  it('writes every committed event as a JSON line, complete once the app has closed', async () => {
    const file = join(directory, 'audit.jsonl');
    const storage = new MemorySessionStorage();
    const moduleRef = await startModule(storage, { winston: { file } });
    await someWork(moduleRef.get(EncryptedSessionService));
    expect(moduleRef.get(AuditService).sinkStats()).toEqual({ delivered: 62, failed: 0 });
    await moduleRef.close();

    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const logged = lines.map((line) => JSON.parse(line) as AuditEvent);
    const stored = await storage.audit.readChain(
      auditChainOf({ tenantId: 'clinic', sessionId: 'visit' }),
      0,
      1000,
    );
    expect(logged).toHaveLength(stored.length);
    expect(logged.map((event) => [event.eventId, event.chain.seq, event.chain.mac])).toEqual(
      stored.map((record) => [record.eventId, record.seq, record.mac.toString('base64url')]),
    );
  });

  it("hands events to the host's logger; a failing transport is counted, and nothing fails", async () => {
    const received: unknown[] = [];
    const host = winston.createLogger({
      transports: [
        new winston.transports.Stream({
          stream: new Writable({
            objectMode: true,
            write(info: { event: unknown }, _encoding, done) {
              received.push(info.event);
              done();
            },
          }),
        }),
        new FailingTransport(),
      ],
    });
    const storage = new MemorySessionStorage();
    const moduleRef = await startModule(storage, { winston: { logger: host } });
    await someWork(moduleRef.get(EncryptedSessionService));
    await new Promise((resolve) => setImmediate(resolve));
    const stats = moduleRef.get(AuditService).sinkStats()!;
    expect(stats.delivered).toBe(62);
    expect(stats.failed).toBeGreaterThan(0);
    expect(received).toHaveLength(62);
    await moduleRef.close();
    // The host's logger is the host's to end: still open after the module closed.
    expect(host.writable).toBe(true);
    host.end();
  });
});

/** A transport that fails every write the way winston's File transport reports one. */
class FailingTransport extends TransportStream {
  override log(_info: unknown, next: () => void): void {
    setImmediate(() => this.emit('error', new Error('disk full')));
    next();
  }
}
