import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  EncryptedSessionModule,
  EncryptedSessionService,
  KekRotationService,
  ShuttingDownError,
  type DataKeyContext,
  type WrappedDataKey,
} from '../../src/index.js';
import { RotatingEnvProvider } from '../support/rotating-env-provider.js';
import { userMessage } from '../support/session-harness.js';
import { Gate } from '../support/gate.js';
import { rejectionOf } from '../support/thrown-by.js';

// Issue 9, point 6: one owner shuts the module down in order: background runs stop, session
// calls in flight finish, storage closes, the key ring is cleared, the provider closes last.

/** Env root keys whose calls can be held at a gate, and whose close is recorded. */
class HeldProvider extends RotatingEnvProvider {
  held: { generate?: Gate; rewrap?: Gate } = {};
  readonly events: string[];

  constructor(events: string[]) {
    super();
    this.events = events;
  }

  override async generateDataKey(context: DataKeyContext) {
    await this.held.generate?.pass();
    return super.generateDataKey(context);
  }

  override async rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    // Only the first rewrap is held.
    const held = this.held.rewrap;
    this.held.rewrap = undefined;
    await held?.pass();
    return super.rewrapDataKey(wrapped, context);
  }

  async close(): Promise<void> {
    this.events.push('provider closed');
  }
}

describe('shutdown', () => {
  let directory: string;
  let events: string[];
  let provider: HeldProvider;
  let moduleRef: TestingModule | undefined;

  const start = async () => {
    const path = join(directory, 'shutdown.sqlite');
    const ref = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: { provider },
          storage: { type: 'sqlite', path },
        }),
      ],
    }).compile();
    await ref.init();
    return ref;
  };

  beforeEach(async () => {
    directory = mkdtempSync(join(tmpdir(), 'nes-shutdown-'));
    events = [];
    provider = new HeldProvider(events);
    moduleRef = await start();
  });
  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    rmSync(directory, { recursive: true, force: true });
  });

  it('lets a session call in flight finish and store its items before storage closes', async () => {
    const sessions = moduleRef!.get(EncryptedSessionService);
    const session = await sessions.open('in-flight', { tenantId: 'acme' });
    provider.held.generate = new Gate();
    const writing = session.addItems([userMessage('written during shutdown')]);
    await provider.held.generate.reached;
    const closing = moduleRef!.close();
    moduleRef = undefined;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(events).toEqual([]);
    provider.held.generate.open();
    await writing;
    await closing;
    expect(events).toEqual(['provider closed']);

    provider.held.generate = undefined;
    moduleRef = await start();
    const reopened = await moduleRef.get(EncryptedSessionService).open('in-flight', {
      tenantId: 'acme',
    });
    expect(await reopened.getItems()).toEqual([userMessage('written during shutdown')]);
  });

  it('refuses calls that arrive once shutdown began with ShuttingDownError', async () => {
    const sessions = moduleRef!.get(EncryptedSessionService);
    const session = await sessions.open('late', { tenantId: 'acme' });
    provider.held.generate = new Gate();
    const writing = session.addItems([userMessage('first')]);
    await provider.held.generate.reached;
    const closing = moduleRef!.close();
    moduleRef = undefined;
    await new Promise((resolve) => setImmediate(resolve));

    const late = await rejectionOf(() => session.getItems());
    const lateOpen = await rejectionOf(() => sessions.open('other', { tenantId: 'acme' }));
    provider.held.generate.open();
    await writing;
    await closing;
    expect(late).toBeInstanceOf(ShuttingDownError);
    expect(lateOpen).toBeInstanceOf(ShuttingDownError);
    expect((late as ShuttingDownError).retryable).toBe(true);
  });

  it('ends a KEK rotation run after its current key, and the next run resumes', async () => {
    const sessions = moduleRef!.get(EncryptedSessionService);
    for (const id of ['a', 'b', 'c']) {
      await (await sessions.open(id, { tenantId: 'acme' })).addItems([userMessage(id)]);
    }
    provider.rotate();
    provider.held.rewrap = new Gate();
    const rewrapping = moduleRef!.get(KekRotationService).rewrapAll({ batchSize: 10 });
    const held = provider.held.rewrap;
    await held.reached;
    const closing = moduleRef!.close();
    moduleRef = undefined;
    await new Promise((resolve) => setImmediate(resolve));
    held.open();
    const report = await rewrapping;
    await closing;
    // Four data keys: the three sessions' and the audit trail's MAC key (no subject was named,
    // so no pseudonym key yet).
    expect(report).toEqual({
      rewrapped: 1,
      alreadyMoved: 0,
      failed: 0,
      remaining: 3,
      stoppedForShutdown: true,
    });

    moduleRef = await start();
    const rest = await moduleRef.get(KekRotationService).rewrapAll();
    expect(rest).toMatchObject({ rewrapped: 3, remaining: 0, stoppedForShutdown: false });
  });
});
