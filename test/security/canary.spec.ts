import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConsoleLogger } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import type { AgentInputItem } from '@openai/agents-core';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EncryptedSessionModule,
  EncryptedSessionService,
  IntegrityError,
  type EncryptedSession,
} from '../../src/index.js';
import { findSecret, readDatabaseFiles } from '../support/file-scan.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { errorText } from '../support/error-text.js';

const CANARY = `CANARY-${randomUUID()}-zebra`;

/** Captures everything written to stdout, stderr and the Nest logger while installed. */
class OutputCapture {
  readonly lines: string[] = [];
  private restore: Array<() => void> = [];

  install(): void {
    for (const stream of [process.stdout, process.stderr]) {
      const original = stream.write.bind(stream);
      stream.write = (chunk: unknown, ...rest: unknown[]) => {
        this.lines.push(String(chunk));
        return (original as (...args: unknown[]) => boolean)(chunk, ...rest);
      };
      this.restore.push(() => (stream.write = original));
    }
  }

  uninstall(): void {
    for (const undo of this.restore.splice(0)) undo();
  }
}

describe('canary: item content never leaves the envelope', () => {
  const capture = new OutputCapture();
  const errors: unknown[] = [];
  let directory: string;
  let databasePath: string;
  let moduleRef: TestingModule;
  let session: EncryptedSession;
  let readBack: { lastTwo: AgentInputItem[]; popped: AgentInputItem | undefined };

  beforeAll(async () => {
    capture.install();
    directory = mkdtempSync(join(tmpdir(), 'nes-canary-'));
    databasePath = join(directory, 'canary.sqlite');
    moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: { env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } },
          storage: { type: 'sqlite', path: databasePath },
        }),
      ],
    }).compile();
    // Verbose logging everywhere, so a leak through a debug line would show.
    moduleRef.useLogger(
      new ConsoleLogger('canary', { logLevels: ['log', 'error', 'warn', 'debug', 'verbose'] }),
    );
    await moduleRef.init();
    const sessions = moduleRef.get(EncryptedSessionService);
    session = await sessions.open(`canary-${randomUUID()}`, { subjectId: 'subject-1' });

    const canaryItem = (n: number) =>
      ({ role: 'user', content: `visit ${n}: ${CANARY} diagnosis` }) as AgentInputItem;
    await session.addItems([canaryItem(1), canaryItem(2), canaryItem(3)]);
    await session.applyHistoryTransaction({
      operationId: 'op-canary',
      transaction: { type: 'append_items', items: [canaryItem(4)] },
    });
    readBack = { lastTwo: await session.getItems(2), popped: await session.popItem() };

    // Provoke every kind of error a caller could see, each carrying the canary in its input.
    const attempts: Array<() => Promise<unknown>> = [
      () =>
        session.addItems([
          { role: 'user', content: CANARY, bad: 10n } as unknown as AgentInputItem,
        ]),
      () =>
        session.applyHistoryTransaction({
          operationId: 'op-canary',
          transaction: { type: 'append_items', items: [canaryItem(99)] },
        }),
      () =>
        session.applyHistoryTransaction({
          operationId: 'op-mismatch',
          transaction: {
            type: 'replace_suffix',
            expectedSuffix: [canaryItem(42)],
            replacement: [canaryItem(43)],
          },
        }),
      () => session.getItems(-1),
      () => sessions.open(CANARY.repeat(10)),
    ];
    for (const attempt of attempts) {
      await attempt().then(
        () => errors.push(new Error('expected a failure')),
        (error: unknown) => errors.push(error),
      );
    }
    // Tamper with the newest row through a second connection, so reads fail integrity checks.
    const tamper = new Database(databasePath);
    const row = tamper
      .prepare('SELECT seq, ciphertext FROM nes_items ORDER BY seq DESC LIMIT 1')
      .get() as {
      seq: number;
      ciphertext: Buffer;
    };
    row.ciphertext[row.ciphertext.length - 1] ^= 0xff;
    tamper
      .prepare('UPDATE nes_items SET ciphertext = ? WHERE seq = ?')
      .run(row.ciphertext, row.seq);
    tamper.close();
    for (const read of [() => session.getItems(), () => session.popItem()]) {
      await read().then(
        () => errors.push(new Error('expected a failure')),
        (error: unknown) => errors.push(error),
      );
    }
  });

  afterAll(async () => {
    capture.uninstall();
    await moduleRef?.close();
    rmSync(directory, { recursive: true, force: true });
  });

  it('read back the canary items it wrote', () => {
    expect(JSON.stringify(readBack.lastTwo)).toContain(CANARY);
    expect(readBack.popped).toMatchObject({ content: `visit 4: ${CANARY} diagnosis` });
  });

  it('provoked one error per bad call, integrity failures included', () => {
    expect(errors).toHaveLength(7);
    expect(errors.slice(-2).every((error) => error instanceof IntegrityError)).toBe(true);
    expect(
      errors.every((error) => error instanceof Error && error.message !== 'expected a failure'),
    ).toBe(true);
  });

  it('keeps the canary out of every error message, stack and cause', () => {
    for (const error of errors) expect(findSecret(errorText(error), CANARY)).toEqual([]);
  });

  it('keeps the canary out of the database file, its WAL and shared memory, while open', () => {
    for (const [file, bytes] of Object.entries(readDatabaseFiles(databasePath))) {
      expect(findSecret(bytes, CANARY), file).toEqual([]);
    }
  });

  it('keeps the canary out of every log line', () => {
    expect(capture.lines.length).toBeGreaterThan(0);
    expect(findSecret(capture.lines.join('\n'), CANARY)).toEqual([]);
  });

  it('keeps the canary out of the database file after close and checkpoint', async () => {
    await moduleRef.close();
    for (const [file, bytes] of Object.entries(readDatabaseFiles(databasePath))) {
      expect(findSecret(bytes, CANARY), file).toEqual([]);
    }
  });
});
